"""Transfer function and coherence of the one-step denoiser against the Wiener filter's.

Usage: python analyses/fig_transfer_coherence.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/transfer_coherence.png and .pdf.
"""

import sys

from freqlab.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("transfer_coherence", __doc__))
