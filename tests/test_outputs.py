"""One run per output: the advisory lock, the takeover of a dead run's lock, and the cleanup of its temporaries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from freqlab.runtime import outputs

FREQLAB = [sys.executable, "-m", "freqlab"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}

HOLD = """
import sys, time
from freqlab.runtime import outputs
with outputs.hold(sys.argv[1], command="test holder"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(target: Path) -> subprocess.Popen:
    """A process that holds ``target``'s lock until killed; returns once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_with_the_first_ones_identity(tmp_path):
    target = tmp_path / "sweep.nc"
    proc = _holder(target)
    try:
        with pytest.raises(outputs.OutputInUse, match=rf"pid {proc.pid} on .*test holder\); wait for it"):
            with outputs.hold(target):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_is_reentrant_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "new" / "deeper" / "run"
    with outputs.hold(target):
        with outputs.hold(str(target)):  # the command line and the library function both take it
            assert outputs.lock_path(target).exists()
        assert outputs.lock_path(target).exists()
    assert not outputs.lock_path(target).exists()
    assert not (tmp_path / "new").exists()  # folders made only for the lock of a run that wrote nothing


def test_other_ranks_do_not_take_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with outputs.hold(tmp_path / "out.nc"):
        assert not outputs.lock_path(tmp_path / "out.nc").exists()


def test_a_killed_runs_lock_is_taken_over_and_its_temporaries_removed(tmp_path, capsys):
    run = tmp_path / "run"
    proc = _holder(run)
    (run / "checkpoints" / ".step-000010.tmp-1a2b3c4d").mkdir(parents=True)  # it was writing a checkpoint
    (run / "checkpoints" / "step-000005").mkdir()
    (run / ".finetune.nc.x8y9.tmp").write_text("half")
    (run / "finetune.nc").write_text("kept")
    (run / "notes.tmp").write_text("not hidden: not ours")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with outputs.hold(run):
        err = capsys.readouterr().err
        assert f"ended without releasing its lock (pid {proc.pid}" in err and "taking it over" in err
        assert "removed 2 temporary file(s)" in err
        assert json.loads(outputs.lock_path(run).read_text())["pid"] == os.getpid()
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert left == ["checkpoints", "checkpoints/step-000005", "finetune.nc", "notes.tmp"]


def test_a_results_files_temporaries_are_removed_but_not_its_neighbours(tmp_path):
    (tmp_path / ".sweep.nc.abc123.tmp").write_text("half")
    (tmp_path / ".other.nc.abc123.tmp").write_text("another output's")
    with outputs.hold(tmp_path / "sweep.nc"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.nc.abc123.tmp"]


@pytest.fixture(scope="module")
def tiny_run(make_tiny_run) -> Path:
    """A run directory with two checkpoints of other weights, step-000005 and step-000012 (in-process: fast)."""
    return Path(make_tiny_run([(5, 1), (12, 0)]))


@pytest.mark.slow
def test_two_sweeps_into_one_file_the_second_refuses_at_once(tiny_run, tmp_path):
    from freqlab.runtime import results

    out = tmp_path / "x.nc"
    args = ["sweep", str(tiny_run / "checkpoints" / "step-000012"), "--n-images", "16", "--sigmas", "0.1,1,80",
            "--out", str(out), "--quiet"]
    first = subprocess.Popen(FREQLAB + args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not outputs.lock_path(out).exists():  # the first run holds the lock
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    start = time.monotonic()
    second = subprocess.run(FREQLAB + args + ["--seed", "7"], env=ENV, capture_output=True, text=True)
    refused_in = time.monotonic() - start
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2 and refused_in < 1.0, (second.returncode, refused_in)
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "in use by another freqlab run" in lines[0]
    assert results.load(out).attrs["seed"] == 0  # the first run's results, complete
    assert not outputs.lock_path(out).exists()


def test_a_checkpoint_rewritten_under_its_name_is_measured_again_not_read_back(tiny_run, tmp_path, capsys):
    """A sweep resumed by checkpoint name gave the old model's numbers after a retrain with ``--overwrite``: here
    the final checkpoint is replaced by other weights under the same name, as a retrain does."""
    import shutil

    from freqlab.sweep.study import sweep

    ckpt, out = tmp_path / "step-000012", tmp_path / "x.nc"
    settings = dict(n_images=16, sigmas=[0.1, 80.0], linear_reference=0, device="cpu", progress=False)
    shutil.copytree(tiny_run / "checkpoints" / "step-000012", ckpt)
    old = sweep(ckpt, out=out, **settings)
    shutil.rmtree(ckpt)
    shutil.copytree(tiny_run / "checkpoints" / "step-000005", ckpt)  # other weights, same name
    resumed = sweep(ckpt, out=out, **settings)
    assert "have the names of requested ones but other content (step-000012)" in capsys.readouterr().err
    expected = sweep(ckpt, **settings)
    assert resumed.checkpoint_fingerprint.values[0] == expected.checkpoint_fingerprint.values[0]
    assert resumed.checkpoint_fingerprint.values[0] != old.checkpoint_fingerprint.values[0]
    assert abs(resumed.relative_power_db - expected.relative_power_db).max() < 1e-9
    assert abs(resumed.relative_power_db - old.relative_power_db).max() > 0.1


@pytest.mark.parametrize("argv", [
    ["spectra", "--n-images", "8"], ["pretrain", "--preset", "tiny"], ["sweep", "RUN"],
    ["finetune", "RUN/checkpoints/step-000012"], ["demo", "--quick"]], ids=lambda a: a[0])
def test_every_command_refuses_a_busy_output_in_one_line(argv, tiny_run, tmp_path, capsys):
    from freqlab import cli

    out = tmp_path / "out"
    proc = _holder(out)
    try:
        start = time.monotonic()
        status = cli.main([a.replace("RUN", str(tiny_run)) for a in argv] + ["--out", str(out), "--quiet"])
        took = time.monotonic() - start
    finally:
        proc.kill()
        proc.wait()
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and f"in use by another freqlab run (pid {proc.pid}" in lines[0]
    assert took < 1.0 and not out.exists()


def test_a_read_only_output_is_one_clear_error_before_any_work(tmp_path, monkeypatch):
    import errno
    import os

    from freqlab.runtime import outputs

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(PermissionError, match="cannot write into .*Read-only file system.*writable file system"):
        with outputs.hold(tmp_path / "out.nc"):
            pytest.fail("the block must not run")


def test_one_lock_for_a_folder_reached_through_a_symlink(tmp_path):
    from freqlab.runtime import outputs

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert outputs.lock_path(tmp_path / "link" / "run") == outputs.lock_path(tmp_path / "real" / "run")
