"""The σ-ablation drawn (``sigma_ablation.nc`` of ``benchmarks/sigma_ablation.py``, :mod:`freqlab.compare.ablation`):
per band, how far each pre-training σ range's D2O-F samples end from the data, a point per seed."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from freqlab.compare.ablation import RANGES, range_text, verdict
from freqlab.plots.style import palette, panels, themed

__all__ = ["ablation_panel", "ablation_figure"]


def ablation_panel(ax: plt.Axes, ds: xr.Dataset, band: str, variable: str = "mmd2") -> None:
    """Into ``ax``: ``variable`` (``mmd2`` or ``lsd_db``) of one band per pre-training range; filled points the D2O-F
    end of each seed, hollow ones the pre-trained one step it started from, bars the means."""
    colours = palette(ds.sizes["seed"])
    for i, name in enumerate(RANGES):
        for stage, dx, filled in (("end", 0.0, True), ("start", 0.3, False)):
            if stage not in ds.stage.values:
                continue
            ys = ds[variable].sel(range=name, stage=stage, band=band).values
            xs = i + dx + np.linspace(-0.08, 0.08, ys.size)
            for x, y, c in zip(xs, ys, colours):
                ax.scatter(x, y, s=28, color=c if filled else "none", edgecolors=c, zorder=3)
            ax.hlines(np.mean(ys), i + dx - 0.13, i + dx + 0.13, color="k" if filled else "0.5", lw=2)
    ax.set_xticks(range(len(RANGES)), [f"{n}\n{range_text(ds, n)}" for n in RANGES], fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if variable == "mmd2":
        ax.text(0.02, 0.98, f"data vs data: {float(ds.mmd2_reference.sel(band=band)):.2g}", transform=ax.transAxes,
                va="top", fontsize=7, color="0.3")
    else:
        ax.set_ylim(bottom=0)


@themed
def ablation_figure(ds: xr.Dataset, *, axes=None) -> np.ndarray:
    """Top row: MMD² to held-out data per band (the criterion's statistic); bottom row: the log-spectral distance of
    the mean spectra (secondary). ``axes``: 2 × n_bands Axes (else a new figure). Returns the Axes drawn on."""
    bands = [str(b) for b in ds.band.values]
    fig, grid, owned = panels(axes, 2, len(bands), figsize=(13, 7), constrained_layout=True)
    for col, band in enumerate(bands):
        ablation_panel(grid[0, col], ds, band, "mmd2")
        ablation_panel(grid[1, col], ds, band, "lsd_db")
        grid[0, col].set_title(f"{band} band" if band != "image" else "whole image (DC excluded)", fontsize=10)
    grid[0, 0].set_ylabel("MMD² to held-out data\n(the criterion's statistic; larger = further)")
    grid[1, 0].set_ylabel("log-spectral distance to the data, dB\n(mean spectra; secondary)")
    if owned:
        colours = palette(ds.sizes["seed"])
        handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=f"seed {int(k)}")
                   for k, c in zip(ds.seed.values, colours)]
        handles += [plt.Line2D([], [], color="k", lw=2, label="D2O-F end (filled), mean"),
                    plt.Line2D([], [], color="0.5", lw=2, label="pre-trained one step it started from (hollow), mean")]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
        fig.suptitle(f"σ-ablation: pre-training σ range vs D2O-F samples, σ_split = {float(ds.attrs['sigma_split']):.3g}"
                     f" ({int(ds.attrs['steps'])} pre-training steps, {ds.sizes['seed']} seeds): "
                     f"{verdict(ds)[1]}", fontsize=11)
    return grid
