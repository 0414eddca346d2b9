"""The fixed feature map of the two-sample comparison: every image band-passed (low / mid / high, DC excluded, and
the whole image), and each band-pass image described by a short vector of statistics that a mean spectrum cannot
see. Pure torch, batched (one FFT per batch); nothing is learned and nothing is downloaded.

Per band-pass image ``y`` (``C`` channels, ``H × W``; the whole-image band is the image with its mean removed)::

    log10 power per channel          log10(mean y_c² + 1e-12)                                   C
    kurtosis per channel             log(m4/m2² + 1e-6) of y_c about its mean                  C
    skewness per channel             m3/m2^1.5                                                  C
    magnitude tails                  share of pixels with |y| above 1, 2 and 3 rms, channels
                                     pooled (Gaussian: 0.317, 0.046, 0.003)                      3
    orientation shares               power in 4 orientation sectors (0°, 45°, 90°, 135° ± 22.5°),
                                     channels summed, over the band's power                     4
    channel correlations             corr(y_i, y_j), i < j                                      C(C-1)/2
    energy clustering                std of log(local energy / mean energy + 1e-3), local energy
                                     = channel-mean y² under a 3 × 3 box                         1
    magnitude correlation            correlation of |y| with itself shifted by 1 and 2 pixels
                                     (both axes averaged)                                        2
    (whole image only) mean          per-channel mean (brightness)                              C

Gaussian noise of any spectrum has kurtosis 3, skewness 0, fixed magnitude quantiles, little energy clustering and
magnitude correlation only from its spectrum; edges and objects do not. An image with no power in a band gets
finite values (log power −12, the rest 0), so a blurred image is far from the data in its empty bands, not NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from freqlab.spectral import band_masks, halfplane_weights, resolve_bands

__all__ = ["IMAGE_BAND", "band_names", "feature_names", "features"]

#: The name of the whole-image "band" beside the frequency bands.
IMAGE_BAND = "image"
EPS = 1e-12


def band_names(bands=None) -> tuple[str, ...]:
    """The bands compared: the frequency bands (:func:`freqlab.spectral.resolve_bands`) and ``image``."""
    return tuple(resolve_bands(bands)) + (IMAGE_BAND,)


def feature_names(channels: int, band: str) -> list[str]:
    """The names of the features of one band, in the order :func:`features` gives them."""
    names = [f"log_power_c{c}" for c in range(channels)] + [f"log_kurtosis_c{c}" for c in range(channels)]
    names += [f"skewness_c{c}" for c in range(channels)] + ["tail_1rms", "tail_2rms", "tail_3rms"]
    names += [f"orientation_{a}" for a in (0, 45, 90, 135)]
    names += [f"corr_c{i}c{j}" for i in range(channels) for j in range(i + 1, channels)]
    names += ["energy_clustering", "magnitude_corr_1", "magnitude_corr_2"]
    if band == IMAGE_BAND:
        names += [f"mean_c{c}" for c in range(channels)]
    return names


def _sector_masks(h: int, w: int, device, dtype) -> torch.Tensor:
    """Four orientation sectors of the rfft2 half-plane, ``(4, h, w//2 + 1)``, each weighted by its mode's count."""
    ky = torch.fft.fftfreq(h, device=device, dtype=dtype)[:, None]
    kx = torch.fft.rfftfreq(w, device=device, dtype=dtype)[None, :]
    angle = torch.rad2deg(torch.atan2(ky, kx.expand_as(ky * kx))) % 180.0
    centres = torch.tensor([0.0, 45.0, 90.0, 135.0], device=device, dtype=dtype)
    dist = (angle[None] - centres[:, None, None] + 90.0) % 180.0 - 90.0
    inside = dist.abs() < 22.5
    # a mode on a sector edge belongs to the sector before it: every mode counts once
    first = torch.cumsum(inside.to(torch.int64), dim=0) == 1
    return (inside & first).to(dtype) * halfplane_weights(h, w).to(device=device, dtype=dtype)


def _moments(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    d = y - y.mean(dim=(-2, -1), keepdim=True)
    m2 = d.square().mean(dim=(-2, -1))
    m3 = d.pow(3).mean(dim=(-2, -1))
    m4 = d.square().square().mean(dim=(-2, -1))
    live = m2 > EPS
    safe = torch.where(live, m2, torch.ones_like(m2))
    kurt = torch.where(live, m4 / safe.square(), torch.zeros_like(m2))
    skew = torch.where(live, m3 / safe.pow(1.5), torch.zeros_like(m2))
    return m2, kurt, skew


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Correlation over the last two dims; 0 where either has no variance."""
    a = a - a.mean(dim=(-2, -1), keepdim=True)
    b = b - b.mean(dim=(-2, -1), keepdim=True)
    num = (a * b).mean(dim=(-2, -1))
    den = (a.square().mean(dim=(-2, -1)) * b.square().mean(dim=(-2, -1))).sqrt()
    return torch.where(den > EPS, num / torch.where(den > EPS, den, torch.ones_like(den)), torch.zeros_like(den))


def _band_features(y: torch.Tensor, sector_power: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
    """The features of band-pass images ``y`` (N, C, H, W); ``sector_power`` (N, 4); ``image``: the raw images
    (whole-image band only, for the mean)."""
    n, c = y.shape[:2]
    m2, kurt, skew = _moments(y)
    rms = y.square().mean(dim=(1, 2, 3)).sqrt()
    live = rms > math.sqrt(EPS)
    mag = (y.abs() / torch.where(live, rms, torch.ones_like(rms))[:, None, None, None]).reshape(n, -1)
    tails = torch.stack([(mag > t).to(y.dtype).mean(dim=1) for t in (1.0, 2.0, 3.0)], dim=1)
    tails = torch.where(live[:, None], tails, torch.zeros_like(tails))
    total = sector_power.sum(dim=1, keepdim=True)
    shares = torch.where(total > EPS, sector_power / torch.where(total > EPS, total, torch.ones_like(total)),
                         torch.zeros_like(sector_power))
    corrs = [_corr(y[:, i], y[:, j]) for i in range(c) for j in range(i + 1, c)]
    energy = y.square().mean(dim=1, keepdim=True)
    local = F.avg_pool2d(F.pad(energy, (1, 1, 1, 1), mode="circular"), 3, 1)
    mean_energy = energy.mean(dim=(-2, -1), keepdim=True)
    clustering = torch.log(local / torch.where(mean_energy > EPS, mean_energy, torch.ones_like(mean_energy)) + 1e-3)
    clustering = torch.where(live, clustering.flatten(1).std(dim=1), torch.zeros_like(rms))
    mag_img = y.abs().mean(dim=1)
    lags = [0.5 * (_corr(mag_img, mag_img.roll(k, -1)) + _corr(mag_img, mag_img.roll(k, -2))) for k in (1, 2)]
    parts = [torch.log10(m2 + EPS), torch.log(kurt + 1e-6), skew, tails, shares, *[v[:, None] for v in corrs],
             clustering[:, None], *[v[:, None] for v in lags]]
    if image is not None:
        parts.append(image.mean(dim=(-2, -1)))
    return torch.cat(parts, dim=1)


def features(x: torch.Tensor, bands=None) -> dict[str, torch.Tensor]:
    """``{band: (N, n_features) float64}`` of images ``x`` ``(N, C, H, W)``: every band of :func:`band_names`.

    One ``rfft2`` per call; the frequency bands leave out DC (as :func:`freqlab.spectral.band_masks`), the whole
    image keeps everything but its mean. Computed in float32 on ``x``'s device (statistics of a few thousand
    pixels), returned in float64.
    """
    if x.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")
    x = x.to(torch.float32)
    h, w = x.shape[-2:]
    fx = torch.fft.rfft2(x - x.mean(dim=(-2, -1), keepdim=True))
    sectors = _sector_masks(h, w, x.device, x.dtype)
    power = fx.real.square() + fx.imag.square()
    out = {}
    masks = band_masks(h, w, bands, device=x.device, dtype=x.dtype).to(x.dtype)
    for name, mask in zip(resolve_bands(bands), masks):
        y = torch.fft.irfft2(fx * mask, s=(h, w))
        sector_power = torch.einsum("nchw,shw->ns", power * mask, sectors)
        out[name] = _band_features(y, sector_power, None).double()
    whole = torch.fft.irfft2(fx, s=(h, w))
    out[IMAGE_BAND] = _band_features(whole, torch.einsum("nchw,shw->ns", power, sectors), x).double()
    return out
