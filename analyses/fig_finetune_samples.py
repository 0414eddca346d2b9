"""GAN fine-tuning: sample grids of each run at the same moments, beside the data.

Usage: python analyses/fig_finetune_samples.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/finetune_samples.png and .pdf.
"""

import sys

from freqlab.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("finetune_samples", __doc__))
