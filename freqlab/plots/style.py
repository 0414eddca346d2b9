"""freqlab's look, and what every figure family shares: the theme (applied in a context, never globally), the
palettes, the frequency axis, checkpoint labels and styles, saving, and the panels a figure draws into.

The look: seaborn's ``ticks`` style in the ``paper`` context, the colour-blind-safe palette, units on every axis,
log axes where the physics is a power law. A figure function draws into the ``ax=`` (or ``axes=``) it is given, or
into a new figure when given none, and returns what it drew on; :func:`figure_of` finds the Figure of that.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from pathlib import Path
from typing import Iterator

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import xarray as xr
from cycler import cycler

__all__ = ["FREQ_LABEL", "POWER_LABEL", "SIGMA_LABEL", "MARKERS", "theme", "theme_rc", "themed", "palette", "octave_ticks",
           "frequency_axis", "save_figure", "positive_freq", "pick", "axis_size", "sigma_colours",
           "checkpoint_styles", "checkpoint_label", "panels", "figure_of"]

FREQ_LABEL = "frequency (cycles/pixel)"
POWER_LABEL = "power per mode (image units²)"
SIGMA_LABEL = "noise level σ"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")

# what seaborn's set_theme(context="paper", style="ticks", palette="colorblind", font_scale=1.1, rc=...) sets, as
# one dict: applied with plt.rc_context, it changes nothing outside the figure call
_OVERRIDES = {"axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 110, "savefig.dpi": 160, "legend.frameon": False}


@functools.lru_cache(maxsize=1)
def _rc() -> dict:
    rc = dict(sns.plotting_context("paper", font_scale=1.1))
    rc.update(sns.axes_style("ticks"))
    rc["axes.prop_cycle"] = cycler("color", sns.color_palette("colorblind"))
    rc["font.family"] = "sans-serif"
    rc.update(_OVERRIDES)
    return rc


def theme_rc() -> dict:
    """freqlab's style as rcParams (a copy): ``plt.rcParams.update(theme_rc())`` makes it a notebook's own."""
    return dict(_rc())


@contextlib.contextmanager
def theme() -> Iterator[None]:
    """freqlab's figure style inside the ``with`` block; matplotlib's rcParams are as they were after it."""
    with plt.rc_context(_rc()):
        yield


def themed(draw):
    """A figure function drawn inside :func:`theme` (the style never leaks into the caller's rcParams)."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with theme():
            return draw(*args, **kwargs)

    return wrapper


def palette(n: int) -> list:
    """``n`` colours from the colour-blind-safe palette, in an order that keeps neighbours far apart."""
    colours = sns.color_palette("colorblind", 10)
    order = [0, 1, 2, 4, 3, 9, 5, 6, 8, 7]  # blue, orange, green, purple, vermillion, cyan, ...
    return [colours[order[i % 10]] for i in range(n)]


def octave_ticks(axis, size: int) -> None:
    """Ticks of a log frequency ``axis`` (``ax.xaxis``/``ax.yaxis``) at octaves 1/size .. 1/2, labelled as fractions."""
    ticks = [2.0**-k for k in range(1, int(np.log2(size)) + 1)][::-1]
    axis.set_ticks(ticks, [f"1/{int(round(1 / t))}" for t in ticks])
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def frequency_axis(ax: plt.Axes, size: int) -> None:
    """Log frequency axis with ticks at octaves 1/size .. 1/2 cycles/pixel, labelled as fractions."""
    ax.set_xscale("log")
    octave_ticks(ax.xaxis, size)
    ax.set_xlabel(FREQ_LABEL)


def figure_of(drawn) -> plt.Figure:
    """The Figure of what a figure function returned (a Figure, an Axes or an array of Axes)."""
    if isinstance(drawn, plt.Figure):
        return drawn
    if isinstance(drawn, plt.Axes):
        return drawn.figure
    first = np.asarray(drawn, dtype=object).flat[0]
    if isinstance(first, plt.Axes):
        return first.figure
    raise TypeError(f"expected a Figure, an Axes or Axes, got {type(drawn).__name__}")


def save_figure(fig, path: str | Path, formats: tuple[str, ...] = ("png", "pdf"), *, close: bool = False
                ) -> list[Path]:
    """Write ``fig`` (a Figure, or what a figure function returned) as ``path.png`` and ``path.pdf`` (suffix of
    ``path`` ignored), in freqlab's theme; returns the files written. ``close``: close the figure after (also when
    writing fails)."""
    fig = figure_of(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        with theme():  # savefig reads its dpi from rcParams
            for fmt in formats:
                target = path.with_suffix(f".{fmt}")
                # no creation date in the PDF: the same results give the same bytes, and a redraw changes nothing
                fig.savefig(target, bbox_inches="tight", metadata={"CreationDate": None} if fmt == "pdf" else None)
                written.append(target)
    finally:
        if close:
            plt.close(fig)
    return written


def panels(axes, nrows: int, ncols: int, **subplots) -> tuple[plt.Figure, np.ndarray, bool]:
    """The ``(nrows, ncols)`` grid of Axes a figure function draws into: ``axes`` (any Axes the caller gives, in
    row order), or a new figure made with ``plt.subplots(nrows, ncols, **subplots)``. Returns the figure, the grid
    and whether the function owns the figure (then it may set the title and the layout)."""
    if axes is None:
        fig, grid = plt.subplots(nrows, ncols, squeeze=False, **subplots)
        return fig, grid, True
    flat = [axes] if isinstance(axes, plt.Axes) else list(np.asarray(axes, dtype=object).flat)
    if len(flat) != nrows * ncols or not all(isinstance(a, plt.Axes) for a in flat):
        raise ValueError(f"this figure draws into {nrows}×{ncols} Axes; got {len(flat)} "
                         f"({', '.join(sorted({type(a).__name__ for a in flat}))})")
    return flat[0].figure, np.asarray(flat, dtype=object).reshape(nrows, ncols), False


def positive_freq(da: xr.DataArray) -> xr.DataArray:
    """Drop the DC bin (f = 0), which has no place on a log axis."""
    return da.sel(freq=da.freq > 0)


def pick(values, n: int) -> list:
    """Up to ``n`` items spread evenly over ``values`` (first and last included)."""
    values = list(values)
    if len(values) <= n:
        return values
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, n)).astype(int))
    return [values[i] for i in idx]


def axis_size(ds: xr.Dataset) -> int:
    """The image size behind a Dataset's frequency axis (bins of width 1/size)."""
    return int(round(1.0 / float(ds.freq.values[1]))) if ds.sizes["freq"] > 1 else 32


def sigma_colours(n: int) -> list:
    return sns.color_palette("viridis", n)


def _checkpoint_colours(n: int) -> list:
    """Sequential colours for a training trajectory (light = early, dark = late), colour-blind safe."""
    return sns.color_palette("rocket_r", n + 1)[1:] if n > 1 else [palette(1)[0]]


def checkpoint_styles(n: int) -> list[dict]:
    """``n`` line styles for a training trajectory: sequential colour (light = early, dark = late), and a marker and
    dash of its own, so that neighbouring checkpoints stay apart where their colours are close."""
    return [{"color": c, "marker": MARKERS[i % len(MARKERS)], "ls": "-" if i % 2 == 0 else "--"}
            for i, c in enumerate(_checkpoint_colours(n))]


def checkpoint_label(ds: xr.Dataset, checkpoint) -> str:
    """The legend's name of ``checkpoint``: a name the user gave (``sweep({"pre-trained": path})``) as given;
    a checkpoint named after its own folder as ``run, step N``, the run being the folder holding it
    (``RUN/checkpoints/step-*`` → ``RUN``), so checkpoints of two models at the same step stay apart."""
    row = ds.sel(checkpoint=checkpoint)
    step = float(row.step) if "step" in row.coords else math.nan
    name = str(checkpoint)
    run, _, own = name.rpartition("/")
    path = str(row.checkpoint_path.values) if "checkpoint_path" in row.coords else ""
    if (path and Path(path).name != own) or (not path and not re.fullmatch(r"model\d+", own)):
        return name  # the user named it
    if not run and path:
        parent = Path(path).parent
        run = parent.parent.name if parent.name == "checkpoints" else parent.name
    if not (math.isfinite(step) and step >= 0):
        return name
    return f"{run}, step {int(step):,}" if run else f"step {int(step):,}"
