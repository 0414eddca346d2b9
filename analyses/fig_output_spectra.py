"""One-step output spectra against sigma for the final checkpoint, with the data, the Wiener reference and f*(sigma).

Usage: python analyses/fig_output_spectra.py [RESULTS_DIR] [OUT_DIR]   (defaults: runs/demo, figures)
Reads saved results only; writes OUT_DIR/output_spectra.png and .pdf.
"""

import sys

from freqlab.figures import make_figure

if __name__ == "__main__":
    results_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
    out_dir = sys.argv[2] if len(sys.argv) > 2 else "figures"
    for path in make_figure("output_spectra", results_dir, out_dir):
        print(path)
