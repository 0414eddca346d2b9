"""GAN fine-tuning: per-band log-spectral distance and per-image band statistics against images seen.

Usage: python analyses/fig_finetune_statistics.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/finetune_statistics.png and .pdf. Copy it and edit the settings below.
"""

import sys

from freqlab.plots import finetune as finetune_plots
from freqlab.plots.registry import script_main
from freqlab.plots.results_dir import finetune_logs, seed_logs

RUNS = None          # e.g. ["pretrained"]: which fine-tuning runs (pretrained, random, early)
SHOW_SEEDS = True    # the other seeds of each run as thin lines


def draw(results_dir):
    logs = finetune_logs(results_dir)
    seeds = seed_logs(results_dir) if SHOW_SEEDS else None
    if RUNS:
        logs = {name: log for name, log in logs.items() if name in RUNS}
    return finetune_plots.finetune_figure(logs, seeds=seeds)


if __name__ == "__main__":
    sys.exit(script_main("finetune_statistics", __doc__, draw=draw))
