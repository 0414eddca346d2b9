"""Where in the network each band lives: per-layer feature spectra (layers × image frequency, one column per σ).

Usage: python analyses/fig_layer_spectra.py [RESULTS_DIR] [OUT_DIR]   (defaults: figures/results, figures)
Reads RESULTS_DIR/layer_spectra.nc (written by `freqlab layers ... --out RESULTS_DIR`) only; writes
OUT_DIR/layer_spectra.png and .pdf. Copy it and edit the settings below.
"""

import sys

from freqlab.plots import layers as layer_plots
from freqlab.plots.registry import script_main
from freqlab.runtime import results

CHECKPOINT = None          # a checkpoint name of the file, e.g. "random-init"; None: up to 3 of them
SIGMAS = None              # noise levels to draw, e.g. [2.0, 80.0] (the nearest in the file); None: up to 4
RELATIVE_TO_WHITE = True   # colour relative to a white spectrum on the block's grid; False: the plain fraction


def draw(results_dir):
    ds = results.load(results_dir / "layer_spectra.nc")
    return layer_plots.layer_spectra_figure(ds, CHECKPOINT, sigmas=SIGMAS, relative_to_white=RELATIVE_TO_WHITE)


if __name__ == "__main__":
    sys.exit(script_main("layer_spectra", __doc__, draw=draw))
