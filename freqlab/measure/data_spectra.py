"""Spectra of data sources with confidence bands and fitted power-law slopes (the ``freqlab spectra`` command).

The teaching picture: natural images (and dead leaves) follow a power law ``P ∝ f^slope`` with slope near -2, a
Gaussian random field follows the law it was made with, white noise is flat.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from freqlab import spectral
from freqlab.data.base import DataSource
from freqlab.data.native import NativeImages
from freqlab.data.sources import make_source
from freqlab.measure import core as measure
from freqlab.measure.data_spectra_config import DEFAULT_SOURCES, DataSpectraConfig
from freqlab.measure.native import OnAxis, channels_of, default_fit_range, native_attrs, native_batches, run_axis
from freqlab.runtime import results
from freqlab.runtime.devices import resolve_device
from freqlab.runtime.outputs import holding
from freqlab.runtime.settings import configure

__all__ = ["data_spectra", "summarize", "to_json"]



@holding("out")
def data_spectra(
    sources: Sequence[str | DataSource | NativeImages] = DEFAULT_SOURCES,
    *,
    config: DataSpectraConfig | None = None,
    device: torch.device | str = "auto",
    out: str | os.PathLike | None = None,
    progress: bool = True,
    **settings,
) -> xr.Dataset:
    """Radially averaged power spectra and per-image band statistics of data sources, streamed in batches.

    The same measurement as the sweep and the fine-tuning log (:mod:`freqlab.measure.core`), so ``data_power`` here is
    ``data_power`` there.

    Parameters
    ----------
    sources : names for :func:`freqlab.data.sources.make_source`, DataSource objects, or
        :class:`freqlab.data.native.NativeImages` (``source_for_path(path, native=True)``: images of any sizes)
    config : :class:`freqlab.measure.data_spectra_config.DataSpectraConfig` (images, resolution, window, bands,
        fit range, native mode; each field documented there); ``**settings`` set single fields of it. The
        window: freqlab's Hann by default, each image's mean removed first (crops are not periodic, and the edge
        discontinuity of an unwindowed crop leaks power along the axes). The fit range: by default ``(2/N, 0.4)``
        with ``N = max(H, W)`` (native: the common axis's ``N``), which leaves out the DC bin and the band near
        Nyquist where downsampling filters act. Native: every image at its own size (no crop, no resize), each
        image's modes averaged onto one common frequency axis: bins of width ``1/N`` centred on ``k/N``
        cycles/pixel, ``N`` the smallest longer side ``max(H, W)`` of any image in the run
        (:func:`freqlab.measure.native.common_axis`); implied when a source is a ``NativeImages``.
    device : "auto" (CUDA when there is one, else the CPU), "cpu", "cuda", ...
    out : netCDF path, written atomically (:func:`freqlab.runtime.results.save`); None: memory only.
    progress : a bar per source on stderr.

    Returns
    -------
    xr.Dataset with dims ``source``, ``channel``, ``freq``, ``band``: the data variables of
    :func:`freqlab.measure.core.data_variables` (``data_power``, ``data_power_sem``, ``data_band_log_power``, ...),
    ``slope``, ``slope_ci_low``, ``slope_ci_high`` and ``intercept`` (per source, fitted on the channel-mean
    spectrum), ``n_images`` (per source), and ``image_slope`` (source, image): the slope of each image's own spectrum, the
    spread of slopes that one mean spectrum hides (NaN-padded past a source's images). Native runs say so in the
    attributes ``image_size``, ``image_sizes``, ``axis_size`` and ``frequency_axis`` (instead of ``height``,
    ``width``).
    """
    cfg = configure(DataSpectraConfig, config, settings, what="data spectra")
    n_images, batch_size, window, bands, fit_range = cfg.n_images, cfg.batch_size, cfg.window, cfg.bands, cfg.fit_range
    split, seed, native = cfg.split, cfg.seed, cfg.native
    device = resolve_device(device)
    sources = list(sources)
    native = native or any(isinstance(s, NativeImages) for s in sources)
    made, labels = _open_sources(sources, resolution=cfg.resolution, grayscale=cfg.grayscale, split=split, seed=seed,
                                 native=native)
    counts = [n_images if src.size is None else min(n_images, src.size) for src in made]
    if native:
        axis = run_axis(made, counts, labels, fit_range)
        an = OnAxis((channels_of(made[0]), axis.size, axis.size), axis, bands, window, device)
        size_attrs = native_attrs(made, counts, labels, axis)
    else:
        an = measure.Analysis(made[0].shape, bands, window, device)
        size_attrs = {"height": made[0].shape[1], "width": made[0].shape[2]}
    fmin, fmax = fit_range if fit_range is not None else default_fit_range(axis.size if native else max(an.shape[1:]))
    per_source, slopes = [], []
    for src, label, n in zip(made, labels, counts):
        batches = (native_batches(src, n, axis, bands, window, batch_size, device) if native
                   else _batches(src, n, an, batch_size, device))
        stats, own = _measure_source(batches, label, n, an, fit_range=(fmin, fmax), progress=progress)
        per_source.append(measure.data_variables(stats))
        slopes.append(own)
    variables = {name: measure.variable(name, ("source",) + dims, torch.stack([v[name][1] for v in per_source]))
                 for name, (dims, _) in per_source[0].items()}
    variables.update(_slope_variables(an, torch.as_tensor(variables["data_power"][1]), (fmin, fmax), counts, slopes))
    attrs = {
        "title": "radially averaged power spectra of data sources",
        "spectrum_normalisation": measure.NORMALISATION,
        "spectrum_window": measure.window_text(window),
        "band_statistics": measure.BAND_STATISTICS,
        "window": str(window),
        **size_attrs,
        "split": split,
        "seed": seed,
        "fit_fmin": fmin,
        "fit_fmax": fmax,
        "confidence": 0.95,
        "image_range": "[-1, 1] (grf and white are Gaussian, unclipped)",
        **results.provenance_attrs(),
    }
    ds = xr.Dataset(variables, coords={"source": labels, **measure.coords(an)}, attrs=attrs)
    if out is not None:
        results.save(ds, out)
    return ds


def _open_sources(sources, *, resolution, grayscale: bool, split: str, seed: int,
                  native: bool = False) -> tuple[list[DataSource | NativeImages], list[str]]:
    """The sources made (names through :func:`freqlab.data.sources.make_source`) and their labels (repeats numbered); at
    least one, all of one image shape (they share a frequency axis), or with ``native`` of one channel count."""
    made = [s if isinstance(s, (DataSource, NativeImages)) else make_source(
        s, resolution=resolution, grayscale=grayscale, split=split, seed=seed) for s in sources]
    if not made:
        raise ValueError("no data sources given")
    labels = _unique_labels([str(src.name) for src in made])
    shapes = {channels_of(src) if native else src.shape for src in made}
    if len(shapes) != 1:
        what = "channel count" if native else "image shape"
        hint = "" if native else " (native=True, --native: each image at its own size, on one frequency axis)"
        raise ValueError(f"all sources must have the same {what} to share a frequency axis, got {sorted(shapes)}"
                         + hint)
    return made, labels


def _batches(src: DataSource, n: int, an: measure.Analysis, batch_size: int, device):
    """The first ``n`` images of a fixed-size source: ``(analysis, indices, images)`` per batch."""
    for start in range(0, n, batch_size):
        k = min(batch_size, n - start)
        yield an, torch.arange(start, start + k), src.sample(k, start).to(device)


def _measure_source(batches, label: str, n: int, an: measure.Analysis, *, fit_range: tuple[float, float],
                    progress: bool) -> tuple[measure.ImageStats, torch.Tensor]:
    """The ``n`` images of one source, streamed as ``(analysis, indices, images)`` batches: their spectra and band
    statistics, and the slope of each image's own spectrum (:func:`image_slopes`) ``(n,)`` in image order."""
    stats = measure.ImageStats(an, keep=0)
    own = torch.full((n,), math.nan, dtype=torch.float64)
    bar = tqdm(total=n, desc=f"spectra {label}", unit="img", disable=not progress, leave=False)
    done = 0
    for an_batch, idx, batch in batches:
        fx = stats.update(an_batch, batch, slice(done, done + len(idx)), what=f"{label} images")
        own[idx] = image_slopes(an_batch, fx, *fit_range)
        done += len(idx)
        bar.update(len(idx))
    bar.close()
    return stats, own


def _slope_variables(an: measure.Analysis, power: torch.Tensor, fit_range: tuple[float, float], counts: list[int],
                     slopes: list[torch.Tensor]) -> dict[str, tuple]:
    """The power-law fit of each source's channel-mean spectrum (``power`` ``(source, channel, freq)``) with its
    95 % CI, the images per source and each image's own slope (NaN-padded)."""
    fit = spectral.spectral_slope(an.freq, power.mean(1), *fit_range)
    return {
        "slope": (("source",), fit.slope.numpy(), {"long_name": "power-law exponent of P(f)", "units": "1"}),
        "slope_ci_low": (("source",), fit.ci_low.numpy(), {"long_name": "lower end of the slope's 95% CI",
                                                          "units": "1"}),
        "slope_ci_high": (("source",), fit.ci_high.numpy(), {"long_name": "upper end of the slope's 95% CI",
                                                            "units": "1"}),
        "intercept": (("source",), fit.intercept.numpy(), {"long_name": "log10 P at f = 1 cycle/pixel", "units": "1"}),
        "n_images": (("source",), np.asarray(counts), {"long_name": "images per source", "units": "1"}),
        "image_slope": (("source", "image"), _padded(slopes), {
            "long_name": "power-law exponent of each image's own spectrum (channel mean, same window and fit range; "
                         "NaN past a source's images, or where a bin in the range had no power)", "units": "1"}),
    }


def image_slopes(an: measure.Analysis, fx: torch.Tensor, fmin: float, fmax: float) -> torch.Tensor:
    """The power-law slope of each image's own radial spectrum (channel mean), from its spectrum ``fx =
    an.fft(images)``, fitted over ``[fmin, fmax]`` like the sources' mean spectra, ``(N,)`` float64 on the CPU; NaN
    for an image with a bin of zero power there."""
    power = an.radial(fx).mean(1).double().cpu()  # (N, n_bins)
    in_range = (an.freq > 0) & (an.freq >= fmin) & (an.freq <= fmax)
    usable = (power[:, in_range] > 0).all(-1)
    slope = spectral.spectral_slope(an.freq, power.clamp_min(1e-300), fmin, fmax).slope
    return torch.where(usable, slope, torch.nan)


def _padded(rows: list[torch.Tensor]) -> np.ndarray:
    """Rows of different lengths as one ``(len(rows), longest)`` array, NaN-padded."""
    out = np.full((len(rows), max(len(r) for r in rows)), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r.numpy()
    return out


def _unique_labels(names: list[str]) -> list[str]:
    """``names`` with repeats numbered (``folder``, ``folder-2``): every source gets its own row and curve."""
    seen: dict[str, int] = {}
    labels = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return labels


def slope_label(ds: xr.Dataset, source: str) -> str:
    """``"natural: slope -2.05 [-2.10, -2.00]"`` for legends and summaries."""
    row = ds.sel(source=source)
    return f"{source}: slope {float(row.slope):.2f} [{float(row.slope_ci_low):.2f}, {float(row.slope_ci_high):.2f}]"


def summarize(ds: xr.Dataset) -> str:
    """One line per source with its fitted slope and the fit range."""
    lines = [f"power-law fits over {ds.attrs['fit_fmin']:.3g}-{ds.attrs['fit_fmax']:.3g} cycles/pixel (95% CI):"]
    if "axis_size" in ds.attrs:  # native: say what the one axis is
        n = int(ds.attrs["axis_size"])
        lines.insert(0, f"images at their {ds.attrs['image_size']}, on common bins of width 1/{n} cycles/pixel "
                        "(the smallest longer side)")
    for s in ds.source.values:
        line = "  " + slope_label(ds, str(s)) + f"  ({int(ds.n_images.sel(source=s))} images)"
        if "image_slope" in ds:
            each = ds.image_slope.sel(source=s).values
            each = each[np.isfinite(each)]
            if each.size:
                q25, q50, q75 = np.quantile(each, [0.25, 0.5, 0.75])
                line += f"; one image at a time: median {q50:.2f}, half of them in [{q25:.2f}, {q75:.2f}]"
        lines.append(line)
    return "\n".join(lines)




def to_json(ds: xr.Dataset) -> dict:
    """Per source: the fitted slope with its 95 % interval and the images measured (``freqlab spectra --json``)."""
    return {"fit_range": [float(ds.attrs["fit_fmin"]), float(ds.attrs["fit_fmax"])],
            "sources": [{"name": str(s), "slope": float(ds.slope.sel(source=s)),
                         "slope_ci": [float(ds.slope_ci_low.sel(source=s)), float(ds.slope_ci_high.sel(source=s))],
                         "n_images": int(ds.n_images.sel(source=s))} for s in ds.source.values]}
