"""The committed notebooks show their outputs, and those outputs belong to the code and results committed beside them.

`make notebooks` (notebooks/execute.py) executes the notebooks in place and stamps each with the sha256 of its code
cells and of the committed results it read. Editing a code cell, or regenerating figures/results, without running
it again leaves a stale stamp, and this test says which notebook to re-execute. tests/test_notebooks.py (slow) also
re-executes 01 and compares its text outputs with the committed ones.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def executor():
    spec = importlib.util.spec_from_file_location("notebook_execute", NOTEBOOKS / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ex = executor()


def results_regenerated_here() -> bool:
    """True when this checkout's figures/results differ from git's (``make demo`` exports its run there)."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--", "figures/results"], cwd=NOTEBOOKS.parent,
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def test_the_executor_knows_every_notebook():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(ex.NOTEBOOKS)


@pytest.mark.parametrize("name", ex.NOTEBOOKS)
def test_committed_notebook_shows_outputs_of_its_code(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    answers = [cell for cell in code if "answer" in cell.metadata.get("tags", [])]
    assert not [o for cell in answers for o in cell.outputs], f"{name}: an exercise's answer is saved visible"
    code = [cell for cell in code if cell not in answers]
    assert all(cell.execution_count for cell in code), f"{name}: every code cell ran (make notebooks)"
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"], f"{name}: saved an error"
    figures = sum("image/png" in o.get("data", {}) for cell in code for o in cell.outputs)
    assert figures >= (1 if answers else 5), f"{name}: only {figures} figures saved"
    stamp = nb.metadata.get("freqlab")
    assert stamp, f"{name} has no stamp: run make notebooks"
    assert stamp["code_sha256"] == ex.code_sha256(nb), f"{name}: code changed since it ran: run make notebooks"
    if name in ex.INPUTS and not results_regenerated_here():  # the committed notebook shows committed results
        now = ex.inputs_sha256(ex.INPUTS[name])
        assert now, f"{name}: none of its committed inputs {ex.INPUTS[name]} exist"
        changed = sorted(k for k in now.keys() | stamp["inputs_sha256"].keys()
                         if now.get(k) != stamp["inputs_sha256"].get(k))
        assert not changed, f"{name}: results changed since it ran ({', '.join(changed)}): run make notebooks"


def test_code_stamp_sees_an_edited_cell():
    nb = nbformat.read(NOTEBOOKS / ex.NOTEBOOKS[0], as_version=4)
    before = ex.code_sha256(nb)
    next(c for c in nb.cells if c.cell_type == "code").source += "\n# edited"
    assert ex.code_sha256(nb) != before
