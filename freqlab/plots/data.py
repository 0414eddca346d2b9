"""The data spectra figure (a Dataset of :func:`freqlab.measure.data_spectra.data_spectra` in)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from freqlab.plots.style import POWER_LABEL, frequency_axis, palette, panels, positive_freq, themed

__all__ = ["data_spectra_figure"]


@themed
def data_spectra_figure(ds: xr.Dataset, *, confidence: float = 0.95, ax: plt.Axes | None = None) -> plt.Axes:
    """Spectra of data sources on log-log axes with confidence bands and the fitted power laws.

    Each source is drawn as its channel-mean power with a band of ±z·sem and, dashed, its fitted power law over
    the fit range; the legend gives the slope. Draws into ``ax`` (else a new figure) and returns it.
    """
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    fig, axes, owned = panels(ax, 1, 1, figsize=(6.2, 4.4))
    ax = axes[0][0]
    colours = palette(ds.sizes["source"])
    fmin, fmax = float(ds.attrs["fit_fmin"]), float(ds.attrs["fit_fmax"])
    for colour, source in zip(colours, ds.source.values):
        row = ds.sel(source=source)
        mean = positive_freq(row.data_power.mean("channel"))
        # sem of a channel mean: channels are correlated, so use the mean of the channel sems (conservative)
        sem = positive_freq(row.data_power_sem.mean("channel"))
        f = mean.freq.values
        ax.plot(f, mean.values, color=colour, lw=1.8,
                label=f"{source}  (slope {float(row.slope):.2f} ± {float(row.slope_ci_high - row.slope):.2f})")
        ax.fill_between(f, np.clip(mean.values - z * sem.values, 1e-12, None), mean.values + z * sem.values,
                        color=colour, alpha=0.25, lw=0)
        ff = f[(f >= fmin) & (f <= fmax)]
        ax.plot(ff, 10 ** float(row.intercept) * ff ** float(row.slope), color=colour, lw=1.0, ls="--")
    frequency_axis(ax, int(ds.attrs.get("axis_size") or max(int(ds.attrs["height"]), int(ds.attrs["width"]))))
    ax.set(yscale="log", ylabel=POWER_LABEL)
    window = ds.attrs.get("window", "none")
    pixels = ds.attrs.get("image_size") or f"{int(ds.attrs['height'])}×{int(ds.attrs['width'])} px"  # native: sizes
    ax.set_title(f"Data spectra, {pixels}, {window} window "
                 f"(bands: {int(confidence * 100)}% CI; dashed: power-law fit)", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    if owned:
        fig.tight_layout()
    return ax
