"""Data spectra of the default data, dead leaves, a GRF and white noise, with fitted slopes.

Usage: python analyses/fig_data_spectra.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/data_spectra.png and .pdf.
"""

import sys

from freqlab.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("data_spectra", __doc__))
