"""The notebooks run top to bottom in a fresh kernel with tiny settings, so they never rot.

Each notebook's cell tagged ``parameters`` is replaced by tiny settings that point into a temporary directory, and
the notebook is executed with nbclient. The exploration notebook explores a copy of the session's quick demo
(tests/conftest.py), the run its first cell would otherwise make itself. The kernel runs *this* interpreter (a kernelspec written to a temporary
directory, so neither a user's Jupyter set-up nor another ``python`` on PATH can pick the wrong environment) on one
thread. Both notebooks execute at the same time in two kernels: on two cores that halves the wall time.
"""

from __future__ import annotations

import ast
import asyncio
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # two kernels and a tiny pre-training: in CI's full run (make test-slow)

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from test_notebook_outputs import ex, results_regenerated_here  # noqa: E402  (notebooks/execute.py, its stamp)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPLORE = "01_explore.ipynb"
TEACHING = "02_pretraining_is_generative_pretraining.ipynb"
CELL_TIMEOUT_S = 600  # per cell; the longest is the tiny pre-training inside 02


def parameters(name: str, root: Path) -> str:
    """The tiny settings that replace the notebook's parameters cell."""
    if name == EXPLORE:
        return (f"RESULTS_DIR = {str(root / 'demo')!r}\nFIGURES_DIR = {str(root / 'demo' / 'figures')!r}\nQUICK = True\nDEVICE = 'cpu'\nSIGMA = 0.3\n"
                "BANDS = {'coarse': (0.0, 0.1), 'medium': (0.1, 0.2), 'fine': (0.2, 0.3), 'finest': (0.3, 0.5)}\n")
    return (f"QUICK = True\nPRETRAIN_DIR = {str(root / 'no-such-run')!r}\nOUT_DIR = {str(root / 'out')!r}\n"
            "N_IMAGES = 32\nSIGMAS = [0.05, 0.3, 2.0]\nFINETUNE_IMAGES = 64\nDEVICE = 'cpu'\nSEED = 0\n")


def with_parameters(name: str, source: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    tagged[0].source = source
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory, quick_demo):
    """``{name: (executed notebook, its directory, error or None, seconds)}`` for both notebooks.

    Each runs in its own directory (the kernel's working directory too); the executed copy is written there,
    which helps when a test fails.
    """
    from jupyter_client.manager import AsyncKernelManager

    specs = ex.kernel_specs(tmp_path_factory.mktemp("kernels"))

    async def run(name: str):
        root = tmp_path_factory.mktemp(name.split("_")[0])
        if name == EXPLORE:
            shutil.copytree(quick_demo, root / "demo")
        nb = with_parameters(name, parameters(name, root))
        km = AsyncKernelManager(kernel_name=ex.KERNEL, kernel_spec_manager=specs)
        client = nbclient.NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, kernel_name=ex.KERNEL,
                                         resources={"metadata": {"path": str(root)}})
        start, error = time.monotonic(), None
        try:
            await client.async_execute(cleanup_kc=True)  # shut the kernel down even though we made its manager
        except Exception as err:  # reported by the test of this notebook, not here
            error = err
        seconds = time.monotonic() - start
        nbformat.write(nb, root / name)
        return name, (nb, root, error, seconds)

    async def run_all():
        return dict(await asyncio.gather(run(EXPLORE), run(TEACHING)))

    return asyncio.run(run_all())


def outputs(nb, output_type=None):
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
            if output_type is None or out.output_type == output_type]


def png_count(nb) -> int:
    return sum("image/png" in out.get("data", {}) for out in outputs(nb, "display_data"))


def text_of(nb) -> str:
    return "\n".join(out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in outputs(nb))


def ran_cleanly(executed, name):
    nb, root, error, seconds = executed[name]
    print(f"{name}: {seconds:.0f} s in {root}")
    if error is not None:
        pytest.fail(f"{name} failed (executed copy in {root / name}):\n{error}")
    assert not outputs(nb, "error")
    return nb, root


def text_outputs(nb) -> list[str]:
    """Each code cell's text outputs (streams and plain-text results; figures and HTML left out)."""
    return ["\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in cell.outputs
                      if "image/png" not in o.get("data", {}))
            for cell in nb.cells if cell.cell_type == "code"]


def test_committed_explore_outputs_are_what_its_code_prints_now(tmp_path):
    """Re-execute 01 on the committed results, as `make notebooks` does, and compare every text output."""
    if results_regenerated_here():
        pytest.skip("figures/results was regenerated in this checkout (make demo): 01's outputs show git's")
    committed = nbformat.read(NOTEBOOKS / EXPLORE, as_version=4)
    nb = nbformat.read(NOTEBOOKS / EXPLORE, as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):  # its own settings, only the figure saved elsewhere
            cell.source = cell.source.replace('"../runs/explore-figures"', repr(str(tmp_path / "figures")))
    ex.execute(nb, NOTEBOOKS, ex.kernel_specs(tmp_path / "kernels"), timeout=CELL_TIMEOUT_S)
    assert (tmp_path / "figures" / "lsd_custom_bands.png").is_file()
    stale = [(i, old, new) for i, (old, new) in enumerate(zip(text_outputs(committed), text_outputs(nb)))
             if old != new and "lsd_custom_bands" not in new]  # the one line that names where it saved
    assert not stale, f"{EXPLORE}: code cell {stale[0][0]} prints something else now: run make notebooks\n" \
                      f"committed:\n{stale[0][1][:800]}\nnow:\n{stale[0][2][:800]}"


def test_explore_notebook_explores_a_demo_run(executed):
    nb, root = ran_cleanly(executed, EXPLORE)
    results_dir = root / "demo"
    assert (results_dir / "figures" / "lsd_custom_bands.png").is_file()  # and saved a figure of its own
    # the five sweep figures, one σ up close, the custom bands, the data spectra, the fine-tuning statistics
    assert png_count(nb) >= 9
    text = text_of(nb)
    assert "recomputed log-spectral distances match the saved ones" in text
    assert "finest" in text  # the custom band split reached its table


def test_teaching_notebook_tells_the_story(executed):
    nb, root = ran_cleanly(executed, TEACHING)
    work = root / "out" / "tiny-seed0"
    assert (work / "pretrain" / "run.json").is_file()  # no run to reuse: it pre-trained its own tiny model
    for run in ("pretrained", "random"):
        assert (work / f"finetune-{run}" / "finetune.nc").is_file()
    assert png_count(nb) >= 10
    text = text_of(nb)
    for phrase in ("power-law slope", "MSE: Wiener filter", "MSE / Wiener MSE", "frozen", "diversity low"):
        assert phrase in text, phrase


EXERCISES = "03_exercises.ipynb"
RESULTS = NOTEBOOKS.parent / "figures" / "results"


def run_exercises(tmp_path, answers: dict) -> str:
    """03 on the committed results with ``answers``, every answer revealed; the text it printed."""
    nb = with_parameters(EXERCISES, f"RESULTS_DIR = {str(RESULTS)!r}\nANSWERS = {answers!r}\n")
    # the slider's callback, for every σ, checkpoint and mode it offers (headless, so called directly)
    nb.cells.append(nbformat.v4.new_code_cell(
        "for i in range(ds.sizes['sigma']):\n    for ck in ds.checkpoint.values:\n"
        "        for mode in ('denoise', 'generate'):\n            spectrum_at(i, ck, mode)\n            plt.close('all')\n"
        "print('slider: every value drawn')"))
    ex.execute(nb, tmp_path, ex.kernel_specs(tmp_path / "kernels"), timeout=CELL_TIMEOUT_S)
    return text_of(nb)


def test_exercises_say_no_to_wrong_answers_and_yes_to_the_data(tmp_path):
    wrong = run_exercises(tmp_path / "wrong", {1: ["high", "mid", "low"], 2: 80.0, 3: "neither"})
    for n in (1, 2, 3):
        assert f"exercise {n}: not quite" in wrong, n
    assert "slider: every value drawn" in wrong
    # what the revealed answers say, and exercise 2's checked here from the sweep itself
    order = re.search(r"exercise 1: (\[[^\]]*\])", wrong).group(1)
    lo, hi = map(float, re.search(r"between σ = (\S+) and σ = (\S+);", wrong).groups())
    ends = dict((name, float(v)) for name, v in re.findall(r"exercise 3: (\w+): high-band LSD at the end (\S+) dB", wrong))
    from freqlab.runtime import results

    ds = results.load(RESULTS / "sweep.nc")
    fstar = ds.snr_crossover.mean("channel").values
    first = int(np.flatnonzero(~(fstar >= 0.25))[0])
    assert (lo, hi) == pytest.approx((ds.sigma.values[first - 1], ds.sigma.values[first]), rel=5e-3)  # printed to 3 digits
    right = run_exercises(tmp_path / "right", {1: ast.literal_eval(order), 2: float(np.sqrt(lo * hi)),
                                               3: min(ends, key=ends.get)})
    for n in (1, 2, 3):
        assert f"exercise {n}: right" in right, n
