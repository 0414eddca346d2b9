"""What a fine-tune moved: relative weight change per layer type and per parameter tensor, against the D2O-F
frozen set (from `freqlab weights BEFORE AFTER --out RESULTS_DIR`).

Usage: python analyses/fig_weight_change.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads RESULTS_DIR/weight_change.nc (and, beside it, weight_change_d2o-f.nc when there: the D2O-F fine-tune's change,
drawn as diamonds); writes OUT_DIR/weight_change.png and .pdf. Copy it and edit the settings.
"""

import sys
from pathlib import Path

from freqlab.plots.registry import script_main
from freqlab.plots.weights import weight_change_figure
from freqlab.runtime import results

FILE = "weight_change.nc"   # the results file inside RESULTS_DIR (`freqlab weights ... --out RESULTS_DIR`)
BESIDE = "weight_change_d2o-f.nc"  # another fine-tune's change to set beside it (None: none)


def draw(results_dir):
    other = Path(results_dir) / BESIDE if BESIDE else None
    return weight_change_figure(results.load(Path(results_dir) / FILE),
                                results.load(other) if other is not None and other.exists() else None)


if __name__ == "__main__":
    sys.exit(script_main("weight_change", __doc__, draw=draw))
