"""The figure of the per-layer feature spectra (:mod:`freqlab.inside.layer_spectra`): a saved Dataset in, a Figure out."""

from __future__ import annotations

import numpy as np
import seaborn as sns
import xarray as xr

from freqlab.inside.layer_spectra import band_power
from freqlab.plots.style import frequency_axis, palette, panels, themed

__all__ = ["layer_spectra_figure", "pick_checkpoints", "pick_sigmas"]

MAX_SIGMAS = 4
MAX_CHECKPOINTS = 3
HIGH_EDGE = 0.25  # the high band's lower edge (cycles/pixel of the image)
CMAP = "rocket"


def pick_sigmas(ds: xr.Dataset, sigmas=None) -> list[float]:
    """At most :data:`MAX_SIGMAS` noise levels spread over the file's, the last σ_max; or the nearest to ``sigmas``."""
    values = [float(s) for s in ds.sigma.values]
    if sigmas is not None:
        return sorted({values[int(np.argmin([abs(np.log(v / float(s))) for v in values]))] for s in sigmas})
    if len(values) <= MAX_SIGMAS:
        return values
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, MAX_SIGMAS)).astype(int))
    return [values[i] for i in idx]


def pick_checkpoints(ds: xr.Dataset, checkpoint=None) -> list:
    """The asked checkpoint(s), else at most :data:`MAX_CHECKPOINTS`: the first, the last trained one, and the
    ``random-init`` control when the file has it."""
    names = [str(c) for c in ds.checkpoint.values]
    if checkpoint is not None:
        asked = [checkpoint] if isinstance(checkpoint, str) else list(checkpoint)
        missing = [c for c in asked if c not in names]
        if missing:
            raise ValueError(f"checkpoint {missing[0]!r} is not in the file; it has {', '.join(names)}")
        return asked
    if len(names) <= MAX_CHECKPOINTS:
        return names
    control = [n for n in names if n == "random-init"]
    trained = [n for n in names if n != "random-init"]
    return list(dict.fromkeys([trained[0], trained[-1]] + control))[:MAX_CHECKPOINTS] if control else \
        [trained[0], trained[len(trained) // 2], trained[-1]]


def _layer_labels(ds: xr.Dataset) -> list[str]:
    return [f"{name}  {int(h)}×{int(w)}" for name, h, w in
            zip(ds.layer.values, ds.layer_resolution.values, ds.layer_width.values)]


@themed
def layer_spectra_figure(ds: xr.Dataset, checkpoint=None, *, sigmas=None, relative_to_white: bool = True,
                         band: str = "high", axes=None) -> np.ndarray:
    """Where each band lives: per noise level (rows; default σ_max only, the D2O generator's input), a heatmap of
    layers (forward order, top to bottom) × image frequency for each checkpoint (at most 3, or ``checkpoint``),
    and beside them each block's **absolute** power in ``band`` (dB), one line per checkpoint: a share of a block's
    power can fall while the block's power in that band grows.

    Heatmap colour: ``10·log10(layer_power)``, the block's radial power per mode as a fraction of its non-DC power
    (dB), by default times the block's number of non-DC modes (``layer_modes``), i.e. relative to a white spectrum
    of the same power on the same grid: 0 dB is white, and a coarse block is not brighter only for having fewer
    modes to share its power. ``relative_to_white=False`` draws the plain fraction. Grey cells lie above the
    block's Nyquist. The dashed line is the high band's lower edge, 0.25 cycles/pixel; thin lines separate the
    stages. ``axes``: a σ × (checkpoints + 1) grid (else a new figure). Returns the Axes drawn on.
    """
    checkpoints = pick_checkpoints(ds, checkpoint)
    sig = pick_sigmas(ds, sigmas) if sigmas is not None else [float(ds.sigma.values[-1])]
    freq = ds.freq.values
    keep = freq > 0
    size = int(round(1.0 / float(freq[1]))) if freq.size > 1 else 32
    step = float(freq[1] - freq[0]) if freq.size > 1 else 1.0 / size
    edges = np.concatenate([freq[keep] - step / 2, [freq[keep][-1] + step / 2]])
    n_layers = ds.sizes["layer"]
    y_edges = np.arange(n_layers + 1) - 0.5
    power = ds.layer_power.sel(checkpoint=checkpoints, sigma=sig).isel(freq=np.nonzero(keep)[0])
    if relative_to_white:
        power = power * _layer_modes(ds)
    db = 10 * np.log10(power)
    finite = db.values[np.isfinite(db.values)]
    vmin, vmax = (np.percentile(finite, [1, 99.5]) if finite.size else (-40.0, 0.0))
    cmap = sns.color_palette(CMAP, as_cmap=True).with_extremes(bad="#f2f2f2")
    row_h = max(3.4, 0.25 * n_layers + 1.4)
    fig, axes, owned = panels(axes, len(sig), len(checkpoints) + 1,
                              figsize=(3.0 * len(checkpoints) + 3.4 + 2.6, row_h * len(sig)),
                              sharey=True, layout="constrained",
                              gridspec_kw={"width_ratios": [1.0] * len(checkpoints) + [1.1]})
    stages = [str(s) for s in ds.layer_stage.values]
    breaks = [i - 0.5 for i in range(1, n_layers) if stages[i] != stages[i - 1]]
    absolute = 10 * np.log10(band_power(ds).sel(band=band, checkpoint=checkpoints))
    mesh = None
    for r, s in enumerate(sig):
        at = f", σ = {s:.3g}" if len(sig) > 1 else ""
        for c, ck in enumerate(checkpoints):
            ax = axes[r][c]
            values = db.sel(checkpoint=ck, sigma=s).transpose("layer", "freq").values
            mesh = ax.pcolormesh(edges, y_edges, np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax,
                                 shading="flat", rasterized=True)
            _heatmap_axes(ax, breaks, size, edges, n_layers)
            ax.set_title(_checkpoint_text(ds, ck) + at, fontsize=10)
            if c == 0:
                ax.set_yticks(np.arange(n_layers), _layer_labels(ds), fontsize=8)
        _absolute_panel(axes[r][-1], absolute.sel(sigma=s), checkpoints, breaks, band, at)
    axes[0][-1].legend(fontsize=8, loc="center", frameon=True)  # the coarse blocks hold no high band: room there
    cbar = fig.colorbar(mesh, ax=axes[:, :-1].ravel().tolist(), shrink=0.8, pad=0.01, location="bottom",
                        aspect=40)
    cbar.set_label("power per mode relative to white, same total (dB)" if relative_to_white
                   else "power per mode / the block's total (dB)")
    if owned:
        mode = ds.attrs.get("mode", "?")
        what = "input σ·z" if mode == "generate" else "input x0 + σ·n" if mode == "denoise" else mode
        at = f"σ = {sig[0]:g}" + (" (σ_max)" if sig[0] == float(ds.sigma.values[-1]) else "") if len(sig) == 1 \
            else f"{len(sig)} noise levels"
        fig.suptitle(f"Where each band lives: feature spectra of each UNet block, {mode} mode ({what}), {at}, "
                     f"{ds.attrs.get('n_images', '?')} images; dashed: 0.25 cycles/pixel (high band above); grey: "
                     "above the block's Nyquist", fontsize=10)
    return axes


def _heatmap_axes(ax, breaks, size: int, edges, n_layers: int) -> None:
    """The high band's edge, the stage breaks and the axes of one heatmap (layers top to bottom)."""
    ax.axvline(HIGH_EDGE, color="white", ls="--", lw=1.2)
    for b in breaks:
        ax.axhline(b, color="white", lw=0.6, alpha=0.8)
    ax.grid(False)
    frequency_axis(ax, size)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(n_layers - 0.5, -0.5)  # forward order, top to bottom


def _absolute_panel(ax, absolute: xr.DataArray, checkpoints, breaks, band: str, at: str) -> None:
    """Each block's absolute power in ``band`` (dB), one line per checkpoint, layers top to bottom."""
    n_layers = absolute.sizes["layer"]
    for colour, ck in zip(palette(len(checkpoints)), checkpoints):
        ax.plot(absolute.sel(checkpoint=ck).values, np.arange(n_layers), "o-", color=colour, ms=3.5, lw=1.4,
                label=str(ck))
    for b in breaks:
        ax.axhline(b, color="0.8", lw=0.6)
    ax.set_ylim(n_layers - 0.5, -0.5)
    ax.set_xlabel(f"{band}-band power of the block (dB)")
    ax.set_title(f"absolute {band}-band power{at}", fontsize=10)


def _layer_modes(ds: xr.Dataset) -> xr.DataArray:
    if "layer_modes" in ds.coords:
        return ds.layer_modes
    from freqlab import spectral

    return xr.DataArray([float(spectral.radial_binning(int(h), int(w)).counts[1:].sum()) for h, w in
                         zip(ds.layer_resolution.values, ds.layer_width.values)], dims="layer")


def _checkpoint_text(ds: xr.Dataset, checkpoint) -> str:
    step = float(ds.step.sel(checkpoint=checkpoint)) if "step" in ds.coords else float("nan")
    return f"{checkpoint} (step {int(step):,})" if np.isfinite(step) and step >= 0 else str(checkpoint)
