"""The sweep's ``sample`` mode: EDM's N-step deterministic sampler from ``σ_max·z`` and the band power of its
estimate ``x̂0 = D(x_i, t_i)`` after each step (which bands appear first: the spectral trajectory).

The sampler starts from the same ``z`` per image as ``generate`` mode (:data:`freqlab.measure.core.GENERATE_STREAM`),
so a checkpoint's N-step and one-step outputs pair image by image. Its sample is measured like every other output
(spectra and per-image band statistics), at σ_max only, into variables of its own (``sample_<name>``, without the
one-step modes' ``sigma`` and ``mode`` dims). The trajectory keeps one radial spectrum per step (``C × n_bins``
floats), whatever the number of images."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from freqlab import spectral
from freqlab.measure import core as measure
from freqlab.measure.accumulators import SpectrumAccumulator
from freqlab.measure.core import Analysis
from freqlab.models import sampler

__all__ = ["Trajectory", "sampler_sigmas", "run_sampler", "sample_variables", "trajectory_variables",
           "trajectory_coords"]


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
    lo = getattr(model, "sigma_min", None)
    if n_steps > 1 and not (lo is not None and 0 < float(lo) < float(sigma_top)):
        raise ValueError(f"the sample mode runs the sampler from the grid's largest σ ({float(sigma_top):g}) down to the "
                         f"model's sigma_min ({lo}), which must lie below it; give --sigmas up to the model's sigma_max")
    return sampler.edm_sigma_steps(n_steps, float(lo) if lo is not None else float(sigma_top), float(sigma_top))


def run_sampler(forward: Callable[[torch.Tensor, float], torch.Tensor], z: torch.Tensor, sigmas: torch.Tensor,
                method: str, an: Analysis | None, trajectory: Trajectory | None, what: str = "the model") -> torch.Tensor:
    """The N-step sample from ``sigmas[0]·z``; ``forward(x, σ)`` is the model's one step. Adds the spectrum of each
    step's ``x̂0`` to ``trajectory`` (when given); ``what`` names the model in errors."""

    def denoise(x, s):
        return forward(x, float(s[0]))

    def record(i, t_i, x, denoised):
        if trajectory is not None:
            if not bool(torch.isfinite(denoised).all()):
                raise ValueError(f"{what}: the sampler's estimate at step {i} (t = {t_i:.4g}) contains NaN or Inf")
            trajectory.update(i, an.radial(an.fft(denoised)))

    return sampler.sample(denoise, float(sigmas[0]) * z, sigmas, sampler=method, callback=record)


def sample_variables(compared: measure.Named, sigma_max: float) -> dict:
    """The sample's variables (:func:`freqlab.measure.core.compare` of the samples with the data), each named
    ``sample_<name>`` with dims ``checkpoint`` (length 1) and the variable's own, its attrs those of ``<name>``."""
    variables = {}
    for name, (dims, value) in compared.items():
        if name in measure.PAIRED:
            continue
        var_dims, values, attrs = measure.variable(name, ("checkpoint",) + dims, value[None])
        attrs = {**attrs, "long_name": f"N-step sample from σ_max·z (σ_max = {sigma_max:g}): {attrs['long_name']}"}
        variables[f"sample_{name}"] = (var_dims, values, attrs)
    return variables


def trajectory_variables(trajectory: Trajectory, data_power: torch.Tensor, an: Analysis) -> dict:
    """Variables of one checkpoint's trajectory (dims ``checkpoint`` of length 1, ``sampler_step``, ...): the radial
    power of each step's estimate, its band power relative to the data's and its log-spectral distance to the data
    per band (DC excluded, as every band metric). Step 0's estimate is the one-step output ``D(σ_max·z)`` of the
    same images, the last step's the sample."""
    power = trajectory.power
    nondc = an.freq > 0
    freq, counts = an.freq[nondc], an.counts[nondc]
    band = spectral.band_power(freq, power[..., nondc], counts, an.bands)
    data_band = spectral.band_power(freq, data_power[..., nondc], counts, an.bands)
    lsd = spectral.log_spectral_distance(power[..., nondc], data_power[..., nondc], freq, an.bands)
    dims = ("checkpoint", "sampler_step", "channel")
    return {
        "sample_trajectory_power": measure.variable("sample_trajectory_power", dims + ("freq",), power[None]),
        "sample_trajectory_db": measure.variable("sample_trajectory_db", dims + ("band",),
                                                 (10 * torch.log10(band / data_band))[None]),
        "sample_trajectory_lsd": measure.variable("sample_trajectory_lsd", dims + ("band",), lsd[None]),
    }


def trajectory_coords(sigmas: torch.Tensor, method: str) -> dict:
    t = np.asarray(sigmas[:-1], dtype=np.float64)
    return {
        "sampler_step": ("sampler_step", np.arange(t.size, dtype=np.int64),
                         {"long_name": f"step i of the {method} sampler (x̂0 = D(x_i, t_i) before the step)"}),
        "sampler_sigma": ("sampler_step", t, {"long_name": "noise level t_i of the sampler's step (EDM, rho = 7)",
                                              "units": "1"}),
    }
