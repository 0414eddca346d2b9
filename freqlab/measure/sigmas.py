"""The σ grid of a study: log-spaced noise levels over a model's range, and the checks a user's grid must pass.
Imports no torch."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["DEFAULT_N_SIGMAS", "default_sigmas", "model_sigmas", "check_sigmas"]

#: Noise levels of a sweep's default grid, from the model's sigma_min to its sigma_max.
DEFAULT_N_SIGMAS = 13


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


def model_sigmas(model, sigmas=None, default_n: int = DEFAULT_N_SIGMAS):
    """The σ grid of a study of ``model``: ``sigmas`` as given, or ``sigmas`` (an int; None for ``default_n``)
    log-spaced noise levels over the model's ``sigma_min`` .. ``sigma_max``."""
    if sigmas is not None and not isinstance(sigmas, (int, np.integer)):
        return sigmas
    lo, hi = getattr(model, "sigma_min", None), getattr(model, "sigma_max", None)
    if lo is None or hi is None:
        raise ValueError("the model has no sigma_min/sigma_max; pass the noise levels with sigmas=[...]")
    return default_sigmas(float(lo), float(hi), default_n if sigmas is None else int(sigmas))


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
