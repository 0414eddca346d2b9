"""The multi-step reference drawn: the N-step sampler's output spectrum beside the one-step output's, and the band
power of the sampler's estimate along its steps (a sweep with the ``sample`` mode, :mod:`freqlab.sweep.sample_mode`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from freqlab.measure.conventions import MATCH_DB
from freqlab.plots.style import (
    SIGMA_LABEL,
    axis_size,
    checkpoint_label,
    checkpoint_styles,
    frequency_axis,
    palette,
    panels,
    pick,
    positive_freq,
    themed,
)

__all__ = ["many_vs_one_panel", "trajectory_panel", "sampler_figure"]


def many_vs_one_panel(ax: plt.Axes, ds: xr.Dataset, checkpoints) -> None:
    """Into ``ax``: output / data power (dB) at σ_max of each checkpoint, N-step sample (solid, markers) and one
    step (thin, dotted), with the ±3 dB band a "reached" frequency lies in."""
    smax = float(ds.sigma.max())
    styles = checkpoint_styles(len(checkpoints))
    for style, ck in zip(styles, checkpoints):
        cell = ds.sel(checkpoint=ck, sigma=smax)
        many = positive_freq(cell.sample_relative_power_db.mean("channel"))
        ax.plot(many.freq, many, color=style["color"], marker=style["marker"], ms=4, lw=1.6,
                label=f"{checkpoint_label(ds, ck)}: N steps")
        if "mode" in ds.coords and "generate" in ds.mode.values:
            one = positive_freq(cell.relative_power_db.sel(mode="generate").mean("channel"))
            ax.plot(one.freq, one, color=style["color"], lw=1.0, ls=":", label=f"{checkpoint_label(ds, ck)}: one step")
    ax.axhspan(-MATCH_DB, MATCH_DB, color="0.85", zorder=0, label=f"±{MATCH_DB:g} dB of the data")
    ax.axhline(0, color="black", lw=0.8)
    frequency_axis(ax, axis_size(ds))
    ax.set_ylabel("output / data power (dB)")
    ax.set_title(f"from the same σ_max·z (σ_max = {smax:g})", fontsize=10)


def trajectory_panel(ax: plt.Axes, ds: xr.Dataset, checkpoint) -> None:
    """Into ``ax``: per band, the power of the sampler's estimate x̂0 = D(x_i, t_i) relative to the data's, against
    the step's noise level t_i (high noise on the left: the sampler runs left to right)."""
    traj = ds.sample_trajectory_db.sel(checkpoint=checkpoint).mean("channel")
    t = ds.sampler_sigma.values
    for colour, band in zip(palette(ds.sizes["band"]), ds.band.values):
        lo, hi = float(ds.band_lo.sel(band=band)), float(ds.band_hi.sel(band=band))
        ax.plot(t, traj.sel(band=band), color=colour, marker="o", ms=3.5, lw=1.6,
                label=f"{band} [{lo:.3g}, {hi:.3g}] cycles/px")
    ax.axhspan(-MATCH_DB, MATCH_DB, color="0.85", zorder=0)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(f"{SIGMA_LABEL} t_i of the sampler's step")
    ax.set_ylabel("band power of x̂0 / data (dB)")
    ax.set_title(f"along the sampler ({checkpoint_label(ds, checkpoint)})", fontsize=10)


@themed
def sampler_figure(ds: xr.Dataset, checkpoints=None, *, n_checkpoints: int = 3, axes=None) -> np.ndarray:
    """Left: what N steps reach and one step does not, for a few checkpoints (first and last included). Right: the
    order in which the final checkpoint's sampler builds the bands. ``axes``: two Axes (else a new figure).
    Returns the Axes drawn on, ``(1, 2)``."""
    if "sample_relative_power_db" not in ds or "sample_trajectory_db" not in ds:
        raise FileNotFoundError("the sweep has no 'sample' mode (sweep with --modes all or modes=(..., 'sample'))")
    checkpoints = pick(ds.checkpoint.values, n_checkpoints) if checkpoints is None else list(checkpoints)
    fig, axes, owned = panels(axes, 1, 2, figsize=(11, 4.3))
    left, right = axes[0]
    many_vs_one_panel(left, ds, checkpoints)
    left.legend(fontsize=6.5, loc="best")
    trajectory_panel(right, ds, checkpoints[-1])
    right.legend(fontsize=7, loc="lower right", title=f"±{MATCH_DB:g} dB shaded", title_fontsize=7)
    low = np.nanmin(ds.sample_trajectory_db.sel(checkpoint=checkpoints[-1]).mean("channel").values)
    right.set_ylim(max(low - 2, -60), None)
    if owned:
        fig.tight_layout()
    return axes
