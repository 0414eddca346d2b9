"""The fine-tuning figures (the logs of :func:`freqlab.finetune.loop.finetune` in): band metrics against images
seen, sample grids side by side, and the frozen share of each layer type."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from freqlab.plots.results_dir import moment_of, sample_moments
from freqlab.plots.style import palette, panels, themed

__all__ = ["RUN_LABELS", "finetune_figure", "samples_figure", "frozen_parameters_figure"]

RUN_LABELS = {"pretrained": "from pre-trained (D2O-F)", "random": "from random init, D2O-F frozen (control)",
              "random-unfrozen": "from random init, nothing frozen (control)"}


@themed
def finetune_figure(logs: dict[str, xr.Dataset], *, seeds: dict[str, list[xr.Dataset]] | None = None,
                    axes=None) -> np.ndarray:
    """Per-band log-spectral distance and per-image band statistics against images seen, one line per run.

    ``seeds`` (``{name: [log, ...]}``, e.g. :func:`freqlab.plots.registry.seed_logs`): the other seeds of each run are
    drawn as thin lines of the run's colour, so the spread over seeds shows beside the run in ``logs``.

    Rows (channel means): log-spectral distance to the data (dB), diversity ratio of per-image log band power (1 = as diverse as
    the data, ~0 = one texture), Wasserstein distance of per-image log band power (dB), band-pass kurtosis gap
    (0 = as sparse as the data). Columns: bands. ``axes``: a 4 × bands grid (else a new figure). Returns the Axes
    drawn on.
    """
    first = next(iter(logs.values()))
    bands = list(first.band.values)
    rows = (("lsd", "log-spectral distance (dB)", None),
            ("diversity_ratio", "diversity ratio (output / data)", 1.0),
            ("band_power_wasserstein", "Wasserstein, log band power (dB)", 0.0),
            ("kurtosis_gap", "kurtosis gap (output − data)", 0.0))
    fig, axes, owned = panels(axes, len(rows), len(bands), figsize=(3.7 * len(bands), 2.5 * len(rows)), sharex=True)
    colours = dict(zip(logs, palette(len(logs))))
    for i, (var, label, ref) in enumerate(rows):
        for j, band in enumerate(bands):
            ax = axes[i][j]
            for name, log in logs.items():
                others = [o for o in (seeds or {}).get(name, []) if o.attrs.get("config_seed") != log.attrs.get("config_seed")]
                for other in others:
                    ax.plot(other.images_seen, other[var].sel(band=band).mean("channel"), "-", lw=0.8, alpha=0.45,
                            color=colours[name])
                run_label = RUN_LABELS.get(name, name) + (f" (thin: {len(others)} more seeds)" if others else "")
                ax.plot(log.images_seen, log[var].sel(band=band).mean("channel"), "o-", ms=3, lw=1.6, color=colours[name],
                        label=run_label)
            if ref is not None:
                ax.axhline(ref, color="black", lw=1.0, ls=":")
            if i == 0:
                lo, hi = float(first.band_lo.sel(band=band)), float(first.band_hi.sel(band=band))
                ax.set_title(f"{band} band [{lo:.3g}, {hi:.3g}] cycles/px", fontsize=10)
            if j == 0:
                ax.set_ylabel(label, fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel("images seen by the generator")
    if owned:  # one legend for the figure, under the title and outside the data
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.suptitle("What GAN fine-tuning adds, band by band (dotted: the data's value)", fontsize=11)
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.965), ncol=min(3, len(labels)),
                   fontsize=8)
        fig.tight_layout(rect=(0, 0, 1, 0.94))
    else:
        axes[0][0].legend(fontsize=7)
    return axes


@themed
def samples_figure(grids: dict[str, list[Path]], *, n_moments: int = 3, axes=None) -> np.ndarray:
    """Sample grids of each fine-tuning run at the same moments (images seen), side by side, with the data."""
    from PIL import Image

    runs = [k for k in grids if k != "data"]
    chosen = sample_moments(grids, n_moments)
    ncols = len(chosen) + (1 if "data" in grids else 0)
    fig, axes, owned = panels(axes, len(runs), ncols, figsize=(2.9 * ncols, 3.0 * len(runs)))
    for i, run in enumerate(runs):
        by_moment = {moment_of(p): p for p in grids[run]}
        for j, m in enumerate(chosen):
            ax = axes[i][j]
            ax.imshow(Image.open(by_moment[m]) if m in by_moment else np.ones((8, 8, 3)), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if i == 0:
                ax.set_title(f"{m:,} images seen", fontsize=9)
            if j == 0:
                ax.set_ylabel(RUN_LABELS.get(run, run), fontsize=9)
        if "data" in grids:
            ax = axes[i][-1]
            ax.imshow(Image.open(grids["data"][0]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if i == 0:
                ax.set_title("data", fontsize=9)
    if owned:
        fig.suptitle("One-step samples during GAN fine-tuning (same z in every panel)", fontsize=11)
        fig.tight_layout()
    return axes


@themed
def frozen_parameters_figure(log: xr.Dataset, *, ax: plt.Axes | None = None) -> plt.Axes:
    """Frozen and trainable parameters by layer type under the run's freezing policy (horizontal stacked bars)."""
    frozen = log.n_frozen.values.astype(float)
    trainable = log.n_trainable.values.astype(float)
    keep = (frozen + trainable) > 0
    names = [str(n) for n in np.asarray(log.layer_type.values)[keep]]
    frozen, trainable = frozen[keep], trainable[keep]
    order = np.argsort(frozen + trainable)
    fig, axes, owned = panels(ax, 1, 1, figsize=(6.4, 0.45 * len(names) + 1.5))
    ax = axes[0][0]
    colours = palette(2)
    y = np.arange(len(names))
    ax.barh(y, frozen[order] / 1e3, color=colours[0], label="frozen")
    ax.barh(y, trainable[order] / 1e3, left=frozen[order] / 1e3, color=colours[1], label="trainable")
    ax.set_yticks(y, [names[k] for k in order])
    totals = (frozen + trainable)[order]
    for yi, (f, t) in enumerate(zip(frozen[order], totals)):
        ax.text(t / 1e3, yi, f"  {100 * f / t:.0f}% frozen", va="center", fontsize=7)
    ax.set_xlim(0, totals.max() / 1e3 * 1.25)
    ax.set_xlabel("parameters (thousands)")
    total = frozen.sum() + trainable.sum()
    policy = log.attrs.get("config_freeze", "?")
    ax.set_title(f"Freezing policy '{policy}': {100 * frozen.sum() / total:.1f}% of {total / 1e6:.2f} M parameters frozen",
                 fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    if owned:
        fig.tight_layout()
    return ax
