"""Radially averaged power spectra and band metrics, in pure torch.

Conventions (docs/CONVENTIONS.md):

* Images are real tensors of shape ``(..., H, W)``; any leading dims (``N, C``) are kept.
* With window ``w`` (all ones when none) the per-mode power is
  ``P(k) = |DFT(w·x)(k)|² / (H·W·mean(w²))``, so white noise of variance ``s²`` is flat at ``s²``.
* The radial frequency of mode ``(ky, kx)`` is ``|f| = sqrt((ky/H)² + (kx/W)²)`` in cycles/pixel, which is right
  for non-square images. The radial power of a bin is the **mean of P(k) over the full-plane modes** whose
  ``|f|`` falls in the bin; counts are full-plane mode counts. With no window and every mode binned
  (``include_corners=True``), ``Σ_b counts_b·power_b = H·W·mean(x²)`` (Parseval).
* Only the ``rfft2`` half plane is computed; each half-plane column stands for itself and its mirror image
  (weight 2), except the zero column and, for even ``W``, the Nyquist column (weight 1).
* Default bins are centred on ``k / max(H, W)`` for ``k = 0 .. max(H, W)//2`` with width ``1/max(H, W)``, so bin 0
  holds the DC mode and axis-aligned modes sit on bin centres (never on an edge). Modes with ``|f| > 0.5`` (the
  corners beyond Nyquist) are left out unless ``include_corners=True``.

Nothing here does I/O or knows about models; every function takes device and dtype from its input and is
differentiable, so spectra can sit inside a loss.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping, NamedTuple, Sequence, Union

import torch

__all__ = [
    "DEFAULT_BANDS",
    "RadialSpectrum",
    "RadialBinning",
    "SlopeFit",
    "radial_binning",
    "radial_power_spectrum",
    "radial_cross_spectrum",
    "radial_spectra",
    "power_spectrum_2d",
    "make_window",
    "spectral_slope",
    "resolve_bands",
    "band_power",
    "relative_power_db",
    "log_spectral_distance",
    "Cutoff",
    "CUTOFF_BOUND_FLAGS",
    "first_departure",
    "cutoff_frequency",
    "coherence_cutoff",
    "radial_frequency",
    "halfplane_weights",
    "abs2",
    "cross_power",
    "band_mask",
    "BandStatistics",
    "band_masks",
    "bandpass",
    "central_kurtosis",
    "band_statistics",
    "diversity_ratio",
    "wasserstein_1d",
    "kurtosis_gap",
]

#: Default frequency bands in cycles/pixel: low ``[0, 1/8)``, mid ``[1/8, 1/4)``, high ``[1/4, 1/2]``.
DEFAULT_BANDS: dict[str, tuple[float, float]] = {"low": (0.0, 0.125), "mid": (0.125, 0.25), "high": (0.25, 0.5)}

BinsSpec = Union[None, str, int, Sequence[float], torch.Tensor]
WindowSpec = Union[None, str, tuple, torch.Tensor]
MIN_SIZE = 4


class RadialSpectrum(NamedTuple):
    """Result of :func:`radial_power_spectrum`.

    freq: ``(n_bins,)`` bin centres in cycles/pixel. power: ``x.shape[:-2] + (n_bins,)``.
    counts: ``(n_bins,)`` number of full-plane modes in each bin (int64).
    """

    freq: torch.Tensor
    power: torch.Tensor
    counts: torch.Tensor


class SlopeFit(NamedTuple):
    """Power-law fit ``P ∝ f^slope`` in log-log. Each field has the batch shape of the power given."""

    slope: torch.Tensor
    intercept: torch.Tensor  # log10 P at f = 1 cycle/pixel
    stderr: torch.Tensor
    ci_low: torch.Tensor
    ci_high: torch.Tensor
    n_bins: int


# --------------------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------------------
def _check_images(x: torch.Tensor, name: str = "x", check_finite: bool = True) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (..., H, W), got {type(x).__name__}")
    if x.is_complex() or not x.is_floating_point():
        raise ValueError(f"{name} must be a real floating-point tensor, got dtype {x.dtype}; convert with x.float()")
    if x.ndim < 2:
        raise ValueError(f"{name} must have at least two spatial dimensions (..., H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(f"{name} images must be at least {MIN_SIZE}x{MIN_SIZE}, got {h}x{w}")
    if x.numel() == 0:
        raise ValueError(f"{name} holds no images (shape {tuple(x.shape)}); give at least one")
    if check_finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values; spectra of non-finite images are undefined")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # the FFT of half precision is inaccurate (and unsupported on CPU)
    return x


# --------------------------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------------------------
def make_window(window: WindowSpec, h: int, w: int, *, device=None, dtype=torch.float32) -> torch.Tensor | None:
    """A separable 2-D window of shape ``(h, w)``, or ``None`` for no window.

    ``window`` is ``None``, a name (``"hann"``, ``"hamming"``, ``"blackman"``, ``"kaiser"`` with β = 8), a tuple
    ``("kaiser", beta)``, or a tensor of shape ``(h, w)``. Windows are symmetric (not periodic). The spectrum
    divides by ``mean(w²)``, so the window's scale does not matter.
    """
    if window is None:
        return None
    if isinstance(window, torch.Tensor):
        if window.shape != (h, w):
            raise ValueError(f"window tensor must have shape ({h}, {w}) to match the images, got {tuple(window.shape)}")
        if not bool(torch.isfinite(window).all()) or not bool((window != 0).any()):
            raise ValueError("window tensor must be finite and not all zero")
        return window.to(device=device, dtype=dtype)
    name, param = (window[0], window[1]) if isinstance(window, tuple) else (window, None)
    return _separable_window(str(name).lower(), param, h, w, str(torch.device(device or "cpu")), dtype)


@functools.lru_cache(maxsize=64)
def _separable_window(name: str, param, h: int, w: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    def one(n: int) -> torch.Tensor:
        if name == "hann":
            return torch.hann_window(n, periodic=False, dtype=torch.float64)
        if name == "hamming":
            return torch.hamming_window(n, periodic=False, dtype=torch.float64)
        if name == "blackman":
            return torch.blackman_window(n, periodic=False, dtype=torch.float64)
        if name == "kaiser":
            return torch.kaiser_window(n, periodic=False, beta=float(8.0 if param is None else param), dtype=torch.float64)
        raise ValueError(f"unknown window {name!r}; choose one of hann, hamming, blackman, kaiser, or pass a tensor")

    return torch.outer(one(h), one(w)).to(device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------------------------
# binning
# --------------------------------------------------------------------------------------------------------------
class RadialBinning(NamedTuple):
    """Everything needed to reduce ``rfft2`` half-plane values to radial bins, for one image shape.

    ``matrix`` has shape ``(2·H·(W//2+1), n_bins)``: rows ``2k`` and ``2k+1`` (the real and imaginary parts of mode
    ``k`` as laid out by ``torch.view_as_real``) hold the half-plane weight of mode ``k`` (1 or 2) divided by the
    full-plane count of bin ``b`` when mode ``k`` falls in bin ``b``, else 0. The squared real view of the spectrum
    times ``matrix`` is the mean full-plane power per bin: ``|X|² = Xr² + Xi²`` and the binning are one matmul.
    """

    freq: torch.Tensor
    edges: torch.Tensor
    counts: torch.Tensor
    matrix: torch.Tensor


def radial_frequency(h: int, w: int, *, device=None, dtype=torch.float64) -> torch.Tensor:
    """``|f|`` in cycles/pixel of the ``rfft2`` half-plane modes, shape ``(h, w//2 + 1)``."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).to(device=device, dtype=dtype)


def halfplane_weights(h: int, w: int) -> torch.Tensor:
    """Full-plane multiplicity (float64, ``(h, w//2+1)``) of each ``rfft2`` mode: 2, except the zero and (even W)
    Nyquist columns, which stand for themselves only."""
    wr = w // 2 + 1
    weights = torch.full((h, wr), 2.0, dtype=torch.float64)
    weights[:, 0] = 1.0
    if w % 2 == 0:
        weights[:, -1] = 1.0
    return weights


def _bin_edges(bins: BinsSpec, h: int, w: int, n_bins: int | None, include_corners: bool) -> tuple[torch.Tensor, str]:
    """Edges (float64) and the kind of centre to report ("linear" midpoints or "log" geometric)."""
    m = max(h, w)
    f_top = math.sqrt(0.5**2 + 0.5**2) if include_corners else 0.5
    if bins is None or (isinstance(bins, str) and bins == "linear" and n_bins is None):
        # the last bin must hold the highest mode binned (corners: the true maximum radius of this shape)
        k_max = math.ceil(float(radial_frequency(h, w).max()) * m - 0.5) if include_corners else m // 2
        edges = (torch.arange(k_max + 2, dtype=torch.float64) - 0.5) / m
        return edges, "linear"
    if isinstance(bins, int) and not isinstance(bins, bool):
        bins, n_bins = "linear", bins
    if isinstance(bins, str):
        if bins == "linear":
            if n_bins < 1:
                raise ValueError(f"n_bins must be at least 1, got {n_bins}")
            return torch.linspace(0.0, f_top, n_bins + 1, dtype=torch.float64), "linear"
        if bins == "log":
            n = n_bins if n_bins is not None else max(4, int(round(2 * math.log2(m))))
            if n < 1:
                raise ValueError(f"n_bins must be at least 1, got {n}")
            # log bins cannot hold f = 0: the DC mode is left out; the lowest edge sits half a mode above it
            return torch.logspace(math.log10(0.5 / m), math.log10(f_top), n + 1, dtype=torch.float64), "log"
        raise ValueError(f"unknown bins {bins!r}; use None, 'linear', 'log', an int, or a sequence of edges")
    edges = torch.as_tensor(bins, dtype=torch.float64).detach().cpu().flatten()
    if edges.numel() < 2:
        raise ValueError("bin edges need at least two values")
    if not bool(torch.isfinite(edges).all()) or not bool((edges[1:] > edges[:-1]).all()):
        raise ValueError(f"bin edges must be finite and strictly increasing, got {edges.tolist()}")
    if bool((edges < 0).any()):
        raise ValueError("bin edges must be non-negative (radial frequency is |f| in cycles/pixel)")
    return edges, "linear"


def radial_binning(
    h: int,
    w: int,
    *,
    bins: BinsSpec = None,
    n_bins: int | None = None,
    include_corners: bool = False,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> RadialBinning:
    """The (cached) radial binning of an ``h × w`` image; see :class:`RadialBinning`.

    Bins are half-open ``[e_i, e_{i+1})`` except the last, which is closed. Empty bins have NaN power.
    """
    if isinstance(bins, torch.Tensor) or (bins is not None and not isinstance(bins, (str, int))):
        key_bins: object = tuple(float(e) for e in torch.as_tensor(bins, dtype=torch.float64).flatten().tolist())
    else:
        key_bins = bins
    return _radial_binning_cached(h, w, key_bins, n_bins, include_corners, str(torch.device(device or "cpu")), dtype)


def _merge_empty_bins(edges: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Drop inner edges until every bin holds a mode (log bins are narrower than the mode spacing at low f)."""
    kept = [float(edges[0])]
    for i in range(1, edges.numel() - 1):
        if bool(((f >= kept[-1]) & (f < edges[i])).any()):
            kept.append(float(edges[i]))
    kept.append(float(edges[-1]))
    if not bool(((f >= kept[-2]) & (f <= kept[-1])).any()) and len(kept) > 2:
        del kept[-2]  # an empty last bin joins the one before
    return torch.tensor(kept, dtype=torch.float64)


@functools.lru_cache(maxsize=32)
def _radial_binning_cached(h, w, bins, n_bins, include_corners, device, dtype) -> RadialBinning:
    edges, centre_kind = _bin_edges(list(bins) if isinstance(bins, tuple) else bins, h, w, n_bins, include_corners)
    f = radial_frequency(h, w).flatten()
    if not include_corners:
        f = torch.where(f <= 0.5, f, torch.inf)  # corner modes fall in no bin
    if centre_kind == "log":
        edges = _merge_empty_bins(edges, f)
    n = edges.numel() - 1
    index = torch.bucketize(f, edges, right=True) - 1  # bin i holds edges[i] <= f < edges[i+1]
    index[f == edges[-1]] = n - 1  # the last bin is closed
    keep = (index >= 0) & (index < n)
    weights = halfplane_weights(h, w).flatten()
    counts = torch.zeros(n, dtype=torch.float64).index_add_(0, index[keep], weights[keep])
    matrix = torch.zeros(f.numel(), n, dtype=torch.float64)
    rows = torch.nonzero(keep).flatten()
    matrix[rows, index[keep]] = weights[keep] / counts[index[keep]]
    if centre_kind == "log":
        freq = torch.sqrt(edges[:-1] * edges[1:])
    else:
        freq = 0.5 * (edges[:-1] + edges[1:])
    return RadialBinning(
        freq=freq.to(device=device, dtype=dtype),
        edges=edges.to(device=device, dtype=dtype),
        counts=counts.round().to(device=device, dtype=torch.int64),
        matrix=matrix.repeat_interleave(2, dim=0).to(device=device, dtype=dtype),
    )


def _accumulate_dtype(x: torch.Tensor, accumulate_dtype: torch.dtype | None) -> torch.dtype:
    if accumulate_dtype is None:
        return torch.float64 if x.dtype == torch.float64 else torch.float32
    if accumulate_dtype not in (torch.float32, torch.float64):
        raise ValueError(f"accumulate_dtype must be torch.float32 or torch.float64, got {accumulate_dtype}")
    return accumulate_dtype


def _windowed_rfft(x: torch.Tensor, window: WindowSpec, remove_mean: bool) -> tuple[torch.Tensor, float]:
    """``rfft2`` of the (mean-removed, windowed) images and the normalisation ``H·W·mean(w²)``."""
    h, w = x.shape[-2:]
    if remove_mean:
        x = x - x.mean(dim=(-2, -1), keepdim=True)
    win = make_window(window, h, w, device=x.device, dtype=x.dtype)
    norm = float(h * w)
    if win is not None:
        x = x * win
        norm *= float(win.double().square().mean())
    return torch.fft.rfft2(x), norm


def _reduce(products: torch.Tensor, binning: RadialBinning, norm: float, what: str = "x") -> torch.Tensor:
    """Bin products of real views ``(..., H, W//2+1, 2)`` (e.g. ``Xr², Xi²``) with one matmul → ``(..., n_bins)``.

    Non-finite input shows up here: one NaN or Inf pixel makes every mode non-finite, and the matmul carries it into
    every bin, so checking the small result replaces a full pass over the images.
    """
    lead = products.shape[:-3]
    flat = products.reshape(-1, binning.matrix.shape[0])
    out = (flat @ binning.matrix) / norm
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            f"{what} contains NaN or Inf values (or values so large that their power overflows); "
            "spectra of non-finite images are undefined"
        )
    empty = binning.counts == 0
    if bool(empty.any()):
        out = out.masked_fill(empty, float("nan"))
    return out.reshape(*lead, -1)


def abs2(z: torch.Tensor) -> torch.Tensor:
    """``|z|²`` of a complex tensor without the square root of ``abs``."""
    r = torch.view_as_real(z)
    return r[..., 0].square() + r[..., 1].square()


def cross_power(z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``Re(z·conj(v))`` of two complex tensors, elementwise: the per-mode cross-power (``abs2`` when ``v = z``)."""
    rz, rv = torch.view_as_real(z), torch.view_as_real(v)
    return rz[..., 0] * rv[..., 0] + rz[..., 1] * rv[..., 1]


# --------------------------------------------------------------------------------------------------------------
# spectra
# --------------------------------------------------------------------------------------------------------------
def radial_power_spectrum(
    x: torch.Tensor,
    *,
    window: WindowSpec = None,
    remove_mean: bool = False,
    bins: BinsSpec = None,
    n_bins: int | None = None,
    include_corners: bool = False,
    accumulate_dtype: torch.dtype | None = None,
) -> RadialSpectrum:
    """Radially averaged power spectrum (RAPS) of real images.

    Parameters
    ----------
    x : tensor ``(..., H, W)``
        Real images, e.g. ``(N, C, H, W)`` in [-1, 1]. float16/bfloat16 are upcast to float32.
    window : None, str, ("kaiser", beta) or tensor ``(H, W)``
        Window applied before the FFT; the power is divided by ``mean(w²)``.
    remove_mean : bool
        Subtract each image's mean first (the DC bin then holds ~0).
    bins : None, "linear", "log", int, or increasing edges in cycles/pixel
        ``None``: bins of width ``1/max(H, W)`` centred on ``k/max(H, W)`` up to Nyquist. ``"log"``:
        up to ``n_bins`` log-spaced bins from ``0.5/max(H, W)`` to 0.5 (the DC mode is left out; bins too narrow
        to hold a mode are merged with the next, so fewer may come back). An int: that many
        linear bins from 0 to 0.5. Edges: bins ``[e_i, e_{i+1})``, the last closed.
    include_corners : bool
        Also bin the corner modes with ``|f| > 0.5`` (default bins then extend to ``√2/2``).
    accumulate_dtype : torch.float32 or torch.float64
        Precision of the power and of the binning (default: float64 for float64 input, else float32).

    Returns
    -------
    RadialSpectrum(freq ``(n_bins,)`` cycles/pixel, power ``x.shape[:-2] + (n_bins,)``, counts ``(n_bins,)``)

    Examples
    --------
    >>> x = torch.randn(8, 3, 32, 32) * 0.5           # white noise, variance 0.25
    >>> spec = radial_power_spectrum(x)
    >>> spec.power.shape                                  # (8, 3, 17); every bin close to 0.25
    torch.Size([8, 3, 17])
    """
    x = _check_images(x, check_finite=False)  # checked on the (small) result instead
    acc = _accumulate_dtype(x, accumulate_dtype)
    h, w = x.shape[-2:]
    spectrum, norm = _windowed_rfft(x, window, remove_mean)
    binning = radial_binning(h, w, bins=bins, n_bins=n_bins, include_corners=include_corners, device=x.device, dtype=acc)
    real = torch.view_as_real(spectrum).to(acc)
    # the spectrum is ours and not needed after this: square it in place (one image-sized allocation fewer),
    # unless autograd needs it (a differentiable spectrum, e.g. a spectral loss)
    power = _reduce(real.square() if real.requires_grad else real.square_(), binning, norm)
    return RadialSpectrum(binning.freq, power, binning.counts)


def radial_cross_spectrum(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window: WindowSpec = None,
    remove_mean: bool = False,
    bins: BinsSpec = None,
    n_bins: int | None = None,
    include_corners: bool = False,
    accumulate_dtype: torch.dtype | None = None,
) -> RadialSpectrum:
    """Radially averaged cross-spectrum ``mean over modes of Re(X(k)·conj(Y(k))) / (H·W·mean(w²))``.

    For real images the imaginary parts of a mode and its mirror cancel, so the full-plane average over a radial
    bin is real. ``x`` and ``y`` must have the same shape. Same options and return type as
    :func:`radial_power_spectrum` (``power`` holds the cross-spectrum, which can be negative).
    """
    return radial_spectra(
        x, y, window=window, remove_mean=remove_mean, bins=bins, n_bins=n_bins,
        include_corners=include_corners, accumulate_dtype=accumulate_dtype,
    )[2]


def radial_spectra(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window: WindowSpec = None,
    remove_mean: bool = False,
    bins: BinsSpec = None,
    n_bins: int | None = None,
    include_corners: bool = False,
    accumulate_dtype: torch.dtype | None = None,
) -> tuple[RadialSpectrum, RadialSpectrum, RadialSpectrum]:
    """Power of ``x``, power of ``y`` and their cross-spectrum from two FFTs: ``(Pxx, Pyy, Pxy)``.

    Use this for transfer functions ``Pxy/Pyy`` and coherence ``Pxy²/(Pxx·Pyy)`` of an output ``x`` against a
    reference ``y``, computed from means over images of each.
    """
    x = _check_images(x, "x", check_finite=False)
    y = _check_images(y, "y", check_finite=False)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    acc = _accumulate_dtype(x, accumulate_dtype)
    h, w = x.shape[-2:]
    fx, norm = _windowed_rfft(x, window, remove_mean)
    fy, _ = _windowed_rfft(y.to(x.dtype), window, remove_mean)
    binning = radial_binning(h, w, bins=bins, n_bins=n_bins, include_corners=include_corners, device=x.device, dtype=acc)
    rx, ry = torch.view_as_real(fx).to(acc), torch.view_as_real(fy).to(acc)
    pxx = _reduce(rx.square(), binning, norm, "x")
    pyy = _reduce(ry.square(), binning, norm, "y")
    pxy = _reduce(rx * ry, binning, norm)  # Re(X·conj(Y)) = Xr·Yr + Xi·Yi
    return tuple(RadialSpectrum(binning.freq, p, binning.counts) for p in (pxx, pyy, pxy))  # type: ignore[return-value]


def power_spectrum_2d(
    x: torch.Tensor,
    *,
    window: WindowSpec = None,
    remove_mean: bool = False,
    check_finite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centred full-plane 2-D power spectrum, for anisotropy pictures.

    Returns ``(fy, fx, power)``: ``fy`` ``(H,)`` and ``fx`` ``(W,)`` in cycles/pixel (fftshifted, increasing) and
    ``power`` of shape ``x.shape`` with the same normalisation as :func:`radial_power_spectrum` (DC at the centre).
    """
    x = _check_images(x, check_finite=check_finite)
    h, w = x.shape[-2:]
    if remove_mean:
        x = x - x.mean(dim=(-2, -1), keepdim=True)
    win = make_window(window, h, w, device=x.device, dtype=x.dtype)
    norm = float(h * w)
    if win is not None:
        x = x * win
        norm *= float(win.double().square().mean())
    power = torch.fft.fftshift(abs2(torch.fft.fft2(x)), dim=(-2, -1)) / norm
    fy = torch.fft.fftshift(torch.fft.fftfreq(h, device=x.device, dtype=x.dtype))
    fx = torch.fft.fftshift(torch.fft.fftfreq(w, device=x.device, dtype=x.dtype))
    return fy, fx, power


# --------------------------------------------------------------------------------------------------------------
# fits and band metrics
# --------------------------------------------------------------------------------------------------------------
def spectral_slope(
    freq: torch.Tensor,
    power: torch.Tensor,
    fmin: float | None = None,
    fmax: float | None = None,
    *,
    confidence: float = 0.95,
) -> SlopeFit:
    """Least-squares fit of ``log10 P = intercept + slope·log10 f`` over bins with ``fmin <= f <= fmax``.

    Bins with ``f <= 0`` or non-positive or non-finite power are skipped. ``power`` may be batched
    ``(..., n_bins)`` (the bins kept must be the same across the batch). The confidence interval is Student-t with
    ``n - 2`` degrees of freedom on the slope's standard error. Natural images give slopes near -2.
    """
    from scipy.stats import t as student_t  # scipy only for the t quantile

    freq = torch.as_tensor(freq, dtype=torch.float64)
    power = torch.as_tensor(power).to(torch.float64)
    fmin = 0.0 if fmin is None else fmin
    fmax = math.inf if fmax is None else fmax
    sel = (freq > 0) & (freq >= fmin) & (freq <= fmax) & (power > 0).all(dim=tuple(range(power.ndim - 1))).to(freq.device)
    sel &= torch.isfinite(power).all(dim=tuple(range(power.ndim - 1))).to(freq.device)
    n = int(sel.sum())
    if n < 3:
        raise ValueError(f"need at least 3 bins with positive power in [{fmin}, {fmax}] to fit a slope, got {n}")
    lx = torch.log10(freq[sel]).to(power.device)
    ly = torch.log10(power[..., sel])
    mx = lx.mean()
    dx = lx - mx
    sxx = dx.square().sum()
    slope = (ly * dx).sum(-1) / sxx
    intercept = ly.mean(-1) - slope * mx
    resid = ly - (intercept[..., None] + slope[..., None] * lx)
    stderr = torch.sqrt(resid.square().sum(-1) / (n - 2) / sxx)
    q = float(student_t.ppf(0.5 + confidence / 2, n - 2))
    return SlopeFit(slope, intercept, stderr, slope - q * stderr, slope + q * stderr, n)


def resolve_bands(bands: Mapping[str, tuple[float, float]] | Sequence[float] | None = None) -> dict[str, tuple[float, float]]:
    """Bands as ``{name: (lo, hi)}`` in cycles/pixel.

    ``None`` gives :data:`DEFAULT_BANDS`; a mapping is checked; a sequence of edges ``[0, 0.1, 0.3, 0.5]`` gives
    bands named ``"b0", "b1", ...``. Bands are ``[lo, hi)``, except a band ending at or above 0.5, which is closed.
    """
    if bands is None:
        return dict(DEFAULT_BANDS)
    if not isinstance(bands, Mapping):
        edges = [float(e) for e in bands]
        if len(edges) < 2:
            raise ValueError("band edges need at least two values")
        bands = {f"b{i}": (edges[i], edges[i + 1]) for i in range(len(edges) - 1)}
    out = {}
    for name, (lo, hi) in bands.items():
        lo, hi = float(lo), float(hi)
        if not (0 <= lo < hi) or not math.isfinite(hi):
            raise ValueError(f"band {name!r} must satisfy 0 <= lo < hi (cycles/pixel), got ({lo}, {hi})")
        out[str(name)] = (lo, hi)
    return out


def band_mask(freq: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Boolean mask of frequencies in ``[lo, hi)``, closed at ``hi`` when ``hi >= 0.5``."""
    return (freq >= lo) & ((freq <= hi) if hi >= 0.5 else (freq < hi))


def band_power(
    freq: torch.Tensor,
    power: torch.Tensor,
    counts: torch.Tensor | None = None,
    bands: Mapping[str, tuple[float, float]] | Sequence[float] | None = None,
) -> torch.Tensor:
    """Mean power per band, shape ``power.shape[:-1] + (n_bands,)``, bands in :func:`resolve_bands` order.

    With ``counts`` the mean is over modes (bins weighted by their mode counts), i.e. the mean of ``P(k)`` over the
    modes whose bin centre falls in the band; without, a plain mean over bins. NaN for a band with no bins.
    """
    cols = []
    for lo, hi in resolve_bands(bands).values():
        m = band_mask(freq, lo, hi) & torch.isfinite(power).all(dim=tuple(range(power.ndim - 1)))
        wts = (counts.to(power.dtype) if counts is not None else torch.ones_like(freq, dtype=power.dtype)) * m
        total = wts.sum()
        cols.append((power.nan_to_num() * wts).sum(-1) / total if total > 0 else power[..., 0] * float("nan"))
    return torch.stack(cols, dim=-1)


def relative_power_db(power: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``10·log10(power / reference)`` in dB (NaN where either is non-positive)."""
    ratio = power / reference
    return torch.where((power > 0) & (reference > 0), 10.0 * torch.log10(ratio.clamp_min(1e-300)), torch.nan)


def log_spectral_distance(
    power: torch.Tensor,
    reference: torch.Tensor,
    freq: torch.Tensor | None = None,
    bands: Mapping[str, tuple[float, float]] | Sequence[float] | None = None,
) -> torch.Tensor:
    """Log-spectral distance in dB: ``sqrt(mean over bins of (10·log10(P/Pref))²)``.

    Without ``freq`` the mean runs over all bins and the result has shape ``power.shape[:-1]``. With ``freq`` it is
    computed per band (``bands`` as :func:`resolve_bands`), shape ``power.shape[:-1] + (n_bands,)``. Bins where
    either spectrum is non-positive or NaN are skipped.
    """
    db = relative_power_db(power, reference)
    if freq is None:
        return _rms_ignore_nan(db)
    cols = [_rms_ignore_nan(db[..., band_mask(freq, lo, hi)]) for lo, hi in resolve_bands(bands).values()]
    return torch.stack(cols, dim=-1)


def _rms_ignore_nan(db: torch.Tensor) -> torch.Tensor:
    ok = ~torch.isnan(db)
    n = ok.sum(-1)
    sq = torch.where(ok, db, 0.0).square().sum(-1)
    return torch.where(n > 0, torch.sqrt(sq / n.clamp_min(1)), torch.nan)


class Cutoff(NamedTuple):
    """Result of :func:`cutoff_frequency` and :func:`first_departure`, each of the batch shape.

    freq: the cutoff in cycles/pixel. bound: ``0`` where the crossing was measured (interpolated between two bins);
    ``-1`` where the criterion already fails at the first bin (``freq`` is that bin's frequency, an **upper bound**:
    the true cutoff is at or below it); ``+1`` where it never fails (``freq`` is the last bin's, a **lower bound**).
    """

    freq: torch.Tensor
    bound: torch.Tensor


#: Meanings of :attr:`Cutoff.bound`, as CF ``flag_values`` / ``flag_meanings``.
CUTOFF_BOUND_FLAGS = {-1: "upper_bound_fails_at_first_bin", 0: "measured", 1: "lower_bound_never_fails"}


def first_departure(freq: torch.Tensor, values: torch.Tensor, lower: float = -math.inf,
                    upper: float = math.inf) -> Cutoff:
    """Lowest frequency where ``values`` leave the interval ``[lower, upper]``, linearly interpolated.

    ``values`` ``(..., n_bins)`` over ``freq`` ``(n_bins,)``; NaN bins are skipped. The crossing lies between the
    last bin inside and the first bin outside, where the straight line between them meets the limit that is
    crossed (``upper`` when the first bin outside is above it, else ``lower``). See :class:`Cutoff` for the bounds.
    """
    freq = freq.to(values.dtype)
    valid = ~torch.isnan(values)
    out = valid & ((values < lower) | (values > upper))
    n = freq.numel()
    idx = torch.arange(n, device=values.device).expand_as(values)
    any_out = out.any(-1)
    first = torch.where(any_out, torch.where(out, idx, n).min(-1).values, n - 1)
    prev = torch.where(valid & (idx < first[..., None]), idx, -1).max(-1).values  # last valid bin inside
    measured = any_out & (prev >= 0)
    prev_c = prev.clamp_min(0)
    d0 = values.gather(-1, prev_c[..., None]).squeeze(-1)
    d1 = values.gather(-1, first[..., None]).squeeze(-1)
    target = torch.where(d1 > upper, torch.as_tensor(upper, dtype=values.dtype),
                         torch.as_tensor(lower, dtype=values.dtype))
    t = ((target - d0) / (d1 - d0)).nan_to_num(0.0).clamp(0, 1)
    f = torch.where(measured, freq[prev_c] + t * (freq[first] - freq[prev_c]), freq[first])
    last_valid = torch.where(valid, idx, -1).max(-1).values.clamp_min(0)
    f = torch.where(any_out, f, freq[last_valid])
    bound = torch.where(measured, 0, torch.where(any_out, -1, 1)).to(torch.int8)
    return Cutoff(f, bound)


def cutoff_frequency(freq: torch.Tensor, relative_db: torch.Tensor, threshold_db: float = 3.0) -> Cutoff:
    """The cutoff ``f_c``: lowest frequency where ``|relative power| > threshold_db`` (too little *or* too much).

    ``relative_db`` ``(..., n_bins)`` is ``10·log10(P_out/P_data)``; pass the non-DC bins only (the DC mode is the
    mean brightness, not a spatial frequency). Power 40 dB above the data is not "reproduced", so excess counts as
    a departure just like a shortfall. Returns a :class:`Cutoff` (value and bound flag); see
    :func:`first_departure` for the interpolation.
    """
    t = abs(float(threshold_db))
    return first_departure(freq, relative_db, -t, t)


def coherence_cutoff(freq: torch.Tensor, coherence: torch.Tensor, threshold: float = 0.5) -> Cutoff:
    """Lowest frequency where the coherence of an output with the clean image falls below ``threshold``.

    Above it the output no longer carries the clean signal (noise passed through or hallucinated). For the Wiener
    filter the coherence of a mode is ``P_d/(P_d+σ²)``, so its coherence cutoff is the SNR crossover ``f*(σ)``.
    """
    return first_departure(freq, coherence, lower=float(threshold))


# --------------------------------------------------------------------------------------------------------------
# per-image band statistics (a mean spectrum cannot tell structure from coloured noise)
# --------------------------------------------------------------------------------------------------------------
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
