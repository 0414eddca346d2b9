"""The sweep under torchrun with 2 CPU processes (gloo) gives the single-process Dataset, and resumes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import xarray as xr

from freqlab.runtime import results
from freqlab.sweep import study as sw

pytestmark = [pytest.mark.slow,  # several processes each: in CI's full run, not in `make test`
              pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                 reason="torch.distributed with gloo is not available in this torch build")]

SIGMAS = "0.05,0.5,20"
ARGS = ["--data", "white", "--sigmas", SIGMAS, "--n-images", "10", "--batch-size", "3", "--device", "cpu",
        "--no-progress", "--seed", "4"]


@pytest.fixture(scope="module")
def run_dir(make_tiny_run):
    """Three tiny EDM UNet checkpoints (16x16 grayscale)."""
    return make_tiny_run([(0, 0), (10, 10), (40, 40)])


@pytest.fixture(scope="module")
def reference(run_dir):
    return sw.sweep(run_dir, "white", [float(s) for s in SIGMAS.split(",")], n_images=10, batch_size=3, seed=4,
                    device="cpu", progress=False)


def _torchrun(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg", GLOO_SOCKET_IFNAME="lo")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "freqlab", "sweep", *args]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    # accumulators are summed in another order across ranks: equal to float64 rounding, not bit for bit
    xr.testing.assert_allclose(a.drop_attrs(), b.drop_attrs(), rtol=1e-9, atol=1e-12)
    assert a.attrs["fingerprint"] == b.attrs["fingerprint"]


def test_two_processes_splitting_images_equal_one_process(run_dir, reference, tmp_path):
    out = tmp_path / "images.nc"
    proc = _torchrun(str(run_dir), "--distribute", "images", "--out", str(out), *ARGS, tmp_path=tmp_path)
    _same(results.load(out), reference)
    assert proc.stdout.count("checkpoint(s)") == 1  # the summary is printed by rank 0 alone
    assert not list(tmp_path.glob(".images.nc.*"))  # no temporary file left behind by a second writer


def test_two_processes_splitting_checkpoints_resume_a_single_process_file(run_dir, reference, tmp_path):
    out = tmp_path / "ckpts.nc"
    # a single-process run that was stopped after its first checkpoint ...
    sw.sweep([run_dir / "checkpoints" / "step-000000"], "white", [float(s) for s in SIGMAS.split(",")],
             n_images=10, batch_size=3, seed=4, device="cpu", progress=False, out=out)
    assert results.load(out).sizes["checkpoint"] == 1
    # ... is resumed by two processes that each take one of the two checkpoints left
    _torchrun(str(run_dir), "--distribute", "checkpoints", "--out", str(out), *ARGS, tmp_path=tmp_path)
    _same(results.load(out), reference)
