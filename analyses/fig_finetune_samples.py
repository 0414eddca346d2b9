"""GAN fine-tuning: sample grids of each run at the same moments, beside the data.

Usage: python analyses/fig_finetune_samples.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/finetune_samples.png and .pdf. Copy it and edit the settings below.
"""

import sys

from freqlab.plots import finetune as finetune_plots
from freqlab.plots.registry import script_main
from freqlab.plots.results_dir import sample_grids

N_MOMENTS = 3        # moments (images seen) shown per run


def draw(results_dir):
    return finetune_plots.samples_figure(sample_grids(results_dir), n_moments=N_MOMENTS)


if __name__ == "__main__":
    sys.exit(script_main("finetune_samples", __doc__, draw=draw))
