"""The settings of a pre-training run (:class:`TrainConfig`) and its presets (``cpu-small``, ``cifar``, ``tiny``);
what each preset is and why it departs from EDM: :mod:`freqlab.pretrain.loop`."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PRESETS", "TrainConfig", "make_config"]


@dataclass
class TrainConfig:
    """Every knob of a pre-training run. ``make_config(preset, **overrides)`` builds one from a preset.

    The field defaults follow EDM where a knob has an EDM value (σ sampling, σ_data, Adam); each preset overrides
    what it changes (:data:`PRESETS`).

    Data
        ``data`` (a :data:`freqlab.data.sources.DATA_SOURCES` name), ``data_path`` (folder / cifar10 / array),
        ``data_options`` (extra :func:`freqlab.data.sources.make_source` options), ``resolution`` (pixels), ``grayscale``,
        ``data_seed`` (which crops a procedural source draws; kept apart from ``seed`` so that two model seeds
        see the same data).
    Model
        ``channels`` (``block_out_channels`` of the UNet), ``layers_per_block``, ``attention_levels`` (indices of
        the levels with self-attention, 0 = full resolution), ``dropout``; EDM's ``sigma_data``, ``sigma_min``,
        ``sigma_max``.
    Loss and optimisation
        ``p_mean``, ``p_std`` (log-normal σ), ``loguniform_share`` (share of images whose σ is log-uniform over
        ``[sigma_min, sigma_max]`` instead, :func:`freqlab.pretrain.loss.training_sigma`), ``steps``,
        ``batch_size``, ``lr`` (Adam, ``betas``), ``warmup_steps`` (linear warm-up), ``lr_schedule`` (``"constant"``
        or ``"cosine"`` decay to 0 after the warm-up),
        ``grad_clip`` (max global gradient norm, 0 = off), ``ema_halflife_images`` with EDM's
        ``ema_rampup_ratio`` (half-life at most ``ratio × images seen``; ``None`` = no ramp), or a fixed per-step
        ``ema_decay`` that overrides both; ``amp`` (bf16 autocast on accelerators; ignored on CPU).
    Output
        ``n_checkpoints`` (log-spaced, step 0 and ``steps`` included), ``state_every`` (steps between saved
        training states), ``log_every`` (steps per row block of the loss log), ``loss_sigma_edges`` (σ bin edges of
        the loss log; open-ended bins below and above are added).
    """

    preset: str = "cpu-small"
    seed: int = 0
    # data
    data: str = "natural"
    data_path: str | None = None
    data_options: dict = field(default_factory=dict)
    resolution: int = 32
    grayscale: bool = False
    data_seed: int = 0
    # model
    channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention_levels: tuple[int, ...] = (2,)
    dropout: float = 0.0
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    # loss and optimisation
    loguniform_share: float = 0.0
    p_mean: float = -1.2
    p_std: float = 1.2
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 50
    lr_schedule: str = "constant"
    grad_clip: float = 1.0
    ema_halflife_images: float = 2000.0
    ema_rampup_ratio: float | None = 0.05
    ema_decay: float | None = None
    amp: bool = True
    # output
    n_checkpoints: int = 8
    state_every: int = 25
    log_every: int = 25
    loss_sigma_edges: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

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
        positive = {"steps": self.steps, "batch_size": self.batch_size, "n_checkpoints": self.n_checkpoints,
                    "state_every": self.state_every, "log_every": self.log_every, "resolution": self.resolution,
                    "layers_per_block": self.layers_per_block}
        for name, value in positive.items():
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_checkpoints < 2:
            raise ValueError(f"n_checkpoints must be at least 2 (step 0 and the last step), got {self.n_checkpoints}")
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
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
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


def make_config(preset: str = "cpu-small", **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of ``preset`` with ``overrides`` (field names); validated."""
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
    return TrainConfig(**values).validate()
