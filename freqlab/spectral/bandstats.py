"""Per-image band statistics (a mean spectrum cannot tell structure from coloured noise): band power and kurtosis of
band-pass images, DC excluded, and how two sets of them compare (diversity ratio, Wasserstein distance, kurtosis
gap)."""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import torch

from freqlab.spectral.metrics import band_mask, resolve_bands
from freqlab.spectral.spectra import _check_images, abs2, halfplane_weights, radial_frequency


class BandStatistics(NamedTuple):
    """Per-image statistics of band-pass filtered images, each of shape ``x.shape[:-2] + (n_bands,)``.

    power: mean power of the image's non-DC modes in the band (same normalisation as the RAPS).
    kurtosis: kurtosis of the band-pass image's pixels about their mean, ``m4/m2²`` with central moments, equal to
    ``scipy.stats.kurtosis(b, axis=None, fisher=False)`` (3 for Gaussian noise, larger for sparse, edge-like
    structure). The DC mode is left out of every band, so neither statistic changes when a constant is added.
    """

    power: torch.Tensor
    kurtosis: torch.Tensor
    names: tuple[str, ...]


def band_masks(h: int, w: int, bands=None, *, device=None, dtype=torch.float64) -> torch.Tensor:
    """Boolean masks ``(n_bands, h, w//2+1)`` of the ``rfft2`` modes in each band, **DC excluded**.

    The DC mode is an image's mean brightness: it is not structure, and keeping it in the low band would make that
    band's power, spread and kurtosis measure brightness (kurtosis of a band-pass image falls toward 1 as its mean
    grows).
    """
    f = radial_frequency(h, w, device=device, dtype=dtype)
    return torch.stack([band_mask(f, lo, hi) & (f > 0) for lo, hi in resolve_bands(bands).values()])


def bandpass(x: torch.Tensor, lo: float, hi: float, *, check_finite: bool = True) -> torch.Tensor:
    """Ideal radial band-pass filter: keeps the Fourier modes with ``lo <= |f| < hi`` (closed at 0.5).

    ``x`` is ``(..., H, W)``; returns real images of the same shape. With ``lo = 0`` the DC mode is kept.
    """
    x = _check_images(x, check_finite=check_finite)
    h, w = x.shape[-2:]
    mask = band_mask(radial_frequency(h, w, device=x.device, dtype=x.dtype), lo, hi)
    return torch.fft.irfft2(torch.fft.rfft2(x) * mask, s=(h, w))


def central_kurtosis(b: torch.Tensor, dims=(-2, -1)) -> torch.Tensor:
    """Kurtosis ``m4/m2²`` about the mean over ``dims`` (scipy's ``fisher=False``); NaN where ``m2 = 0``.

    Each image is scaled by its largest absolute deviation before the moments are taken, so images of any finite
    scale (1e-30 or 1e30 in float32) give a finite kurtosis instead of an underflow to 0/0 or an overflow.
    """
    d = b - b.mean(dim=dims, keepdim=True)
    scale = d.abs().amax(dim=dims, keepdim=True)
    d = d / torch.where(scale > 0, scale, torch.ones_like(scale))
    d2 = d.square()
    m2 = d2.mean(dim=dims)
    m4 = d2.square().mean(dim=dims)
    return torch.where(m2 > 0, m4 / torch.where(m2 > 0, m2, torch.ones_like(m2)).square(), torch.nan)


def band_statistics(
    x: torch.Tensor,
    bands: Mapping[str, tuple[float, float]] | Sequence[float] | None = None,
    *,
    check_finite: bool = True,
) -> BandStatistics:
    """Per-image band power and band-pass kurtosis for every band, from one FFT, DC excluded.

    Parameters
    ----------
    x : ``(..., H, W)`` real images.
    bands : as :func:`resolve_bands` (default low/mid/high of :data:`DEFAULT_BANDS`).

    Notes
    -----
    Band power is ``Σ_{k in band, k ≠ 0} |X(k)|² / (H·W·n_band)``, the mean per-mode power as in the RAPS (modes
    counted over the full plane), returned in float64; the kurtosis is :func:`central_kurtosis` of the band-pass
    image, NaN for a band with no energy. Images of any finite scale give finite statistics.
    """
    x = _check_images(x, check_finite=check_finite)
    h, w = x.shape[-2:]
    # Each image is scaled to a largest deviation of 1 before the FFT and its power scaled back in float64: the
    # statistics of images of any finite scale stay finite in float32. Removing the mean changes no band (DC is
    # out of every band) and keeps the scale set by the structure, not by the brightness.
    peak = x.abs().amax(dim=(-2, -1), keepdim=True)
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    d = x / peak
    d = d - d.mean(dim=(-2, -1), keepdim=True)
    spread = d.abs().amax(dim=(-2, -1), keepdim=True)
    spread = torch.where(spread > 0, spread, torch.ones_like(spread))
    spec = torch.fft.rfft2(d / spread)
    scale2 = (peak.double() * spread.double()).square()[..., 0]  # (..., 1)
    weights = halfplane_weights(h, w).to(device=x.device, dtype=x.dtype)
    masks = band_masks(h, w, bands, device=x.device, dtype=x.dtype)
    cols = (weights * masks).flatten(-2)  # (B, H·Wr)
    n_modes = cols.sum(-1).clamp_min(1)
    p = abs2(spec).flatten(-2)
    power = ((p @ cols.T.to(p.dtype)) / (h * w) / n_modes).double() * scale2
    b = torch.fft.irfft2(spec.unsqueeze(-3) * masks, s=(h, w))  # (..., B, H, W)
    return BandStatistics(power, central_kurtosis(b), tuple(resolve_bands(bands)))


def diversity_ratio(log_power: torch.Tensor, log_power_ref: torch.Tensor) -> torch.Tensor:
    """Spread of per-image log band power relative to the reference's: ``std(a) / std(b)`` over dim 0.

    1 means the outputs vary from image to image as much as the data do; a generator that makes one texture has
    a ratio near 0. Inputs ``(N, ...)`` and ``(M, ...)``; result has the trailing shape.
    """
    return log_power.std(0) / log_power_ref.std(0)


def wasserstein_1d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact 1-D Wasserstein-1 distance between the empirical distributions of ``a`` ``(N, ...)`` and ``b`` ``(M, ...)``.

    Computed over dim 0 as ``∫ |F_a(t) − F_b(t)| dt`` between the two empirical CDFs (exact for any ``N`` and
    ``M``, equal to ``scipy.stats.wasserstein_distance``); the result has the trailing shape. Batched: one sort
    and one ``searchsorted`` for all trailing positions.
    """
    if a.shape[0] < 1 or b.shape[0] < 1:
        raise ValueError("the Wasserstein distance needs at least one sample on each side")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"trailing shapes differ: {tuple(a.shape[1:])} and {tuple(b.shape[1:])}")
    dtype = torch.float64
    n, m = a.shape[0], b.shape[0]
    sa = a.to(dtype).reshape(n, -1).T.contiguous().sort(-1).values  # (K, N)
    sb = b.to(device=a.device, dtype=dtype).reshape(m, -1).T.contiguous().sort(-1).values  # (K, M)
    both = torch.cat([sa, sb], -1).sort(-1).values  # (K, N + M)
    widths = both.diff(dim=-1)
    left = both[..., :-1].contiguous()
    cdf_a = torch.searchsorted(sa, left, right=True).to(dtype) / n
    cdf_b = torch.searchsorted(sb, left, right=True).to(dtype) / m
    return ((cdf_a - cdf_b).abs() * widths).sum(-1).reshape(a.shape[1:]).to(a.dtype if a.is_floating_point() else dtype)


def kurtosis_gap(kurtosis: torch.Tensor, kurtosis_ref: torch.Tensor) -> torch.Tensor:
    """Mean band-pass kurtosis of the outputs minus the reference's (over dim 0, NaN-safe).

    Negative: the outputs are more Gaussian (less sparse structure) than the data in that band.
    """
    return kurtosis.nanmean(0) - kurtosis_ref.nanmean(0)
