"""Every figure of a results directory, regenerated from saved results alone (nothing is recomputed).

``make_figures(results_dir, out_dir)`` writes each figure whose inputs exist as PNG and PDF; each entry of
:data:`FIGURES` maps a figure name to a function ``results_dir -> Figure``. The scripts in ``analyses/`` call
:func:`make_figure` for one figure each; ``freqlab figures`` calls :func:`make_figures`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

from freqlab.plots import results_dir as rd

__all__ = ["FIGURES", "EXTERNAL_FIGURES", "DEMO_FIGURES", "make_figure", "make_figures", "script_main", "copy_figures"]


def _draw(module: str, function: str):
    """The figure function ``freqlab.plots.<module>.<function>``, imported when a figure is drawn."""
    import importlib

    return getattr(importlib.import_module(f"freqlab.plots.{module}"), function)


#: figure name -> ``results_dir -> what the figure function drew on`` (see freqlab.plots.style.figure_of)
FIGURES: dict[str, Callable[[Path], Any]] = {
    "data_spectra": lambda root: _draw("data", "data_spectra_figure")(rd.load(root / "data_spectra.nc")),
    "output_spectra": lambda root: _draw("sweep", "output_spectra_figure")(rd.load_sweep(root)),
    "relative_power_heatmap": lambda root: _draw("sweep", "relative_power_heatmap")(rd.load_sweep(root, "generate")),
    "cutoff_vs_sigma": lambda root: _draw("sweep", "cutoff_figure")(rd.load_sweep(root, "denoise")),
    "transfer_coherence": lambda root: _draw("sweep", "transfer_figure")(rd.load_sweep(root, "denoise")),
    "band_statistics": lambda root: _draw("sweep", "band_statistics_figure")(rd.load_sweep(root, "generate")),
    "sampler": lambda root: _draw("sampler", "sampler_figure")(rd.load_sweep(root, "sample")),
    "finetune_statistics": lambda root: _draw("finetune", "finetune_figure")(rd.finetune_logs(root),
                                                                            seeds=rd.seed_logs(root)),
    "finetune_samples": lambda root: _draw("finetune", "samples_figure")(rd.sample_grids(root)),
    "frozen_parameters": lambda root: _draw("finetune", "frozen_parameters_figure")(
        rd.first_log(rd.finetune_logs(root))),
    "layer_spectra": lambda root: _draw("layers", "layer_spectra_figure")(rd.load(root / "layer_spectra.nc")),
    "weight_change": lambda root: _draw("weights", "weight_change_figure")(rd.load(root / "weight_change.nc"),
                                                                           rd.load_optional(root / "weight_change_d2o-f.nc")),
    # not drawn by the demo: benchmarks/sigma_ablation.py writes sigma_ablation.nc into a results directory
    "sigma_ablation": lambda root: _draw("ablation", "ablation_figure")(rd.load(root / EXTERNAL_FIGURES["sigma_ablation"])),
}
#: Figures of results a benchmark writes (rd.EXTERNAL_FILES; the σ-ablation's is freqlab.compare.ablation.ABLATION_FILE,
#: not imported here to keep xarray out of the command line's start), not the demo -> their file: drawn only where
#: the file is (a results directory without it skips them without a word), and kept by copy_figures.
EXTERNAL_FIGURES = {"sigma_ablation": "sigma_ablation.nc"}
#: The figures every demo draws.
DEMO_FIGURES = tuple(name for name in FIGURES if name not in EXTERNAL_FIGURES)


def make_figure(name: str, results_dir: str | Path, out_dir: str | Path = "figures", draw=None) -> list[Path]:
    """Draw figure ``name`` from ``results_dir`` and write ``out_dir/name.png`` and ``.pdf``; ``draw(results_dir) ->
    Figure`` draws it instead of the function of :data:`FIGURES` (an ``analyses/`` script's own)."""
    if draw is None and name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose one of {', '.join(FIGURES)}")
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results directory {root} does not exist")
    from freqlab.plots.style import figure_of, save_figure

    return save_figure(figure_of((draw or FIGURES[name])(root)), Path(out_dir) / name, close=True)


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
                 workers: int | None = None, quiet: bool = False) -> list[Path]:
    """Every figure of :data:`FIGURES` (or ``names``) whose inputs exist; says on stderr which were skipped.

    ``workers`` processes draw them (default: one per CPU core, at most 4; matplotlib draws on one core), each
    figure the same bytes whatever the number of workers.
    """
    if not Path(results_dir).is_dir():  # one error, not one "skipped" line per figure
        raise FileNotFoundError(f"results directory {results_dir} does not exist")
    from freqlab.runtime.outputs import check_writable_under

    check_writable_under(out_dir, include_self=True)
    asked = bool(names)
    names = list(names or [n for n in FIGURES if n not in EXTERNAL_FIGURES
                           or (Path(results_dir) / EXTERNAL_FIGURES[n]).exists()])
    workers = min(len(names), workers or min(os.cpu_count() or 1, 4))
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            drawn = list(pool.map(_draw_one, names, [results_dir] * len(names), [out_dir] * len(names)))
    else:
        drawn = [_draw_one(name, results_dir, out_dir) for name in names]
    written = [path for paths, _ in drawn for path in paths]
    if not written and asked:  # the figures asked for by name: say what each lacks
        raise FileNotFoundError("nothing drawn: " + "; ".join(why.replace(": skipped (", " cannot be drawn (", 1) for _, why in drawn))
    if not written:
        raise FileNotFoundError(f"no results to draw under {results_dir} (expected sweep.nc, finetune-*/, data_spectra.nc)")
    for _, skipped in drawn:
        if skipped and not quiet:
            print(skipped, file=sys.stderr)
    return written


def _draw_one(name: str, results_dir, out_dir) -> tuple[list[Path], str | None]:
    """One figure: ``(files written, None)``, or ``([], why it was skipped)`` when its inputs are not there."""
    try:
        return make_figure(name, results_dir, out_dir), None
    except FileNotFoundError as err:  # its inputs are not there; said once the others are drawn
        return [], f"figure {name}: skipped ({err})"


def copy_figures(src: str | Path, dest: str | Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Copy the figures of :data:`FIGURES` drawn in ``src`` into ``dest`` (drawing them once is enough: a redraw from
    the exported results gives the same files, which tests/test_committed_figures.py checks). A figure ``src`` lacks
    is removed from ``dest``, so no figure of older results stays beside newer ones, except :data:`EXTERNAL_FIGURES`
    (drawn from a benchmark's results, which the demo does not make)."""
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
            elif target.is_file() and name not in EXTERNAL_FIGURES:
                target.unlink()
    return written
