"""Data sources: deterministic, index-addressable image sets as ``(N, C, H, W)`` float32 tensors in [-1, 1].

Every source is a :class:`DataSource` made by :func:`make_source`. Image ``i`` depends only on the source's
settings, its ``seed`` and ``i`` (procedural sources draw per index with :mod:`freqlab.rng`), so
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

Ranges: every source is in [-1, 1] except ``grf`` and ``white``, which are Gaussian and not clipped (clipping
would change their spectrum, which is the point of having them): ``white`` (std 0.5) leaves [-1, 1] at about 5 %
of pixels, ``grf`` (std 0.25) at about 6e-5 of pixels. ``split`` selects photographs for ``natural`` and batches
for ``cifar10``; it changes the random stream of the procedural sources and is not used by ``folder`` and
``array`` (choose the files with ``path``). Grayscale conversion is luma ``0.299 R + 0.587 G + 0.114 B``
(ITU-R 601, as PIL's ``convert("L")``); a one-channel image in RGB mode is replicated to three channels.
"""

from __future__ import annotations

import codecs
import functools
import math
import pickle
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .rng import per_sample_rand, per_sample_randn
from .spectral import radial_binning, radial_frequency

__all__ = [
    "DATA_SOURCES",
    "NATURAL_PHOTOS",
    "DataSource",
    "DataIndexError",
    "make_source",
    "source_for_path",
    "grf_power",
    "grf_radial_power",
]

DATA_SOURCES: tuple[str, ...] = ("natural", "deadleaves", "grf", "white", "folder", "cifar10", "array")
SPLITS = ("train", "test")
#: Photographs of the ``natural`` source, split by photograph so that test crops come from unseen photographs.
#: Synthetic (logo, colorwheel, checkerboard, phantom), binary (horse, blobs), text (page, text), tiny, medical or
#: microscopy images and the ones skimage must download (eagle, lily, ...) are left out. ``cat`` duplicates chelsea.
NATURAL_PHOTOS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "camera", "coffee", "chelsea", "rocket", "brick", "grass", "moon", "coins", "clock",
              "china"),
    "test": ("flower", "gravel", "motorcycle"),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_LUMA = (0.299, 0.587, 0.114)


class DataIndexError(IndexError, ValueError):
    """An index outside a finite source (an IndexError, and a ValueError so the CLI reports it in one line)."""


# --------------------------------------------------------------------------------------------------------------
# the interface
# --------------------------------------------------------------------------------------------------------------
class DataSource:
    """A deterministic, index-addressable set of images.

    Attributes
    ----------
    name : str            the :func:`make_source` name, e.g. ``"natural"``
    shape : (C, H, W)     C is 1 (grayscale) or 3
    size : int or None    number of images; None for unlimited procedural sources
    attrs : dict          settings as strings and numbers, ready for an xarray ``attrs``
    """

    def __init__(self, name: str, shape: tuple[int, int, int], size: int | None, attrs: dict):
        self.name, self.shape, self.size = name, tuple(int(s) for s in shape), size
        self.attrs = {"source": name, "channels": self.shape[0], "height": self.shape[1], "width": self.shape[2],
                      **{k: v if isinstance(v, (int, float, str)) else str(v) for k, v in attrs.items()}}

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        """Images ``indices`` as a ``(len(indices), C, H, W)`` float32 CPU tensor in [-1, 1].

        Raises :class:`DataIndexError` for a negative index or, for finite sources, one ``>= size``.
        """
        idx = [int(i) for i in (indices.tolist() if hasattr(indices, "tolist") else indices)]
        bad = [i for i in idx if i < 0 or (self.size is not None and i >= self.size)]
        if bad:
            limit = "non-negative" if self.size is None else f"in 0..{self.size - 1} ({self.size} images)"
            raise DataIndexError(f"index {bad[0]} is out of range for data source {self.name!r}: "
                                 f"indices must be {limit}")
        if not idx:
            return torch.empty((0, *self.shape), dtype=torch.float32)
        return self._images(idx).to(torch.float32).contiguous()

    def sample(self, n: int, start: int = 0) -> torch.Tensor:
        """``images(range(start, start + n))``; raises ValueError if a finite source has fewer images."""
        if int(n) < 0 or int(start) < 0:
            raise ValueError(f"n and start must be non-negative, got n={n}, start={start}")
        if self.size is not None and start + n > self.size:
            raise ValueError(f"cannot take {n} images from index {start}: data source {self.name!r} has only "
                             f"{self.size} images")
        return self.images(range(int(start), int(start) + int(n)))

    def _images(self, idx: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, shape={self.shape}, size={self.size})"


def _to_channels(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(N, C0, H, W)`` → ``(N, c, H, W)``: replicate gray to RGB, or RGB to luma."""
    if x.shape[1] == c:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, c, -1, -1)
    luma = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * luma).sum(1, keepdim=True)


def _fit(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Centre-crop float ``(N, C, H0, W0)`` to the aspect ratio of ``hw``, then resize with antialiasing."""
    h, w = hw
    h0, w0 = x.shape[-2:]
    if (h0, w0) == (h, w):
        return x
    if h0 * w > w0 * h:  # too tall
        ch = max(1, round(w0 * h / w))
        x = x[..., (h0 - ch) // 2:(h0 - ch) // 2 + ch, :]
    elif h0 * w < w0 * h:  # too wide
        cw = max(1, round(h0 * w / h))
        x = x[..., (w0 - cw) // 2:(w0 - cw) // 2 + cw]
    # bilinear with antialias is a triangle filter on downsampling (no ringing, stays inside the input range)
    return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)


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
        return _to_channels(out, self.shape[0])


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
# finite sources: one array held once, converted per batch
# --------------------------------------------------------------------------------------------------------------
class ArraySource(DataSource):
    """Images held once as ``(N, C0, H0, W0)``: uint8 (0..255) or float32 in [-1, 1].

    Each batch is converted to float, to ``C`` channels, centre-cropped to the aspect ratio and resized with
    antialiasing to the resolution (only when it differs).
    """

    def __init__(self, name, data: torch.Tensor, hw, channels, attrs):
        h0, w0 = data.shape[-2:]
        if h0 < hw[0] or w0 < hw[1]:
            raise ValueError(f"{name} images are {h0}x{w0}, smaller than the resolution {hw[0]}x{hw[1]}: upsampling "
                             "adds no high frequencies, so the spectra would be wrong; choose a resolution of at "
                             f"most {h0}x{w0}")
        self.data, self.hw = data, hw
        super().__init__(name, (channels, *hw), int(data.shape[0]), attrs)

    def _images(self, idx):
        x = self.data[torch.as_tensor(idx)]
        x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()
        return _fit(_to_channels(x, self.shape[0]), self.hw).clamp(-1.0, 1.0)


#: Full scale of PIL's high-bit-depth modes: 16-bit grayscale PNG/TIFF open as ``I;16*`` (or ``I`` holding 16-bit
#: values). Pillow decodes 16-bit *RGB* PNGs to 8-bit RGB itself: their low byte is lost before freqlab sees them.
_FULL_SCALE = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}


def _tile(image: np.ndarray, hw) -> np.ndarray:
    """The non-overlapping ``hw`` tiles of ``image`` ``(H0, W0[, C])`` on a centred grid, ``(k, h, w[, C])``."""
    (h, w), (h0, w0) = hw, image.shape[:2]
    rows, cols = h0 // h, w0 // w
    top, left = (h0 - rows * h) // 2, (w0 - cols * w) // 2
    return np.stack([image[top + i * h: top + (i + 1) * h, left + j * w: left + (j + 1) * w]
                     for i in range(rows) for j in range(cols)])


def _read_image(path: Path, hw, channels, tiles: bool = False) -> np.ndarray:
    """One image file fitted to ``hw`` (centre crop to its aspect, then downsampling): uint8 ``(H, W[, 3])``, or
    float32 in [0, 1] for 16-bit grayscale images (scaled by their bit depth, never clipped to 8 bits). With ``tiles``, its
    ``hw`` tiles at the file's own scale instead, ``(k, H, W[, 3])``: nothing resampled."""
    from PIL import Image, ImageOps

    h, w = hw
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.width < w or im.height < h:
            raise ValueError(f"image {im.width}x{im.height} is smaller than the resolution {w}x{h} (upsampling adds no "
                             "high frequencies)")
        if im.mode not in _FULL_SCALE and im.mode != "F":
            im = im.convert("L" if channels == 1 else "RGB")
            if tiles:
                return _tile(np.asarray(im), hw)
            return np.asarray(ImageOps.fit(im, (w, h), method=Image.Resampling.LANCZOS))
        values = np.asarray(im).astype(np.float64)
        if im.mode == "F" and not (values.min() >= 0.0 and values.max() <= 1.0):
            raise ValueError(f"float image with values in [{values.min():.4g}, {values.max():.4g}]; freqlab reads "
                             "float images in [0, 1]")
        full = 1.0 if im.mode == "F" else _FULL_SCALE[im.mode]
        if values.max() > full:
            raise ValueError(f"{im.mode} image with values up to {values.max():.0f}, above 16 bits")
        if tiles:
            fitted = _tile((values / full).astype(np.float32), hw)
        else:
            gray = Image.fromarray((values / full).astype(np.float32))  # mode "F"
            fitted = np.asarray(ImageOps.fit(gray, (w, h), method=Image.Resampling.LANCZOS), dtype=np.float32)
            fitted = fitted.clip(0.0, 1.0)  # Lanczos overshoots at edges, as it does (and is clipped) in 8 bits
        return fitted if channels == 1 else np.repeat(fitted[..., None], 3, axis=-1)


def _load_folder(root: Path, hw, channels, tiles: bool = False) -> torch.Tensor:
    """Every image file under ``root`` (recursively, sorted by relative path) as ``(N, C, H, W)``: uint8, or float32
    in [-1, 1] when a file has more than 8 bits per sample (16-bit grayscale PNG or TIFF, scaled by its bit depth). With
    ``tiles``, every ``hw`` tile of every file at its own scale (images of any sizes, nothing resampled)."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist (or is not a directory)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"image folder {str(root)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    arrays, failed = [], []
    for f in files:
        try:
            read = _read_image(f, hw, channels, tiles)
            arrays.extend(read if tiles else [read])
        except Exception as err:  # PIL raises many kinds for broken files; each one is reported below
            failed.append((f, err))
    if not arrays:
        raise ValueError(f"none of the {len(files)} image files in {str(root)!r} could be read "
                         f"(first: {failed[0][0].name}: {failed[0][1]})")
    if failed:
        warnings.warn(f"skipped {len(failed)} unreadable image file(s) of {len(files)} in {str(root)!r} "
                      f"(first: {failed[0][0].name}: {failed[0][1]})", stacklevel=3)
    if any(a.dtype != np.uint8 for a in arrays):  # one 16-bit file: keep every image's precision, as float
        arrays = [a.astype(np.float32) * 2.0 - 1.0 if a.dtype != np.uint8 else a.astype(np.float32) / 127.5 - 1.0
                  for a in arrays]
    x = torch.from_numpy(np.stack(arrays))
    return x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: any other global (which could run code) is refused.

    Allowed: numpy's array reconstructors under their numpy 1 and 2 module names (``_reconstruct`` for protocols
    up to 4, ``_frombuffer`` for protocol 5), ``ndarray``, ``dtype``, and ``_codecs.encode``, which protocol-2
    pickles written by Python 3 use to store bytes.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
        ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
        ("numpy.core.numeric", "_frombuffer"): np.ndarray.__reduce_ex__(np.zeros(1), 5)[0],
        ("numpy._core.numeric", "_frombuffer"): np.ndarray.__reduce_ex__(np.zeros(1), 5)[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise ValueError(f"refusing to unpickle {module}.{name}: a CIFAR-10 batch holds only numpy arrays, so this "
                         "file is not a genuine batch (pickles can run code; do not load it)")


def _load_cifar10(path: Path, split: str) -> torch.Tensor:
    """CIFAR-10 python batches as uint8 ``(N, 3, 32, 32)``."""
    if not path.is_dir():
        raise FileNotFoundError(f"CIFAR-10 directory {str(path)!r} does not exist")
    if (path / "cifar-10-batches-py").is_dir():
        path = path / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 directory {str(path)!r} lacks {', '.join(missing)}; expected the "
                                "python version ('cifar-10-batches-py': data_batch_1..5 and test_batch)")
    parts = []
    for n in names:
        with open(path / n, "rb") as fh:
            try:
                batch = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
            except ValueError:  # a refused global: its own message says why
                raise
            except Exception as err:  # noqa: BLE001 - a broken pickle raises many kinds
                raise ValueError(f"{str(path / n)!r} is not a CIFAR-10 batch (unreadable: {type(err).__name__}: "
                                 f"{err})") from None
        data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{str(path / n)!r} is not a CIFAR-10 batch: expected a dict with b'data' uint8 (N, 3072)")
        parts.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
    return torch.cat(parts)


def _load_array(path: Path, key: str | None, layout: str, value_range) -> torch.Tensor:
    """``.npy``/``.npz`` images as uint8 or float32-in-[-1, 1] ``(N, C, H, W)``.

    Layout: rank 3 is ``(N, H, W)``; rank 4 is ``(N, H, W, C)`` when the last axis has 1, 3 or 4 entries, else
    ``(N, C, H, W)`` when axis 1 has (override with ``layout="NHWC"``/``"NCHW"``); a 4th (alpha) channel is dropped.
    Range (override with ``value_range=(lo, hi)``): uint8 is 0..255; other arrays by their values: within [0, 1]
    → [0, 1], within [-1, 1] → [-1, 1], within [0, 255] → 0..255, anything else is an error.
    """
    if not path.is_file():
        raise FileNotFoundError(f"array file {str(path)!r} does not exist")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK\x03\x04"):
        raise ValueError(f"{str(path)!r} is not a NumPy .npy or .npz file (it starts with neither header); save "
                         "images with numpy.save or numpy.savez")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                keys = list(loaded.keys())
                if key is None:
                    key = keys[0] if len(keys) == 1 else next((k for k in ("images", "x", "arr_0") if k in keys),
                                                              None)
                if key not in keys:
                    raise KeyError(key)
                arr = loaded[key]
        else:
            arr = loaded
    except KeyError:
        raise ValueError(f"{str(path)!r} holds arrays {keys}; choose one with the option key=...") from None
    except ValueError as err:
        if "pickled" in str(err) or "Object arrays" in str(err):
            raise ValueError(f"{str(path)!r} holds Python objects, not numbers (an object array); freqlab reads "
                             "numeric arrays only and never unpickles") from None
        raise ValueError(f"cannot read {str(path)!r}: truncated or corrupt ({err})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"cannot read {str(path)!r}: truncated or corrupt ({type(err).__name__}: {err})") from None
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{str(path)!r}: member {key!r} is not a NumPy array (a zip of other files?); save images with "
                         "numpy.savez")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if layout == "auto":
            layout = "NHWC" if arr.shape[-1] in (1, 3, 4) else "NCHW" if arr.shape[1] in (1, 3, 4) else None
        if layout not in ("NHWC", "NCHW"):
            raise ValueError(f"cannot tell the channel axis of {str(path)!r} with shape {arr.shape}: pass "
                             "layout='NHWC' or 'NCHW' (channels must be 1, 3 or 4)")
        arr = arr.transpose(0, 3, 1, 2) if layout == "NHWC" else arr
        if arr.shape[1] not in (1, 3, 4):
            raise ValueError(f"{str(path)!r} with shape {arr.shape} has {arr.shape[1]} channels; expected 1, 3 or 4")
        arr = arr[:, :3]
    else:
        raise ValueError(f"{str(path)!r} holds an array of shape {arr.shape}; images must be (N, H, W, C), "
                         "(N, C, H, W) or (N, H, W)")
    if arr.shape[0] == 0:
        raise ValueError(f"{str(path)!r} holds no images (shape {arr.shape})")
    if value_range is None and arr.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(arr))
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{str(path)!r} has dtype {arr.dtype}; expected uint8 or floating-point images")
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{str(path)!r} contains NaN or Inf values")
    if value_range is None:
        lo, hi = float(x.min()), float(x.max())
        ranges = [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)]
        value_range = next((r for r in ranges if r[0] <= lo and hi <= r[1]), None)
        if value_range is None:
            raise ValueError(f"{str(path)!r} has values in [{lo:g}, {hi:g}], which is none of [0, 1], [-1, 1], "
                             "[0, 255]; rescale it or pass value_range=(lo, hi)")
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (lo, hi) with hi > lo, got {value_range!r}")
    return (x - lo).mul_(2.0 / (hi - lo)).sub_(1.0).clamp_(-1.0, 1.0)


# --------------------------------------------------------------------------------------------------------------
# the factory
# --------------------------------------------------------------------------------------------------------------
_PROCEDURAL = {"natural": NaturalPatches, "deadleaves": DeadLeaves, "grf": GaussianRandomField, "white": WhiteNoise}
_FILE_OPTIONS = {"folder": {"tiles": False}, "cifar10": {},
                 "array": {"key": None, "layout": "auto", "value_range": None}}


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


def source_for_path(path: str | Path, **kwargs) -> DataSource:
    """The data source of a path, labelled by its name: a CIFAR-10 python folder (``data_batch_1``/``test_batch``)
    is ``cifar10``, another folder ``folder``, a ``.npy``/``.npz`` file ``array``. ``kwargs`` as :func:`make_source`
    (``tiles=True``: folders only)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data path {str(path)!r} does not exist")
    if path.is_dir():
        kind = "cifar10" if (path / "data_batch_1").is_file() or (path / "test_batch").is_file() else "folder"
    elif path.suffix.lower() in (".npy", ".npz"):
        kind = "array"
    else:
        raise ValueError(f"data path {str(path)!r} is neither a folder of images nor a .npy/.npz array")
    tiles = bool(kwargs.pop("tiles", False))
    if tiles and kind != "folder":
        raise ValueError(f"tiles apply to folders of images, not to the {kind} data at {str(path)!r}")
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
    defaults = _PROCEDURAL[name].OPTIONS if name in _PROCEDURAL else _FILE_OPTIONS[name]
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
        data = _load_folder(path, hw, channels, **opts)
    elif name == "cifar10":
        data = _load_cifar10(path, split)
    else:
        data = _load_array(path, **opts)
    attrs = {"path": str(path), **({"split": split} if name == "cifar10" else {}),
             **{k: v for k, v in opts.items() if v is not None}}
    return ArraySource(name, data, hw, channels, attrs)
