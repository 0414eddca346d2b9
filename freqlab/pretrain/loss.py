"""The denoising loss of pre-training and its yardstick.

The loss is EDM's (Karras et al. 2022, eq. 2 and Table 1): ``σ = exp(P_mean + P_std·ξ)`` with ``ξ ~ N(0, 1)``,
``x_σ = x0 + σ·n``, and per image ``λ(σ)·mean((D(x_σ, σ) − x0)²)`` with ``λ(σ) = (σ² + σd²)/(σ·σd)²``.

The yardstick is the loss of the skip connection alone (network output ``F = 0``, ``D = c_skip·x``): in
expectation over the noise it is ``(σ²·m/σd² + σd²)/(σ² + σd²)`` for an image with ``m = mean(x0²)``
(:func:`skip_baseline`). That is 1 only when ``m = σd²``; otherwise it goes from 1 at small σ to ``m/σd²`` at
large σ (on average about 0.85 at σ ≥ 10 for the default ``natural`` crops, mean ``m ≈ 0.21`` against
``σd² = 0.25``, though ``m`` varies from crop to crop), so a raw loss below 1 does not by itself mean anything
was learned. ``loss_by_sigma.csv`` therefore logs, per σ range, this skip-only baseline over the same σ draws
and images as the loss, and ``loss_over_baseline``: below the baseline (``loss_over_baseline < 1``) = the
network has learned something at those noise levels.
"""

from __future__ import annotations

import math

import torch

__all__ = ["edm_loss", "edm_loss_weight", "skip_baseline", "training_sigma"]


def training_sigma(xi: torch.Tensor, pick: torch.Tensor, config) -> torch.Tensor:
    """Training noise levels from two standard normal draws per image, ``xi`` and ``pick`` (both ``(N,)``).

    An image takes EDM's log-normal ``σ = exp(p_mean + p_std·ξ)``, or, with probability ``loguniform_share``
    (``Φ(pick) < share``), a log-uniform ``σ = σ_min·(σ_max/σ_min)^u`` with ``u = Φ(ξ)`` uniform on (0, 1): every
    decade of ``[σ_min, σ_max]`` equally. ``loguniform_share = 0`` is EDM's sampling exactly.

    With ``train_sigma_min`` and/or ``train_sigma_max`` set (the σ-ablation, ``benchmarks/sigma_ablation.py``) σ is
    drawn from this same distribution truncated to the range (:func:`_truncated_sigma`), from the same two draws
    per image, so a restricted run sees the same images and noise as an unrestricted one. Without them (the
    default) the draws are exactly those above.
    """
    lo_t, hi_t = getattr(config, "train_sigma_min", None), getattr(config, "train_sigma_max", None)
    if lo_t is not None or hi_t is not None:
        return _truncated_sigma(xi, pick, config, lo_t, hi_t)
    lognormal = torch.exp(config.p_mean + config.p_std * xi)
    if not config.loguniform_share:
        return lognormal
    lo, hi = math.log(config.sigma_min), math.log(config.sigma_max)
    loguniform = torch.exp(lo + (hi - lo) * _normal_cdf(xi)).to(xi.dtype)
    return torch.where(_normal_cdf(pick) < config.loguniform_share, loguniform, lognormal)


def _truncated_sigma(xi: torch.Tensor, pick: torch.Tensor, config, lo_t: float | None,
                     hi_t: float | None) -> torch.Tensor:
    """:func:`training_sigma`'s distribution truncated to ``[lo_t, hi_t]`` (``None``: unbounded), by inverse CDF.

    Each part is truncated on the same uniform ``u = Φ(ξ)``: the log-normal one as ``ξ' = Φ⁻¹(a + (b − a)·u)``,
    ``a, b = Φ((log lo_t − p_mean)/p_std), Φ((log hi_t − p_mean)/p_std)``; the log-uniform one as
    ``u' = u_lo + (u_hi − u_lo)·u`` on the part of ``[σ_min, σ_max]`` inside the range. The share of the log-uniform
    part becomes ``s·m_u/(s·m_u + (1 − s)·m_n)`` with ``m_u``, ``m_n`` each part's mass inside the range: the exact
    truncation of the mixture, not each part's share kept.
    """
    u = _normal_cdf(xi)
    log_lo = math.log(lo_t) if lo_t is not None else -math.inf
    log_hi = math.log(hi_t) if hi_t is not None else math.inf
    std_normal = torch.distributions.Normal(0.0, 1.0)
    a, b = (float(std_normal.cdf(torch.tensor((v - config.p_mean) / config.p_std, dtype=torch.float64)))
            for v in (log_lo, log_hi))
    p = (a + (b - a) * u).clamp(1e-300, 1 - 1e-16)
    lognormal = torch.exp(config.p_mean + config.p_std * torch.special.ndtri(p))
    share = float(config.loguniform_share)
    if share:
        lo, hi = math.log(config.sigma_min), math.log(config.sigma_max)
        u_lo, u_hi = (min(max((v - lo) / (hi - lo), 0.0), 1.0) for v in (log_lo, log_hi))
        loguniform = torch.exp(lo + (hi - lo) * (u_lo + (u_hi - u_lo) * u))
        mass_u, mass_n = share * (u_hi - u_lo), (1 - share) * (b - a)
        share = mass_u / (mass_u + mass_n) if mass_u + mass_n > 0 else 0.0
        lognormal = torch.where(_normal_cdf(pick) < share, loguniform, lognormal)
    return lognormal.clamp(lo_t, hi_t).to(xi.dtype)


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Φ(x), the standard normal CDF, in float64."""
    return 0.5 * (1.0 + torch.erf(x.double() / math.sqrt(2.0)))


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """EDM's loss weight ``λ(σ) = (σ² + σd²)/(σ·σd)²`` (elementwise); ``1/c_out²`` of the preconditioning."""
    return (sigma * sigma + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(denoiser, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per-image EDM loss ``λ(σ)·mean_{c,h,w}((D(x0 + σ·n, σ) − x0)²)``, shape ``(N,)``.

    ``x0`` ``(N, C, H, W)`` clean images, ``sigma`` ``(N,)``, ``noise`` ``(N, C, H, W)`` standard normal.
    """
    s = sigma.view(-1, 1, 1, 1)
    err = (denoiser(x0 + s * noise, sigma).float() - x0).square().mean(dim=(1, 2, 3))
    return edm_loss_weight(sigma.float(), denoiser.sigma_data) * err


def skip_baseline(sigma, mean_square, sigma_data: float = 0.5):
    """EDM loss of the skip connection alone (network output ``F = 0``), in expectation over the noise.

    With ``D = c_skip·x``, ``x = x0 + σ·n`` and ``c_skip = σd²/(σ² + σd²)``, the error is
    ``D − x0 = (σd²·σ·n − σ²·x0)/(σ² + σd²)``. The noise has mean 0 and variance 1 and is independent of ``x0``,
    so per pixel ``E[(D − x0)²] = (σ⁴·x0² + σd⁴·σ²)/(σ² + σd²)²``; times ``λ(σ) = (σ² + σd²)/(σ·σd)²`` and
    averaged over the pixels this is

        ``baseline(σ) = (σ²·m/σd² + σd²)/(σ² + σd²)``,  ``m = mean over pixels of x0²``.

    It equals 1 at every σ only when ``m = σd²``; in general it moves from 1 (σ → 0) to ``m/σd²`` (σ → ∞),
    so it always lies between ``min(1, m/σd²)`` and ``max(1, m/σd²)``. A loss below it means learned.

    Parameters
    ----------
    sigma : float or tensor
        Noise level(s) σ > 0.
    mean_square : float or tensor
        ``m``, the mean over the pixels of ``x0²`` of each image (broadcast against ``sigma``).
    sigma_data : float
        EDM's ``σd``.

    Returns
    -------
    float or tensor (elementwise, the broadcast shape): the expected per-image loss of ``F = 0``.
    """
    s2, sd2 = sigma * sigma, sigma_data**2
    return (s2 * mean_square / sd2 + sd2) / (s2 + sd2)
