"""GAN fine-tuning: per-band log-spectral distance and per-image band statistics against images seen.

Usage: python analyses/fig_finetune_statistics.py [RESULTS_DIR] [OUT_DIR]   (defaults: runs/demo, figures)
Reads saved results only; writes OUT_DIR/finetune_statistics.png and .pdf.
"""

import sys

from freqlab.figures import make_figure

if __name__ == "__main__":
    results_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
    out_dir = sys.argv[2] if len(sys.argv) > 2 else "figures"
    for path in make_figure("finetune_statistics", results_dir, out_dir):
        print(path)
