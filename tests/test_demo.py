"""The quick demo end to end: every stage, figures from saved results, the report, and resume."""

import os
import time

import numpy as np
import pytest
from PIL import Image

from freqlab import report
from freqlab.cli import main
from freqlab.demo import run_demo
from freqlab.plots import registry as figures
from freqlab.plots import results_dir


@pytest.fixture(scope="module")
def demo_dir(quick_demo):
    return quick_demo  # the session's one quick demo (tests/conftest.py)


# The quick demo (about 75 s) is shared by these tests and notebook 01's; in CI's full run (make test-slow).
@pytest.mark.slow
def test_demo_writes_every_stage(demo_dir):
    for path in ("pretrain", "sweep.nc", "finetune-pretrained/finetune.nc", "finetune-random/finetune.nc",
                 "finetune-random-unfrozen/finetune.nc", "finetune-unfrozen/finetune.nc", "compare.nc",
                 "layer_spectra.nc", "weight_change.nc", "data_spectra.nc", "report.md"):
        assert (demo_dir / path).exists(), path
    pngs = sorted(p.stem for p in (demo_dir / "figures").glob("*.png"))
    assert pngs == sorted(figures.DEMO_FIGURES)  # a benchmark's figure (sigma_ablation) only where its file is
    text = (demo_dir / "report.md").read_text()
    for heading in ("One step at σ_max", "Lower noise levels", "Over pre-training", "Many steps against one",
                    "What GAN fine-tuning added", "The verdict", "Inside the network"):
        assert heading in text
    assert "nan |" not in text.split("## 2.")[0]  # section 1 numbers are all defined


@pytest.mark.slow
def test_each_fine_tune_runs_with_several_seeds_and_the_verdict_compares_them(demo_dir):
    from freqlab.compare.criterion import load_criterion
    from freqlab.compare.verdict import band_verdicts, run_pairs
    from freqlab.runtime import results

    seeds = results_dir.seed_logs(demo_dir)
    assert sorted(seeds) == ["pretrained", "random", "random-unfrozen"]
    for name, logs in seeds.items():
        assert [int(log.attrs["config_seed"]) for log in logs] == [0, 1]
        assert (demo_dir / results_dir.run_dir(name, 1) / "finetune.nc").exists()
    assert seeds["random-unfrozen"][0].attrs["frozen_share"] == 0  # the third run freezes nothing
    ds = results.load(demo_dir / "compare.nc")
    pairs = run_pairs(ds)
    assert {run: len(p) for run, p in pairs.items()} == {"pretrained": 2, "random": 2, "random-unfrozen": 2}
    assert all(start == "pretrained-start" for start, _ in pairs["pretrained"])
    assert {"heldout", "gaussian", "deadleaves", "repeated", "lowpass"} <= set(ds.candidate.values)
    text = (demo_dir / "report.md").read_text()
    criterion = load_criterion()
    assert criterion.sha256 in text and "smoke test" in text  # the quick demo compares fewer images
    for run, label in report.RUN_NAMES.items():
        verdict = band_verdicts(ds, pairs[run], resamples=criterion.bootstrap_resamples, level=criterion.level)
        for band, v in verdict.items():
            assert f"| {label} | {band} | {v.start:.3g} → {v.end:.3g}" in text
        reached = [b for b, v in verdict.items() if v.reaches]
        assert f"**{label}** reaches the data in {', '.join(reached) if reached else 'no band'}" in text


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=float)


@pytest.mark.slow
def test_exported_results_redraw_every_figure(demo_dir, tmp_path):
    written = results_dir.export_results(demo_dir, tmp_path / "results")
    assert not any(p.suffix in (".pt", ".safetensors") for p in written)  # no weights, no training state
    assert figures.make_figures(tmp_path / "results", tmp_path / "figs")
    for name in figures.DEMO_FIGURES:
        assert np.array_equal(_pixels(tmp_path / "figs" / f"{name}.png"), _pixels(demo_dir / "figures" / f"{name}.png")), name


@pytest.mark.slow
def test_rerun_reuses_finished_stages(demo_dir):
    before = (demo_dir / "sweep.nc").stat().st_mtime_ns
    start = time.monotonic()
    run_demo(demo_dir, quick=True, progress=False)
    assert (demo_dir / "sweep.nc").stat().st_mtime_ns == before  # nothing left to sweep
    assert time.monotonic() - start < 120


@pytest.mark.slow
def test_figures_command_regenerates_from_saved_results(demo_dir, tmp_path, capsys):
    assert main(["figures", str(demo_dir), "--out", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*.png"))) == len(figures.DEMO_FIGURES)
    assert main(["figures", str(demo_dir), "--only", "cutoff_vs_sigma", "--out", str(tmp_path / "one")]) == 0
    assert [p.name for p in (tmp_path / "one").glob("*.png")] == ["cutoff_vs_sigma.png"]
    assert report.build_report(demo_dir) == (demo_dir / "report.md").read_text()


def test_figures_command_errors_are_one_line(tmp_path, capsys):
    assert main(["figures", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["figures", str(tmp_path), "--only", "nosuchfigure"]) == 2
    assert "unknown figure" in capsys.readouterr().err
    assert main(["figures", str(tmp_path)]) == 2  # exists but holds no results
    assert "no results" in capsys.readouterr().err


def test_a_result_older_than_its_checkpoints_is_measured_again(tmp_path):
    from freqlab.demo import _stale

    ckpt = tmp_path / "run" / "checkpoints" / "step-000010"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"")
    result = tmp_path / "layer_spectra.nc"
    assert _stale(result, ckpt)  # missing
    result.write_bytes(b"")
    now = time.time()
    os.utime(ckpt, (now - 60, now - 60))
    os.utime(result, (now, now))
    assert not _stale(result, ckpt)
    os.utime(ckpt, (now + 60, now + 60))  # the checkpoint was written again after the result
    assert _stale(result, ckpt)
