"""The multi-step reference: EDM's deterministic samplers, what a pre-trained model generates in many steps.

The one-step output at σ_max, ``D(σ_max·z, σ_max)``, is what D2O starts from; the N-step sample from the same
``σ_max·z`` is the best evidence of which frequency bands the weights can already produce. GAN fine-tuning has to
close the distance between the two in one step.

Both samplers integrate the probability-flow ODE of the variance-exploding process, ``dx/dσ = (x − D(x, σ))/σ``,
from ``σ_max`` to 0 over EDM's time discretisation (Karras et al. 2022, eq. 5, ρ = 7):

    t_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ  for i < N,   t_N = 0.

* ``euler``: ``x_{i+1} = x_i + (t_{i+1} − t_i)·d_i`` with ``d_i = (x_i − D(x_i, t_i))/t_i``; N model calls.
* ``heun`` (EDM's Algorithm 1 without churn): the Euler step corrected with the slope at ``t_{i+1}``,
  ``x_{i+1} = x_i + (t_{i+1} − t_i)·(d_i + d'_{i+1})/2``, except for the last step to ``t_N = 0``; 2N − 1 calls
  (N = 18: 35, EDM's CIFAR-10 setting).

The last step to 0 is an Euler step, so the sample is ``D(x_{N−1}, t_{N−1})``. A ``callback(i, t_i, x_i,
denoised_i)`` sees the state and the denoiser's estimate ``x̂0 = D(x_i, t_i)`` before every step (the spectral
trajectory of :func:`freqlab.sweep.study.sweep`'s ``sample`` mode). Pure functions of ``(denoiser, x)``: device and
dtype come from ``x``; nothing is random (the deterministic samplers), so a checkpoint's N-step and one-step
outputs pair image by image when they start from the same ``z``.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["SAMPLERS", "DEFAULT_STEPS", "RHO", "edm_sigma_steps", "sample", "model_calls"]

SAMPLERS = ("heun", "euler")
#: EDM's CIFAR-10 setting: 18 steps of Heun, 35 model calls.
DEFAULT_STEPS = 18
RHO = 7.0

Callback = Callable[[int, float, torch.Tensor, torch.Tensor], None]


def edm_sigma_steps(n_steps: int, sigma_min: float, sigma_max: float, rho: float = RHO) -> torch.Tensor:
    """EDM's noise levels ``t_0 = σ_max > … > t_{N−1} = σ_min`` and ``t_N = 0``: a float64 tensor ``(N + 1,)``
    (one step: ``[σ_max, 0]``)."""
    n_steps, sigma_min, sigma_max = int(n_steps), float(sigma_min), float(sigma_max)
    if n_steps < 1:
        raise ValueError(f"the sampler needs at least 1 step, got {n_steps}")
    if not 0 < sigma_min <= sigma_max < float("inf"):
        raise ValueError(f"need 0 < sigma_min <= sigma_max < inf for the sampler, got {sigma_min}, {sigma_max}")
    if n_steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    ramp = torch.linspace(0, 1, n_steps, dtype=torch.float64)
    t = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    t[0], t[-1] = sigma_max, sigma_min
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


def model_calls(n_steps: int, sampler: str = "heun") -> int:
    """How many times ``sampler`` calls the model for ``n_steps`` steps."""
    return 2 * int(n_steps) - 1 if sampler == "heun" else int(n_steps)


def sample(denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor,
           *, sampler: str = "heun", callback: Callback | None = None) -> torch.Tensor:
    """Integrate from ``x = t_0·z`` down to ``t_N = 0`` with ``sampler``; returns the sample ``(N, C, H, W)``.

    Parameters
    ----------
    denoiser : ``D(x, σ) -> x̂0`` with ``σ`` a tensor ``(N,)`` (any freqlab :class:`~freqlab.models.denoisers.Denoiser`).
    x : the starting state ``t_0·z`` ``(N, C, H, W)``; the arithmetic runs in its dtype.
    sigmas : the noise levels ``t_0 > … > t_N = 0`` (:func:`edm_sigma_steps`).
    sampler : ``"heun"`` (EDM's second-order, default) or ``"euler"``.
    callback : called as ``callback(i, t_i, x_i, D(x_i, t_i))`` before step ``i`` (``i = 0 … N−1``).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    t = [float(s) for s in torch.as_tensor(sigmas).flatten()]
    if len(t) < 2 or t[-1] != 0.0 or any(b >= a for a, b in zip(t, t[1:])) or t[0] <= 0:
        raise ValueError(f"sampler noise levels must decrease strictly from σ_max > 0 to 0, got {t[:3]}…{t[-2:]}")

    def slope(x_now: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.full((x_now.shape[0],), sigma, device=x_now.device, dtype=x_now.dtype)
        denoised = denoiser(x_now, s).to(x_now.dtype)
        return (x_now - denoised) / sigma, denoised

    for i, (t_cur, t_next) in enumerate(zip(t[:-1], t[1:])):
        d_cur, denoised = slope(x, t_cur)
        if callback is not None:
            callback(i, t_cur, x, denoised)
        x_next = x + (t_next - t_cur) * d_cur
        if sampler == "heun" and t_next > 0:
            d_next, _ = slope(x_next, t_next)
            x_next = x + (t_next - t_cur) * 0.5 * (d_cur + d_next)
        x = x_next
    return x
