"""Cutoff frequencies against sigma (|relative power| > 3 dB; coherence < 0.5), per checkpoint, with f*(sigma).

Usage: python analyses/fig_cutoff_vs_sigma.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/cutoff_vs_sigma.png and .pdf. Copy it and edit the settings below, or build
your own layout from plots.cutoff_panel(ax, ds, 'cutoff_freq' or 'coherence_cutoff', mode=...).
"""

import sys

from freqlab.plots import sweep as plots
from freqlab.plots.registry import script_main
from freqlab.plots.results_dir import load_sweep

MODE = "denoise"     # or "generate" (then only f_c: the coherence needs the clean image)
CHECKPOINTS = None   # e.g. ["step-000000", "step-000800"]: a subset of the sweep's checkpoints, in this order


def draw(results_dir):
    ds = load_sweep(results_dir, MODE)
    if CHECKPOINTS:
        ds = ds.sel(checkpoint=CHECKPOINTS)
    return plots.cutoff_figure(ds, mode=MODE)


if __name__ == "__main__":
    sys.exit(script_main("cutoff_vs_sigma", __doc__, draw=draw))
