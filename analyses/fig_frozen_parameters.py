"""Frozen and trainable parameters by layer type under the conv (D2O-F) policy.

Usage: python analyses/fig_frozen_parameters.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/frozen_parameters.png and .pdf.
"""

import sys

from freqlab.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("frozen_parameters", __doc__))
