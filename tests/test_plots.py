"""Figures a notebook can compose: every figure function draws into the ax=/axes= it is given and returns them,
names the user gave reach the legend, and no figure call changes matplotlib's global rcParams."""

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from freqlab.plots import data as data_plots
from freqlab.plots import finetune as finetune_plots
from freqlab.plots import registry, style
from freqlab.plots import sweep as sweep_plots
from freqlab.plots.results_dir import finetune_logs, load, load_sweep
from freqlab.sweep.study import sweep

RESULTS = Path(__file__).resolve().parents[1] / "figures" / "results"


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _rc() -> dict:
    return {k: v for k, v in matplotlib.rcParams.items() if k != "backend"}


def test_two_figures_share_one_layout_through_ax():
    spectra = load(RESULTS / "data_spectra.nc")
    logs = finetune_logs(RESULTS)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    assert data_plots.data_spectra_figure(spectra, ax=left) is left
    assert finetune_plots.frozen_parameters_figure(logs["pretrained"], ax=right) is right
    assert fig.axes == [left, right]  # drawn where they were asked to be, nothing added
    assert left.get_xscale() == "log" and left.get_lines() and right.patches


def test_multi_panel_figures_take_axes_and_say_how_many_they_need():
    ds = load_sweep(RESULTS)
    fig, axes = plt.subplots(1, 2)
    drawn = sweep_plots.transfer_figure(ds, axes=axes)
    assert drawn.shape == (1, 2) and drawn[0][0] is axes[0] and len(fig.axes) == 2
    with pytest.raises(ValueError, match="draws into 1×2 Axes; got 3"):
        sweep_plots.transfer_figure(ds, axes=plt.subplots(1, 3)[1])


def test_no_figure_call_changes_matplotlib_s_global_style():
    before = _rc()
    for name in registry.FIGURES:
        if name != "weight_change":  # the CPU demo has no weight_change.nc
            style.figure_of(registry.FIGURES[name](RESULTS))
    assert _rc() == before
    with style.theme():  # the theme itself, inside its context
        assert matplotlib.rcParams["savefig.dpi"] == 160 and matplotlib.rcParams["axes.grid"]
    assert _rc() == before


def test_names_a_user_gives_the_models_reach_the_legend(make_tiny_run):
    run = Path(make_tiny_run([(0, 1), (12, 2)]))
    paths = sorted((run / "checkpoints").iterdir())
    ds = sweep({"random init": paths[0], "pre-trained": paths[1]}, "white", [0.1, 20.0], n_images=4,
               device="cpu", progress=False, modes=("denoise",))
    ax = sweep_plots.cutoff_figure(ds, mode="denoise")[0][0]
    labels = ax.get_legend_handles_labels()[1]
    assert "random init" in labels and "pre-trained" in labels
    plain = sweep(run, "white", [0.1, 20.0], n_images=4, device="cpu", progress=False, modes=("denoise",))
    labels = sweep_plots.cutoff_figure(plain, mode="denoise")[0][0].get_legend_handles_labels()[1]
    assert f"{run.name}, step 12" in labels  # a checkpoint named after its folder: its run and step


def test_figure_of_finds_the_figure_of_what_a_function_returned():
    fig, ax = plt.subplots()
    assert style.figure_of(fig) is fig and style.figure_of(ax) is fig
    assert style.figure_of(np.array([[ax]], dtype=object)) is fig
    with pytest.raises(TypeError):
        style.figure_of("not a figure")
