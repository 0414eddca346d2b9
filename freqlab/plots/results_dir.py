"""What the figures are drawn from: the layout of a results directory (``freqlab demo --out DIR``, or the
committed ``figures/results``) and how to read each part of it. Imports no matplotlib."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["FINETUNE_RUNS", "RESULT_FILES", "EXTERNAL_FILES", "run_dir", "load", "load_optional", "load_sweep",
           "finetune_logs", "first_log",
           "seed_logs", "sample_grids", "moment_of", "sample_moments", "export_results"]

#: Fine-tuning runs of a results directory, in the order figures show them: D2O-F from the pre-trained model, and
#: its two controls from a random initialisation, with D2O-F's frozen set and with nothing frozen.
FINETUNE_RUNS = ("pretrained", "random", "random-unfrozen")
#: The results files of a results directory besides the fine-tuning logs (what export_results copies).
RESULT_FILES = ("sweep.nc", "data_spectra.nc", "layer_spectra.nc", "weight_change.nc", "weight_change_d2o-f.nc",
                "function_change.nc", "compare.nc")
#: Results a benchmark writes into a results directory, not the demo (file -> the script that writes it): an export
#: copies them when the demo's directory has them and keeps them in the destination when it has not.
EXTERNAL_FILES = {"sigma_ablation.nc": "benchmarks/sigma_ablation.py"}


def load(path: Path) -> "xr.Dataset":
    from freqlab.runtime import results

    return results.load(path)


def load_optional(path: Path) -> "xr.Dataset | None":
    """A results file that a results directory may lack (None then)."""
    return load(path) if Path(path).exists() else None


def run_dir(name: str, replicate: int = 0) -> str:
    """Folder of a fine-tuning run: ``finetune-<name>`` for the first seed, ``finetune-<name>-seed<k>`` for the
    k-th repeat (the demo runs each fine-tune with several seeds)."""
    return f"finetune-{name}" if replicate == 0 else f"finetune-{name}-seed{replicate}"


def load_sweep(root: str | Path, mode: str | None = None) -> "xr.Dataset":
    """The sweep of results directory ``root``; FileNotFoundError (the figure is skipped) when it lacks ``mode``."""
    root = Path(root)
    from freqlab.sweep.dataset import swept_modes

    ds = load(root / "sweep.nc")
    modes = swept_modes(ds)
    if mode is not None and mode not in modes:
        raise FileNotFoundError(f"{root / 'sweep.nc'} has no {mode!r} mode (swept with --modes "
                                f"{','.join(modes)})")
    return ds


def finetune_logs(root: Path) -> dict[str, "xr.Dataset"]:
    """``{name: log}`` of the ``finetune-<name>/finetune.nc`` logs present under ``root``."""
    logs = {}
    for name in FINETUNE_RUNS:
        path = root / f"finetune-{name}" / "finetune.nc"
        if path.exists():
            logs[name] = load(path)
    if not logs:
        raise FileNotFoundError(f"no fine-tuning logs (finetune-*/finetune.nc) under {root}")
    return logs


def first_log(logs: dict) -> "xr.Dataset":
    """The D2O-F run's log, else any (every run of a results directory freezes the same architecture alike)."""
    return logs.get("pretrained", next(iter(logs.values())))


def seed_logs(root: Path) -> dict[str, list["xr.Dataset"]]:
    """``{name: [log of each seed]}``: every repeat of each fine-tuning run under ``root``, ordered by seed."""
    runs = {}
    for name in FINETUNE_RUNS:
        paths = [root / run_dir(name) / "finetune.nc"] + sorted(root.glob(f"finetune-{name}-seed*/finetune.nc"))
        logs = [load(p) for p in paths if p.exists()]
        if logs:
            runs[name] = sorted(logs, key=lambda log: int(log.attrs.get("config_seed", 0)))
    if not runs:
        raise FileNotFoundError(f"no fine-tuning logs (finetune-*/finetune.nc) under {root}")
    return runs


def sample_grids(root: Path) -> dict[str, list[Path]]:
    """``{run: [sample grid files]}`` of the fine-tunes under ``root``, and ``data``: the data's grid."""
    grids = {}
    for name in FINETUNE_RUNS:
        folder = root / f"finetune-{name}" / "samples"
        if folder.is_dir():
            grids[name] = sorted(folder.glob("images_seen-*.png"))
    data = root / "finetune-pretrained" / "samples" / "data.png"
    if data.exists():
        grids["data"] = [data]
    if not grids:
        raise FileNotFoundError(f"no sample grids (finetune-*/samples/*.png) under {root}")
    return grids


def moment_of(path: Path) -> int:
    """Images seen of a sample grid file ``images_seen-NNNNNNN.png``."""
    return int(re.search(r"(\d+)", path.stem).group(1))


def sample_moments(grids: dict[str, list[Path]], n_moments: int = 3) -> list[int]:
    """The moments (images seen) the samples figure shows: up to ``n_moments`` spread over those every run has."""
    from freqlab.plots.style import pick

    runs = [k for k in grids if k != "data"]
    moments = sorted({moment_of(p) for k in runs for p in grids[k]})
    shared = [m for m in moments if all(any(moment_of(p) == m for p in grids[k]) for k in runs)]
    return pick(shared or moments, n_moments)


def export_results(root: str | Path, dest: str | Path) -> list[Path]:
    """Copy the small files every figure is drawn from into ``dest``, so ``make_figures(dest)`` redraws them all.

    That is :data:`RESULT_FILES`, the report, each fine-tune's ``finetune.nc`` and the sample grids the samples
    figure shows (no checkpoints, no training state): the demo commits them beside ``figures/``. Returns the files
    written; files of an earlier export that the new one does not have are removed, except :data:`EXTERNAL_FILES`
    (a benchmark's results, which the demo does not make).
    """
    import shutil

    root, dest = Path(root), Path(dest)
    wanted = [Path(n) for n in (*RESULT_FILES, *EXTERNAL_FILES, "report.md") if (root / n).exists()]
    wanted += sorted(p.relative_to(root) for p in root.glob("finetune-*/finetune.nc"))
    try:
        grids = sample_grids(root)
    except FileNotFoundError:
        grids = {}
    moments = set(sample_moments(grids)) if grids else set()
    wanted += [p.relative_to(root) for k, paths in grids.items() for p in paths
               if k == "data" or moment_of(p) in moments]
    if dest.exists():
        keep = set(wanted) | {Path(n) for n in EXTERNAL_FILES}
        for old in [p for p in dest.rglob("*") if p.is_file() and p.relative_to(dest) not in keep]:
            old.unlink()
    written = []
    for rel in wanted:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, dest / rel)
        written.append(dest / rel)
    return written
