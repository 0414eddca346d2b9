"""The settings of a fine-tuning run (:class:`FinetuneConfig`): everything that determines its numbers.

The one place they are defined: :func:`freqlab.finetune.loop.finetune` takes them whole (``config=``) or as keywords,
and ``freqlab finetune`` builds its options from the fields. Imports no torch (the command line builds its parser
from it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from freqlab.measure.conventions import DEFAULT_BAND_EDGES
from freqlab.runtime.settings import configure, documented, parse_edges, parse_optional_int, require, setting

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


@documented
@dataclass
class FinetuneConfig:
    """Everything that determines the numbers of a fine-tuning run (device and I/O options are not here); each
    field's doc is also the help of its ``freqlab finetune`` option.

    Sizes are in images: ``n_images`` is the budget, ``log_every`` the spacing of log rows and sample grids,
    ``checkpoint_every`` that of exported checkpoints (``None``: at every log row; the resume state is always saved
    at every log row), ``ema`` the half-life of the generator's EMA (0: no averaging).
    """

    init: str = setting("", "provenance: the checkpoint path (set by finetune)", cli=False)
    init_kind: str = setting("checkpoint", "start from the checkpoint's weights, or from fresh weights of the same "
                             "architecture (the control)", choices=("checkpoint", "random"), flag="--init")
    data: str = setting("natural", "data source (a freqlab.data.sources name)")
    data_path: str | None = setting(None, "folder / cifar10 / array data: where the images are", parse=str,
                                    metavar="PATH")
    freeze: str = setting("conv", "conv (D2O-F): freeze residual-block convs, resamplers and attention output "
                          "projections; none (D2O); or a regex over parameter names (matches are frozen)",
                          metavar="conv|none|REGEX")
    loss: str = setting("ns", "ns (non-saturating, the paper's) or hinge (ended closer to the data more often in "
                        "short CPU runs: benchmarks/README.md, 'GAN recipe')", choices=LOSSES)
    r1_gamma: float = setting(0.1, "R1 weight γ (0: off)")
    r1_every: int = setting(16, "lazy R1: every k discriminator steps, with gain k")
    lr_g: float = setting(4e-4, "generator learning rate")
    lr_d: float = setting(8e-4, "discriminator learning rate")
    batch_size: int = setting(32, "images per step (under torchrun: the global batch, split over the processes)")
    n_images: int = setting(10_000, "budget in training images", flag="--images", metavar="N")
    log_every: int = setting(1_000, "log spectra, samples and resume state every N images", metavar="N")
    checkpoint_every: int | None = setting(None, "export G and its EMA every N images (none: at every log moment)",
                                           parse=parse_optional_int, metavar="N")
    ema: float = setting(500.0, "EMA half-life in images (0: off)")
    n_eval: int = setting(64, "fixed-z outputs logged at each row (spectra, band statistics, grid)", metavar="N")
    n_data: int = setting(256, "data images of the reference statistics", metavar="N")
    bands: tuple[float, ...] | None = setting(None, "band edges in cycles/pixel (none: low/mid/high, "
                                              + ",".join(f"{e:g}" for e in DEFAULT_BAND_EDGES) + ")",
                                              parse=parse_edges, metavar="EDGES")
    discriminator: str = setting("highpass", "the discriminator (chosen in benchmarks/README.md, 'GAN recipe'): "
                                 + "; ".join(f"{k}: {describe_discriminator(k)}" for k in DISCRIMINATORS)
                                 + "; another one: finetune(discriminator_factory=...)", choices=tuple(DISCRIMINATORS))
    d_channels: int = setting(16, "discriminator base channels", metavar="N")
    lookahead: int = setting(5, "lookahead-minmax: every K steps G and D move back to their slow weights, which take "
                             "half of the K steps' change; damps the GAN's swings (0: off; "
                             "freqlab.training.averaging.Lookahead)", metavar="K")
    seed: int = setting(0, "seeds the generator noise, the data order, the discriminator and a random init", cli=False)

    def __post_init__(self):
        require(self, at_least={"batch_size": 1, "n_images": 1, "log_every": 1, "r1_every": 1, "n_eval": 2,
                                "n_data": 2, "d_channels": 1})
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
    def from_settings(cls, init: str, settings: dict, config: "FinetuneConfig | None" = None) -> "FinetuneConfig":
        """``config`` (default: the defaults) with ``settings`` (keywords of :func:`freqlab.finetune.loop.finetune`)
        and the provenance ``init``; an unknown name is one clear error."""
        unknown = sorted(set(settings) - set(cls.settings()))
        if unknown:
            raise ValueError(f"unknown fine-tuning setting(s) {', '.join(unknown)}; known: {', '.join(cls.settings())}")
        return configure(cls, config, {**settings, "init": init}, what="fine-tuning")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}
