"""Figure functions: an xarray Dataset in, a matplotlib Figure out, all with one look.

The look: seaborn's ``ticks`` style in the ``paper`` context, the colour-blind-safe palette, units on every axis,
log axes where the physics is a power law. Nothing here computes spectra; it only draws saved results.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)  # figures are written to files; no display is needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402

__all__ = ["theme", "palette", "frequency_axis", "save_figure", "data_spectra_figure"]

FREQ_LABEL = "frequency (cycles/pixel)"
POWER_LABEL = "power per mode (image units²)"


def theme() -> None:
    """Apply freqlab's figure style (idempotent)."""
    sns.set_theme(context="paper", style="ticks", palette="colorblind", font_scale=1.1,
                  rc={"axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 110, "savefig.dpi": 160,
                      "legend.frameon": False})


def palette(n: int) -> list:
    """``n`` colours from the colour-blind-safe palette, in an order that keeps neighbours far apart."""
    colours = sns.color_palette("colorblind", 10)
    order = [0, 1, 2, 4, 3, 9, 5, 6, 8, 7]  # blue, orange, green, purple, vermillion, cyan, ...
    return [colours[order[i % 10]] for i in range(n)]


def frequency_axis(ax: plt.Axes, size: int) -> None:
    """Log frequency axis with ticks at octaves 1/size .. 1/2 cycles/pixel, labelled as fractions."""
    ax.set_xscale("log")
    ticks = [2.0**-k for k in range(1, int(np.log2(size)) + 1)][::-1]
    ax.set_xticks(ticks, [f"1/{int(round(1 / t))}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(FREQ_LABEL)


def save_figure(fig: plt.Figure, path: str | Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``path.png`` and ``path.pdf`` (suffix of ``path`` ignored); returns the files written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        fig.savefig(target, bbox_inches="tight")
        written.append(target)
    return written


def _positive_freq(da: xr.DataArray) -> xr.DataArray:
    """Drop the DC bin (f = 0), which has no place on a log axis."""
    return da.sel(freq=da.freq > 0)


def data_spectra_figure(ds: xr.Dataset, *, confidence: float = 0.95) -> plt.Figure:
    """Spectra of data sources on log-log axes with confidence bands and the fitted power laws.

    ``ds`` is the output of :func:`freqlab.dataspectra.data_spectra`. Each source is drawn as its channel-mean power
    with a band of ±z·sem and, dashed, its fitted power law over the fit range; the legend gives the slope.
    """
    from scipy.stats import norm

    theme()
    z = float(norm.ppf(0.5 + confidence / 2))
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    colours = palette(ds.sizes["source"])
    fmin, fmax = float(ds.attrs["fit_fmin"]), float(ds.attrs["fit_fmax"])
    for colour, source in zip(colours, ds.source.values):
        row = ds.sel(source=source)
        mean = _positive_freq(row.power.mean("channel"))
        # sem of a channel mean: channels are correlated, so use the mean of the channel sems (conservative)
        sem = _positive_freq(row.power_sem.mean("channel"))
        f = mean.freq.values
        ax.plot(f, mean.values, color=colour, lw=1.8,
                label=f"{source}  (slope {float(row.slope):.2f} ± {float(row.slope_ci_high - row.slope):.2f})")
        ax.fill_between(f, np.clip(mean.values - z * sem.values, 1e-12, None), mean.values + z * sem.values,
                        color=colour, alpha=0.25, lw=0)
        ff = f[(f >= fmin) & (f <= fmax)]
        ax.plot(ff, 10 ** float(row.intercept) * ff ** float(row.slope), color=colour, lw=1.0, ls="--")
    frequency_axis(ax, max(int(ds.attrs["height"]), int(ds.attrs["width"])))
    ax.set_yscale("log")
    ax.set_ylabel(POWER_LABEL)
    window = ds.attrs.get("window", "none")
    ax.set_title(f"Data spectra, {int(ds.attrs['height'])}×{int(ds.attrs['width'])} px, {window} window "
                 f"(bands: {int(confidence * 100)}% CI; dashed: power-law fit)", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig
