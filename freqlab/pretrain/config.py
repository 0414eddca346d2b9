"""The settings of a pre-training run (:class:`TrainConfig`) and its presets (``cpu-small``, ``cifar``, ``tiny``);
what each preset is and why it departs from EDM: :mod:`freqlab.pretrain.loop`."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from freqlab.runtime.settings import documented, parse_floats, require, setting

__all__ = ["PRESETS", "TrainConfig", "make_config"]


def parse_ints(text: str) -> tuple[int, ...]:
    """Comma-separated whole numbers; ``none`` or nothing is ``()``."""
    text = text.strip().lower()
    if text in ("", "none"):
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def parse_numbers(text: str) -> tuple[float, ...]:
    """Comma-separated numbers."""
    return tuple(parse_floats(text))


def parse_optional_float(text: str) -> float | None:
    """A number, or ``none``."""
    return None if text.strip().lower() == "none" else float(text)


#: Fields that default to None and are left out of :meth:`TrainConfig.to_dict` while None (added after runs were
#: recorded without them: an unrestricted run's recorded config is unchanged).
OPTIONAL_FIELDS = ("train_sigma_min", "train_sigma_max")


@documented
@dataclass
class TrainConfig:
    """Every knob of a pre-training run. ``make_config(preset, **overrides)`` builds one from a preset.

    The field defaults follow EDM where a knob has an EDM value (σ sampling, σ_data, Adam); each preset overrides
    what it changes (:data:`PRESETS`). Each field's doc is also the help of its ``freqlab pretrain`` option.
    """

    preset: str = setting("cpu-small", "the preset the run started from", cli=False)
    seed: int = setting(0, "seeds the weights, the noise and σ of every step", cli=False)
    # data
    data: str = setting("natural", "data source: natural (the embedded photographs), deadleaves, grf, white, folder, "
                        "cifar10, array")
    data_path: str | None = setting(None, "folder / cifar10 / array data: where the images are", parse=str,
                                    metavar="PATH")
    data_options: dict = setting({}, "options of the data source (freqlab.data.sources.make_source), e.g. "
                                 "max_crop=0.25", cli=False)
    resolution: int = setting(32, "image size in pixels (square)")
    grayscale: bool = setting(False, "one channel instead of RGB")
    data_seed: int = setting(0, "which crops a procedural source draws (kept apart from the seed, so that two "
                             "model seeds see the same data)")
    # model
    channels: tuple[int, ...] = setting((32, 64, 64), "UNet widths per level (block_out_channels)", parse=parse_ints,
                                        metavar="C1,C2,...")
    layers_per_block: int = setting(1, "ResNet blocks per level")
    attention_levels: tuple[int, ...] = setting((2,), "levels with self-attention (0 = full resolution; none for "
                                                "none)", parse=parse_ints, metavar="L1,...")
    dropout: float = setting(0.0, "dropout in the ResNet blocks")
    sigma_data: float = setting(0.5, "EDM σ_data (0.5 for images in [-1, 1])")
    sigma_min: float = setting(0.002, "σ_min recorded in the checkpoints")
    sigma_max: float = setting(80.0, "σ_max recorded in the checkpoints (the D2O generator's σ)")
    # loss and optimisation
    loguniform_share: float = setting(0.0, "share of training images whose σ is log-uniform over [σ_min, σ_max] "
                                      "instead of log-normal (EDM: 0; freqlab.pretrain.loss.training_sigma)")
    p_mean: float = setting(-1.2, "mean of log σ during training (EDM: -1.2)")
    p_std: float = setting(1.2, "standard deviation of log σ during training (EDM: 1.2)")
    train_sigma_min: float | None = setting(None, "train only at σ >= this: the σ distribution truncated below "
                                            "(none: no bound; freqlab.pretrain.loss.training_sigma)",
                                            parse=parse_optional_float, metavar="SIGMA")
    train_sigma_max: float | None = setting(None, "train only at σ <= this: the σ distribution truncated above "
                                            "(none: no bound)", parse=parse_optional_float, metavar="SIGMA")
    steps: int = setting(300, "optimisation steps")
    batch_size: int = setting(32, "images per step")
    lr: float = setting(1e-3, "Adam learning rate")
    betas: tuple[float, float] = setting((0.9, 0.999), "Adam betas", parse=parse_numbers, metavar="B1,B2")
    warmup_steps: int = setting(50, "steps of linear learning-rate warm-up")
    lr_schedule: str = setting("constant", "constant, or cosine decay to 0 after the warm-up",
                               choices=("constant", "cosine"))
    grad_clip: float = setting(1.0, "maximum global gradient norm (0: off)")
    ema_halflife_images: float = setting(2000.0, "EMA half-life in images", flag="--ema-halflife", metavar="IMAGES")
    ema_rampup_ratio: float | None = setting(0.05, "EMA half-life at most this share of the images seen (EDM's "
                                             "ramp; none: no ramp)", parse=parse_optional_float, metavar="RATIO")
    ema_decay: float | None = setting(None, "a fixed per-step EMA decay that overrides the half-life and the ramp",
                                      parse=parse_optional_float, metavar="DECAY")
    amp: bool = setting(True, "bf16 autocast on accelerators (the CPU always runs float32)")
    # output
    n_checkpoints: int = setting(8, "log-spaced checkpoints (step 0 and the last step included)", flag="--checkpoints",
                                 metavar="N")
    state_every: int = setting(25, "steps between saved training states (what --resume restarts from)",
                               metavar="STEPS")
    log_every: int = setting(25, "steps per block of the loss-per-σ log", metavar="STEPS")
    loss_sigma_edges: tuple[float, ...] = setting((0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
                                                  "σ bin edges of the loss log (open-ended bins below and above are "
                                                  "added)", parse=parse_numbers, metavar="E1,E2,...")

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists). The σ-range bounds appear only when set, so an unrestricted run
        records exactly the dict it recorded before they existed (its run.json, resume check and checkpoints)."""
        d = json.loads(json.dumps(dataclasses.asdict(self)))
        for name in OPTIONAL_FIELDS:
            if d[name] is None:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys are a ValueError."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {', '.join(unknown)}; known: {', '.join(names)}")
        values = {}
        for k, v in d.items():
            values[k] = tuple(v) if isinstance(v, list) else v
        return cls(**values)

    def validate(self) -> "TrainConfig":
        """Raise ValueError (one sentence) for settings that cannot train."""
        from freqlab.data.sources import DATA_SOURCES

        if self.data not in DATA_SOURCES:
            raise ValueError(f"unknown data source {self.data!r}; choose one of {', '.join(DATA_SOURCES)}")
        require(self, at_least={"steps": 1, "batch_size": 1, "n_checkpoints": 2, "state_every": 1, "log_every": 1,
                                "resolution": 1, "layers_per_block": 1, "warmup_steps": 0},
                why={"n_checkpoints": "step 0 and the last step"})
        if not self.channels or any(int(c) != c or c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive integers, got {self.channels!r}")
        if any(int(i) != i or not 0 <= i < len(self.channels) for i in self.attention_levels):
            raise ValueError(f"attention_levels must be level indices in 0..{len(self.channels) - 1}, "
                             f"got {self.attention_levels!r}")
        if self.resolution % 2 ** (len(self.channels) - 1):
            raise ValueError(f"resolution {self.resolution} must be divisible by {2 ** (len(self.channels) - 1)} "
                             f"for a UNet with {len(self.channels)} levels")
        finite = {"lr": self.lr, "p_std": self.p_std, "sigma_data": self.sigma_data, "grad_clip": self.grad_clip,
                  "ema_halflife_images": self.ema_halflife_images}
        for name, value in finite.items():
            if not (math.isfinite(value) and value >= 0) or (name in ("lr", "p_std", "sigma_data") and value == 0):
                raise ValueError(f"{name} must be finite and {'> 0' if name in ('lr', 'p_std', 'sigma_data') else '>= 0'}"
                                 f", got {value!r}")
        if not 0 <= self.loguniform_share <= 1:
            raise ValueError(f"loguniform_share must be in [0, 1], got {self.loguniform_share!r}")
        if not math.isfinite(self.p_mean):
            raise ValueError(f"p_mean must be finite, got {self.p_mean!r}")
        bounds = {"train_sigma_min": self.train_sigma_min, "train_sigma_max": self.train_sigma_max}
        for name, value in bounds.items():
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0 (or None), got {value!r}")
        if None not in bounds.values() and not self.train_sigma_min < self.train_sigma_max:
            raise ValueError(f"train_sigma_min ({self.train_sigma_min!r}) must be below train_sigma_max "
                             f"({self.train_sigma_max!r})")
        if self.loguniform_share == 1 and (  # the log-uniform part alone must reach the range
                (self.train_sigma_min is not None and self.train_sigma_min >= self.sigma_max)
                or (self.train_sigma_max is not None and self.train_sigma_max <= self.sigma_min)):
            raise ValueError(f"the σ range [{self.train_sigma_min}, {self.train_sigma_max}] lies outside [sigma_min, "
                             f"sigma_max] = [{self.sigma_min}, {self.sigma_max}], where loguniform_share = 1 draws")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.ema_rampup_ratio is not None and not self.ema_rampup_ratio > 0:
            raise ValueError(f"ema_rampup_ratio must be > 0 or None, got {self.ema_rampup_ratio!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        edges = list(self.loss_sigma_edges)
        if not edges or any(e <= 0 for e in edges) or edges != sorted(set(edges)):
            raise ValueError(f"loss_sigma_edges must be positive and increasing, got {self.loss_sigma_edges!r}")
        return self

    def unet_config(self, channels_in: int) -> dict:
        """Keyword arguments of :func:`freqlab.models.denoisers.build_unet` for this run."""
        attn = set(int(i) for i in self.attention_levels)
        n = len(self.channels)
        return dict(
            sample_size=int(self.resolution), in_channels=channels_in, out_channels=channels_in,
            block_out_channels=tuple(int(c) for c in self.channels), layers_per_block=int(self.layers_per_block),
            down_block_types=tuple("AttnDownBlock2D" if i in attn else "DownBlock2D" for i in range(n)),
            up_block_types=tuple("AttnUpBlock2D" if i in attn else "UpBlock2D" for i in reversed(range(n))),
            dropout=float(self.dropout),
        )


PRESETS: dict[str, dict[str, Any]] = {
    # 1.09 M parameters; 800 steps of 32 images, about 6 min on two CPU cores; every deviation from EDM measured
    # (benchmarks/pretrain_quality.py, benchmarks/README.md "Pre-training recipe")
    "cpu-small": dict(channels=(16, 32, 64, 64), attention_levels=(3,), steps=800, lr=2e-3, loguniform_share=0.75,
                      p_mean=1.0, p_std=1.2),
    # 35.7 M parameters, DDPM's CIFAR-10 UNet layout; EDM's CIFAR-10 schedule scaled to batch 128 (for a GPU)
    "cifar": dict(channels=(128, 256, 256, 256), layers_per_block=2, attention_levels=(1,), dropout=0.1,
                  steps=400_000, batch_size=128, lr=2e-4, warmup_steps=5_000, ema_halflife_images=500_000.0,
                  n_checkpoints=12, state_every=2_000, log_every=500),
    # 0.05 M parameters at 16x16; for tests, seconds on a CPU
    "tiny": dict(resolution=16, channels=(8, 16), attention_levels=(1,), steps=12, batch_size=4, lr=2e-3,
                 warmup_steps=2, ema_halflife_images=16.0, n_checkpoints=5, state_every=4, log_every=2),
}


def make_config(preset: str = "cpu-small", *, validate: bool = True, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of ``preset`` with ``overrides`` (field names); validated unless ``validate`` is
    False (the command line's help, which must not import the data sources)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    values = {**PRESETS[preset], **overrides, "preset": preset}
    for key in ("channels", "attention_levels", "betas", "loss_sigma_edges"):
        if key in values and not isinstance(values[key], tuple):
            values[key] = tuple(values[key])
    config = TrainConfig(**values)
    return config.validate() if validate else config
