"""Transfer function and coherence of the one-step denoiser against the Wiener filter's.

Usage: python analyses/fig_transfer_coherence.py [RESULTS_DIR] [OUT_DIR]   (defaults: runs/demo, figures)
Reads saved results only; writes OUT_DIR/transfer_coherence.png and .pdf.
"""

import sys

from freqlab.figures import make_figure

if __name__ == "__main__":
    results_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
    out_dir = sys.argv[2] if len(sys.argv) > 2 else "figures"
    for path in make_figure("transfer_coherence", results_dir, out_dir):
        print(path)
