"""Relative power (dB) of the one-step output over sigma x frequency, one panel per checkpoint.

Usage: python analyses/fig_relative_power_heatmap.py [RESULTS_DIR] [OUT_DIR]   (defaults: runs/demo, figures)
Reads saved results only; writes OUT_DIR/relative_power_heatmap.png and .pdf.
"""

import sys

from freqlab.figures import make_figure

if __name__ == "__main__":
    results_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
    out_dir = sys.argv[2] if len(sys.argv) > 2 else "figures"
    for path in make_figure("relative_power_heatmap", results_dir, out_dir):
        print(path)
