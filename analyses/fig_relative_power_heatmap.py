"""Relative power (dB) of the one-step output over sigma x frequency, one panel per checkpoint.

Usage: python analyses/fig_relative_power_heatmap.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/relative_power_heatmap.png and .pdf. Copy it and edit the settings below, or build
your own layout from plots.relative_power_panel(ax, ds, checkpoint, mode=..., norm=...): the colour scale is
chosen from the data drawn (plots.relative_power_norm), or any matplotlib norm you pass.
"""

import sys

from freqlab.plots import sweep as plots
from freqlab.plots.registry import script_main
from freqlab.plots.results_dir import load_sweep

MODE = "generate"    # or "denoise"
CHECKPOINTS = None   # e.g. ["step-000000", "step-000800"]; None: four spread over training


def draw(results_dir):
    ds = load_sweep(results_dir, MODE)
    return plots.relative_power_heatmap(ds, CHECKPOINTS, mode=MODE)


if __name__ == "__main__":
    sys.exit(script_main("relative_power_heatmap", __doc__, draw=draw))
