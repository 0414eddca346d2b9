"""Radially averaged power and cross spectra: input checks, windows, radial binning (conventions in the package
docstring, :mod:`freqlab.spectral`)."""


from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence, Union

import torch

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
