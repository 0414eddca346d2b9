"""Frozen and trainable parameters by layer type under the conv (D2O-F) policy.

Usage: python analyses/fig_frozen_parameters.py [RESULTS_DIR] [OUT_DIR]   (defaults: runs/demo, figures)
Reads saved results only; writes OUT_DIR/frozen_parameters.png and .pdf.
"""

import sys

from freqlab.figures import make_figure

if __name__ == "__main__":
    results_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
    out_dir = sys.argv[2] if len(sys.argv) > 2 else "figures"
    for path in make_figure("frozen_parameters", results_dir, out_dir):
        print(path)
