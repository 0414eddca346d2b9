"""The sweep's figures (a Dataset of :func:`freqlab.sweep.study.sweep` in): output spectra, relative power over
σ × frequency, cutoffs against σ, transfer function and coherence, per-image band statistics.

Each figure is built from panel functions that draw into an ``ax`` you pass (``output_spectra_panel``,
``relative_power_panel``, ``cutoff_panel``, ``transfer_panel``, ``band_statistic_panel``), so a script or a
notebook can put any of them into its own layout; each figure function takes ``ax=``/``axes=`` too. Checkpoints
are labelled with their run (``pretrain, step 800``) or the name the user gave, and told apart by colour, marker
and dash; bounds are drawn as bounds. Nothing here computes spectra; it only draws saved results.
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from freqlab.measure import core as measure
from freqlab.plots.style import (
    POWER_LABEL,
    SIGMA_LABEL,
    axis_size,
    checkpoint_label,
    checkpoint_styles,
    frequency_axis,
    octave_ticks,
    panels,
    pick,
    positive_freq,
    sigma_colours,
    themed,
)

__all__ = ["output_spectra_panel", "output_spectra_figure", "relative_power_norm", "relative_power_panel",
           "relative_power_heatmap",
           "cutoff_panel", "cutoff_figure", "transfer_panel", "transfer_figure", "band_statistic_panel",
           "band_statistics_figure"]
def output_spectra_panel(ax: plt.Axes, ds: xr.Dataset, checkpoint, mode: str, sigmas) -> None:
    """Into ``ax``: the output power of ``checkpoint`` in ``mode`` at each of ``sigmas`` (channel means, DC left out)
    beside the data's; in denoise mode also the Wiener filter's (dashed) and the SNR crossover f*(σ) (dots)."""
    row = ds.sel(checkpoint=checkpoint)
    data = positive_freq(ds.data_power.mean("channel"))
    ax.plot(data.freq, data, color="black", lw=2.2, label="data")
    for colour, sigma in zip(sigma_colours(len(sigmas)), sigmas):
        out = positive_freq(row.output_power.sel(mode=mode, sigma=sigma).mean("channel"))
        ax.plot(out.freq, out, color=colour, lw=1.6, label=f"σ = {sigma:.3g}")
        if mode == "denoise":
            wiener = positive_freq(ds.wiener_output_power.sel(sigma=sigma).mean("channel"))
            ax.plot(wiener.freq, wiener, color=colour, lw=1.0, ls="--")
            fstar = float(ds.snr_crossover.sel(sigma=sigma).mean("channel"))
            if np.isfinite(fstar) and fstar > 0:
                ax.plot([fstar], [float(data.interp(freq=fstar))], "o", color=colour, ms=6, mec="black", mew=0.6)
    frequency_axis(ax, axis_size(ds))
    ax.set_yscale("log")
    title = "denoise: input x0 + σ·n" if mode == "denoise" else "generate: input σ·z"
    ax.set_title(f"{title}  ({checkpoint_label(ds, checkpoint)})", fontsize=10)


@themed
def output_spectra_figure(ds: xr.Dataset, checkpoint=None, *, n_sigmas: int = 6, axes=None) -> np.ndarray:
    """One-step output spectra against σ for one checkpoint, with the data and the Wiener reference.

    Left: ``denoise`` mode (input ``x0 + σ·n``), solid lines the model's output power, dashed the Wiener filter's,
    dots on the data spectrum at the SNR crossover ``f*(σ)`` (above ``f*`` the data drown in the noise).
    Right: ``generate`` mode (input ``σ·z``). Channel means; the DC bin is left out. ``axes``: one Axes per mode
    the sweep has (else a new figure). Returns the Axes drawn on, ``(1, n_modes)``.
    """
    checkpoint = ds.checkpoint.values[-1] if checkpoint is None else checkpoint
    sigmas = pick(ds.sigma.values, n_sigmas)
    modes = [m for m in ("denoise", "generate") if m in ds.mode.values]
    if not modes:
        raise FileNotFoundError("the sweep has neither a denoise nor a generate mode: no one-step spectra to draw")
    fig, axes, owned = panels(axes, 1, len(modes), figsize=(5.2 * len(modes), 4.3), sharey=True)
    for ax, mode in zip(axes[0], modes):
        output_spectra_panel(ax, ds, checkpoint, mode, sigmas)
    axes[0][0].set_ylabel(POWER_LABEL)
    axes[0][0].legend(fontsize=7, loc="lower left", title="dashed: Wiener; dots: f*(σ)", title_fontsize=7)
    if owned:
        fig.tight_layout()
    return axes


def relative_power_norm(ds: xr.Dataset, checkpoints, mode: str) -> matplotlib.colors.TwoSlopeNorm:
    """A diverging colour scale centred on 0 dB whose ends come from the data drawn (the 1st and 99th percentiles,
    at least ±3 dB): the low-σ region, tens of dB below the data in generate mode, keeps its gradations instead of
    saturating at a fixed clip."""
    rel = ds.relative_power_db.sel(checkpoint=list(checkpoints), mode=mode).mean("channel")
    values = rel.sel(freq=rel.freq > 0).values
    values = values[np.isfinite(values)]
    lo, hi = np.percentile(values, [1, 99]) if values.size else (-20.0, 20.0)
    return matplotlib.colors.TwoSlopeNorm(vcenter=0.0, vmin=min(float(lo), -3.0), vmax=max(float(hi), 3.0))


def relative_power_panel(ax: plt.Axes, ds: xr.Dataset, checkpoint, *, mode: str = "generate", norm=None):
    """Into ``ax``: output / data power (dB) over σ × frequency on the colour scale ``norm`` (default: from this
    panel's data, :func:`relative_power_norm`), with f*(σ); returns the mesh (for a colour bar)."""
    freq = ds.freq.values
    keep = freq > 0
    sig = ds.sigma.values
    rel = ds.relative_power_db.sel(checkpoint=checkpoint, mode=mode).mean("channel").values[:, keep]
    norm = norm or relative_power_norm(ds, [checkpoint], mode)
    mesh = ax.pcolormesh(freq[keep], sig, np.clip(rel, norm.vmin, norm.vmax), cmap="vlag", norm=norm,
                         shading="nearest")
    ax.plot(ds.snr_crossover.mean("channel").values, sig, color="black", lw=1.4, label="f*(σ)")
    frequency_axis(ax, axis_size(ds))
    ax.set_yscale("log")
    ax.set_title(checkpoint_label(ds, checkpoint), fontsize=10)
    return mesh


@themed
def relative_power_heatmap(ds: xr.Dataset, checkpoints=None, *, mode: str = "generate", axes=None) -> np.ndarray:
    """Relative power (dB) of the one-step output over σ × frequency, one panel per checkpoint, on one colour
    scale chosen from the data drawn (:func:`relative_power_norm`).

    Blue: the output lacks power in that band; red: it has too much; white: it matches the data. The black line is
    the SNR crossover ``f*(σ)``. ``axes``: one Axes per checkpoint (else a new figure). Returns the Axes drawn on.
    """
    checkpoints = pick(ds.checkpoint.values, 4) if checkpoints is None else list(checkpoints)
    fig, axes, _ = panels(axes, 1, len(checkpoints), figsize=(3.6 * len(checkpoints) + 1.0, 3.8), sharey=True)
    norm = relative_power_norm(ds, checkpoints, mode)
    mesh = None
    for ax, ck in zip(axes[0], checkpoints):
        mesh = relative_power_panel(ax, ds, ck, mode=mode, norm=norm)
    axes[0][0].set_ylabel(SIGMA_LABEL)
    axes[0][0].legend(fontsize=7, loc="upper right", frameon=True)
    cbar = fig.colorbar(mesh, ax=axes[0].tolist(), shrink=0.9, pad=0.02)
    # ticks on both sides of 0: the two halves of the scale span different ranges
    locate = matplotlib.ticker.MaxNLocator
    ticks = np.unique(np.concatenate([locate(5).tick_values(norm.vmin, 0), locate(3).tick_values(0, norm.vmax)]))
    cbar.set_ticks(ticks[(ticks >= norm.vmin) & (ticks <= norm.vmax)])
    cbar.set_label(f"output / data power (dB), {mode} mode")
    return axes


def _draw_cutoff(ax: plt.Axes, sigma, values, flags, style: dict, label: str) -> None:
    """Measured cutoffs as a line with filled markers; bounds as open triangles pointing where the truth lies
    (▼ upper bound: the criterion already fails at the first bin; ▲ lower bound: it never fails)."""
    v = np.asarray(values, dtype=float)
    f = np.asarray(flags)
    ax.plot(sigma, np.where(f == 0, v, np.nan), color=style["color"], marker=style["marker"], ls=style["ls"], lw=1.6,
            ms=4, label=label)
    for flag, marker in ((-1, "v"), (1, "^")):  # lighter than the measurements: they are not measurements
        sel = f == flag
        if sel.any():
            ax.plot(np.asarray(sigma)[sel], v[sel], ls="none", marker=marker, ms=5, mfc="none", mec=style["color"],
                    mew=0.9, alpha=0.45)


def cutoff_panel(ax: plt.Axes, ds: xr.Dataset, name: str = "cutoff_freq", *, mode: str = "denoise") -> None:
    """Into ``ax``: the cutoff ``name`` (``cutoff_freq`` or ``coherence_cutoff``) against σ, one line per checkpoint
    (bounds as open triangles), with f*(σ) and, for the coherence cutoff, the Wiener filter's."""
    cks = ds.checkpoint.values
    for style, ck in zip(checkpoint_styles(len(cks)), cks):
        row = ds.sel(checkpoint=ck, mode=mode) if "mode" in ds[name].dims else ds.sel(checkpoint=ck)
        values, flags = measure.channel_cutoff(row[name], row[f"{name}_bound"])
        _draw_cutoff(ax, ds.sigma.values, values.values, flags.values, style, checkpoint_label(ds, ck))
    ax.plot(ds.sigma, ds.snr_crossover.mean("channel"), color="black", ls="-.", lw=1.4, label="f*(σ): data power = σ²")
    if name == "coherence_cutoff" and "wiener_coherence_cutoff" in ds:
        values, flags = measure.channel_cutoff(ds.wiener_coherence_cutoff, ds.wiener_coherence_cutoff_bound)
        ax.plot(ds.sigma, values.where(flags == 0), color="grey", ls=":", lw=1.6,
                label="stationary Wiener filter (measured part)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    octave_ticks(ax.yaxis, axis_size(ds))
    ax.set_xlabel(SIGMA_LABEL)


@themed
def cutoff_figure(ds: xr.Dataset, *, mode: str = "denoise", axes=None) -> np.ndarray:
    """Cutoff frequencies against σ, one line per checkpoint, with the SNR crossover ``f*(σ)``.

    Left: ``f_c``, the lowest frequency where the output's power departs from the data's by more than 3 dB (too
    little *or* too much). Right (denoise mode): the coherence cutoff, where the output stops carrying the clean
    image (coherence < 0.5), beside the stationary Wiener filter's. Bounds are drawn as faint open triangles, not
    measurements: ▼ the criterion fails already at the lowest frequency, ▲ it never fails. ``axes``: one Axes per
    panel (else a new figure). Returns the Axes drawn on.
    """
    shown = [("cutoff_freq", "f_c: |output / data power| > 3 dB")]
    if mode == "denoise" and "coherence_cutoff" in ds:
        shown.append(("coherence_cutoff", "coherence with the clean image < 0.5"))
    fig, axes, owned = panels(axes, 1, len(shown), figsize=(5.6 * len(shown), 4.3), sharey=True)
    for ax, (name, title) in zip(axes[0], shown):
        cutoff_panel(ax, ds, name, mode=mode)
        ax.set_title(title, fontsize=10)
    axes[0][0].set_ylabel("cutoff frequency (cycles/pixel)")
    # outside the data, to the right of the last panel
    axes[0][-1].legend(fontsize=7, title="faint ▼/▲: bound, not a measurement", title_fontsize=7, loc="center left",
                       bbox_to_anchor=(1.02, 0.5), borderaxespad=0.0)
    if owned:
        fig.suptitle(f"Up to which frequency the one-step output is right ({mode} mode)", fontsize=11)
        fig.tight_layout()
    return axes


def transfer_panel(ax: plt.Axes, ds: xr.Dataset, checkpoint, name: str, sigmas) -> None:
    """Into ``ax``: the ``transfer`` function or the ``coherence`` of the one-step denoiser (solid) at each of
    ``sigmas``, against the stationary Wiener filter's (dashed); channel means, DC left out."""
    row = ds.sel(checkpoint=checkpoint, mode="denoise")
    for colour, sigma in zip(sigma_colours(len(sigmas)), sigmas):
        ax.plot(ds.freq[1:], row[name].sel(sigma=sigma).mean("channel")[1:], color=colour, lw=1.6, label=f"σ = {sigma:.3g}")
        ax.plot(ds.freq[1:], ds[f"wiener_{name}"].sel(sigma=sigma).mean("channel")[1:], color=colour, lw=1.0, ls="--")
    frequency_axis(ax, axis_size(ds))
    ax.set_ylabel("transfer function <Pxy>/<Pyy>" if name == "transfer" else "coherence <Pxy>²/(<Pxx><Pyy>)")
    ax.axhline(1.0, color="grey", lw=0.8)
    if name == "coherence":
        ax.set_ylim(-0.02, 1.05)


@themed
def transfer_figure(ds: xr.Dataset, checkpoint=None, *, n_sigmas: int = 5, axes=None) -> np.ndarray:
    """Transfer function and coherence of the one-step denoiser (solid) against the Wiener filter's (dashed).
    ``axes``: two Axes (else a new figure). Returns the Axes drawn on, ``(1, 2)``."""
    checkpoint = ds.checkpoint.values[-1] if checkpoint is None else checkpoint
    sigmas = pick(ds.sigma.values, n_sigmas)
    fig, axes, owned = panels(axes, 1, 2, figsize=(10.0, 4.0), sharex=True)
    for ax, name in zip(axes[0], ("transfer", "coherence")):
        transfer_panel(ax, ds, checkpoint, name, sigmas)
    axes[0][0].legend(fontsize=7, title="dashed: Wiener", title_fontsize=7)
    if owned:
        fig.suptitle(f"One-step denoiser vs the stationary Wiener filter ({checkpoint_label(ds, checkpoint)})",
                     fontsize=10)
        fig.tight_layout()
    return axes


def band_statistic_panel(ax: plt.Axes, ds: xr.Dataset, var: str, band, *, mode: str = "generate") -> None:
    """Into ``ax``: the per-image band statistic ``var`` (``band_kurtosis``, ``band_power_wasserstein`` or
    ``diversity_ratio``) in ``band`` against σ, one line per checkpoint, with the data's value as a black line
    (and Gaussian noise's kurtosis, 3, dotted)."""
    cks = ds.checkpoint.values
    for style, ck in zip(checkpoint_styles(len(cks)), cks):
        row = ds.sel(checkpoint=ck, mode=mode, band=band)
        ax.plot(ds.sigma, row[var].mean("channel"), ms=3, lw=1.3, label=checkpoint_label(ds, ck), **style)
    if var == "band_kurtosis":
        data = float(ds.data_band_kurtosis.sel(band=band).mean("channel"))
        ax.axhline(data, color="black", lw=1.4, label="data")
        ax.axhline(3.0, color="grey", lw=0.8, ls=":", label="Gaussian (3)")
        lo, hi = ax.get_ylim()  # the data's line inside the panel, not on its edge
        lo, hi = min(lo, data, 3.0), max(hi, data, 3.0)
        ax.set_ylim(lo - 0.08 * (hi - lo), hi + 0.08 * (hi - lo))
    elif var == "diversity_ratio":
        ax.axhline(1.0, color="black", lw=1.4)
    ax.set_xscale("log")


@themed
def band_statistics_figure(ds: xr.Dataset, *, mode: str = "generate", axes=None) -> np.ndarray:
    """Per-image band statistics against σ, per checkpoint: band-pass kurtosis (data's marked by a black line)
    and the Wasserstein distance of per-image log band power to the data's, one column per band.

    Kurtosis near 3 means Gaussian-like texture (coloured noise); natural images are sparser (higher).
    ``axes``: a 3 × bands grid (else a new figure). Returns the Axes drawn on.
    """
    bands = list(ds.band.values)
    fig, axes, owned = panels(axes, 3, len(bands), figsize=(3.6 * len(bands), 8.0), sharex=True)
    for j, band in enumerate(bands):
        for i, var in enumerate(("band_kurtosis", "band_power_wasserstein", "diversity_ratio")):
            band_statistic_panel(axes[i][j], ds, var, band, mode=mode)
        lo, hi = float(ds.band_lo.sel(band=band)), float(ds.band_hi.sel(band=band))
        axes[0][j].set_title(f"{band} band [{lo:.3g}, {hi:.3g}] cycles/px", fontsize=10)
        axes[2][j].set_xscale("log")
        axes[2][j].set_xlabel(SIGMA_LABEL)
    axes[0][0].set_ylabel("band-pass kurtosis")
    axes[1][0].set_ylabel("Wasserstein, log band power (dB)")
    axes[2][0].set_ylabel("diversity ratio (output / data)")
    # the legend outside the data, right of the last column
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[1][-1].legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.03, 0.5),
                       borderaxespad=0.0)
    if owned:
        fig.suptitle(f"Structure or coloured noise? Per-image band statistics ({mode} mode)", fontsize=11)
        fig.tight_layout()
    return axes
