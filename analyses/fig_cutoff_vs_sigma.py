"""Cutoff frequencies against sigma (|relative power| > 3 dB; coherence < 0.5), per checkpoint, with f*(sigma).

Usage: python analyses/fig_cutoff_vs_sigma.py [RESULTS_DIR] [OUT_DIR]   (defaults: runs/demo, figures)
Reads saved results only; writes OUT_DIR/cutoff_vs_sigma.png and .pdf.
"""

import sys

from freqlab.figures import make_figure

if __name__ == "__main__":
    results_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
    out_dir = sys.argv[2] if len(sys.argv) > 2 else "figures"
    for path in make_figure("cutoff_vs_sigma", results_dir, out_dir):
        print(path)
