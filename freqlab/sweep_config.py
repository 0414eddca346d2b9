"""The settings of a sweep (:class:`SweepConfig`): what determines its numbers, defined once.

:func:`freqlab.sweep.sweep` takes its keyword defaults from here and ``freqlab sweep`` its option defaults.
Imports no torch (the command line builds its parser from it). Also the σ grid: :func:`default_sigmas`,
:func:`check_sigmas`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["MODES", "DEFAULT_MODES", "SAMPLERS", "DISTRIBUTE", "MIN_IMAGES", "DEFAULT_N_SIGMAS", "SweepConfig",
           "default_sigmas", "check_sigmas"]

#: ``denoise``: input ``x0 + σ·n``; ``generate``: one step from ``σ·z``; ``sample``: EDM's N-step deterministic
#: sampler from ``σ_max·z`` (the same z), the multi-step reference (measured at σ_max only).
MODES = ("denoise", "generate", "sample")
DEFAULT_MODES = ("denoise", "generate")
SAMPLERS = ("heun", "euler")  # as freqlab.sampler.SAMPLERS
DISTRIBUTE = ("auto", "images", "checkpoints")
#: Fewest images per checkpoint: standard errors and the Wasserstein distance need a sample.
MIN_IMAGES = 2
DEFAULT_N_SIGMAS = 13


@dataclass
class SweepConfig:
    """Everything that determines a sweep's numbers besides the models, the data and the σ grid.

    See :func:`freqlab.sweep.sweep` for each setting. ``sample_images`` (None: all ``n_images``) limits the
    ``sample`` mode, which costs ``2·sample_steps − 1`` model calls per image with Heun, to the first images.
    """

    modes: tuple[str, ...] = DEFAULT_MODES
    n_images: int = 512
    batch_size: int = 128
    seed: int = 0
    bands: Any = None
    window: Any = "hann"  # freqlab.measure.WINDOW (tested equal)
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


# --------------------------------------------------------------------------------------------------------------
# σ grid
# --------------------------------------------------------------------------------------------------------------
def default_sigmas(sigma_min: float, sigma_max: float, n: int = DEFAULT_N_SIGMAS) -> np.ndarray:
    """``n`` log-spaced noise levels from ``sigma_min`` to ``sigma_max``, the last exactly ``sigma_max``."""
    if not (0 < sigma_min < sigma_max < math.inf):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf for a default σ grid, got {sigma_min}, {sigma_max}")
    if int(n) < 1:
        raise ValueError(f"the number of noise levels must be at least 1, got {n}")
    if int(n) == 1:
        return np.array([float(sigma_max)])
    grid = np.logspace(math.log10(sigma_min), math.log10(sigma_max), int(n))
    grid[0], grid[-1] = float(sigma_min), float(sigma_max)
    return grid


def check_sigmas(sigmas: Sequence[float]) -> np.ndarray:
    """The σ grid as a sorted float64 array; ValueError for an empty grid, σ ≤ 0, non-finite σ or duplicates."""
    try:
        grid = np.asarray([float(s) for s in np.atleast_1d(np.asarray(sigmas, dtype=object))], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"noise levels must be numbers, got {sigmas!r}") from err
    if grid.size == 0:
        raise ValueError("the σ grid is empty; give at least one noise level")
    bad = grid[~np.isfinite(grid) | (grid <= 0)]
    if bad.size:
        raise ValueError(f"noise levels must be positive and finite, got {float(bad[0])}")
    grid = np.sort(grid)
    if np.any(np.diff(grid) == 0):
        raise ValueError(f"noise levels must be distinct (strictly increasing once sorted), got {grid.tolist()}")
    return grid
