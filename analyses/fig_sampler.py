"""Many steps against one: EDM's N-step sampler beside the one-step output from the same noise, and the band power of
the sampler's estimate along its steps (a sweep made with the sample mode: `freqlab sweep RUN --modes all`).

Usage: python analyses/fig_sampler.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/sampler.png and .pdf. Copy it and edit the settings below, or build your
own layout from sampler_plots.many_vs_one_panel(ax, ds, checkpoints) and sampler_plots.trajectory_panel(ax, ds, ck).
"""

import sys

from freqlab.plots import sampler as sampler_plots
from freqlab.plots.registry import script_main
from freqlab.plots.results_dir import load_sweep

CHECKPOINTS = None   # e.g. ["step-000000", "step-000800"]: the checkpoints on the left, the last one on the right
N_CHECKPOINTS = 3    # when CHECKPOINTS is None: this many, spread over the run (first and last included)


def draw(results_dir):
    ds = load_sweep(results_dir, "sample")
    return sampler_plots.sampler_figure(ds, CHECKPOINTS, n_checkpoints=N_CHECKPOINTS)


if __name__ == "__main__":
    sys.exit(script_main("sampler", __doc__, draw=draw))
