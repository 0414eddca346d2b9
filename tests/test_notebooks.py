"""The notebooks run top to bottom in a fresh kernel with tiny settings, so they never rot.

Each notebook's cell tagged ``parameters`` is replaced by tiny settings that point into a temporary directory, and
the notebook is executed with nbclient. The exploration notebook explores a copy of the session's quick demo
(tests/conftest.py), the run its first cell would otherwise make itself. The kernel runs *this* interpreter (a kernelspec written to a temporary
directory, so neither a user's Jupyter set-up nor another ``python`` on PATH can pick the wrong environment) on one
thread. Both notebooks execute at the same time in two kernels: on two cores that halves the wall time.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # two kernels and a tiny pre-training: in CI's full run (make test-slow)

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPLORE = "01_explore.ipynb"
TEACHING = "02_pretraining_is_generative_pretraining.ipynb"
KERNEL = "freqlab-test"
CELL_TIMEOUT_S = 600  # per cell; the longest is the tiny pre-training inside 02


def parameters(name: str, root: Path) -> str:
    """The tiny settings that replace the notebook's parameters cell."""
    if name == EXPLORE:
        return (f"RESULTS_DIR = {str(root / 'demo')!r}\nQUICK = True\nDEVICE = 'cpu'\nSIGMA = 0.3\n"
                "BANDS = {'coarse': (0.0, 0.1), 'medium': (0.1, 0.2), 'fine': (0.2, 0.3), 'finest': (0.3, 0.5)}\n")
    return (f"QUICK = True\nPRETRAIN_DIR = {str(root / 'no-such-run')!r}\nOUT_DIR = {str(root / 'out')!r}\n"
            "N_IMAGES = 32\nSIGMAS = [0.05, 0.3, 2.0]\nFINETUNE_IMAGES = 64\nDEVICE = 'cpu'\nSEED = 0\n")


def with_parameters(name: str, source: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    tagged[0].source = source
    return nb


def kernel_specs(folder: Path):
    """A KernelSpecManager that knows one kernel: this interpreter, one thread, offline, inline figures."""
    from jupyter_client.kernelspec import KernelSpecManager

    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MPLBACKEND": "module://matplotlib_inline.backend_inline", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "freqlab tests", "language": "python", "env": env}
    (folder / KERNEL).mkdir(parents=True)
    (folder / KERNEL / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(folder)])


@pytest.fixture(scope="module")
def executed(tmp_path_factory, quick_demo):
    """``{name: (executed notebook, its directory, error or None, seconds)}`` for both notebooks.

    Each runs in its own directory (the kernel's working directory too); the executed copy is written there,
    which helps when a test fails.
    """
    from jupyter_client.manager import AsyncKernelManager

    specs = kernel_specs(tmp_path_factory.mktemp("kernels"))

    async def run(name: str):
        root = tmp_path_factory.mktemp(name.split("_")[0])
        if name == EXPLORE:
            shutil.copytree(quick_demo, root / "demo")
        nb = with_parameters(name, parameters(name, root))
        km = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)
        client = nbclient.NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL,
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


def test_notebooks_are_committed_without_outputs():
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert [p.name for p in paths] == [EXPLORE, TEACHING]
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear its outputs"


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
