"""GAN fine-tuning: sample grids of each run at the same moments, beside the data.

Usage: python analyses/fig_finetune_samples.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/finetune_samples.png and .pdf. Copy it and edit the settings below.
"""

import sys

from freqlab import plots
from freqlab.figures import sample_grids, script_main

N_MOMENTS = 3        # moments (images seen) shown per run


def draw(results_dir):
    return plots.samples_figure(sample_grids(results_dir), n_moments=N_MOMENTS)


if __name__ == "__main__":
    sys.exit(script_main("finetune_samples", __doc__, draw=draw))
