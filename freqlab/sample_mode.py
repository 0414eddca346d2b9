"""The sweep's ``sample`` mode: EDM's N-step deterministic sampler from ``σ_max·z`` and the band power of its
estimate ``x̂0 = D(x_i, t_i)`` after each step (which bands appear first: the spectral trajectory).

The sampler starts from the same ``z`` per image as ``generate`` mode (:data:`freqlab.measure.GENERATE_STREAM`),
so a checkpoint's N-step and one-step outputs pair image by image. Its sample is measured like every other output
(spectra and per-image band statistics), at σ_max only. The trajectory keeps one radial spectrum per step
(``C × n_bins`` floats), whatever the number of images."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from freqlab import measure, sampler, spectral
from freqlab.measure import Analysis
from freqlab.stats import SpectrumAccumulator

__all__ = ["Trajectory", "sampler_sigmas", "run_sampler", "trajectory_variables", "trajectory_coords"]


class Trajectory:
    """Mean radial power of the sampler's estimate ``x̂0`` before each of its ``n_steps`` steps (streaming)."""

    def __init__(self, n_steps: int):
        self.steps = [SpectrumAccumulator(device="cpu") for _ in range(int(n_steps))]

    def update(self, i: int, radial: torch.Tensor) -> None:
        self.steps[i].update(radial)

    def merge(self, other: "Trajectory") -> "Trajectory":
        for mine, theirs in zip(self.steps, other.steps):
            mine.merge(theirs)
        return self

    @property
    def power(self) -> torch.Tensor:
        """``(n_steps, C, n_bins)``."""
        return torch.stack([acc.mean for acc in self.steps])


def sampler_sigmas(n_steps: int, sigma_top: float, model) -> torch.Tensor:
    """EDM's discretisation from the grid's top σ down to the model's ``sigma_min`` (then 0)."""
    lo = float(getattr(model, "sigma_min", None) or sigma_top)
    return sampler.edm_sigma_steps(n_steps, min(lo, float(sigma_top)), float(sigma_top))


def run_sampler(forward: Callable[[torch.Tensor, float], torch.Tensor], z: torch.Tensor, sigmas: torch.Tensor,
                method: str, an: Analysis | None, trajectory: Trajectory | None) -> torch.Tensor:
    """The N-step sample from ``sigmas[0]·z``; ``forward(x, σ)`` is the model's one step. Adds the spectrum of each
    step's ``x̂0`` to ``trajectory`` (when given)."""

    def denoise(x, s):
        return forward(x, float(s[0]))

    def record(i, t_i, x, denoised):
        if trajectory is not None:
            trajectory.update(i, an.radial(an.fft(denoised)))

    return sampler.sample(denoise, float(sigmas[0]) * z, sigmas, sampler=method, callback=record)


def trajectory_variables(trajectory: Trajectory, data_power: torch.Tensor, an: Analysis) -> dict:
    """Variables of one checkpoint's trajectory (dims ``checkpoint`` of length 1, ``sampler_step``, ...)."""
    power = trajectory.power
    band = spectral.band_power(an.freq, power, an.counts, an.bands)
    data_band = spectral.band_power(an.freq, data_power, an.counts, an.bands)
    db = 10 * torch.log10(band / data_band)
    return {
        "sample_trajectory_power": measure.variable(
            "sample_trajectory_power", ("checkpoint", "sampler_step", "channel", "freq"), power[None]),
        "sample_trajectory_db": measure.variable(
            "sample_trajectory_db", ("checkpoint", "sampler_step", "channel", "band"), db[None]),
    }


def trajectory_coords(sigmas: torch.Tensor, method: str) -> dict:
    t = np.asarray(sigmas[:-1], dtype=np.float64)
    return {
        "sampler_step": ("sampler_step", np.arange(t.size, dtype=np.int64),
                         {"long_name": f"step i of the {method} sampler (x̂0 = D(x_i, t_i) before the step)"}),
        "sampler_sigma": ("sampler_step", t, {"long_name": "noise level t_i of the sampler's step (EDM, rho = 7)",
                                              "units": "1"}),
    }
