"""Every figure of a results directory, regenerated from saved results alone (nothing is recomputed).

``make_figures(results_dir, out_dir)`` writes each figure whose inputs exist as PNG and PDF; each entry of
:data:`FIGURES` maps a figure name to a function ``results_dir -> Figure``. The scripts in ``analyses/`` call
:func:`make_figure` for one figure each; ``freqlab figures`` calls :func:`make_figures`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # imported lazily: the command line lists the figures without importing torch or matplotlib
    import matplotlib.pyplot as plt
    import xarray as xr


__all__ = ["FIGURES", "make_figure", "make_figures", "script_main", "load_sweep", "finetune_logs", "seed_logs",
           "run_dir", "export_results", "sample_grids", "copy_figures"]


def _plots():
    from freqlab import plots

    return plots


def _module(name: str):
    """A plotting module, imported when a figure is drawn (``freqlab.<name>``)."""
    import importlib

    return importlib.import_module(f"freqlab.{name}")


def _load(path: Path) -> "xr.Dataset":
    from freqlab import results

    return results.load(path)


#: Fine-tuning runs of a results directory, in the order figures show them.
FINETUNE_RUNS = ("pretrained", "random")


def run_dir(name: str, replicate: int = 0) -> str:
    """Folder of a fine-tuning run: ``finetune-<name>`` for the first seed, ``finetune-<name>-seed<k>`` for the
    k-th repeat (the demo runs each fine-tune with several seeds)."""
    return f"finetune-{name}" if replicate == 0 else f"finetune-{name}-seed{replicate}"


def load_sweep(root: str | Path, mode: str | None = None) -> xr.Dataset:
    """The sweep of results directory ``root``; FileNotFoundError (the figure is skipped) when it lacks ``mode``."""
    root = Path(root)
    ds = _load(root / "sweep.nc")
    if mode is not None and mode not in [str(m) for m in ds.mode.values]:
        raise FileNotFoundError(f"{root / 'sweep.nc'} has no {mode!r} mode (swept with --modes "
                                f"{','.join(str(m) for m in ds.mode.values)})")
    return ds


def finetune_logs(root: Path) -> dict[str, xr.Dataset]:
    """``{name: log}`` of the ``finetune-<name>/finetune.nc`` logs present under ``root``."""
    logs = {}
    for name in FINETUNE_RUNS:
        path = root / f"finetune-{name}" / "finetune.nc"
        if path.exists():
            logs[name] = _load(path)
    if not logs:
        raise FileNotFoundError(f"no fine-tuning logs (finetune-*/finetune.nc) under {root}")
    return logs


def _first_log(logs: dict) -> "xr.Dataset":
    """The D2O-F run's log, else any (every run of a results directory freezes the same architecture alike)."""
    return logs.get("pretrained", next(iter(logs.values())))


def seed_logs(root: Path) -> dict[str, list[xr.Dataset]]:
    """``{name: [log of each seed]}``: every repeat of each fine-tuning run under ``root``, ordered by seed."""
    runs = {}
    for name in FINETUNE_RUNS:
        paths = [root / run_dir(name) / "finetune.nc"] + sorted(root.glob(f"finetune-{name}-seed*/finetune.nc"))
        logs = [_load(p) for p in paths if p.exists()]
        if logs:
            runs[name] = sorted(logs, key=lambda log: int(log.attrs.get("config_seed", 0)))
    if not runs:
        raise FileNotFoundError(f"no fine-tuning logs (finetune-*/finetune.nc) under {root}")
    return runs


def sample_grids(root: Path) -> dict[str, list[Path]]:
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


FIGURES: dict[str, Callable[[Path], plt.Figure]] = {
    "data_spectra": lambda root: _plots().data_spectra_figure(_load(root / "data_spectra.nc")),
    "output_spectra": lambda root: _plots().output_spectra_figure(load_sweep(root)),
    "relative_power_heatmap": lambda root: _plots().relative_power_heatmap(load_sweep(root, "generate")),
    "cutoff_vs_sigma": lambda root: _plots().cutoff_figure(load_sweep(root, "denoise")),
    "transfer_coherence": lambda root: _plots().transfer_figure(load_sweep(root, "denoise")),
    "band_statistics": lambda root: _plots().band_statistics_figure(load_sweep(root, "generate")),
    "sampler": lambda root: _module("sampler_plots").sampler_figure(load_sweep(root, "sample")),
    "finetune_statistics": lambda root: _plots().finetune_figure(finetune_logs(root), seeds=seed_logs(root)),
    "finetune_samples": lambda root: _plots().samples_figure(sample_grids(root)),
    "frozen_parameters": lambda root: _plots().frozen_parameters_figure(_first_log(finetune_logs(root))),
    "layer_spectra": lambda root: _module("layer_plots").layer_spectra_figure(_load(root / "layer_spectra.nc")),
    "weight_change": lambda root: _module("weight_plots").weight_change_figure(_load(root / "weight_change.nc")),
}


#: The results files of a results directory besides the fine-tuning logs (what export_results copies).
RESULT_FILES = ("sweep.nc", "data_spectra.nc", "layer_spectra.nc", "weight_change.nc")


def make_figure(name: str, results_dir: str | Path, out_dir: str | Path = "figures", draw=None) -> list[Path]:
    """Draw figure ``name`` from ``results_dir`` and write ``out_dir/name.png`` and ``.pdf``; ``draw(results_dir) ->
    Figure`` draws it instead of the function of :data:`FIGURES` (an ``analyses/`` script's own)."""
    if draw is None and name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose one of {', '.join(FIGURES)}")
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results directory {root} does not exist")
    import matplotlib.pyplot as plt

    fig = (draw or FIGURES[name])(root)
    try:
        return _plots().save_figure(fig, Path(out_dir) / name)
    finally:
        plt.close(fig)


def script_main(name: str, doc: str | None = None, argv: list[str] | None = None, draw=None) -> int:
    """The command line of an ``analyses/fig_<name>.py`` script: ``[RESULTS_DIR] [OUT_DIR]``, by default the
    committed results (``figures/results``) into ``figures``. ``draw(results_dir) -> Figure`` is the script's own
    drawing (default: the figure of :data:`FIGURES`). A missing or unreadable input is one line, exit 2."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_dir", nargs="?", default="figures/results",
                        help="a results directory (`freqlab demo --out DIR`; default: figures/results, committed)")
    parser.add_argument("out_dir", nargs="?", default="figures", help="where to write the PNG and PDF (figures)")
    args = parser.parse_args(argv)
    try:
        written = make_figure(name, args.results_dir, args.out_dir, draw=draw)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def make_figures(results_dir: str | Path, out_dir: str | Path = "figures", names=None, *,
                 workers: int | None = None) -> list[Path]:
    """Every figure of :data:`FIGURES` (or ``names``) whose inputs exist; says on stderr which were skipped.

    ``workers`` processes draw them (default: one per CPU core, at most 4; matplotlib draws on one core), each
    figure the same bytes whatever the number of workers.
    """
    if not Path(results_dir).is_dir():  # one error, not one "skipped" line per figure
        raise FileNotFoundError(f"results directory {results_dir} does not exist")
    from freqlab.outputs import check_writable_under

    check_writable_under(out_dir, include_self=True)
    names = list(names or FIGURES)
    workers = min(len(names), workers or min(os.cpu_count() or 1, 4))
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            drawn = list(pool.map(_draw_one, names, [results_dir] * len(names), [out_dir] * len(names)))
    else:
        drawn = [_draw_one(name, results_dir, out_dir) for name in names]
    written = [path for paths, _ in drawn for path in paths]
    if not written:
        raise FileNotFoundError(f"no results to draw under {results_dir} (expected sweep.nc, finetune-*/, data_spectra.nc)")
    for _, skipped in drawn:
        if skipped:
            print(skipped, file=sys.stderr)
    return written


def _draw_one(name: str, results_dir, out_dir) -> tuple[list[Path], str | None]:
    """One figure: ``(files written, None)``, or ``([], why it was skipped)`` when its inputs are not there."""
    try:
        return make_figure(name, results_dir, out_dir), None
    except FileNotFoundError as err:  # its inputs are not there; said once the others are drawn
        return [], f"figure {name}: skipped ({err})"


def export_results(root: str | Path, dest: str | Path) -> list[Path]:
    """Copy the small files every figure is drawn from into ``dest``, so ``make_figures(dest)`` redraws them all.

    That is :data:`RESULT_FILES`, each fine-tune's ``finetune.nc`` and the sample grids the samples
    figure shows (no checkpoints, no training state): the demo commits them beside ``figures/``. Returns the files
    written; files of an earlier export that the new one does not have are removed.
    """
    import shutil

    root, dest = Path(root), Path(dest)
    wanted = [Path(n) for n in RESULT_FILES if (root / n).exists()]
    wanted += sorted(p.relative_to(root) for p in root.glob("finetune-*/finetune.nc"))
    try:
        grids = sample_grids(root)
    except FileNotFoundError:
        grids = {}
    plots = _plots()
    moments = set(plots.sample_moments(grids)) if grids else set()
    wanted += [p.relative_to(root) for k, paths in grids.items() for p in paths
               if k == "data" or plots.moment_of(p) in moments]
    if dest.exists():
        keep = set(wanted)
        for old in [p for p in dest.rglob("*") if p.is_file() and p.relative_to(dest) not in keep]:
            old.unlink()
    written = []
    for rel in wanted:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, dest / rel)
        written.append(dest / rel)
    return written


def copy_figures(src: str | Path, dest: str | Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Copy the figures of :data:`FIGURES` drawn in ``src`` into ``dest`` (drawing them once is enough: a redraw from
    the exported results gives the same files, which tests/test_committed_figures.py checks). A figure ``src`` lacks
    is removed from ``dest``, so no figure of older results stays beside newer ones."""
    import shutil

    src, dest = Path(src), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FIGURES:
        for fmt in formats:
            source, target = src / f"{name}.{fmt}", dest / f"{name}.{fmt}"
            if source.is_file():
                shutil.copyfile(source, target)
                written.append(target)
            elif target.is_file():
                target.unlink()
    return written
