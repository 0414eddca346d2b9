"""Cutoff frequencies against sigma (|relative power| > 3 dB; coherence < 0.5), per checkpoint, with f*(sigma).

Usage: python analyses/fig_cutoff_vs_sigma.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/cutoff_vs_sigma.png and .pdf.
"""

import sys

from freqlab.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("cutoff_vs_sigma", __doc__))
