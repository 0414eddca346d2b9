"""The settings of a sweep (:class:`SweepConfig`): what determines its numbers, defined once.

:func:`freqlab.sweep.study.sweep` takes its keyword defaults from here and ``freqlab sweep`` its option defaults.
Imports no torch (the command line builds its parser from it); the σ grid is :mod:`freqlab.measure.sigmas`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


from freqlab.measure.conventions import WINDOW

__all__ = ["MODES", "DEFAULT_MODES", "SAMPLERS", "DISTRIBUTE", "MIN_IMAGES", "SweepConfig"]

#: ``denoise``: input ``x0 + σ·n``; ``generate``: one step from ``σ·z``; ``sample``: EDM's N-step deterministic
#: sampler from ``σ_max·z`` (the same z), the multi-step reference (measured at σ_max only).
MODES = ("denoise", "generate", "sample")
DEFAULT_MODES = ("denoise", "generate")
SAMPLERS = ("heun", "euler")  # as freqlab.models.sampler.SAMPLERS
DISTRIBUTE = ("auto", "images", "checkpoints")
#: Fewest images per checkpoint: standard errors and the Wasserstein distance need a sample.
MIN_IMAGES = 2


@dataclass
class SweepConfig:
    """Everything that determines a sweep's numbers besides the models, the data and the σ grid.

    See :func:`freqlab.sweep.study.sweep` for each setting. ``sample_images`` (None: all ``n_images``) limits the
    ``sample`` mode, which costs ``2·sample_steps − 1`` model calls per image with Heun, to the first images.
    """

    modes: tuple[str, ...] = DEFAULT_MODES
    n_images: int = 512
    batch_size: int = 128
    seed: int = 0
    bands: Any = None
    window: Any = WINDOW
    autocast: bool = False
    split: str = "test"
    data_options: Mapping[str, Any] | None = None
    wasserstein_images: int = 1024
    linear_reference: int | None = None
    distribute: str = "auto"
    any_resolution: bool = False
    sample_steps: int = 18
    sampler: str = "heun"
    sample_images: int | None = None

    def __post_init__(self):
        modes = [self.modes] if isinstance(self.modes, str) else list(self.modes)
        self.modes = tuple(dict.fromkeys(str(m) for m in modes))
        if not self.modes or any(m not in MODES for m in self.modes):
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {self.modes}")
        self.n_images, self.batch_size = int(self.n_images), int(self.batch_size)
        if self.n_images < MIN_IMAGES:
            raise ValueError(f"n_images must be at least {MIN_IMAGES} (standard errors need a sample), got "
                             f"{self.n_images}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if int(self.wasserstein_images) < MIN_IMAGES:
            raise ValueError(f"wasserstein_images must be at least {MIN_IMAGES}, got {self.wasserstein_images}")
        if self.distribute not in DISTRIBUTE:
            raise ValueError(f"distribute must be one of {DISTRIBUTE}, got {self.distribute!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if int(self.sample_steps) < 1:
            raise ValueError(f"sample_steps must be at least 1, got {self.sample_steps}")
        if self.sample_images is not None and int(self.sample_images) < MIN_IMAGES:
            raise ValueError(f"sample_images must be at least {MIN_IMAGES} or None (all), got {self.sample_images}")

    @property
    def keep(self) -> int:
        """Images whose band powers are kept for the Wasserstein distance."""
        return min(self.n_images, int(self.wasserstein_images))

    @property
    def n_sample(self) -> int:
        """Images the ``sample`` mode measures (the first ones)."""
        return self.n_images if self.sample_images is None else min(self.n_images, int(self.sample_images))
