"""The settings of a fine-tuning run (:class:`FinetuneConfig`): everything that determines its numbers.

The one place they are defined: :func:`freqlab.finetune.loop.finetune` takes them as keywords and ``freqlab finetune`` takes
its option defaults from here. Imports no torch (the command line builds its parser from it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

__all__ = ["DISCRIMINATORS", "LOSSES", "FinetuneConfig", "describe_discriminator"]

LOSSES = ("ns", "hinge")

#: the discriminators of a fine-tune (``discriminator``, ``--discriminator``): the arguments of
#: freqlab.finetune.discriminator.Discriminator besides ``channels`` (the ``d_channels`` setting). Measured in
#: benchmarks/README.md, "GAN recipe", where benchmarks/gan_recipe_search.py names its variants (32 channels there).
#: Anything else: freqlab.finetune.loop.finetune(discriminator_factory=...).
DISCRIMINATORS = {
    # the default: image beside 4x its high-pass detail, per-scale logits, minibatch-std 4 (search: highpass-patch-c16)
    "highpass": dict(highpass_gain=4.0, patch_logits=True, minibatch_std=4),
    # pixels with per-scale logits and minibatch-std 4 (search: pixel-patch): mean spectrum matched, no edges
    "pixel-patch": dict(highpass_gain=0.0, patch_logits=True, minibatch_std=4),
    # pixels, one global logit, no minibatch-std (search: pixel; freqlab's earlier default): grain, no edges
    "pixel": dict(highpass_gain=0.0, patch_logits=False, minibatch_std=0),
}
# the discriminator fields of runs saved before they became one choice, in the order of the Discriminator arguments
_FOLDED_INTO_DISCRIMINATOR = ("d_highpass", "d_patch", "d_mbstd")


def describe_discriminator(name: str) -> str:
    """What ``DISCRIMINATORS[name]`` is, in a few words (the command line's help)."""
    kw = DISCRIMINATORS[name]
    view = f"image + {kw['highpass_gain']:g}x high-pass detail" if kw["highpass_gain"] else "pixels"
    logits = "per-scale logits" if kw["patch_logits"] else "one global logit"
    mbstd = f"minibatch-std {kw['minibatch_std']}" if kw["minibatch_std"] else "no minibatch-std"
    return f"{view}, {logits}, {mbstd}"


@dataclass
class FinetuneConfig:
    """Everything that determines the numbers of a fine-tuning run (device and I/O options are not here).

    Sizes are in images: ``n_images`` is the budget, ``log_every`` the spacing of log rows and sample grids,
    ``checkpoint_every`` that of exported checkpoints (``None``: at every log row; the resume state is always saved
    at every log row), ``ema`` the half-life of the generator's EMA (0: no averaging).
    """

    init: str = ""                      # provenance: the checkpoint path (set by finetune)
    init_kind: str = "checkpoint"       # "checkpoint" or "random" (same architecture, fresh weights: the control)
    data: str = "natural"               # a freqlab.data.sources source name
    data_path: str | None = None        # for the "folder" and "array" sources
    freeze: str = "conv"                # "none" (D2O), "conv" (D2O-F) or a regex over parameter names
    loss: str = "ns"                    # "ns" (non-saturating) or "hinge"
    r1_gamma: float = 0.1               # R1 weight γ (0 turns R1 off)
    r1_every: int = 16                  # lazy R1: every k D steps, with gain k
    lr_g: float = 4e-4
    lr_d: float = 8e-4
    batch_size: int = 32
    n_images: int = 10_000
    log_every: int = 1_000
    checkpoint_every: int | None = None
    ema: float = 500.0
    n_eval: int = 64                    # fixed-z outputs logged at each row (spectra, band statistics, grid)
    n_data: int = 256                   # data images of the reference statistics
    bands: tuple[float, ...] | None = None  # band edges in cycles/pixel; None: low/mid/high of DEFAULT_BANDS
    # the discriminator: a name in DISCRIMINATORS and its base channels; another one: finetune(discriminator_factory=...)
    discriminator: str = "highpass"
    d_channels: int = 16
    lookahead: int = 5                  # lookahead-minmax: every k steps G and D move halfway back to their slow
    #                                     weights (0: off); see freqlab.training.averaging.Lookahead
    seed: int = 0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.init_kind not in ("checkpoint", "random"):
            raise ValueError(f"init_kind must be 'checkpoint' or 'random', got {self.init_kind!r}")
        if self.discriminator not in DISCRIMINATORS:
            raise ValueError(f"discriminator must be one of {', '.join(DISCRIMINATORS)}, got {self.discriminator!r}")
        for name in ("batch_size", "n_images", "log_every", "r1_every", "n_eval", "n_data", "d_channels"):
            if int(getattr(self, name)) < (2 if name in ("n_eval", "n_data") else 1):
                raise ValueError(f"{name} must be a positive integer (n_eval, n_data >= 2), got {getattr(self, name)}")
        for name in ("lr_g", "lr_d"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not (float(self.lookahead).is_integer() and self.lookahead >= 0):
            raise ValueError(f"lookahead must be a whole number of steps >= 0 (0: off), got {self.lookahead}")
        self.lookahead = int(self.lookahead)
        if not (self.r1_gamma >= 0 and self.ema >= 0):
            raise ValueError("r1_gamma and ema must be >= 0")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 image or None, got {self.checkpoint_every}")
        if self.bands is not None:
            from freqlab import spectral  # torch: only when bands are given

            self.bands = tuple(float(b) for b in self.bands)
            spectral.resolve_bands(self.bands)

    # fields that may change when a run is resumed: its budget and how often it exports checkpoints
    RESUMABLE_CHANGES = ("n_images", "checkpoint_every")
    # fields added after runs were first saved, with the value that reproduces those runs (not today's default)
    ADDED_LATER = {"lookahead": 0}

    @classmethod
    def upgrade(cls, saved: Mapping) -> dict:
        """A config dict saved by an earlier freqlab (``to_dict``), in today's fields, to compare with today's config.

        A field added later gets the value that reproduces those runs (``ADDED_LATER``). The discriminator fields
        ``d_highpass``, ``d_patch`` and ``d_mbstd`` of runs saved before ``discriminator`` existed become the name in
        ``DISCRIMINATORS`` they match; values that match none give a ``discriminator`` that names them and no choice,
        so the comparison reports a run with other settings.
        """
        saved = {**cls.ADDED_LATER, **saved}
        if "discriminator" not in saved:
            old = tuple(saved.pop(k, None) for k in _FOLDED_INTO_DISCRIMINATOR)
            match = [name for name, kw in DISCRIMINATORS.items() if old == tuple(kw.values())]
            saved["discriminator"] = match[0] if match else (
                ", ".join(f"{k}={v!r}" for k, v in zip(_FOLDED_INTO_DISCRIMINATOR, old)) + " (no named choice)")
        return saved

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """The names a caller sets (``init`` is recorded by :func:`freqlab.finetune.loop.finetune` itself)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "init")

    @classmethod
    def from_settings(cls, init: str, settings: dict) -> "FinetuneConfig":
        """The config of ``settings`` (keywords of :func:`freqlab.finetune.loop.finetune`); unknown names are one clear error."""
        unknown = sorted(set(settings) - set(cls.settings()))
        if unknown:
            raise ValueError(f"unknown fine-tuning setting(s) {', '.join(unknown)}; known: {', '.join(cls.settings())}")
        return cls(init=init, **settings)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}
