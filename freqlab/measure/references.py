"""The sweep's references: the stationary Wiener filter per Fourier mode, the SNR crossover f*(σ), and the
full-covariance linear MMSE denoiser fitted on held-out images."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

__all__ = ["linear_fit_count", "linear_reference", "snr_crossover", "wiener_reference"]


def wiener_reference(mode_power: torch.Tensor, mode_mean: torch.Tensor, sigmas: Sequence[float],
                     bin_matrix: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """Wiener curves for each σ, computed per Fourier mode and then binned like the measurements.

    Parameters
    ----------
    mode_power : ``(C, H, Wr)``  mean per-mode power ``E|X(k)|²/norm`` of the data (rfft2 half plane).
    mode_mean : ``(C, H, Wr)``   ``|DFT(w·μ)(k)|²/norm``, the power of the (constant) mean image μ.
    bin_matrix : ``(H·Wr, n_bins)``  mode → bin-mean matrix (float64).
    weights : ``(H, Wr)``  half-plane multiplicities, for the MSE over all modes.

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
        return q.flatten(-2) @ m

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
    """How many held-out images the linear reference is fitted on (0: none); see :func:`linear_reference`."""
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


def linear_reference(source, n_images: int, n_fit: int, dev):
    """The full-covariance linear MMSE denoiser fitted on held-out images of the data source, or None for 0.

    Held out: images ``n_images … n_images + n_fit − 1`` of the same source, right after the ones the sweep
    measures (for ``natural``, other crops of the same photographs), so the reference knows the evaluation
    distribution as well as the stationary Wiener filter does (which takes the evaluated images' spectrum) without
    having seen the evaluated images themselves (fitted on them it would overfit).
    """
    from freqlab.models.linear import LinearMMSEDenoiser

    if n_fit == 0:
        return None
    return LinearMMSEDenoiser.from_source(source, n_fit, start=n_images, device=dev).to(dev)
