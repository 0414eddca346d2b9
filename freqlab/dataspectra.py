"""Spectra of data sources with confidence bands and fitted power-law slopes (the ``freqlab spectra`` command).

The teaching picture: natural images (and dead leaves) follow a power law ``P ∝ f^slope`` with slope near -2, a
Gaussian random field follows the law it was made with, white noise is flat.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from freqlab import spectral
from freqlab.data import DataSource, make_source
from freqlab.stats import SpectrumAccumulator

__all__ = ["DEFAULT_SOURCES", "data_spectra"]

#: The embedded default data beside its three references.
DEFAULT_SOURCES: tuple[str, ...] = ("natural", "deadleaves", "grf", "white")


def data_spectra(
    sources: Sequence[str | DataSource] = DEFAULT_SOURCES,
    *,
    n_images: int = 1024,
    batch_size: int = 256,
    resolution: int | tuple[int, int] = 32,
    grayscale: bool = False,
    split: str = "train",
    window: spectral.WindowSpec = "hann",
    fit_range: tuple[float, float] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> xr.Dataset:
    """Radially averaged power spectra of data sources, streamed in batches.

    Parameters
    ----------
    sources : names for :func:`freqlab.data.make_source` or DataSource objects
    n_images : images per source (capped at a finite source's size)
    window : window of the spectra (Hann by default: crops are not periodic, and the edge discontinuity of an
        unwindowed crop leaks power along the axes)
    fit_range : (fmin, fmax) in cycles/pixel of the slope fit; default ``(2/max(H, W), 0.4)``, which leaves out
        the DC bin and the band near Nyquist where downsampling filters act.

    Returns
    -------
    xr.Dataset with dims ``(source, channel, freq)``: ``power`` (mean per-mode power), ``power_sem`` (standard
    error over images), ``slope``, ``slope_ci_low``, ``slope_ci_high`` and ``intercept`` (per source, fitted on the
    channel-mean spectrum), ``n_images`` (per source).
    """
    if n_images < 2:
        raise ValueError(f"n_images must be at least 2 to estimate confidence bands, got {n_images}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    made = [s if isinstance(s, DataSource) else make_source(s, resolution=resolution, grayscale=grayscale,
                                                             split=split, seed=seed) for s in sources]
    shapes = {src.shape for src in made}
    if len(shapes) != 1:
        raise ValueError(f"all sources must have the same image shape to share a frequency axis, got {sorted(shapes)}")
    c, h, w = made[0].shape
    fmin, fmax = fit_range if fit_range is not None else (2.0 / max(h, w), 0.4)
    rows, counts, freq = [], [], None
    for src in made:
        n = n_images if src.size is None else min(n_images, src.size)
        acc = SpectrumAccumulator()
        bar = tqdm(total=n, desc=f"spectra {src.name}", unit="img", disable=not progress, leave=False)
        for start in range(0, n, batch_size):
            batch = src.sample(min(batch_size, n - start), start).to(device)
            # the mean is removed before windowing: a window spreads the DC power into the lowest bins
            spec = spectral.radial_power_spectrum(batch, window=window, remove_mean=window is not None)
            acc.update(spec.power)
            freq = spec.freq
            bar.update(batch.shape[0])
        bar.close()
        rows.append(acc)
        counts.append(n)
    mean = torch.stack([a.mean for a in rows]).cpu()
    sem = torch.stack([a.sem for a in rows]).cpu()
    fit = spectral.spectral_slope(freq.cpu(), mean.mean(1), fmin, fmax)
    names = [src.name for src in made]
    ds = xr.Dataset(
        {
            "power": (("source", "channel", "freq"), mean.numpy(), {"units": "image units² per mode", "long_name": "mean radial power"}),
            "power_sem": (("source", "channel", "freq"), sem.numpy(), {"units": "image units² per mode", "long_name": "standard error of the mean power"}),
            "slope": (("source",), fit.slope.numpy(), {"long_name": "power-law exponent of P(f)"}),
            "slope_ci_low": (("source",), fit.ci_low.numpy()),
            "slope_ci_high": (("source",), fit.ci_high.numpy()),
            "intercept": (("source",), fit.intercept.numpy(), {"long_name": "log10 P at f = 1 cycle/pixel"}),
            "n_images": (("source",), np.asarray(counts)),
        },
        coords={
            "source": names,
            "channel": np.arange(c),
            "freq": ("freq", freq.cpu().double().numpy(), {"units": "cycles/pixel", "long_name": "radial frequency (bin centre)"}),
        },
        attrs={
            "title": "radially averaged power spectra of data sources",
            "normalisation": "P(k) = |DFT(w x)(k)|^2 / (H W mean(w^2)); bin power = mean of P(k) over full-plane modes",
            "window": str(window),
            "remove_mean": int(window is not None),
            "height": h,
            "width": w,
            "split": split,
            "seed": seed,
            "fit_fmin": fmin,
            "fit_fmax": fmax,
            "confidence": 0.95,
            "image_range": "[-1, 1] (grf and white are Gaussian, unclipped)",
        },
    )
    return ds


def slope_label(ds: xr.Dataset, source: str) -> str:
    """``"natural: slope -2.05 [-2.10, -2.00]"`` for legends and summaries."""
    row = ds.sel(source=source)
    return f"{source}: slope {float(row.slope):.2f} [{float(row.slope_ci_low):.2f}, {float(row.slope_ci_high):.2f}]"


def summary(ds: xr.Dataset) -> str:
    """One line per source with its fitted slope and the fit range."""
    lines = [f"power-law fits over {ds.attrs['fit_fmin']:.3g}-{ds.attrs['fit_fmax']:.3g} cycles/pixel (95% CI):"]
    lines += ["  " + slope_label(ds, str(s)) + f"  ({int(ds.n_images.sel(source=s))} images)" for s in ds.source.values]
    return "\n".join(lines)


