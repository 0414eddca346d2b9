"""Data spectra of the default data, dead leaves, a GRF and white noise, with fitted slopes.

Usage: python analyses/fig_data_spectra.py [RESULTS_DIR] [OUT_DIR]   (defaults: runs/demo, figures)
Reads saved results only; writes OUT_DIR/data_spectra.png and .pdf.
"""

import sys

from freqlab.figures import make_figure

if __name__ == "__main__":
    results_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
    out_dir = sys.argv[2] if len(sys.argv) > 2 else "figures"
    for path in make_figure("data_spectra", results_dir, out_dir):
        print(path)
