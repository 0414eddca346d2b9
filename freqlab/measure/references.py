"""The sweep's references: the stationary Wiener filter per Fourier mode, the SNR crossover f*(σ), and the
full-covariance linear MMSE denoiser fitted on held-out images."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

__all__ = ["PeriodicSpectrum", "fit_references", "linear_fit_count", "snr_crossover",
           "wiener_reference", "window_kernel", "windowed"]


def window_kernel(window: torch.Tensor) -> torch.Tensor:
    """``|Ŵ(k)|²/Σ|Ŵ|²`` over the full plane ``(H, W)``, float64: what a window does to an expected periodogram.

    For a stationary field of per-mode power ``S``, the windowed estimate ``|DFT(w·x)(k)|²/(H·W·mean(w²))`` has the
    expectation ``(K ⊛ S)(k)``, the circular convolution with this kernel (which sums to 1, so white noise stays
    flat at its variance).
    """
    kernel = torch.fft.fft2(window.double()).abs().square()
    return kernel / kernel.sum()


def windowed(half: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Per-mode expected powers ``(..., H, W//2+1)`` (rfft2 half plane) as a windowed, mean-removed estimate
    sees them: DC zeroed (each image's mean is removed before the window), then convolved with ``kernel``
    (:func:`window_kernel`) over the full plane; returns the half plane."""
    h, w = kernel.shape
    wr = w // 2 + 1
    half = half.clone()
    half[..., 0, 0] = 0.0
    full = torch.zeros(half.shape[:-1] + (w,), dtype=torch.float64)
    full[..., :wr] = half
    cols = torch.arange(wr, w)
    rows = (-torch.arange(h)) % h
    full[..., cols] = half[..., rows, :][..., w - cols]  # P(-k) = P(k): the other half plane
    conv = torch.fft.ifft2(torch.fft.fft2(full) * torch.fft.fft2(kernel)).real
    return conv[..., :wr]


def wiener_reference(mode_power: torch.Tensor, mode_mean: torch.Tensor, sigmas: Sequence[float],
                     bin_matrix: torch.Tensor, weights: torch.Tensor, kernel: torch.Tensor | None = None
                     ) -> dict[str, torch.Tensor]:
    """Wiener curves for each σ, computed per Fourier mode and then binned like the measurements.

    Parameters
    ----------
    mode_power : ``(C, H, Wr)``  mean per-mode power ``E|X(k)|²/norm`` of the data (rfft2 half plane).
    mode_mean : ``(C, H, Wr)``   ``|DFT(w·μ)(k)|²/norm``, the power of the (constant) mean image μ.
    bin_matrix : ``(H·Wr, n_bins)``  mode → bin-mean matrix (float64).
    weights : ``(H, Wr)``  half-plane multiplicities, for the MSE over all modes.
    kernel : ``(H, W)`` or None  the window's kernel (:func:`window_kernel`) when the measured spectra are
        windowed: the curves are then what a windowed, mean-removed estimate of the filter's output expects
        (:func:`windowed`), the convention of the spectra they are drawn beside and divided by. The MSE stays exact.

    The Wiener filter acts on the fluctuation about the data mean, ``x̂0 = μ + H·(x_σ − μ)`` with
    ``H = P/(P+σ²)`` and ``P = mode_power − mode_mean`` its per-mode variance (as
    :class:`freqlab.models.linear.WienerDenoiser`). Expected per mode: output power ``|μ|² + P²/(P+σ²)``, error power
    ``P·σ²/(P+σ²)``, cross-power ``|μ|² + H·P``. Transfer and coherence are formed from the *binned* curves,
    ``<Pxy>/<Pyy>`` and ``<Pxy>²/(<Pxx><Pyy>)``, exactly as the sweep estimates them from a model, so the two
    compare like for like. Working per mode (not on the radial mean) keeps anisotropic spectra right: the formulas
    are nonlinear in P, so applying them to a bin's mean power would be biased.

    Returns ``output``, ``error``, ``transfer``, ``coherence`` ``(S, C, n_bins)`` and ``mse`` ``(S, C)``.
    """
    p = (mode_power - mode_mean).clamp_min(0.0)
    s2 = torch.as_tensor(np.asarray(sigmas, dtype=np.float64)).view(-1, 1, 1, 1) ** 2
    h = p / (p + s2)
    h = torch.where(p + s2 > 0, h, torch.zeros_like(h))
    out = mode_mean + p * h
    err = s2 * h
    cross = mode_mean + p * h
    m = bin_matrix.double()

    def binned(q):
        return (q if kernel is None else windowed(q, kernel)).flatten(-2) @ m

    data_b, out_b, err_b, cross_b = binned(mode_power).unsqueeze(0), binned(out), binned(err), binned(cross)
    n_modes = float(weights.sum())
    mse = (err * weights).sum((-2, -1)) / n_modes
    return {"output": out_b, "error": err_b, "transfer": cross_b / data_b,
            "coherence": cross_b.square() / (out_b * data_b), "mse": mse}


def snr_crossover(freq: torch.Tensor, data_power: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """``f*(σ)``: lowest frequency where the data power falls to ``σ²``, interpolated in log-log, ``(S, C)``.

    ``data_power`` ``(C, n_bins)``; the DC bin (f = 0) is left out. NaN when the data power is already at or below
    ``σ²`` at the lowest non-DC bin (every resolved frequency is drowned); the top bin's frequency when it never
    falls that low (nothing is drowned).
    """
    freq = torch.as_tensor(freq, dtype=torch.float64)
    pos = freq > 0
    lf = freq[pos].log()
    lp = data_power.double()[..., pos].clamp_min(1e-300).log()  # (C, F)
    out = torch.full((len(sigmas), lp.shape[0]), math.nan, dtype=torch.float64)
    for i, s in enumerate(sigmas):
        ls2 = 2 * math.log(float(s))
        below = lp <= ls2
        for c in range(lp.shape[0]):
            idx = torch.nonzero(below[c]).flatten()
            if idx.numel() == 0:
                out[i, c] = float(freq[pos][-1])
            elif int(idx[0]) > 0:
                j = int(idx[0])
                t = float((lp[c, j - 1] - ls2) / (lp[c, j - 1] - lp[c, j]))
                out[i, c] = math.exp(float(lf[j - 1]) + t * float(lf[j] - lf[j - 1]))
    return out


def linear_fit_count(source, n_images: int, n_fit: int | None) -> int:
    """How many held-out images the linear reference is fitted on (0: none); see :func:`fit_references`."""
    dim = int(np.prod(source.shape))
    if n_fit == 0 or (n_fit is None and dim > 4096):
        return 0
    asked = n_fit is not None
    # 8·D images: with 2·D the low-variance directions are underestimated enough that the fitted reference did
    # worse than the identity at σ = 0.002 on natural crops (MSE 1.87·σ²; 8·D: 1.00·σ²)
    n_fit = 8 * dim if n_fit is None else int(n_fit)
    size = getattr(source, "size", None)
    if size is not None and size - n_images < n_fit:
        if not asked:
            return 0
        raise ValueError(f"data source {source.name!r} has {size} images: the {n_images} swept leave "
                         f"{size - n_images}, fewer than linear_reference={n_fit}; lower either, or pass 0")
    return n_fit


class PeriodicSpectrum:
    """Streaming per-mode periodic power ``Σ|rfft2(x)|²`` and pixel sum of images (float64, CPU): the statistics
    the stationary Wiener reference is made from."""

    def __init__(self):
        self.power, self.pixel_sum, self.count = None, None, 0

    def add(self, x: torch.Tensor) -> None:
        x = x.to(torch.float64)
        power = torch.fft.rfft2(x).abs().square().sum(0).cpu()
        pixels = x.sum(dim=(0, 2, 3)).cpu()
        self.power = power if self.power is None else self.power + power
        self.pixel_sum = pixels if self.pixel_sum is None else self.pixel_sum + pixels
        self.count += len(x)


def fit_references(source, start: int, n_images: int, n_linear: int, dev, batch_size: int = 256, check=None):
    """The references fitted on images ``start … start + n_images − 1`` of ``source``, in one pass: the
    :class:`PeriodicSpectrum` of all of them and the linear MMSE denoiser of the first ``n_linear`` (None for 0;
    then ``n_images`` are read for the spectrum alone). The spectrum is None when there is no image to read (a
    source that holds only the measured images): the Wiener reference then takes the measured images' own.
    ``check(first, images)``, when given, sees every batch read (``first`` its first image's index)."""
    from freqlab.models.linear import LinearMMSEDenoiser

    spectrum, read = PeriodicSpectrum(), [start]

    def each_batch(images) -> None:
        if check is not None:
            check(read[0], images)
        read[0] += len(images)
        spectrum.add(images)

    if n_linear:
        linear = LinearMMSEDenoiser.from_source(source, n_linear, start=start, device=dev, each_batch=each_batch,
                                                batch_size=batch_size).to(dev)
        return linear, spectrum
    for lo in range(start, start + n_images, batch_size):
        each_batch(source.images(list(range(lo, min(lo + batch_size, start + n_images)))))
    return None, spectrum if spectrum.count else None
