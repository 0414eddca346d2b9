"""The figures committed in figures/ (and figures/gpu-h200/) are drawn from the result files committed beside them.

`freqlab demo --figures figures` writes both; this checks that nobody committed one without the other, and that
the committed results stay small. figures/gpu-h200/ is the GPU demo's run (see its README.md).
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from freqlab.plots import registry as figures

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "figures" / "results"
FOLDERS = [ROOT / "figures", pytest.param(ROOT / "figures" / "gpu-h200", marks=pytest.mark.slow, id="gpu-h200")]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: getattr(f, "name", None))
def test_committed_results_are_small_and_complete(folder):
    results = folder / "results"
    nc = sorted(results.rglob("*.nc"))
    names = {str(p.relative_to(results)) for p in nc}
    assert {"sweep.nc", "data_spectra.nc", "finetune-pretrained/finetune.nc", "finetune-random/finetune.nc"} <= names
    assert sum(p.stat().st_size for p in nc) < 4 * 1024**2  # three fine-tunes x five seeds, the comparisons
    assert not list(results.rglob("*.pt")) and not list(results.rglob("*.safetensors"))


@pytest.mark.slow  # about 35 s per folder, in matplotlib's layout and PDF writing
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: getattr(f, "name", None))
@pytest.mark.parametrize("name", sorted(figures.FIGURES))
def test_committed_figure_is_redrawn_from_committed_results(name, folder, tmp_path):
    if not (folder / f"{name}.png").exists():  # a figure of a later version: its inputs are not in this folder
        with pytest.raises(FileNotFoundError):
            figures.make_figure(name, folder / "results", tmp_path)
        return
    figures.make_figure(name, folder / "results", tmp_path)
    new = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB"), dtype=float)
    old = np.asarray(Image.open(folder / f"{name}.png").convert("RGB"), dtype=float)
    assert new.shape == old.shape, f"{name}: {new.shape} != committed {old.shape}"
    # identical on the machine that drew them; a little room for another freetype or matplotlib build
    assert np.abs(new - old).mean() < 1.0, f"{name}: differs from the committed figure"


def test_committed_gpu_run_is_the_gpu_demo_default(monkeypatch):
    """figures/gpu-h200/ says it is `freqlab demo --device cuda`: its recorded settings are the GPU default's."""
    import json

    import torch

    from freqlab import demo
    from freqlab.pretrain import loop as pretrain

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    settings = demo.demo_settings(device="cuda")
    recorded = json.loads((ROOT / "figures" / "gpu-h200" / "run" / "run.json").read_text())["config"]
    expected = pretrain.make_config(settings.preset, **settings.pretrain_overrides).to_dict()
    assert recorded == expected


@pytest.mark.slow  # draws every figure once more
@pytest.mark.parametrize("name", sorted(figures.FIGURES))
def test_each_analysis_script_draws_its_committed_figure_with_its_default_settings(name, tmp_path):
    import runpy

    script = runpy.run_path(str(ROOT / "analyses" / f"fig_{name}.py"))  # not __main__: defines draw() only
    if not (ROOT / "figures" / f"{name}.png").exists():  # not a figure of the CPU demo (weight_change: GPU only)
        assert figures.script_main(name, None, [str(RESULTS), str(tmp_path)], draw=script["draw"]) == 2
        return
    assert figures.script_main(name, None, [str(RESULTS), str(tmp_path)], draw=script["draw"]) == 0
    new = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB"), dtype=float)
    old = np.asarray(Image.open(ROOT / "figures" / f"{name}.png").convert("RGB"), dtype=float)
    assert new.shape == old.shape and np.abs(new - old).mean() < 1.0, name
