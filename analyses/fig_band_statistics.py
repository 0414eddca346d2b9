"""Per-image band statistics (kurtosis, Wasserstein, diversity) against sigma, per checkpoint.

Usage: python analyses/fig_band_statistics.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/band_statistics.png and .pdf.
"""

import sys

from freqlab.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("band_statistics", __doc__))
