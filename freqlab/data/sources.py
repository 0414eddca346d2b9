"""Data sources: deterministic, index-addressable image sets as ``(N, C, H, W)`` float32 tensors in [-1, 1].

Every source is a :class:`DataSource` made by :func:`make_source`. Image ``i`` depends only on the source's
settings, its ``seed`` and ``i`` (procedural sources draw per index with :mod:`freqlab.runtime.rng`), so
``images(range(10))`` equals ``images(range(5))`` followed by ``images(range(5, 10))``, on one process or split
across many. Memory never grows with the number of images drawn: procedural sources generate each index on demand,
finite sources hold their array once.

==============  =====================================================================================  ========
name            what                                                                                    size
==============  =====================================================================================  ========
``natural``     multi-scale crops of real photographs shipped in the scikit-image / scikit-learn wheels  None
                (the embedded default; train and test use different photographs, see NATURAL_PHOTOS)
``deadleaves``  dead-leaves occlusion model: discs with radius density ∝ r⁻³, spectrum close to f⁻²      None
``grf``         Gaussian random fields with P(f) ∝ f^-exponent (known exactly: :func:`grf_power`)         None
``white``       white Gaussian noise of standard deviation ``std``                                     None
``folder``      PNG/JPEG/BMP/WebP files under ``path`` (recursive), centre-cropped and downsampled, or     N
                (``tiles=True``) cut into tiles of the resolution at their own scale, any sizes mixed
``cifar10``     the python-pickle CIFAR-10 batches (``cifar-10-batches-py``) under ``path``             N
``array``       a ``.npy`` / ``.npz`` file of images                                                    N
==============  =====================================================================================  ========

Images at their own sizes, none cropped or resized (a folder's of any sizes; an array's or CIFAR-10's at theirs):
``source_for_path(path, native=True)`` (:mod:`freqlab.data.native`, for ``freqlab spectra --native``).

Ranges: every source is in [-1, 1] except ``grf`` and ``white``, which are Gaussian and not clipped (clipping
would change their spectrum, which is the point of having them): ``white`` (std 0.5) leaves [-1, 1] at about 5 %
of pixels, ``grf`` (std 0.25) at about 6e-5 of pixels. ``split`` selects photographs for ``natural`` and batches
for ``cifar10``; it changes the random stream of the procedural sources and is not used by ``folder`` and
``array`` (choose the files with ``path``). Grayscale conversion is luma ``0.299 R + 0.587 G + 0.114 B``
(ITU-R 601, as PIL's ``convert("L")``); a one-channel image in RGB mode is replicated to three channels.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from freqlab.data.base import SPLITS, DataSource, to_channels
from freqlab.data.files import (
    FILE_OPTIONS,
    ArraySource,
    load_array,
    load_cifar10,
    load_folder,
)
from freqlab.data.native import NativeImages, native_source
from freqlab.runtime.rng import per_sample_rand, per_sample_randn
from freqlab.spectral import radial_binning, radial_frequency

__all__ = [
    "DATA_SOURCES",
    "NATURAL_PHOTOS",
    "make_source",
    "source_for_path",
    "grf_power",
    "grf_radial_power",
]

DATA_SOURCES: tuple[str, ...] = ("natural", "deadleaves", "grf", "white", "folder", "cifar10", "array")
#: Photographs of the ``natural`` source, split by photograph so that test crops come from unseen photographs.
#: Synthetic (logo, colorwheel, checkerboard, phantom), binary (horse, blobs), text (page, text), tiny, medical or
#: microscopy images and the ones skimage must download (eagle, lily, ...) are left out. ``cat`` duplicates chelsea.
NATURAL_PHOTOS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "camera", "coffee", "chelsea", "rocket", "brick", "grass", "moon", "coins", "clock",
              "china"),
    "test": ("flower", "gravel", "motorcycle"),
}


# --------------------------------------------------------------------------------------------------------------
# natural photographs
# --------------------------------------------------------------------------------------------------------------
def _load_photo(name: str) -> np.ndarray:
    """uint8 ``(H, W)`` or ``(H, W, 3)`` from the installed wheels (no download)."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> torch.Tensor:
    """Photograph as uint8 ``(3, H, W)`` (gray photographs replicated). Cached."""
    x = torch.from_numpy(np.array(_load_photo(name), dtype=np.uint8))
    return x.expand(3, -1, -1).contiguous() if x.ndim == 2 else x.permute(2, 0, 1).contiguous()


class _SummedAreaTables(NamedTuple):
    """Summed-area tables of photographs in one flat int32 buffer (exact: 255·H·W < 2³¹ for any photo here).

    ``table[offset[p] + c·(H+1)(W+1) + y·(W+1) + x]`` is the sum of channel ``c`` of photo ``p`` over
    ``[0, y) × [0, x)``; the box sums of the crops are four lookups each.
    """

    table: torch.Tensor
    offset: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor


@functools.lru_cache(maxsize=None)
def _summed_area_tables(names: tuple[str, ...]) -> _SummedAreaTables:
    tables, offsets, sizes, total = [], [], [], 0
    for name in names:
        x = _photo(name).long()
        sat = F.pad(x.cumsum(1).cumsum(2), (1, 0, 1, 0))  # zero first row and column: box sums need no branches
        tables.append(sat.flatten().to(torch.int32))
        offsets.append(total)
        sizes.append(x.shape[1:])
        total += sat.numel()
    size = torch.tensor(sizes)
    return _SummedAreaTables(torch.cat(tables), torch.tensor(offsets), size[:, 0], size[:, 1])


def _box_means(sat: _SummedAreaTables, p, r0, r1, c0, c1) -> torch.Tensor:
    """Means over the boxes ``rows [r0, r1) × cols [c0, c1)`` of photographs ``p``, as float32 ``(N, 3, h, w)`` in
    [-1, 1]; ``r0, r1`` are ``(N, h)`` and ``c0, c1`` are ``(N, w)``."""
    hp, wp = sat.height[p], sat.width[p]
    base = (sat.offset[p, None] + torch.arange(3) * ((hp + 1) * (wp + 1))[:, None])[:, :, None, None]
    shape = (len(p), 3, r0.shape[1], c0.shape[1])

    def at(r, c):
        index = base + (r * (wp + 1)[:, None])[:, None, :, None] + c[:, None, None, :]
        return sat.table.index_select(0, index.flatten()).view(shape)

    box = (at(r1, c1) - at(r0, c1)).sub_(at(r1, c0)).add_(at(r0, c0))  # int32: exact, |box| <= 255·area
    area = (r1 - r0)[:, None, :, None] * (c1 - c0)[:, None, None, :]
    return box.float().div_(area * 127.5).sub_(1.0)


class NaturalPatches(DataSource):
    """Random crops of real photographs at random scales, area-downsampled to the resolution.

    Crop ``i``: a photograph drawn uniformly from ``NATURAL_PHOTOS[split]``; a scale ``s`` log-uniform in
    ``[1, max(1, max_crop · s_fit)]`` where ``s_fit`` is the largest scale at which an ``H × W`` crop fits the
    photograph (log-uniform because natural images are roughly scale invariant); a crop of ``(round(sH), round(sW))``
    pixels at a uniform position, downsampled by area averaging (a box filter, which keeps aliasing low; the bins of
    ``F.interpolate(mode="area")``); a horizontal flip with probability 1/2 when ``flip``. Everything is drawn from
    ``(seed, split, i)``. Box sums come from summed-area tables built once per process (int32, about 30 MB for the
    train photographs), so a batch of crops of different sizes and photographs is a few tensor operations, not a
    Python loop of small ones (which slows down badly when the CPU cores are shared).
    """

    OPTIONS = {"max_crop": 0.5, "flip": True}

    def __init__(self, hw, channels, split, seed, max_crop, flip):
        if not 0 < float(max_crop) <= 1:
            raise ValueError(f"max_crop must be in (0, 1], got {max_crop}")
        self.hw, self.split, self.seed, self.max_crop, self.flip = hw, split, int(seed), float(max_crop), bool(flip)
        self.sat = _summed_area_tables(NATURAL_PHOTOS[split])
        fits = (self.sat.height >= hw[0]) & (self.sat.width >= hw[1])
        if not bool(fits.all()):
            p = int(torch.nonzero(~fits)[0])
            raise ValueError(f"resolution {hw[0]}x{hw[1]} does not fit the natural {split} photograph "
                             f"{NATURAL_PHOTOS[split][p]} ({self.sat.height[p]}x{self.sat.width[p]}); "
                             "choose a smaller resolution")
        attrs = {"split": split, "seed": seed, "max_crop": max_crop, "flip": int(flip),
                 "photos": ",".join(NATURAL_PHOTOS[split])}
        super().__init__("natural", (channels, *hw), None, attrs)

    def _images(self, idx):
        h, w = self.hw
        sat = self.sat
        u = per_sample_rand(self.seed, f"natural/{self.split}", idx, (5,), dtype=torch.float64)
        p = (u[:, 0] * len(sat.offset)).long().clamp(max=len(sat.offset) - 1)
        hp, wp = sat.height[p], sat.width[p]
        s = torch.minimum(hp / h, wp / w).mul(self.max_crop).clamp(min=1.0) ** u[:, 1]
        ch, cw = torch.minimum((h * s).round().long(), hp), torch.minimum((w * s).round().long(), wp)
        y0 = torch.minimum((u[:, 2] * (hp - ch + 1)).long(), hp - ch)
        x0 = torch.minimum((u[:, 3] * (wp - cw + 1)).long(), wp - cw)
        # adaptive-average-pool bins: output pixel i averages input rows [floor(i·ch/h), ceil((i+1)·ch/h))
        i, j = torch.arange(h), torch.arange(w)
        r0 = y0[:, None] + i * ch[:, None] // h
        r1 = y0[:, None] - (-(i + 1) * ch[:, None] // h)
        c0 = x0[:, None] + j * cw[:, None] // w
        c1 = x0[:, None] - (-(j + 1) * cw[:, None] // w)
        if self.flip:  # mirror the column bins of the flipped crops (cheaper than flipping the images)
            mirror = (u[:, 4] < 0.5)[:, None]
            c0, c1 = torch.where(mirror, c0.flip(-1), c0), torch.where(mirror, c1.flip(-1), c1)
        out = torch.empty((len(idx), 3, h, w))
        for k in range(0, len(idx), 256):  # chunks bound the (N, 3, H, W) index temporaries
            out[k:k + 256] = _box_means(sat, p[k:k + 256], r0[k:k + 256], r1[k:k + 256], c0[k:k + 256], c1[k:k + 256])
        return to_channels(out, self.shape[0])


# --------------------------------------------------------------------------------------------------------------
# dead leaves
# --------------------------------------------------------------------------------------------------------------
class DeadLeaves(DataSource):
    """Dead-leaves images: opaque discs painted front to back until every pixel is covered.

    Radii have density ∝ r⁻³ on ``[rmin, rmax]`` pixels (``rmax`` None: ``max(H, W)``), the scale-invariant choice
    that gives a power spectrum close to f⁻². Centres form a uniform Poisson process on the plane; only discs that
    can touch the image are drawn: a disc of radius r is kept when its centre lies in the image box grown by r, so
    radii are drawn from ``r⁻³ (H + 2r)(W + 2r)`` (a mixture of three power laws) with the centre uniform in that
    box, which is the exact restriction of the plane process. Colours are uniform in [-1, 1] per channel
    (``color="uniform"``) or one uniform gray level (``color="gray"``). Discs come in chunks of a fixed schedule
    (4 × 128, 4 × 256, ... per image, stream ``deadleaves/<split>/<chunk>``), so an image never depends on its
    batch; pixels still uncovered after ``max_discs`` discs (very rare) take the colour of a last, infinite leaf.
    """

    OPTIONS = {"rmin": 1.0, "rmax": None, "color": "uniform", "max_discs": 100_000}

    def __init__(self, hw, channels, split, seed, rmin, rmax, color, max_discs):
        rmax = float(max(hw)) if rmax is None else float(rmax)
        if not 0 < float(rmin) < rmax:
            raise ValueError(f"dead leaves need 0 < rmin < rmax (pixels), got rmin={rmin}, rmax={rmax}")
        if color not in ("uniform", "gray"):
            raise ValueError(f"color must be 'uniform' or 'gray', got {color!r}")
        self.hw, self.split, self.seed, self.rmin, self.rmax = hw, split, int(seed), float(rmin), rmax
        self.n_colors = 1 if (color == "gray" or channels == 1) else 3
        self.max_discs = int(max_discs)
        super().__init__("deadleaves", (channels, *hw), None, {"split": split, "seed": seed, "rmin": self.rmin,
                                                                "rmax": rmax, "color": color, "max_discs": max_discs})

    def _radii(self, u_comp: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        h, w = self.hw
        a, b = self.rmin, self.rmax
        # mixture weights: integrals of H·W·r⁻³, 2(H+W)·r⁻², 4·r⁻¹ over [a, b]
        wts = torch.tensor([h * w * (a**-2 - b**-2) / 2, 2 * (h + w) * (1 / a - 1 / b), 4 * math.log(b / a)],
                           dtype=u.dtype)
        cut = wts.cumsum(0) / wts.sum()
        r3 = (a**-2 - u * (a**-2 - b**-2)).rsqrt()  # inverse CDFs of the three power laws
        r2 = 1 / (1 / a - u * (1 / a - 1 / b))
        r1 = a * (b / a) ** u
        return torch.where(u_comp < cut[0], r3, torch.where(u_comp < cut[1], r2, r1))

    def _images(self, idx):
        h, w = self.hw
        n, hw_ = len(idx), h * w
        colour = torch.empty(n, hw_, self.n_colors)
        covered = torch.zeros(n, hw_, dtype=torch.bool)
        active = torch.arange(n)  # images with uncovered pixels
        chunk, drawn = 0, 0
        while active.numel() and drawn < self.max_discs:
            k, na = min(128 << min(chunk // 4, 4), self.max_discs - drawn), active.numel()
            u = per_sample_rand(self.seed, f"deadleaves/{self.split}/{chunk}", [idx[a] for a in active.tolist()],
                                (k, 4 + self.n_colors))
            r = self._radii(u[..., 0], u[..., 1])
            cy, cx = -r + u[..., 2] * (h + 2 * r), -r + u[..., 3] * (w + 2 * r)
            first = torch.full((na * hw_,), k, dtype=torch.int64)  # frontmost disc of this chunk at each pixel
            rows, order = torch.arange(na).repeat_interleave(k), torch.arange(k).repeat(na)
            r, cy, cx = r.flatten(), cy.flatten(), cx.flatten()
            lo = 0.0
            for b in _STENCILS:  # small discs only visit a small stencil of pixels: most discs are small
                sel = torch.nonzero((r > lo) & (r <= (b if b else math.inf))).flatten()
                _stamp(first, rows[sel] * hw_, order[sel], cy[sel], cx[sel], r[sel], b, h, w)
                lo = b or lo
            first = first.view(na, hw_)
            # discs of later chunks lie behind every disc drawn before, so only uncovered pixels take a colour
            new = (first < k) & ~covered[active]
            a_row, pix = torch.nonzero(new, as_tuple=True)
            colour[active[a_row], pix] = u[a_row, first[a_row, pix], 4:] * 2 - 1
            covered[active[a_row], pix] = True
            active = active[~covered[active].all(1)]
            drawn += k
            chunk += 1
        if active.numel():
            bottom = per_sample_rand(self.seed, f"deadleaves/{self.split}/bottom", idx, (self.n_colors,)) * 2 - 1
            colour = torch.where(covered[..., None], colour, bottom[:, None, :])
        x = colour.view(n, h, w, self.n_colors).permute(0, 3, 1, 2)
        return x.expand(-1, self.shape[0], -1, -1)


_STENCILS = (2, 5, 12, None)  # half-widths of the pixel stencils by radius tier; None: the whole image


def _stamp(first, base, order, cy, cx, r, b, h, w):
    """``first[base + pixel] = min(first, order)`` for every pixel centre inside each disc ``(cy, cx, r)``.

    A disc of radius ``r <= b`` centred in pixel ``(floor(cy), floor(cx))`` can only cover pixel centres within
    ``b`` pixels of it, so a ``(2b + 1)²`` stencil is enough; ``b=None`` tests every pixel.
    """
    step = max(1, (1 << 22) // ((2 * b + 1) ** 2 if b else h * w))  # bound the temporaries to some 10 MB
    for s in range(0, r.numel(), step):
        sl = slice(s, s + step)
        if b:
            o = torch.arange(-b, b + 1)
            py, px = cy[sl].floor().long()[:, None] + o, cx[sl].floor().long()[:, None] + o
        else:
            py, px = torch.arange(h).expand(len(r[sl]), h), torch.arange(w).expand(len(r[sl]), w)
        dy2 = (py + 0.5 - cy[sl, None]).square().masked_fill_((py < 0) | (py >= h), math.inf)
        dx2 = (px + 0.5 - cx[sl, None]).square().masked_fill_((px < 0) | (px >= w), math.inf)
        inside = dy2[:, :, None] + dx2[:, None, :] <= r[sl, None, None].square()
        target = base[sl, None, None] + py.clamp(0, h - 1)[:, :, None] * w + px.clamp(0, w - 1)[:, None, :]
        first.scatter_reduce_(0, target[inside], order[sl, None, None].expand_as(inside)[inside], reduce="amin")


# --------------------------------------------------------------------------------------------------------------
# Gaussian random fields and white noise
# --------------------------------------------------------------------------------------------------------------
def _grf_scale2(exponent: float, std: float, hw: tuple[int, int]) -> float:
    """``c²`` giving pixel variance ``(1/HW)·Σ_k c²|f_k|^-exponent = std²`` (full plane, DC left out)."""
    h, w = hw
    f = torch.sqrt(torch.fft.fftfreq(h, dtype=torch.float64)[:, None] ** 2
                   + torch.fft.fftfreq(w, dtype=torch.float64)[None, :] ** 2).flatten()[1:]
    return float(std**2 * h * w / f.pow(-exponent).sum())


def grf_power(freq, exponent: float = 2.0, *, std: float = 0.25,
              resolution: int | tuple[int, int] = 32) -> torch.Tensor:
    """Exact expected per-mode power of the ``grf`` source: ``P(f) = c²·f^-exponent``, and ``P(0) = 0``.

    Same normalisation as :mod:`freqlab.spectral` (``P(k) = |DFT x(k)|²/(H·W)``). ``c`` makes the expected pixel
    variance ``std²``: ``c² = std²·H·W / Σ_{k≠0} |f_k|^-exponent`` over the full-plane modes of ``resolution``.

    Parameters
    ----------
    freq : array-like or tensor of radial frequencies ``|f|`` in cycles/pixel (any shape)

    Returns
    -------
    float64 tensor of the shape of ``freq``: the data spectrum ``P_d(f)`` that a Wiener filter needs.
    """
    freq = torch.as_tensor(freq, dtype=torch.float64)
    c2 = _grf_scale2(float(exponent), float(std), _resolution(resolution))
    return torch.where(freq > 0, c2 * freq.clamp_min(1e-300).pow(-float(exponent)), torch.zeros_like(freq))


def grf_radial_power(exponent: float = 2.0, *, std: float = 0.25, resolution: int | tuple[int, int] = 32,
                     bins=None, n_bins: int | None = None):
    """Exact expected radial power of ``grf`` images in the bins of :func:`freqlab.spectral.radial_power_spectrum`.

    The mean of :func:`grf_power` over the modes of each bin (no window); compare it with the radial spectrum of
    many ``grf`` images computed with the same ``bins``. Returns ``(freq, power)``, float64 ``(n_bins,)`` each.
    """
    h, w = _resolution(resolution)
    binning = radial_binning(h, w, bins=bins, n_bins=n_bins, dtype=torch.float64)
    p = grf_power(radial_frequency(h, w), exponent, std=std, resolution=(h, w))
    # the binning matrix maps the real view (|X|² = Xr² + Xi²) to bin means: put the power in the "real" slot
    flat = torch.stack([p, torch.zeros_like(p)], -1).flatten()
    return binning.freq, flat @ binning.matrix


class GaussianRandomField(DataSource):
    """Gaussian random fields with power spectrum exactly :func:`grf_power` (``∝ f^-exponent``, zero mean).

    Per-index white noise ``n ~ N(0, 1)`` of shape ``(C, H, W)`` is filtered in Fourier space by
    ``c·|f|^(-exponent/2)`` with the DC mode set to zero (so every image has zero mean and the spectrum has no
    singularity); channels are independent. The pixel marginal is ``N(0, std²)``; values are not clipped.
    """

    OPTIONS = {"exponent": 2.0, "std": 0.25}

    def __init__(self, hw, channels, split, seed, exponent, std):
        self.hw, self.split, self.seed, self.exponent, self.std = hw, split, int(seed), float(exponent), float(std)
        if not (math.isfinite(self.exponent) and self.std > 0):
            raise ValueError(f"grf needs a finite exponent and std > 0, got exponent={exponent}, std={std}")
        self.amplitude = grf_power(radial_frequency(*hw), self.exponent, std=self.std, resolution=hw).sqrt().float()
        super().__init__("grf", (channels, *hw), None, {"split": split, "seed": seed, "exponent": self.exponent,
                                                         "std": self.std})

    def _images(self, idx):
        noise = per_sample_randn(self.seed, f"grf/{self.split}", idx, self.shape)
        return torch.fft.irfft2(torch.fft.rfft2(noise) * self.amplitude, s=self.hw)


class WhiteNoise(DataSource):
    """White Gaussian noise ``N(0, std²)`` per pixel and channel (flat spectrum at ``std²``), not clipped."""

    OPTIONS = {"std": 0.5}

    def __init__(self, hw, channels, split, seed, std):
        if not float(std) > 0:
            raise ValueError(f"std must be positive, got {std}")
        self.split, self.seed, self.std = split, int(seed), float(std)
        super().__init__("white", (channels, *hw), None, {"split": split, "seed": seed, "std": self.std})

    def _images(self, idx):
        return per_sample_randn(self.seed, f"white/{self.split}", idx, self.shape) * self.std


# --------------------------------------------------------------------------------------------------------------
# the factory
# --------------------------------------------------------------------------------------------------------------
_PROCEDURAL = {"natural": NaturalPatches, "deadleaves": DeadLeaves, "grf": GaussianRandomField, "white": WhiteNoise}


def _typed_option(source: str, key: str, value, default):
    """``value`` as the type of the option's default (bool, int, float); one clear error naming the option."""
    kind = type(default)
    if default is None or kind is str or isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    try:
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, (int, np.integer)) and value in (0, 1):
                return bool(value)
            raise ValueError
        if kind is int and (isinstance(value, bool) or float(value) != int(float(value))):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"data option {key}={value!r} of source {source!r} must be a {kind.__name__} "
                         f"(default {default!r})") from None


def _resolution(resolution) -> tuple[int, int]:
    """``int`` or ``(H, W)`` → ``(H, W)`` of ints >= 4 (the smallest size the spectra accept)."""
    hw = (resolution, resolution) if isinstance(resolution, (int, np.integer)) else resolution
    ok = isinstance(hw, (tuple, list)) and len(hw) == 2
    ok = ok and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 4 for v in hw)
    if not ok:
        raise ValueError(f"resolution must be an int or (H, W) of ints >= 4, got {resolution!r}")
    return int(hw[0]), int(hw[1])


def source_for_path(path: str | Path, **kwargs) -> DataSource | NativeImages:
    """The data source of a path, labelled by its name: a CIFAR-10 python folder (``data_batch_1``/``test_batch``)
    is ``cifar10``, another folder ``folder``, a ``.npy``/``.npz`` file ``array``. ``kwargs`` as :func:`make_source`
    (``tiles=True``: folders only; ``native=True``: every image at its own size, :mod:`freqlab.data.native`)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data path {str(path)!r} does not exist")
    if path.is_dir():
        kind = "cifar10" if (path / "data_batch_1").is_file() or (path / "test_batch").is_file() else "folder"
    elif path.suffix.lower() in (".npy", ".npz"):
        kind = "array"
    else:
        raise ValueError(f"data path {str(path)!r} is neither a folder of images nor a .npy/.npz array")
    tiles, native = bool(kwargs.pop("tiles", False)), bool(kwargs.pop("native", False))
    if tiles and native:
        raise ValueError("native and tiles exclude each other: native measures each whole image at its own size, "
                         "tiles cut images into tiles of the resolution")
    if tiles and kind != "folder":
        raise ValueError(f"tiles apply to folders of images, not to the {kind} data at {str(path)!r}")
    if native:
        source = native_source(kind, path, **kwargs)
    else:
        source = make_source(kind, path=str(path), **({"tiles": True} if tiles else {}), **kwargs)
    source.name = path.stem if path.is_file() else path.resolve().name
    return source


def make_source(name: str, *, resolution: int | tuple[int, int] = 32, grayscale: bool = False, split: str = "train",
                seed: int = 0, path: str | None = None, **options) -> DataSource:
    """Make the data source ``name`` (one of :data:`DATA_SOURCES`).

    Parameters
    ----------
    name : str
    resolution : int or (H, W)          output size in pixels; non-square allowed
    grayscale : bool                    C = 1 if True, else C = 3
    split : "train" or "test"           photographs (natural), batches (cifar10), random stream (procedural)
    seed : int                          procedural sources only: image i depends on (seed, split, i)
    path : str or None                  folder / cifar10 / array only: where the images are
    **options                           per source: natural ``max_crop`` (0.5), ``flip`` (True); deadleaves
        ``rmin`` (1.0 px), ``rmax`` (None = max(H, W) px), ``color`` ("uniform" | "gray"), ``max_discs``; grf
        ``exponent`` (2.0), ``std`` (0.25); white ``std`` (0.5); array ``key``, ``layout``, ``value_range``.

    Returns
    -------
    DataSource whose ``images(indices)`` are ``(len, C, H, W)`` float32 in [-1, 1] (grf/white: Gaussian, unclipped).

    Examples
    --------
    >>> src = make_source("natural", resolution=(32, 48), split="test")
    >>> src.sample(8).shape
    torch.Size([8, 3, 32, 48])
    """
    if name not in DATA_SOURCES:
        raise ValueError(f"unknown data source {name!r}; choose one of {', '.join(DATA_SOURCES)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    hw, channels = _resolution(resolution), 1 if grayscale else 3
    defaults = _PROCEDURAL[name].OPTIONS if name in _PROCEDURAL else FILE_OPTIONS[name]
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        accepted = ", ".join(defaults) or "none"
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for data source {name!r}; accepted: {accepted}")
    opts = {**defaults, **{k: _typed_option(name, k, v, defaults[k]) for k, v in options.items()}}
    if name in _PROCEDURAL:
        if path is not None:
            raise ValueError(f"data source {name!r} is generated, it takes no path (got {path!r})")
        return _PROCEDURAL[name](hw, channels, split, seed, **opts)
    if path is None:
        raise ValueError(f"data source {name!r} needs path=... (a {'directory' if name != 'array' else 'file'})")
    path = Path(path).expanduser()
    if name == "folder":
        data = load_folder(path, hw, channels, **opts)
    elif name == "cifar10":
        data = load_cifar10(path, split)
    else:
        data = load_array(path, **opts)
    attrs = {"path": str(path), **({"split": split} if name == "cifar10" else {}),
             **{k: v for k, v in opts.items() if v is not None}}
    return ArraySource(name, data, hw, channels, attrs)
