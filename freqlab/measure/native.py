"""The native mode of the data spectra: every image measured at its own size, on one common frequency axis.

Each image is analysed as freqlab analyses any image (:mod:`freqlab.measure.core`): its mean removed, the window of its
own ``H × W`` applied, ``rfft2`` at ``H × W``, per-mode power ``|DFT(w·x)(k)|² / (H·W·mean(w²))`` (white noise of
variance ``s²`` is flat at ``s²`` whatever the size), radial frequency ``|f| = √((kx/W)² + (ky/H)²)`` cycles/pixel.
The only difference is the binning: the modes of every image are averaged into the bins of :func:`common_axis`,
shared by all images and sources of a run, instead of the bins of its own size. A larger image puts more of its
modes into each bin (its spectrum is less noisy), but every image weighs the same in the mean over images.

Images are grouped by shape and read one batch of one shape at a time (at most :data:`BATCH_VALUES` pixel values
per batch), so a folder of photographs never sits in memory at full size.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import torch

from freqlab import spectral
from freqlab.data.base import DataSource
from freqlab.data.native import NativeImages, shape_groups, sizes_text
from freqlab.measure import core as measure
from freqlab.measure.conventions import WINDOW

__all__ = ["BATCH_VALUES", "Axis", "OnAxis", "common_axis", "default_fit_range", "native_attrs", "native_batches",
           "run_axis"]

#: A batch of the native mode holds at most this many values ``N·C·H·W`` (a larger image is read alone).
BATCH_VALUES = 2**24


class Axis(NamedTuple):
    """The frequency axis of a native run: bins of width ``1/size`` centred on ``k/size``, ``k = 0 .. size//2``
    (the default bins of a ``size × size`` image), ``edges`` float64 from 0 (the DC bin is ``[0, 0.5/size)``)."""

    size: int
    edges: torch.Tensor
    freq: torch.Tensor


def common_axis(size: int) -> Axis:
    """The axis of a run whose smallest image has the longer side ``size``: every bin up to 0.5 cycles/pixel then
    holds at least one mode of every image (the modes along an image's longer side are at most ``1/size`` apart)."""
    if size < 4:
        raise ValueError(f"the common frequency axis needs images of at least 4 pixels on a side, got {size}")
    edges = (torch.arange(size // 2 + 2, dtype=torch.float64) - 0.5) / size
    # the centres as the fixed-size analysis reports them (float32 bins): the same freq coordinate, and the same bins
    # in a fit range, as a run at size x size
    centres = (0.5 * (edges[:-1] + edges[1:])).float().double()
    return Axis(int(size), edges.clamp_min(0.0), centres)


def default_fit_range(size: int) -> tuple[float, float]:
    """The slope's default fit range for bins of width ``1/size``: from ``2/size`` (past the DC bin and the first
    one) to 0.4 cycles/pixel (below the band near Nyquist where downsampling filters act)."""
    return 2.0 / size, 0.4


def run_axis(made, counts: list[int], labels: list[str], fit_range) -> Axis:
    """The common axis of a native run (the smallest longer side of any image), checked: the fit range must keep at
    least 3 of its bins (an error naming the image that sets it), and a few small images that coarsen it for
    every other image are named in a warning."""
    longer = {label: [max(s) for s in sizes_of(src, n)] for src, n, label in zip(made, counts, labels)}
    every = np.concatenate([np.asarray(v) for v in longer.values()])
    axis = common_axis(int(every.min()))
    fmin, fmax = fit_range if fit_range is not None else default_fit_range(axis.size)
    smallest = next(label for label, v in longer.items() if min(v) == axis.size)
    if int(((axis.freq > 0) & (axis.freq >= fmin) & (axis.freq <= fmax)).sum()) < 3:
        raise ValueError(f"an image of {smallest!r} with a longer side of {axis.size} px sets the common frequency "
                         f"axis (bins of 1/{axis.size} cycles/pixel), which leaves fewer than 3 bins in the slope's "
                         f"fit range [{fmin:.3g}, {fmax:.3g}]; leave out the smallest images")
    small = int((every < 0.5 * np.median(every)).sum())
    if small:
        warnings.warn(f"{small} of {every.size} images have a longer side under half the median "
                      f"({np.median(every):.0f} px); the smallest, in {smallest!r} ({axis.size} px), sets the common "
                      f"axis for every image (bins of 1/{axis.size} cycles/pixel)", stacklevel=3)
    return axis


class OnAxis(measure.Analysis):
    """:class:`freqlab.measure.core.Analysis` of one image shape whose radial spectra fall on the bins of an
    :class:`Axis`. The binning is a scatter-add over the modes, not the fixed-size analysis's dense bin matrix
    (``H·(W/2+1) × n_bins`` values: tens of GB for a photograph). Left out: corners beyond 0.5 cycles/pixel, and a
    larger image's non-DC modes below the axis's first bin (bin 0 is the DC mode alone, as at a fixed size).

    It sets up its own tables instead of calling ``Analysis.__init__`` and has no ``bin_matrix``: it serves what the
    data spectra use (``fft``, ``radial``, ``radial_cross``, ``band_statistics``), not the sweep's references."""

    def __init__(self, shape, axis: Axis, bands=None, window=WINDOW, device="cpu"):
        c, h, w = (int(s) for s in shape)
        self.shape, self.bands = (c, h, w), spectral.resolve_bands(bands)
        self.window = spectral.make_window(window, h, w, device=device, dtype=torch.float32)
        self.norm = float(h * w) * (float(self.window.double().square().mean()) if self.window is not None else 1.0)
        f = spectral.radial_frequency(h, w).flatten()
        n = axis.freq.numel()
        index = (torch.bucketize(f, axis.edges, right=True) - 1).clamp(0, n - 1)  # the last bin is closed
        # a spare bin, dropped: corners beyond Nyquist, and the modes of a larger image below the axis's first
        # non-DC bin (bin 0 holds the DC mode alone, as at a fixed size)
        index[(f > 0.5) | ((f > 0) & (index == 0))] = n
        weights = spectral.halfplane_weights(h, w).flatten()
        counts = torch.zeros(n + 1, dtype=torch.float64).index_add_(0, index, weights)
        self.freq, self.counts = axis.freq, counts[:n].round().to(torch.int64)
        self.index = index.to(device)
        self.scale = (weights / (counts[index].clamp_min(1.0) * self.norm)).to(device, torch.float32)

    def _binned(self, per_mode: torch.Tensor) -> torch.Tensor:
        """Mean over each bin's full-plane modes of a per-mode quantity ``(..., H, Wr)`` → ``(..., n_bins)``."""
        values = per_mode.flatten(-2) * self.scale
        out = values.new_zeros(*values.shape[:-1], self.freq.numel() + 1)
        return out.index_add_(-1, self.index, values)[..., :-1]

    def radial(self, fx: torch.Tensor) -> torch.Tensor:
        return self._binned(spectral.abs2(fx))

    def radial_cross(self, fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
        return self._binned(spectral.cross_power(fx, fy))


def channels_of(src: DataSource | NativeImages) -> int:
    return src.channels if isinstance(src, NativeImages) else src.shape[0]


def sizes_of(src: DataSource | NativeImages, n: int) -> list[tuple[int, int]]:
    """``(H, W)`` of the first ``n`` images of ``src``."""
    return src.sizes[:n] if isinstance(src, NativeImages) else [tuple(src.shape[1:])] * n


def native_batches(src: DataSource | NativeImages, n: int, axis: Axis, bands, window, batch_size: int, device):
    """The first ``n`` images of ``src`` one shape at a time: ``(OnAxis of the shape, indices, images)`` per batch
    of at most ``batch_size`` images and :data:`BATCH_VALUES` values (at least one image)."""
    for (h, w), idx in shape_groups(src, n):
        analysis = OnAxis((channels_of(src), h, w), axis, bands, window, device)  # one shape's tables at a time
        step = max(1, min(batch_size, BATCH_VALUES // (channels_of(src) * h * w)))
        for k in range(0, len(idx), step):
            chunk = idx[k:k + step]
            yield analysis, torch.tensor(chunk), src.images(chunk).to(device)


def native_attrs(made, counts: list[int], labels: list[str], axis: Axis) -> dict:
    """Dataset attributes of a native run: the sizes measured (per source; ``image_size``, for titles, gives the
    smallest and the largest by area), the common axis."""
    per_source = [sizes_of(src, n) for src, n in zip(made, counts)]
    every = sorted({s for sizes in per_source for s in sizes}, key=lambda s: (s[0] * s[1], s))
    lo, hi = (f"{h}×{w}" for h, w in (every[0], every[-1]))
    n = axis.size
    return {
        "image_size": f"own size {lo} px" if lo == hi else f"own sizes {lo} to {hi} px ({len(every)} sizes)",
        "image_sizes": "each image measured at its own size (no crop, no resize), HxW (images): " + "; ".join(
            f"{label}: {sizes_text(sizes)}" for label, sizes in zip(labels, per_source)),
        "axis_size": n,
        "frequency_axis": f"common bins of width 1/{n} cycles/pixel centred on k/{n}, k = 0..{n // 2} ({n}: the "
                          "smallest longer side max(H, W) of any image in the run); each image's modes, "
                          "|f| = sqrt((kx/W)^2 + (ky/H)^2) at its own H x W, averaged into them, every image "
                          f"weighing the same; freq_count: the modes of a {n}x{n} image; band statistics per image "
                          "on its own modes",
    }
