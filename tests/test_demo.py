"""The quick demo end to end: every stage, figures from saved results, the report, and resume."""

import time

import pytest

from freqlab import figures, report
from freqlab.cli import main
from freqlab.demo import run_demo


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    run_demo(out, quick=True, progress=False)
    return out


def test_demo_writes_every_stage(demo_dir):
    for path in ("pretrain", "sweep.nc", "finetune-pretrained/finetune.nc", "finetune-random/finetune.nc",
                 "data_spectra.nc", "report.md"):
        assert (demo_dir / path).exists(), path
    pngs = sorted(p.stem for p in (demo_dir / "figures").glob("*.png"))
    assert pngs == sorted(figures.FIGURES)
    text = (demo_dir / "report.md").read_text()
    for heading in ("One step at σ_max", "Lower noise levels", "Over pre-training", "What GAN fine-tuning added"):
        assert heading in text
    assert "nan |" not in text.split("## 2.")[0]  # section 1 numbers are all defined


def test_rerun_reuses_finished_stages(demo_dir):
    before = (demo_dir / "sweep.nc").stat().st_mtime_ns
    start = time.monotonic()
    run_demo(demo_dir, quick=True, progress=False)
    assert (demo_dir / "sweep.nc").stat().st_mtime_ns == before  # nothing left to sweep
    assert time.monotonic() - start < 120


def test_figures_command_regenerates_from_saved_results(demo_dir, tmp_path, capsys):
    assert main(["figures", str(demo_dir), "--out", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*.png"))) == len(figures.FIGURES)
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
