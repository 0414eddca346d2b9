"""Per-image band statistics (kurtosis, Wasserstein, diversity) against sigma, per checkpoint.

Usage: python analyses/fig_band_statistics.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/band_statistics.png and .pdf. Copy it and edit the settings below, or build
your own layout from plots.band_statistic_panel(ax, ds, variable, band, mode=...).
"""

import sys

from freqlab.plots import sweep as plots
from freqlab.plots.registry import script_main
from freqlab.plots.results_dir import load_sweep

MODE = "generate"    # or "denoise"
CHECKPOINTS = None   # e.g. ["step-000000", "step-000800"]: a subset, in this order


def draw(results_dir):
    ds = load_sweep(results_dir, MODE)
    if CHECKPOINTS:
        ds = ds.sel(checkpoint=CHECKPOINTS)
    return plots.band_statistics_figure(ds, mode=MODE)


if __name__ == "__main__":
    sys.exit(script_main("band_statistics", __doc__, draw=draw))
