"""Relative power (dB) of the one-step output over sigma x frequency, one panel per checkpoint.

Usage: python analyses/fig_relative_power_heatmap.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/relative_power_heatmap.png and .pdf.
"""

import sys

from freqlab.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("relative_power_heatmap", __doc__))
