"""Figure functions: an xarray Dataset in, a matplotlib Figure out, all with one look.

Each sweep figure is built from panel functions that draw into an ``ax`` you pass (``output_spectra_panel``,
``relative_power_panel``, ``cutoff_panel``, ``transfer_panel``, ``band_statistic_panel``), so a script can put
any of them into its own layout (the scripts in ``analyses/`` do). Checkpoints are labelled with their run
(``pretrain, step 800``) and told apart by colour, marker and dash; bounds are drawn as bounds.

The look: seaborn's ``ticks`` style in the ``paper`` context, the colour-blind-safe palette, units on every axis,
log axes where the physics is a power law. Nothing here computes spectra; it only draws saved results.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import xarray as xr

from freqlab import measure

__all__ = ["theme", "palette", "frequency_axis", "save_figure", "checkpoint_label", "checkpoint_styles",
           "data_spectra_figure", "output_spectra_panel", "output_spectra_figure", "relative_power_panel",
           "relative_power_heatmap", "cutoff_panel", "cutoff_figure", "transfer_panel", "transfer_figure",
           "band_statistic_panel", "band_statistics_figure", "finetune_figure", "samples_figure",
           "frozen_parameters_figure"]

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


def _octave_ticks(axis, size: int) -> None:
    """Ticks of a log frequency ``axis`` (``ax.xaxis``/``ax.yaxis``) at octaves 1/size .. 1/2, labelled as fractions."""
    ticks = [2.0**-k for k in range(1, int(np.log2(size)) + 1)][::-1]
    axis.set_ticks(ticks, [f"1/{int(round(1 / t))}" for t in ticks])
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def frequency_axis(ax: plt.Axes, size: int) -> None:
    """Log frequency axis with ticks at octaves 1/size .. 1/2 cycles/pixel, labelled as fractions."""
    ax.set_xscale("log")
    _octave_ticks(ax.xaxis, size)
    ax.set_xlabel(FREQ_LABEL)


def save_figure(fig: plt.Figure, path: str | Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``path.png`` and ``path.pdf`` (suffix of ``path`` ignored); returns the files written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        # no creation date in the PDF: the same results give the same bytes, and a redraw is no change to commit
        fig.savefig(target, bbox_inches="tight", metadata={"CreationDate": None} if fmt == "pdf" else None)
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
        mean = _positive_freq(row.data_power.mean("channel"))
        # sem of a channel mean: channels are correlated, so use the mean of the channel sems (conservative)
        sem = _positive_freq(row.data_power_sem.mean("channel"))
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
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------------------
# sweep figures (input: the Dataset of freqlab.sweep.sweep)
# --------------------------------------------------------------------------------------------------------------
SIGMA_LABEL = "noise level σ"


def checkpoint_label(ds: xr.Dataset, checkpoint) -> str:
    """``run, step N``: the run is the folder holding the checkpoint (``RUN/checkpoints/step-*`` → ``RUN``), so
    checkpoints of two models at the same step stay apart; the name itself when there is no step."""
    row = ds.sel(checkpoint=checkpoint)
    step = float(row.step) if "step" in row.coords else math.nan
    name = str(checkpoint)
    run = name.rpartition("/")[0]
    if not run and "checkpoint_path" in row.coords and str(row.checkpoint_path.values):
        parent = Path(str(row.checkpoint_path.values)).parent
        run = parent.parent.name if parent.name == "checkpoints" else parent.name
    if not (math.isfinite(step) and step >= 0):
        return name
    return f"{run}, step {int(step):,}" if run else f"step {int(step):,}"


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")


def _pick(values, n: int) -> list:
    """Up to ``n`` items spread evenly over ``values`` (first and last included)."""
    values = list(values)
    if len(values) <= n:
        return values
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, n)).astype(int))
    return [values[i] for i in idx]


def _sigma_colours(n: int) -> list:
    return sns.color_palette("viridis", n)


def _checkpoint_colours(n: int) -> list:
    """Sequential colours for a training trajectory (light = early, dark = late), colour-blind safe."""
    return sns.color_palette("rocket_r", n + 1)[1:] if n > 1 else [palette(1)[0]]


def checkpoint_styles(n: int) -> list[dict]:
    """``n`` line styles for a training trajectory: sequential colour (light = early, dark = late), and a marker and
    dash of its own, so that neighbouring checkpoints stay apart where their colours are close."""
    return [{"color": c, "marker": MARKERS[i % len(MARKERS)], "ls": "-" if i % 2 == 0 else "--"}
            for i, c in enumerate(_checkpoint_colours(n))]


def _size(ds: xr.Dataset) -> int:
    return int(round(1.0 / float(ds.freq.values[1]))) if ds.sizes["freq"] > 1 else 32


def output_spectra_panel(ax: plt.Axes, ds: xr.Dataset, checkpoint, mode: str, sigmas) -> None:
    """Into ``ax``: the output power of ``checkpoint`` in ``mode`` at each of ``sigmas`` (channel means, DC left out)
    beside the data's; in denoise mode also the Wiener filter's (dashed) and the SNR crossover f*(σ) (dots)."""
    row = ds.sel(checkpoint=checkpoint)
    data = _positive_freq(ds.data_power.mean("channel"))
    ax.plot(data.freq, data, color="black", lw=2.2, label="data")
    for colour, sigma in zip(_sigma_colours(len(sigmas)), sigmas):
        out = _positive_freq(row.output_power.sel(mode=mode, sigma=sigma).mean("channel"))
        ax.plot(out.freq, out, color=colour, lw=1.6, label=f"σ = {sigma:.3g}")
        if mode == "denoise":
            wiener = _positive_freq(ds.wiener_output_power.sel(sigma=sigma).mean("channel"))
            ax.plot(wiener.freq, wiener, color=colour, lw=1.0, ls="--")
            fstar = float(ds.snr_crossover.sel(sigma=sigma).mean("channel"))
            if np.isfinite(fstar) and fstar > 0:
                ax.plot([fstar], [float(data.interp(freq=fstar))], "o", color=colour, ms=6, mec="black", mew=0.6)
    frequency_axis(ax, _size(ds))
    ax.set_yscale("log")
    title = "denoise: input x0 + σ·n" if mode == "denoise" else "generate: input σ·z"
    ax.set_title(f"{title}  ({checkpoint_label(ds, checkpoint)})", fontsize=10)


def output_spectra_figure(ds: xr.Dataset, checkpoint=None, *, n_sigmas: int = 6) -> plt.Figure:
    """One-step output spectra against σ for one checkpoint, with the data and the Wiener reference.

    Left: ``denoise`` mode (input ``x0 + σ·n``), solid lines the model's output power, dashed the Wiener filter's,
    dots on the data spectrum at the SNR crossover ``f*(σ)`` (above ``f*`` the data drown in the noise).
    Right: ``generate`` mode (input ``σ·z``). Channel means; the DC bin is left out.
    """
    theme()
    checkpoint = ds.checkpoint.values[-1] if checkpoint is None else checkpoint
    sigmas = _pick(ds.sigma.values, n_sigmas)
    modes = [m for m in ("denoise", "generate") if m in ds.mode.values]
    if not modes:
        raise FileNotFoundError("the sweep has neither a denoise nor a generate mode: no one-step spectra to draw")
    fig, axes = plt.subplots(1, len(modes), figsize=(5.2 * len(modes), 4.3), sharey=True, squeeze=False)
    for ax, mode in zip(axes[0], modes):
        output_spectra_panel(ax, ds, checkpoint, mode, sigmas)
    axes[0][0].set_ylabel(POWER_LABEL)
    axes[0][0].legend(fontsize=7, loc="lower left", title="dashed: Wiener; dots: f*(σ)", title_fontsize=7)
    fig.tight_layout()
    return fig


def relative_power_panel(ax: plt.Axes, ds: xr.Dataset, checkpoint, *, mode: str = "generate", vlim: float = 20.0):
    """Into ``ax``: output / data power (dB, clipped at ±``vlim``) over σ × frequency, with f*(σ); returns the
    mesh (for a colour bar)."""
    freq = ds.freq.values
    keep = freq > 0
    sig = ds.sigma.values
    rel = ds.relative_power_db.sel(checkpoint=checkpoint, mode=mode).mean("channel").values[:, keep]
    mesh = ax.pcolormesh(freq[keep], sig, np.clip(rel, -vlim, vlim), cmap="vlag", vmin=-vlim, vmax=vlim, shading="nearest")
    ax.plot(ds.snr_crossover.mean("channel").values, sig, color="black", lw=1.4, label="f*(σ)")
    frequency_axis(ax, _size(ds))
    ax.set_yscale("log")
    ax.set_title(checkpoint_label(ds, checkpoint), fontsize=10)
    return mesh


def relative_power_heatmap(ds: xr.Dataset, checkpoints=None, *, mode: str = "generate", vlim: float = 20.0) -> plt.Figure:
    """Relative power (dB) of the one-step output over σ × frequency, one panel per checkpoint.

    Blue: the output lacks power in that band; red: it has too much; white: it matches the data. The black line is
    the SNR crossover ``f*(σ)``.
    """
    theme()
    checkpoints = _pick(ds.checkpoint.values, 4) if checkpoints is None else list(checkpoints)
    fig, axes = plt.subplots(1, len(checkpoints), figsize=(3.6 * len(checkpoints) + 1.0, 3.8), sharey=True, squeeze=False)
    mesh = None
    for ax, ck in zip(axes[0], checkpoints):
        mesh = relative_power_panel(ax, ds, ck, mode=mode, vlim=vlim)
    axes[0][0].set_ylabel(SIGMA_LABEL)
    axes[0][0].legend(fontsize=7, loc="upper right")
    cbar = fig.colorbar(mesh, ax=axes[0].tolist(), shrink=0.9, pad=0.02)
    cbar.set_label(f"output / data power (dB), {mode} mode")
    return fig


def _draw_cutoff(ax: plt.Axes, sigma, values, flags, style: dict, label: str) -> None:
    """Measured cutoffs as a line with filled markers; bounds as open triangles pointing where the truth lies
    (▼ upper bound: the criterion already fails at the first bin; ▲ lower bound: it never fails)."""
    v = np.asarray(values, dtype=float)
    f = np.asarray(flags)
    ax.plot(sigma, np.where(f == 0, v, np.nan), color=style["color"], marker=style["marker"], ls=style["ls"], lw=1.6,
            ms=4, label=label)
    for flag, marker in ((-1, "v"), (1, "^")):
        sel = f == flag
        if sel.any():
            ax.plot(np.asarray(sigma)[sel], v[sel], ls="none", marker=marker, ms=6, mfc="none", mec=style["color"],
                    mew=1.2)


def cutoff_panel(ax: plt.Axes, ds: xr.Dataset, name: str = "cutoff_freq", *, mode: str = "denoise") -> None:
    """Into ``ax``: the cutoff ``name`` (``cutoff_freq`` or ``coherence_cutoff``) against σ, one line per checkpoint
    (bounds as open triangles), with f*(σ) and, for the coherence cutoff, the Wiener filter's."""
    cks = ds.checkpoint.values
    for style, ck in zip(checkpoint_styles(len(cks)), cks):
        row = ds.sel(checkpoint=ck, mode=mode) if "mode" in ds[name].dims else ds.sel(checkpoint=ck)
        values, flags = measure.channel_cutoff(row[name], row[f"{name}_bound"])
        _draw_cutoff(ax, ds.sigma.values, values.values, flags.values, style, checkpoint_label(ds, ck))
    ax.plot(ds.sigma, ds.snr_crossover.mean("channel"), color="black", ls="--", lw=1.4, label="f*(σ): data power = σ²")
    if name == "coherence_cutoff" and "wiener_coherence_cutoff" in ds:
        values, flags = measure.channel_cutoff(ds.wiener_coherence_cutoff, ds.wiener_coherence_cutoff_bound)
        ax.plot(ds.sigma, values.where(flags == 0), color="grey", ls=":", lw=1.6,
                label="stationary Wiener filter (measured part)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _octave_ticks(ax.yaxis, _size(ds))
    ax.set_xlabel(SIGMA_LABEL)


def cutoff_figure(ds: xr.Dataset, *, mode: str = "denoise") -> plt.Figure:
    """Cutoff frequencies against σ, one line per checkpoint, with the SNR crossover ``f*(σ)``.

    Left: ``f_c``, the lowest frequency where the output's power departs from the data's by more than 3 dB (too
    little *or* too much). Right (denoise mode): the coherence cutoff, where the output stops carrying the clean
    image (coherence < 0.5), beside the stationary Wiener filter's. Bounds are drawn as open triangles, not
    measurements: ▼ the criterion fails already at the lowest frequency, ▲ it never fails.
    """
    theme()
    panels = [("cutoff_freq", "f_c: |output / data power| > 3 dB")]
    if mode == "denoise" and "coherence_cutoff" in ds:
        panels.append(("coherence_cutoff", "coherence with the clean image < 0.5"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.3), sharey=True, squeeze=False)
    for ax, (name, title) in zip(axes[0], panels):
        cutoff_panel(ax, ds, name, mode=mode)
        ax.set_title(title, fontsize=10)
    axes[0][0].set_ylabel("cutoff frequency (cycles/pixel)")
    axes[0][-1].legend(fontsize=7, title="open ▼/▲: bound, not a measurement", title_fontsize=7)
    fig.suptitle(f"Up to which frequency the one-step output is right ({mode} mode)", fontsize=11)
    fig.tight_layout()
    return fig


def transfer_panel(ax: plt.Axes, ds: xr.Dataset, checkpoint, name: str, sigmas) -> None:
    """Into ``ax``: the ``transfer`` function or the ``coherence`` of the one-step denoiser (solid) at each of
    ``sigmas``, against the stationary Wiener filter's (dashed); channel means, DC left out."""
    row = ds.sel(checkpoint=checkpoint, mode="denoise")
    for colour, sigma in zip(_sigma_colours(len(sigmas)), sigmas):
        ax.plot(ds.freq[1:], row[name].sel(sigma=sigma).mean("channel")[1:], color=colour, lw=1.6, label=f"σ = {sigma:.3g}")
        ax.plot(ds.freq[1:], ds[f"wiener_{name}"].sel(sigma=sigma).mean("channel")[1:], color=colour, lw=1.0, ls="--")
    frequency_axis(ax, _size(ds))
    ax.set_ylabel("transfer function <Pxy>/<Pyy>" if name == "transfer" else "coherence <Pxy>²/(<Pxx><Pyy>)")
    ax.axhline(1.0, color="grey", lw=0.8)
    if name == "coherence":
        ax.set_ylim(-0.02, 1.05)


def transfer_figure(ds: xr.Dataset, checkpoint=None, *, n_sigmas: int = 5) -> plt.Figure:
    """Transfer function and coherence of the one-step denoiser (solid) against the Wiener filter's (dashed)."""
    theme()
    checkpoint = ds.checkpoint.values[-1] if checkpoint is None else checkpoint
    sigmas = _pick(ds.sigma.values, n_sigmas)
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0), sharex=True)
    for ax, name in zip(axes, ("transfer", "coherence")):
        transfer_panel(ax, ds, checkpoint, name, sigmas)
    axes[0].legend(fontsize=7, title="dashed: Wiener", title_fontsize=7)
    fig.suptitle(f"One-step denoiser vs the stationary Wiener filter ({checkpoint_label(ds, checkpoint)})", fontsize=10)
    fig.tight_layout()
    return fig


def band_statistic_panel(ax: plt.Axes, ds: xr.Dataset, var: str, band, *, mode: str = "generate") -> None:
    """Into ``ax``: the per-image band statistic ``var`` (``band_kurtosis``, ``band_power_wasserstein`` or
    ``diversity_ratio``) in ``band`` against σ, one line per checkpoint, with the data's value as a black line
    (and Gaussian noise's kurtosis, 3, dotted)."""
    cks = ds.checkpoint.values
    for style, ck in zip(checkpoint_styles(len(cks)), cks):
        row = ds.sel(checkpoint=ck, mode=mode, band=band)
        ax.plot(ds.sigma, row[var].mean("channel"), ms=3, lw=1.3, label=checkpoint_label(ds, ck), **style)
    if var == "band_kurtosis":
        ax.axhline(float(ds.data_band_kurtosis.sel(band=band).mean("channel")), color="black", lw=1.4, label="data")
        ax.axhline(3.0, color="grey", lw=0.8, ls=":", label="Gaussian (3)")
    elif var == "diversity_ratio":
        ax.axhline(1.0, color="black", lw=1.4)
    ax.set_xscale("log")


def band_statistics_figure(ds: xr.Dataset, *, mode: str = "generate") -> plt.Figure:
    """Per-image band statistics against σ, per checkpoint: band-pass kurtosis (data's marked by a black line)
    and the Wasserstein distance of per-image log band power to the data's, one column per band.

    Kurtosis near 3 means Gaussian-like texture (coloured noise); natural images are sparser (higher).
    """
    theme()
    bands = list(ds.band.values)
    fig, axes = plt.subplots(3, len(bands), figsize=(3.6 * len(bands), 8.0), sharex=True, squeeze=False)
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
    # the legend goes where the curves are not: diversity ratios sit well below the data's 1
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[2][0].legend(handles, labels, fontsize=7, ncol=2, loc="center right")
    fig.suptitle(f"Structure or coloured noise? Per-image band statistics ({mode} mode)", fontsize=11)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------------------
# fine-tuning figures (input: the logs of freqlab.gan.finetune)
# --------------------------------------------------------------------------------------------------------------
RUN_LABELS = {"pretrained": "from pre-trained (D2O-F)", "random": "from random init (control)"}


def finetune_figure(logs: dict[str, xr.Dataset], *, seeds: dict[str, list[xr.Dataset]] | None = None) -> plt.Figure:
    """Per-band log-spectral distance and per-image band statistics against images seen, one line per run.

    ``seeds`` (``{name: [log, ...]}``, e.g. :func:`freqlab.figures.seed_logs`): the other seeds of each run are
    drawn as thin lines of the run's colour, so the spread over seeds shows beside the run in ``logs``.

    Rows (channel means): log-spectral distance to the data (dB), diversity ratio of per-image log band power (1 = as diverse as
    the data, ~0 = one texture), Wasserstein distance of per-image log band power (dB), band-pass kurtosis gap
    (0 = as sparse as the data). Columns: bands.
    """
    theme()
    first = next(iter(logs.values()))
    bands = list(first.band.values)
    rows = (("lsd", "log-spectral distance (dB)", None),
            ("diversity_ratio", "diversity ratio (output / data)", 1.0),
            ("band_power_wasserstein", "Wasserstein, log band power (dB)", 0.0),
            ("kurtosis_gap", "kurtosis gap (output − data)", 0.0))
    fig, axes = plt.subplots(len(rows), len(bands), figsize=(3.7 * len(bands), 2.5 * len(rows)), sharex=True, squeeze=False)
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
    axes[0][0].legend(fontsize=7)
    fig.suptitle("What GAN fine-tuning adds, band by band (dotted: the data's value)", fontsize=11)
    fig.tight_layout()
    return fig


def moment_of(path: Path) -> int:
    """Images seen of a sample grid file ``images_seen-NNNNNNN.png``."""
    return int(re.search(r"(\d+)", path.stem).group(1))


def sample_moments(grids: dict[str, list[Path]], n_moments: int = 3) -> list[int]:
    """The moments (images seen) :func:`samples_figure` shows: up to ``n_moments`` spread over those every run has."""
    runs = [k for k in grids if k != "data"]
    moments = sorted({moment_of(p) for k in runs for p in grids[k]})
    shared = [m for m in moments if all(any(moment_of(p) == m for p in grids[k]) for k in runs)]
    return _pick(shared or moments, n_moments)


def samples_figure(grids: dict[str, list[Path]], *, n_moments: int = 3) -> plt.Figure:
    """Sample grids of each fine-tuning run at the same moments (images seen), side by side, with the data."""
    from PIL import Image

    theme()
    runs = [k for k in grids if k != "data"]
    chosen = sample_moments(grids, n_moments)
    ncols = len(chosen) + (1 if "data" in grids else 0)
    fig, axes = plt.subplots(len(runs), ncols, figsize=(2.9 * ncols, 3.0 * len(runs)), squeeze=False)
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
    fig.suptitle("One-step samples during GAN fine-tuning (same z in every panel)", fontsize=11)
    fig.tight_layout()
    return fig


def frozen_parameters_figure(log: xr.Dataset) -> plt.Figure:
    """Frozen and trainable parameters by layer type under the run's freezing policy (horizontal stacked bars)."""
    theme()
    frozen = log.n_frozen.values.astype(float)
    trainable = log.n_trainable.values.astype(float)
    keep = (frozen + trainable) > 0
    names = [str(n) for n in np.asarray(log.layer_type.values)[keep]]
    frozen, trainable = frozen[keep], trainable[keep]
    order = np.argsort(frozen + trainable)
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.5))
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
    fig.tight_layout()
    return fig
