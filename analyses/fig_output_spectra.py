"""One-step output spectra against sigma for one checkpoint, with the data, the Wiener reference and f*(sigma).

Usage: python analyses/fig_output_spectra.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/output_spectra.png and .pdf. Copy it and edit the settings below, or build
your own layout from plots.output_spectra_panel(ax, ds, checkpoint, mode, sigmas).
"""

import sys

from freqlab.plots import sweep as plots
from freqlab.plots.registry import script_main
from freqlab.plots.results_dir import load_sweep

CHECKPOINT = None    # a checkpoint name, e.g. "step-000000"; None: the last
N_SIGMAS = 6         # noise levels drawn, spread over the sweep's grid


def draw(results_dir):
    ds = load_sweep(results_dir)
    return plots.output_spectra_figure(ds, CHECKPOINT, n_sigmas=N_SIGMAS)


if __name__ == "__main__":
    sys.exit(script_main("output_spectra", __doc__, draw=draw))
