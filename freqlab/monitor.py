"""What a fine-tune logs while it learns: spectra and band statistics of a fixed batch of outputs against the data
(the sweep's measurement core), and PNG grids of samples."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from freqlab import measure
from freqlab.outputs import write_atomic

__all__ = ["SpectralMonitor", "VARIABLE_ATTRS", "assemble_log", "log_row", "save_grid"]


class SpectralMonitor:
    """Spectra and per-image band statistics of generated images against a fixed batch of data.

    The same measurement as the sweep (:mod:`freqlab.measure`: same window, bands, names and code), so a log row
    of fine-tuning is the same thing as a sweep cell at (σ_max, generate): the data side is computed once from
    ``reference`` ``(M, C, H, W)``; :meth:`measure` streams a batch of outputs ``(N, C, H, W)`` in chunks on the
    CPU, whatever the training device, and compares it with the data (:func:`freqlab.measure.compare`).
    """

    def __init__(self, reference: torch.Tensor, bands=None, *, chunk: int = 64, window=measure.WINDOW):
        self.an = measure.Analysis(tuple(reference.shape[1:]), bands, window, "cpu")
        self.bands = self.an.bands
        self.chunk = int(chunk)
        self.data = self._stats(reference, "data images")

    def _stats(self, images: torch.Tensor, what: str) -> measure.ImageStats:
        st = measure.ImageStats(self.an, images.shape[0])
        for start in range(0, images.shape[0], self.chunk):
            x = images[start: start + self.chunk].detach().to("cpu", torch.float32)
            st.update(self.an, x, slice(start, start + x.shape[0]), what=what)
        return st

    def measure(self, images: torch.Tensor) -> dict[str, tuple]:
        """``{name: (dims, values, attrs)}`` of ``images`` against the data (dims without images_seen)."""
        return measure.to_variables(measure.compare(self._stats(images, "generated images"), self.data, self.an))

    def reference_dataset(self) -> xr.Dataset:
        """The data side (``data_power``, ``data_band_*`` ...) with the shared coords ``channel``, ``freq``,
        ``band``."""
        return xr.Dataset(measure.to_variables(measure.data_variables(self.data)), coords=measure.coords(self.an))


def save_grid(images: torch.Tensor, path: str | os.PathLike, *, nrow: int | None = None, pad: int = 1, scale: int = 1) -> Path:
    """Write images ``(N, C, H, W)`` in [-1, 1] (clamped) as one PNG grid, ``nrow`` per row (default √N).

    C = 1 gives a greyscale PNG, C = 3 RGB. ``scale`` enlarges each pixel (nearest neighbour) for viewing. The file
    is written to a temporary name and renamed, so a reader never sees half a PNG.
    """
    from PIL import Image

    x = images.detach().to("cpu", torch.float32).clamp(-1, 1)
    n, c, h, w = x.shape
    if c not in (1, 3):
        raise ValueError(f"a sample grid needs 1 or 3 channels, got {c}")
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = x[i]
    pixels = ((grid + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if scale > 1:
        pixels = pixels.repeat(scale, 0).repeat(scale, 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels[..., 0] if c == 1 else pixels)
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))


#: attrs of the training scalars of a log row (the spectral variables take theirs from freqlab.measure.VARIABLES)
VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    "loss_d": {"units": "1", "long_name": "discriminator loss (mean since the previous row, R1 excluded)"},
    "loss_g": {"units": "1", "long_name": "generator loss (mean since the previous row)"},
    "r1_penalty": {"units": "1", "long_name": "lazy R1 penalty incl. its gain (mean over R1 steps since the previous row)"},
    "d_real": {"units": "1", "long_name": "mean discriminator logit on real images"},
    "d_fake": {"units": "1", "long_name": "mean discriminator logit on generated images"},
    "images_per_second": {"units": "s-1", "freqlab_units": "images/s",
                          "long_name": "training throughput since the previous row (no logging)"},
}


def log_row(images_seen: int, measured: dict, sums: dict) -> xr.Dataset:
    """One row of the log: the measured variables and the training scalars averaged over ``sums`` (the steps
    since the previous row), with dim ``images_seen``."""
    n, n_r1 = sums["n_steps"], sums["n_r1"]
    scalars = {
        "loss_d": sums["loss_d"] / n if n else math.nan,
        "loss_g": sums["loss_g"] / n if n else math.nan,
        "r1_penalty": sums["r1_penalty"] / n_r1 if n_r1 else math.nan,
        "d_real": sums["d_real"] / n if n else math.nan,
        "d_fake": sums["d_fake"] / n if n else math.nan,
        "images_per_second": sums["images"] / sums["seconds"] if sums["seconds"] else math.nan,
    }
    data = dict(measured)
    data.update({k: ((), np.float64(v), VARIABLE_ATTRS[k]) for k, v in scalars.items()})
    return xr.Dataset(data).expand_dims(images_seen=np.array([images_seen], dtype=np.int64))


def assemble_log(rows: list[xr.Dataset], static: xr.Dataset) -> xr.Dataset:
    """The log Dataset: the rows along ``images_seen`` with the static part (data side, parameter breakdown)."""
    ds = xr.concat(rows, dim="images_seen").merge(static)
    ds["images_seen"].attrs.update({"units": "1", "long_name": "images the generator was trained on"})
    ds.attrs = dict(static.attrs)
    return ds
