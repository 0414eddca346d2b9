"""Execute the notebooks in place, so their figures and tables are committed and show without running anything.

    python notebooks/execute.py              # both (what `make notebooks` runs)
    python notebooks/execute.py 01_explore   # one

Each notebook runs top to bottom in a fresh kernel of *this* interpreter (a kernelspec written to a temporary folder,
so no other Python on PATH is picked), on one thread, offline, with its working directory in notebooks/ and its own
parameters cell unchanged: 01 and 03 read the committed results in figures/results (a few seconds); 02 reuses the
demo's run in runs/demo when there is one (about a minute) and otherwise pre-trains and fine-tunes its own model in
runs/teaching (about 8 minutes on two CPU cores). Cells tagged ``answer`` (03's revealed answers) run, so an error
there still fails, but are saved without their outputs: a reader sees the answer only by running the cell.

The executed notebook carries a stamp in its metadata (``freqlab``): the sha256 of its code cells and of every committed results
file it read. tests/test_notebooks.py checks the stamp against the code and the committed results,
and re-executes 01 to compare its text outputs with the committed ones: an output that no longer matches the code
fails the tests until this script is run again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOTEBOOKS = ("01_explore.ipynb", "02_pretraining_is_generative_pretraining.ipynb", "03_exercises.ipynb")
# the committed results each notebook reads (02 reads a demo run, which is not committed)
INPUTS = {"01_explore.ipynb": ("figures/results/sweep.nc", "figures/results/data_spectra.nc",
                               "figures/results/finetune-*/finetune.nc"),
          "03_exercises.ipynb": ("figures/results/sweep.nc", "figures/results/finetune-*/finetune.nc")}
KERNEL = "freqlab-notebooks"
CELL_TIMEOUT_S = 900  # per cell; the longest is 02's pre-training when no demo run exists


def kernel_specs(folder: Path):
    """A KernelSpecManager that knows one kernel: this interpreter, one thread, offline, inline figures."""
    from jupyter_client.kernelspec import KernelSpecManager

    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MPLBACKEND": "module://matplotlib_inline.backend_inline", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "freqlab", "language": "python", "env": env}
    (folder / KERNEL).mkdir(parents=True, exist_ok=True)
    (folder / KERNEL / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(folder)])


def code_sha256(nb) -> str:
    """sha256 of the notebook's code cells, in order (what its outputs were computed from)."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode() + b"\0")
    return digest.hexdigest()


def inputs_sha256(patterns) -> dict[str, str]:
    """sha256 of every file matching ``patterns`` (globs relative to the repository), by relative path."""
    files = sorted({p for pattern in patterns for p in ROOT.glob(pattern) if p.is_file()})
    return {p.relative_to(ROOT).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def stamp(name: str, nb) -> dict:
    """What an executed notebook's outputs depend on, for the staleness test."""
    out = {"code_sha256": code_sha256(nb)}
    if name in INPUTS:
        out["inputs_sha256"] = inputs_sha256(INPUTS[name])
    return out


def execute(nb, workdir: Path, specs, timeout: int = CELL_TIMEOUT_S):
    """Run ``nb`` in place in a fresh kernel whose working directory is ``workdir``; the first error is raised."""
    import nbclient
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)
    client = nbclient.NotebookClient(nb, km=km, timeout=timeout, kernel_name=KERNEL, record_timing=False,
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute(cleanup_kc=True)  # shuts the kernel down although we made its manager
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebooks to run (a prefix such as 01 is enough; default: all)")
    args = parser.parse_args(argv)
    try:
        import nbformat
    except ImportError:
        print("error: nbformat and nbclient are missing: install the dev extras (make install)", file=sys.stderr)
        return 2
    chosen = [n for n in NOTEBOOKS if not args.names or any(n.startswith(a) for a in args.names)]
    if not chosen:
        print(f"error: no notebook matches {args.names}; choose among {', '.join(NOTEBOOKS)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        specs = kernel_specs(Path(tmp))
        for name in chosen:
            path = HERE / name
            nb = nbformat.read(path, as_version=4)
            print(f"executing {name} ...", flush=True)
            try:
                execute(nb, HERE, specs)
            except Exception as err:  # nbclient's CellExecutionError names the cell and the traceback
                print(f"error: {name} failed, nothing written:\n{err}", file=sys.stderr)
                return 1
            for cell in nb.cells:  # an exercise's answer shows only when the student runs it
                if "answer" in cell.metadata.get("tags", []):
                    cell.outputs, cell.execution_count = [], None
            nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                         "name": "python3"}  # what JupyterLab offers a reader, not our temp kernel
            nb.metadata["freqlab"] = stamp(name, nb)
            nbformat.write(nb, path)
            print(f"wrote {path.relative_to(ROOT)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
