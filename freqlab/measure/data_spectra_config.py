"""The settings of a data-spectra study (:class:`DataSpectraConfig`), defined once: what determines its numbers.
:func:`freqlab.measure.data_spectra.data_spectra` takes it whole or builds it from keywords, ``freqlab spectra``
builds its options from it. Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from freqlab.measure.conventions import DEFAULT_BAND_EDGES, WINDOW
from freqlab.runtime.settings import documented, parse_edges, parse_floats, parse_window, require, setting

__all__ = ["DEFAULT_SOURCES", "DataSpectraConfig"]

#: The embedded default data beside its three references.
DEFAULT_SOURCES: tuple[str, ...] = ("natural", "deadleaves", "grf", "white")


def parse_fit_range(text: str) -> tuple[float, float]:
    """``fmin,fmax`` in cycles/pixel."""
    values = parse_floats(text)
    if len(values) != 2:
        raise ValueError(f"a fit range is two numbers fmin,fmax (cycles/pixel), got {text!r}")
    return float(values[0]), float(values[1])


@documented
@dataclass
class DataSpectraConfig:
    """Everything that determines the numbers of a data-spectra study besides the sources; each field's doc is
    also the help of its ``freqlab spectra`` option."""

    n_images: int = setting(1024, "images per source (capped at a finite source's size)")
    batch_size: int = setting(256, "images per batch")
    resolution: Any = setting(32, "image size in pixels: of the generated sources, and of --data-path images "
                              "unless --native", parse=int, metavar="PIXELS")
    grayscale: bool = setting(False, "one channel instead of three")
    split: str = setting("train", "data split of a named source", choices=("train", "test"))
    window: Any = setting(WINDOW, "window of the spectra, each image's mean removed first: hann (freqlab's "
                          "convention, as in sweep and finetune), kaiser, hamming, blackman or none",
                          parse=parse_window, metavar="WINDOW")
    bands: Any = setting(None, "band edges in cycles/pixel of the per-image statistics (none: low/mid/high, "
                         + ",".join(f"{e:g}" for e in DEFAULT_BAND_EDGES) + ")", parse=parse_edges, metavar="EDGES")
    fit_range: tuple[float, float] | None = setting(
        None, "fmin,fmax in cycles/pixel of the slope fit (none: 2/N to 0.4, N the image's longer side)",
        parse=parse_fit_range, metavar="FMIN,FMAX")
    native: bool = setting(False, "measure every image whole at its own size (no crop, no resize; sizes and aspect "
                           "ratios may differ), all on one frequency axis: bins of width 1/N cycles/pixel, N the "
                           "smallest longer side of any image in the run (generated sources are made at "
                           "--resolution)")
    seed: int = setting(0, "seeds the generated sources", cli=False)

    def __post_init__(self):
        require(self, at_least={"n_images": 2, "batch_size": 1}, why={"n_images": "to estimate confidence bands"})
