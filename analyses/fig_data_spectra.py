"""Data spectra of the default data, dead leaves, a GRF and white noise, with fitted slopes.

Usage: python analyses/fig_data_spectra.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/data_spectra.png and .pdf. Copy it and edit the settings below.
"""

import sys

from freqlab.plots import data as data_plots
from freqlab.plots.registry import script_main
from freqlab.runtime import results

SOURCES = None       # e.g. ["natural", "deadleaves"]: a subset of the sources
CONFIDENCE = 0.95    # of the shaded band around each spectrum


def draw(results_dir):
    ds = results.load(results_dir / "data_spectra.nc")
    if SOURCES:
        ds = ds.sel(source=SOURCES)
    return data_plots.data_spectra_figure(ds, confidence=CONFIDENCE)


if __name__ == "__main__":
    sys.exit(script_main("data_spectra", __doc__, draw=draw))
