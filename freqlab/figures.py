"""Every figure of a results directory, regenerated from saved results alone (nothing is recomputed).

``make_figures(results_dir, out_dir)`` writes each figure whose inputs exist as PNG and PDF; each entry of
:data:`FIGURES` maps a figure name to a function ``results_dir -> Figure``. The scripts in ``analyses/`` call
:func:`make_figure` for one figure each; ``freqlab figures`` calls :func:`make_figures`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import xarray as xr

from freqlab import plots, results

__all__ = ["FIGURES", "make_figure", "make_figures", "finetune_logs"]

#: Fine-tuning runs of a results directory, in the order figures show them.
FINETUNE_RUNS = ("pretrained", "random", "early")


def _sweep(root: Path) -> xr.Dataset:
    return results.load(root / "sweep.nc")


def finetune_logs(root: Path) -> dict[str, xr.Dataset]:
    """``{name: log}`` of the ``finetune-<name>/finetune.nc`` logs present under ``root``."""
    logs = {}
    for name in FINETUNE_RUNS:
        path = root / f"finetune-{name}" / "finetune.nc"
        if path.exists():
            logs[name] = results.load(path)
    if not logs:
        raise FileNotFoundError(f"no fine-tuning logs (finetune-*/finetune.nc) under {root}")
    return logs


def _sample_grids(root: Path) -> dict[str, list[Path]]:
    grids = {}
    for name in FINETUNE_RUNS:
        folder = root / f"finetune-{name}" / "samples"
        if folder.is_dir():
            grids[name] = sorted(folder.glob("images_seen-*.png"))
    data = root / "finetune-pretrained" / "samples" / "data.png"
    if data.exists():
        grids["data"] = [data]
    if not grids:
        raise FileNotFoundError(f"no sample grids (finetune-*/samples/*.png) under {root}")
    return grids


FIGURES: dict[str, Callable[[Path], plt.Figure]] = {
    "data_spectra": lambda root: plots.data_spectra_figure(results.load(root / "data_spectra.nc")),
    "output_spectra": lambda root: plots.output_spectra_figure(_sweep(root)),
    "relative_power_heatmap": lambda root: plots.relative_power_heatmap(_sweep(root)),
    "cutoff_vs_sigma": lambda root: plots.cutoff_figure(_sweep(root)),
    "transfer_coherence": lambda root: plots.transfer_figure(_sweep(root)),
    "band_statistics": lambda root: plots.band_statistics_figure(_sweep(root)),
    "finetune_statistics": lambda root: plots.finetune_figure(finetune_logs(root)),
    "finetune_samples": lambda root: plots.samples_figure(_sample_grids(root)),
    "frozen_parameters": lambda root: plots.frozen_parameters_figure(finetune_logs(root)["pretrained"]),
}


def make_figure(name: str, results_dir: str | Path, out_dir: str | Path = "figures") -> list[Path]:
    """Draw figure ``name`` from ``results_dir`` and write ``out_dir/name.png`` and ``.pdf``."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose one of {', '.join(FIGURES)}")
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results directory {root} does not exist")
    fig = FIGURES[name](root)
    try:
        return plots.save_figure(fig, Path(out_dir) / name)
    finally:
        plt.close(fig)


def make_figures(results_dir: str | Path, out_dir: str | Path = "figures", names=None) -> list[Path]:
    """Every figure of :data:`FIGURES` (or ``names``) whose inputs exist; says on stderr which were skipped."""
    written = []
    for name in names or FIGURES:
        try:
            written += make_figure(name, results_dir, out_dir)
        except FileNotFoundError as err:
            print(f"figure {name}: skipped ({err})", file=sys.stderr)
    if not written:
        raise FileNotFoundError(f"no results to draw under {results_dir} (expected sweep.nc, finetune-*/, data_spectra.nc)")
    return written
