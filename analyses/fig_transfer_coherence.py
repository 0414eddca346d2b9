"""Transfer function and coherence of the one-step denoiser against the Wiener filter's.

Usage: python analyses/fig_transfer_coherence.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/transfer_coherence.png and .pdf. Copy it and edit the settings below, or build
your own layout from plots.transfer_panel(ax, ds, checkpoint, 'transfer' or 'coherence', sigmas).
"""

import sys

from freqlab.plots import sweep as plots
from freqlab.plots.registry import script_main
from freqlab.plots.results_dir import load_sweep

CHECKPOINT = None    # a checkpoint name; None: the last
N_SIGMAS = 5


def draw(results_dir):
    ds = load_sweep(results_dir, "denoise")
    return plots.transfer_figure(ds, CHECKPOINT, n_sigmas=N_SIGMAS)


if __name__ == "__main__":
    sys.exit(script_main("transfer_coherence", __doc__, draw=draw))
