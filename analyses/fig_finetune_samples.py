"""GAN fine-tuning: sample grids of each run at the same moments, beside the data.

Usage: python analyses/fig_finetune_samples.py [RESULTS_DIR] [OUT_DIR]   (defaults: runs/demo, figures)
Reads saved results only; writes OUT_DIR/finetune_samples.png and .pdf.
"""

import sys

from freqlab.figures import make_figure

if __name__ == "__main__":
    results_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
    out_dir = sys.argv[2] if len(sys.argv) > 2 else "figures"
    for path in make_figure("finetune_samples", results_dir, out_dir):
        print(path)
