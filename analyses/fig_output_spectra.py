"""One-step output spectra against sigma for the final checkpoint, with the data, the Wiener reference and f*(sigma).

Usage: python analyses/fig_output_spectra.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/output_spectra.png and .pdf.
"""

import sys

from freqlab.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("output_spectra", __doc__))
