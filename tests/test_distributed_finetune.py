"""Distributed GAN fine-tuning: ``freqlab finetune`` on 2 CPU processes (torchrun, gloo) equals one process.

Two torchrun launches, a global batch of 8 split 4 + 4: ``python -m freqlab finetune`` for 8 images as a user runs it,
then a resume to 16 images through the same command line by a small worker that dumps each rank's networks. The test
compares the ranks with each other and with an uninterrupted single-process run of the same seed and global batch,
and checks that rank 0 alone wrote the run directory and the report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist

from freqlab.checkpoints.store import save_checkpoint
from freqlab.finetune import loop as gan
from freqlab.models.denoisers import EDMDenoiser, build_unet

pytestmark = [pytest.mark.slow,  # several processes each: in CI's full run, not in `make test`
              pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                 reason="torch.distributed with the gloo backend is not available in this torch build")]

# R1 on every step and strong enough to matter: a wrong reduction of its gradient would show in D's weights.
# The default discriminator, whose minibatch-std groups are 4 contiguous images: each rank's slice of the global batch
# (4 images) forms the groups one process forms (MinibatchStd), so the two runs train the same game.
SETTINGS = dict(n_images=16, batch_size=8, log_every=8, n_eval=4, n_data=8, r1_every=1, r1_gamma=1.0, ema=8.0)
CLI = ["--batch-size", "8", "--log-every", "8", "--n-eval", "4", "--n-data", "8", "--r1-every", "1",
       "--r1-gamma", "1.0", "--ema", "8", "--device", "cpu", "--quiet"]

# Runs `freqlab finetune ARGS` through freqlab.cli.main (what `python -m freqlab` runs), then dumps the networks
# that finetune returned to this rank. Once per process: torch resets its group counter when a process group is
# destroyed, so a second group in the same torchrun worker would meet the first one's keys in torchrun's store.
WORKER = r"""
import os, sys
import torch
from freqlab.finetune import loop as gan
from freqlab.cli import main

dump, args = sys.argv[1], sys.argv[2:]
runs = []
finetune = gan.finetune
gan.finetune = lambda *a, **k: runs.append(finetune(*a, **k)) or runs[-1]
assert main(["finetune", *args]) == 0
run = runs[-1]
torch.save({"generator": run.generator.state_dict(), "generator_ema": run.generator_ema.state_dict(),
            "discriminator": run.discriminator.state_dict(), "loss_d": torch.from_numpy(run.log.loss_d.values),
            "images_seen": run.images_seen}, os.path.join(dump, f"rank{os.environ['RANK']}.pt"))
"""


def test_two_processes_match_one_process_and_rank_0_writes(tmp_path):
    from freqlab.runtime import results

    torch.manual_seed(0)
    denoiser = EDMDenoiser(build_unet(sample_size=16, block_out_channels=(8, 16), norm_num_groups=4,
                                      attention_head_dim=8))
    checkpoint = tmp_path / "ckpt"
    save_checkpoint(checkpoint, denoiser, metadata={"step": 1, "images_seen": 1, "loss": 0.5, "ema": False,
                                                    "kind": "pretrain"})
    single = gan.finetune(checkpoint, tmp_path / "single", **SETTINGS, device="cpu", progress=False)
    assert single.log.attrs["config_discriminator"] == "highpass" and single.discriminator.mbstd.group == 4

    (tmp_path / "worker.py").write_text(WORKER)
    out = tmp_path / "ddp"
    args = [str(checkpoint), *CLI, "--out", str(out)]
    first = torchrun(tmp_path, ["-m", "freqlab", "finetune", *args, "--images", "8"])
    assert sorted(p.name for p in (out / "state").iterdir()) == ["images_seen-0000008", "latest.json"]
    resumed = torchrun(tmp_path, [str(tmp_path / "worker.py"), str(tmp_path), *args, "--images", "16"])

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name in ("generator", "generator_ema", "discriminator"):
        a, b, ref = ranks[0][name], ranks[1][name], getattr(single, name).state_dict()
        assert a.keys() == ref.keys()
        for key in ref:
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs between ranks"
            # reductions in another order: equal to float rounding, which Adam's normalisation can lift to a few 1e-5
            # where a gradient is near 0 (2.9e-5 measured on an AMD EPYC); a wrong split or gradient would move a
            # weight by about lr (4e-4 for G, 8e-4 for D) per step
            torch.testing.assert_close(a[key], ref[key], rtol=1e-4, atol=1e-4, msg=f"{name}.{key}")
    start = {f"denoiser.{k}": v for k, v in denoiser.state_dict().items()}
    moved = max(float((ranks[0]["generator"][k] - v).abs().max()) for k, v in start.items())
    assert moved > 20 * 1e-5  # the tolerance above is far below what training changed
    assert all(r["images_seen"] == 16 for r in ranks)
    # every rank returns rank 0's log; its losses are global means, as in one process
    torch.testing.assert_close(ranks[0]["loss_d"], ranks[1]["loss_d"], rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(ranks[0]["loss_d"], torch.from_numpy(single.log.loss_d.values), equal_nan=True,
                               rtol=1e-5, atol=1e-6)

    # rank 0 alone wrote the run directory, and the report was printed once
    ds = results.load(out / "finetune.nc")
    assert list(ds.images_seen.values) == [0, 8, 16]
    torch.testing.assert_close(torch.from_numpy(ds.output_power.values),
                               torch.from_numpy(single.log.output_power.values), rtol=1e-4, atol=1e-7)
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "data.png", "images_seen-0000000.png", "images_seen-0000008.png", "images_seen-0000016.png"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        f"finetune-{n:07d}{s}" for n in (0, 8, 16) for s in ("", "-ema")]
    assert sorted(p.name for p in (out / "state").iterdir()) == ["images_seen-0000016", "latest.json"]
    for proc in (first, resumed):  # the report, from rank 0 only
        assert proc.stdout.count("parameters frozen") == 1 and proc.stdout.count("high band") == 1, proc.stdout


def torchrun(cwd, command: list[str]) -> subprocess.CompletedProcess:
    """``command`` (a script and its arguments, or ``-m module ...``) on 2 CPU processes; fails on a non-zero exit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    t0 = time.perf_counter()
    with subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           *command], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: torchrun stops its workers (a SIGKILL would leave them running)
            stdout, stderr = proc.communicate(timeout=60)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert result.returncode == 0, f"torchrun failed after {time.perf_counter() - t0:.0f} s:\n{stdout}\n{stderr}"
    return result


def test_global_batch_must_split_evenly_over_processes(tmp_path, monkeypatch):
    from freqlab.runtime import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    torch.manual_seed(0)
    denoiser = EDMDenoiser(build_unet(sample_size=16, block_out_channels=(8, 16), norm_num_groups=4))
    with pytest.raises(ValueError, match="batch_size 8 .* not divisible by the 3 processes"):
        gan.finetune(denoiser, tmp_path / "x", **SETTINGS, device="cpu", progress=False)
    assert not (tmp_path / "x").exists()
