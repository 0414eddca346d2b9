"""The figures committed in figures/ are drawn from the result files committed in figures/results/.

`freqlab demo --figures figures` writes both; this checks that nobody committed one without the other, and that
the committed results stay small.
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from freqlab import figures

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "figures" / "results"


def test_committed_results_are_small_and_complete():
    nc = sorted(RESULTS.rglob("*.nc"))
    names = {str(p.relative_to(RESULTS)) for p in nc}
    assert {"sweep.nc", "data_spectra.nc", "finetune-pretrained/finetune.nc", "finetune-random/finetune.nc"} <= names
    assert sum(p.stat().st_size for p in nc) < 2 * 1024**2
    assert not list(RESULTS.rglob("*.pt")) and not list(RESULTS.rglob("*.safetensors"))


@pytest.mark.parametrize("name", sorted(figures.FIGURES))
def test_committed_figure_is_redrawn_from_committed_results(name, tmp_path):
    figures.make_figure(name, RESULTS, tmp_path)
    new = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB"), dtype=float)
    old = np.asarray(Image.open(ROOT / "figures" / f"{name}.png").convert("RGB"), dtype=float)
    assert new.shape == old.shape, f"{name}: {new.shape} != committed {old.shape}"
    # identical on the machine that drew them; a little room for another freetype or matplotlib build
    assert np.abs(new - old).mean() < 1.0, f"{name}: differs from the committed figure"
