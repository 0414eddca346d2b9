"""Frozen and trainable parameters by layer type under a fine-tuning run's freezing policy.

Usage: python analyses/fig_frozen_parameters.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads saved results only; writes OUT_DIR/frozen_parameters.png and .pdf. Copy it and edit the settings below.
"""

import sys

from freqlab.plots import finetune as finetune_plots
from freqlab.plots.registry import script_main
from freqlab.plots.results_dir import finetune_logs

RUN = "pretrained"   # the fine-tuning run whose policy is drawn (pretrained, random, early)


def draw(results_dir):
    logs = finetune_logs(results_dir)
    return finetune_plots.frozen_parameters_figure(logs.get(RUN, next(iter(logs.values()))))


if __name__ == "__main__":
    sys.exit(script_main("frozen_parameters", __doc__, draw=draw))
