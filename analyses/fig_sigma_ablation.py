"""The σ-ablation: how far D2O-F's samples end from the data, band by band, when pre-training saw all σ, only σ above
σ_split or only σ below it (a point per seed; from `python benchmarks/sigma_ablation.py`, which writes
sigma_ablation.nc into the results directory).

Usage: python analyses/fig_sigma_ablation.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads RESULTS_DIR/sigma_ablation.nc; writes OUT_DIR/sigma_ablation.png and .pdf. Copy it and edit the settings, or
build your own layout from ablation_plots.ablation_panel(ax, ds, band, "mmd2" or "lsd_db").
"""

import sys
from pathlib import Path

from freqlab.plots import ablation as ablation_plots
from freqlab.plots.registry import script_main
from freqlab.runtime import results

FILE = "sigma_ablation.nc"  # the results file inside RESULTS_DIR


def draw(results_dir):
    return ablation_plots.ablation_figure(results.load(Path(results_dir) / FILE))


if __name__ == "__main__":
    sys.exit(script_main("sigma_ablation", __doc__, draw=draw))
