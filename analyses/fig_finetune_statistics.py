"""GAN fine-tuning: per-band log-spectral distance and per-image band statistics against images seen.

Usage: python analyses/fig_finetune_statistics.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/finetune_statistics.png and .pdf.
"""

import sys

from freqlab.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("finetune_statistics", __doc__))
