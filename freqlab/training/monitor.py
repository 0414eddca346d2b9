"""What a training watches while it learns: a fine-tune's spectra and band statistics of a fixed batch of outputs
against the data (the sweep's measurement core) and PNG grids of samples, pre-training's loss per σ range
(:class:`LossBySigmaLog`) with the collapse it watches for (:func:`find_collapse`), and, for both, the stop at a
loss that is no longer finite (:func:`check_finite`, :class:`NonFiniteLossError`)."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import xarray as xr

from freqlab.measure import core as measure
from freqlab.measure.conventions import WINDOW
from freqlab.runtime.outputs import write_atomic

__all__ = ["COLLAPSE_FACTOR", "Collapse", "LOSS_COLUMNS", "LossBySigmaLog", "NonFiniteLossError", "SpectralMonitor",
           "VARIABLE_ATTRS", "assemble_log", "check_finite", "find_collapse", "interval_ratios", "log_row", "save_grid"]


class NonFiniteLossError(RuntimeError, ValueError):
    """The training loss or gradient became NaN or infinite (a ValueError too, so the CLI prints one line)."""


def check_finite(values: Mapping[str, float | torch.Tensor], *, step: int, detail: Callable[[str, float], str],
                 kept: str, advice: str) -> None:
    """Stop a training at a NaN or infinite value: :class:`NonFiniteLossError` for the first of ``values`` (name:
    a float or a 0-d tensor) that is not finite, in one message shape for every training loop,

        ``"the training {name} became non-finite at step {step} ({detail(name, value)}); {kept}; {advice}"``

    which value, at which step (and ``detail``: where, e.g. σ or images seen), what stays on disk, what to do."""
    for name, value in values.items():
        value = float(value)
        if not math.isfinite(value):
            raise NonFiniteLossError(f"the training {name} became non-finite at step {step} ({detail(name, value)}); "
                                     f"{kept}; {advice}")


#: the columns of pre-training's ``loss_by_sigma.csv`` (:class:`LossBySigmaLog`)
LOSS_COLUMNS = ("step", "images_seen", "sigma_lo", "sigma_hi", "count", "loss",
                "skip_baseline", "loss_over_baseline")  # appended later: older logs end at "loss"


#: A pre-training interval whose loss over its skip-only baseline (every σ together) is more than this many times
#: the lowest of an earlier interval has *collapsed*: the denoiser lost what it had learned. A 4,000-step run of
#: ``cpu-small`` at a constant lr of 2e-3 went from 0.43 to 1.05 in one 25-step interval (its lowest before: 0.36)
#: and stayed at 0.78 or above; before that its ups and downs stayed under 1.2 times its lowest.
COLLAPSE_FACTOR = 2.0


@dataclass(frozen=True)
class Collapse:
    """Where a pre-training's loss collapsed: the first interval's last ``step``, its loss over the baseline
    (``ratio``) and the lowest of the intervals before it (``lowest``)."""

    step: int
    ratio: float
    lowest: float

    def message(self, lr: float, schedule: str) -> str:
        """The warning, with what to change given the run's learning rate ``lr`` and its ``schedule``."""
        advice = f"lower --lr (now {lr:g})" + (" or use --lr-schedule cosine" if schedule != "cosine" else "")
        return (f"pre-training collapsed at step {self.step}: the loss rose to {self.ratio:.2f} x the skip-only "
                f"baseline, {self.ratio / self.lowest:.1f} times its lowest ({self.lowest:.2f}), and the checkpoints "
                f"after it may be worse denoisers than those before; {advice}")


def find_collapse(ratios, factor: float = COLLAPSE_FACTOR) -> Collapse | None:
    """The first ``(step, ratio)`` of ``ratios`` (in step order) above ``factor`` times the lowest ratio before
    it, as a :class:`Collapse`; None when there is none."""
    lowest = math.inf
    for step, ratio in ratios:
        if ratio > factor * lowest:
            return Collapse(int(step), float(ratio), lowest)
        lowest = min(lowest, ratio)
    return None


def interval_ratios(path: str | os.PathLike) -> list[tuple[int, float]]:
    """``(step, loss over skip-only baseline)`` of each interval of a ``loss_by_sigma.csv``, every σ bin together
    (weighted by its count); rows without a baseline (logs older than that column) are left out."""
    loss, base = {}, {}
    if not Path(path).is_file():
        return []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if not row.get("skip_baseline"):
                continue
            step, count = int(row["step"]), int(row["count"])
            loss[step] = loss.get(step, 0.0) + count * float(row["loss"])
            base[step] = base.get(step, 0.0) + count * float(row["skip_baseline"])
    return [(step, loss[step] / base[step]) for step in sorted(loss) if base[step] > 0]


class LossBySigmaLog:
    """Pre-training's loss per σ bin, summed over an interval and appended to ``loss_by_sigma.csv`` at its end.

    Next to the loss it sums the skip-only baseline (:func:`freqlab.pretrain.loss.skip_baseline`) of the same images
    and σ draws, so that a row's ``skip_baseline`` is the expectation over exactly what that row's ``loss``
    averages: the σ mix within a bin and the images of the interval both move the baseline, and a fixed reference
    (1, or the baseline at the bin centre) would not. ``ratios`` are the intervals' losses over their baselines (the
    rows kept on a resume, then those written since), from which ``collapse`` (:func:`find_collapse`) is read.
    """

    def __init__(self, path: Path, edges, device):
        self.path = path
        self.edges = torch.tensor([0.0, *edges, math.inf], dtype=torch.float64)
        self.inner = torch.tensor(list(edges), dtype=torch.float64, device=device)
        self.sum = torch.zeros(len(edges) + 1, dtype=torch.float64, device=device)
        self.baseline = torch.zeros_like(self.sum)
        self.count = torch.zeros_like(self.sum)
        self.ratios: list[tuple[int, float]] = []

    @property
    def collapse(self) -> Collapse | None:
        """The run's first collapse (:func:`find_collapse` of ``ratios``), or None."""
        return find_collapse(self.ratios)

    @property
    def lowest(self) -> float:
        """The lowest of ``ratios`` (inf before any)."""
        return min((r for _, r in self.ratios), default=math.inf)

    def add(self, sigma: torch.Tensor, loss: torch.Tensor, baseline: torch.Tensor) -> None:
        """Add per-image ``loss`` and ``baseline`` (both ``(N,)``) to the bins of their ``sigma``."""
        b = torch.bucketize(sigma.detach().double(), self.inner, right=True)
        self.sum.index_add_(0, b, loss.detach().double())
        self.baseline.index_add_(0, b, baseline.detach().double())
        self.count.index_add_(0, b, torch.ones_like(b, dtype=torch.float64))

    def flush(self, step: int, images_seen: int) -> Collapse | None:
        """Append the interval's rows and start the next; the :class:`Collapse` this interval is, if it is the
        first."""
        before = self.collapse
        if float(self.baseline.sum()) > 0:
            self.ratios.append((step, float(self.sum.sum() / self.baseline.sum())))
        s, base, c = self.sum.cpu().tolist(), self.baseline.cpu().tolist(), self.count.cpu().tolist()
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(LOSS_COLUMNS)
            for i, (si, bi, ci) in enumerate(zip(s, base, c)):
                if ci:  # bi > 0: every image's baseline is at least σd²/(σ² + σd²) > 0
                    w.writerow((step, images_seen, f"{self.edges[i].item():g}", f"{self.edges[i + 1].item():g}",
                                int(ci), f"{si / ci:.6g}", f"{bi / ci:.6g}", f"{si / bi:.6g}"))
        self.sum.zero_()
        self.baseline.zero_()
        self.count.zero_()
        return self.collapse if before is None else None

    def truncate(self, step: int) -> None:
        """Drop rows after ``step`` (written after the training state a resume starts from).

        A log written before the baseline columns existed (its header a prefix of :data:`LOSS_COLUMNS`) gets the
        current header, and its old rows keep their values with the new columns left empty (their baseline
        was never summed), so the file stays one table that new rows can be appended to.
        """
        if not self.path.exists():
            return
        with open(self.path, newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows:  # an empty file (killed while creating it): flush writes the header again
            self.path.unlink()
            return
        header = rows[0]
        if tuple(header) != LOSS_COLUMNS[:len(header)]:
            raise ValueError(f"{self.path} has columns {', '.join(header)}, not those of a pre-training loss log "
                             f"({', '.join(LOSS_COLUMNS)}); pass --overwrite to start over")
        width = len(LOSS_COLUMNS)
        keep = [list(LOSS_COLUMNS)] + [r + [""] * (width - len(r)) for r in rows[1:] if r and int(r[0]) <= step]
        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as fh:
                csv.writer(fh).writerows(keep)

        write_atomic(self.path, write)
        self.ratios = interval_ratios(self.path)


class SpectralMonitor:
    """Spectra and per-image band statistics of generated images against a fixed batch of data.

    The same measurement as the sweep (:mod:`freqlab.measure.core`: same window, bands, names and code), so a log row
    of fine-tuning is the same thing as a sweep cell at (σ_max, generate): the data side is computed once from
    ``reference`` ``(M, C, H, W)``; :meth:`measure` streams a batch of outputs ``(N, C, H, W)`` in chunks on the
    CPU, whatever the training device, and compares it with the data (:func:`freqlab.measure.core.compare`).
    """

    def __init__(self, reference: torch.Tensor, bands=None, *, chunk: int = 64, window=WINDOW):
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


#: attrs of the training scalars of a log row (the spectral variables take theirs from freqlab.measure.core.VARIABLES)
VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    "loss_d": {"units": "1", "long_name": "discriminator loss (mean since the previous row, R1 excluded)"},
    "loss_g": {"units": "1", "long_name": "generator loss (mean since the previous row)"},
    "r1_penalty": {"units": "1", "long_name": "lazy R1 penalty incl. its gain (mean over R1 steps since the previous row)"},
    "d_real": {"units": "1", "long_name": "mean discriminator logit on real images"},
    "d_fake": {"units": "1", "long_name": "mean discriminator logit on generated images"},
    "images_per_second": {"units": "images/s", "units_udunits": "s-1",
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
