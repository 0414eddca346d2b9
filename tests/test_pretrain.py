"""freqlab.pretrain.loop: EDM loss, log-spaced checkpoint trajectory, resume equality, refusals, non-finite loss, CLI."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from freqlab.checkpoints.store import discover_checkpoints, load_checkpoint_metadata, load_denoiser
from freqlab.models.denoisers import edm_preconditioning
from freqlab.pretrain import loop as pt
from freqlab.pretrain.config import PRESETS, TrainConfig, make_config
from freqlab.pretrain.loop import build_denoiser, checkpoint_steps, pretrain
from freqlab.pretrain.loss import edm_loss, edm_loss_weight, skip_baseline, training_sigma
from freqlab.runtime.rng import per_sample_randn
from freqlab.training.monitor import LOSS_COLUMNS, Collapse, NonFiniteLossError, find_collapse, interval_ratios


def tiny(**overrides) -> TrainConfig:
    return make_config("tiny", **overrides)


def final_state(run_dir):
    return torch.load(run_dir / "state" / "state.pt", map_location="cpu", weights_only=True)


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------------------------------------
# the loss and the schedule
# ---------------------------------------------------------------------------------------------------------------
def test_edm_loss_weight_known_values():
    sigma = torch.tensor([0.5, 1.0, 0.1])
    expected = torch.tensor([(0.25 + 0.25) / (0.25 * 0.25), (1 + 0.25) / 0.25, (0.01 + 0.25) / (0.01 * 0.25)])
    torch.testing.assert_close(edm_loss_weight(sigma, 0.5), expected)
    # it is 1/c_out² of the preconditioning
    _, c_out, _, _ = edm_preconditioning(sigma, 0.5)
    torch.testing.assert_close(edm_loss_weight(sigma, 0.5), 1 / c_out**2)


class SkipOnly(torch.nn.Module):
    """The preconditioned denoiser with F = 0: D(x, σ) = c_skip·x."""

    sigma_data = 0.5

    def forward(self, x, sigma):
        c_skip, _, _, _ = edm_preconditioning(sigma, self.sigma_data)
        return c_skip.view(-1, 1, 1, 1) * x


@pytest.mark.parametrize("sigma", [0.05, 0.5, 5.0])
def test_edm_loss_of_skip_connection_is_one(sigma):
    # for data of standard deviation σd the weight makes the skip connection's loss exactly 1 at every σ (the
    # special case m = σd² of skip_baseline; other data: the tests below)
    g = torch.Generator().manual_seed(0)
    x0 = 0.5 * torch.randn(256, 1, 16, 16, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    loss = edm_loss(SkipOnly(), x0, torch.full((256,), sigma), noise)
    assert loss.shape == (256,)
    assert abs(float(loss.mean()) - 1.0) < 0.02


def zero_output_denoiser(config: TrainConfig):
    """The run's EDMDenoiser built as pretrain builds it, its UNet's last conv zeroed: F = 0, D = c_skip·x."""
    denoiser = build_denoiser(config, 3).eval()
    torch.nn.init.zeros_(denoiser.unet.conv_out.weight)
    torch.nn.init.zeros_(denoiser.unet.conv_out.bias)
    return denoiser


def natural_images(n: int, resolution: int = 16) -> torch.Tensor:
    from freqlab.data.sources import make_source

    return make_source("natural", resolution=resolution, split="train", seed=0).images(list(range(n)))


@pytest.mark.parametrize("scale", [1.0, 2.0])  # natural crops have m ≈ 0.21 < σd² = 0.25; scaled by 2, m > σd²
@pytest.mark.parametrize("sigma", [0.3, 2.0, 20.0])
def test_skip_baseline_is_the_edm_loss_of_a_zero_network(sigma, scale):
    config = tiny()
    denoiser = zero_output_denoiser(config)
    x0 = scale * natural_images(16).double()
    m = x0.square().mean(dim=(1, 2, 3))
    assert abs(float(m.mean()) - config.sigma_data**2) > 0.03  # data with E[x0²] ≠ σd²
    s = torch.full((len(x0),), sigma, dtype=torch.float64)
    # the loss is a quadratic in the noise n whose cross terms vanish in expectation: averaging it over n = +1 and
    # n = -1 (every pixel) reproduces E[n] = 0, E[n²] = 1 exactly, so this is the exact expectation per image
    ones = torch.ones_like(x0)
    with torch.no_grad():
        exact = 0.5 * (edm_loss(denoiser, x0, s, ones) + edm_loss(denoiser, x0, s, -ones))
        # ... and the same with Gaussian noise, as training draws it (Monte-Carlo, so loosely)
        g = torch.Generator().manual_seed(1)
        mc = torch.stack([edm_loss(denoiser, x0, s, torch.randn(x0.shape, generator=g, dtype=x0.dtype))
                          for _ in range(16)]).mean()
    expected = skip_baseline(s, m, config.sigma_data)
    torch.testing.assert_close(exact.double(), expected, rtol=1e-6, atol=0)
    assert float(mc) == pytest.approx(float(expected.mean()), rel=0.02)
    if sigma == 20.0:  # at large σ it is m/σd², far from 1
        assert float(expected.mean()) == pytest.approx(float(m.mean()) / config.sigma_data**2, rel=0.01)
        assert abs(float(expected.mean()) - 1) > 0.1


def test_skip_baseline_limits():
    assert skip_baseline(1e-6, 0.1, 0.5) == pytest.approx(1.0)  # σ → 0: the skip connection is the answer
    assert skip_baseline(1e6, 0.1, 0.5) == pytest.approx(0.1 / 0.25)  # σ → ∞: m/σd²
    assert skip_baseline(3.0, 0.25, 0.5) == pytest.approx(1.0)  # m = σd²: 1 at every σ
    sigma = torch.tensor([0.01, 0.3, 1.0, 30.0])
    torch.testing.assert_close(skip_baseline(sigma, torch.tensor(0.36), 0.5),
                               (sigma**2 * 0.36 / 0.25 + 0.25) / (sigma**2 + 0.25))


def test_checkpoint_steps_log_spaced_with_ends():
    assert checkpoint_steps(12, 5) == [0, 1, 2, 5, 12]
    steps = checkpoint_steps(1000, 8)
    assert steps[0] == 0 and steps[-1] == 1000 and steps == sorted(set(steps)) and len(steps) == 8
    ratios = np.diff(np.log(steps[1:]))
    assert np.allclose(ratios, math.log(1000) / 6, atol=0.06)  # rounding to whole steps
    assert checkpoint_steps(1, 4) == [0, 1]
    with pytest.raises(ValueError):
        checkpoint_steps(0, 4)


def test_training_sigma_lognormal_loguniform_and_mixture():
    g = torch.Generator().manual_seed(0)
    xi, pick = torch.randn(200_000, generator=g), torch.randn(200_000, generator=g)
    edm = make_config("tiny", loguniform_share=0.0)
    np.testing.assert_allclose(training_sigma(xi, pick, edm), torch.exp(-1.2 + 1.2 * xi), rtol=1e-6)
    uniform = training_sigma(xi, pick, make_config("tiny", loguniform_share=1.0)).double()
    assert uniform.min() >= 0.002 * (1 - 1e-6) and uniform.max() <= 80 * (1 + 1e-6)
    u = (uniform.log() - math.log(0.002)) / math.log(80 / 0.002)  # uniform on (0, 1)
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    mixed = training_sigma(xi, pick, make_config("tiny", loguniform_share=0.75, p_mean=0.5, p_std=1.0)).double()
    lognormal = torch.exp(0.5 + 1.0 * xi).double()
    share = float((mixed != lognormal).double().mean())  # the log-uniform draws differ from the log-normal ones
    assert abs(share - 0.75) < 0.01
    assert abs(float((mixed > 7.6).double().mean()) - (0.75 * math.log(80 / 7.6) / math.log(40_000)
                                                        + 0.25 * 0.5 * math.erfc((math.log(7.6) - 0.5) / math.sqrt(2)))) < 0.01
    with pytest.raises(ValueError, match="loguniform_share"):
        make_config("tiny", loguniform_share=1.5)


def test_presets_and_config_validation():
    assert set(PRESETS) == {"cpu-small", "cifar", "tiny"}
    small = make_config()
    assert small.preset == "cpu-small" and small.loguniform_share == 0.75
    edm = make_config("cifar")  # the EDM-faithful preset keeps EDM's log-normal σ
    assert edm.p_mean == -1.2 and edm.p_std == 1.2 and edm.loguniform_share == 0.0
    assert TrainConfig.from_dict(small.to_dict()) == small
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        make_config("huge")
    with pytest.raises(ValueError, match="unknown data source 'mnist'"):
        make_config("tiny", data="mnist")
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        make_config("tiny", learning_rate=1.0)
    with pytest.raises(ValueError, match="lr must be"):
        make_config("tiny", lr=-1.0)


# ---------------------------------------------------------------------------------------------------------------
# a run: trajectory, metadata, log
# ---------------------------------------------------------------------------------------------------------------
def test_tiny_run_writes_log_spaced_checkpoints(tmp_path):
    config = tiny()
    result = pretrain(config, tmp_path / "run", device="cpu", progress=False)
    expected = checkpoint_steps(config.steps, config.n_checkpoints)
    assert result.finished and result.step == config.steps
    infos = discover_checkpoints(tmp_path / "run")
    assert [i.step for i in infos] == expected
    assert [i.path for i in infos] == result.checkpoints
    assert [i.images_seen for i in infos] == [s * config.batch_size for s in expected]
    assert all(i.ema for i in infos)
    meta = load_checkpoint_metadata(infos[-1].path)
    assert meta["kind"] == "pretrain" and meta["preset"] == "tiny" and math.isfinite(meta["loss"])
    # step 0 is the random initialisation (the control)
    init = build_denoiser(config, 3)
    step0 = load_denoiser(infos[0].path, device="cpu")
    assert_same_tensors(init.state_dict(), step0.state_dict())
    # the final checkpoint holds the EMA weights of the training state
    final = load_denoiser(infos[-1].path, device="cpu")
    assert_same_tensors(final.state_dict(), final_state(tmp_path / "run")["ema"])
    assert not torch.equal(final.unet.conv_in.weight, step0.unet.conv_in.weight)
    # the loss per σ range: every training image counted once
    with open(tmp_path / "run" / "loss_by_sigma.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sum(int(r["count"]) for r in rows) == config.steps * config.batch_size
    assert all(float(r["sigma_lo"]) < float(r["sigma_hi"]) for r in rows)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"] == config.to_dict()


def read_loss_log(run_dir) -> list[dict]:
    with open(run_dir / "loss_by_sigma.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def drawn_images(config: TrainConfig) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(step, σ, m)`` per step of a run, ``m`` the mean square of each image: replayed from the run's seeds."""
    from freqlab.data.sources import make_source

    source = make_source(config.data, resolution=config.resolution, grayscale=config.grayscale, split="train",
                         seed=config.data_seed, path=config.data_path, **config.data_options)
    batches = pt._Batches(config, source)
    out = []
    for step in range(config.steps):
        x0, sigma, _ = batches(step)
        out.append((step, sigma.double(), x0.double().square().mean(dim=(1, 2, 3))))
    return out


def test_loss_log_has_skip_baseline_and_ratio(tmp_path):
    config = tiny(steps=6)
    pretrain(config, tmp_path / "run", device="cpu", progress=False)
    rows = read_loss_log(tmp_path / "run")
    assert list(rows[0]) == list(LOSS_COLUMNS)
    assert list(LOSS_COLUMNS)[-2:] == ["skip_baseline", "loss_over_baseline"]
    assert sum(int(r["count"]) for r in rows) == config.steps * config.batch_size
    drawn = drawn_images(config)
    top = max(max(float(m.max()) / config.sigma_data**2, 1.0) for _, _, m in drawn)
    ends = sorted({int(r["step"]) for r in rows})
    for r in rows:
        loss, base, ratio = float(r["loss"]), float(r["skip_baseline"]), float(r["loss_over_baseline"])
        assert math.isfinite(base) and 0 < base <= top
        assert ratio == pytest.approx(loss / base, rel=2e-5)  # each written with 6 digits
        # the baseline is the mean over the σ and images this row's interval and σ bin drew
        end = int(r["step"])
        start = max([0] + [e for e in ends if e < end])
        lo, hi = float(r["sigma_lo"]), float(r["sigma_hi"])
        values = torch.cat([skip_baseline(sigma, m, config.sigma_data)[(sigma >= lo) & (sigma < hi)]
                            for step, sigma, m in drawn if start <= step < end])
        assert len(values) == int(r["count"])
        assert base == pytest.approx(float(values.mean()), rel=1e-5)


def test_resume_from_a_loss_log_without_baseline_columns(tmp_path):
    config = tiny(steps=6)
    run = tmp_path / "run"
    pretrain(config, run, device="cpu", progress=False, max_steps_this_call=4)
    with open(run / "loss_by_sigma.csv", newline="") as fh:
        old = [r[:6] for r in csv.reader(fh)]  # the log as a version without the baseline columns wrote it
    with open(run / "loss_by_sigma.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(old)
    assert pretrain(config, run, resume=True, device="cpu", progress=False).finished
    rows = read_loss_log(run)
    assert list(rows[0]) == list(LOSS_COLUMNS)
    assert sum(int(r["count"]) for r in rows) == config.steps * config.batch_size
    old_rows = [r for r in rows if int(r["step"]) <= 4]
    new_rows = [r for r in rows if int(r["step"]) > 4]
    assert old_rows and new_rows
    assert [[r[c] for c in LOSS_COLUMNS[:6]] for r in old_rows] == old[1:]  # kept as they were
    assert all(r["skip_baseline"] == r["loss_over_baseline"] == "" for r in old_rows)
    assert all(float(r["skip_baseline"]) > 0 and float(r["loss_over_baseline"]) > 0 for r in new_rows)


def test_find_collapse_fires_on_a_jump_and_not_on_ups_and_downs():
    noisy = [(25 * i, 0.4 + 0.05 * (-1) ** i) for i in range(1, 40)]  # a run that wobbles by ±12 % round 0.4
    assert find_collapse([(25, 1.0), (50, 0.8), *noisy]) is None
    assert find_collapse([(25, 1.0), (50, 1.9)]) is None  # early steps: below twice the lowest
    jumped = [(25, 1.0), (50, 0.5), (75, 0.36), (100, 0.45), (125, 1.05), (150, 0.8)]
    assert find_collapse(jumped) == Collapse(125, 1.05, 0.36)
    assert find_collapse([]) is None


def test_the_loss_log_rebuilds_its_watch_on_a_resume_and_warns_once(tmp_path):
    """truncate (every start and resume) rebuilds the lowest ratio and the collapse from the rows it keeps; flush
    then returns a Collapse the first time only."""
    from freqlab.training.monitor import LossBySigmaLog

    path = tmp_path / "loss_by_sigma.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(LOSS_COLUMNS)
        for step, ratio in ((25, 0.9), (50, 0.4), (75, 0.5), (100, 3.0)):  # the row at 100 is dropped by the resume
            w.writerow((step, step * 32, "0", "inf", 32, ratio, 1.0, ratio))
    log = LossBySigmaLog(path, (0.1,), "cpu")
    log.truncate(75)
    assert log.lowest == pytest.approx(0.4) and log.collapse is None

    def interval(ratio: float):
        log.add(torch.tensor([0.05, 5.0]), torch.tensor([ratio, ratio]), torch.tensor([1.0, 1.0]))

    interval(0.7)  # 1.75 times the lowest: not a collapse
    assert log.flush(100, 3200) is None
    interval(0.9)  # 2.25 times the lowest kept from before the resume
    assert log.flush(125, 4000) == Collapse(125, pytest.approx(0.9), pytest.approx(0.4))
    interval(1.5)
    assert log.flush(150, 4800) is None and log.collapse.step == 125  # warned of once
    log.truncate(150)  # a resume after it finds it in the rows
    assert log.collapse.step == 125 and log.lowest == pytest.approx(0.4)


def test_the_collapse_of_the_4000_step_reference_run_is_found_where_it_happened():
    """A real collapse (benchmarks/results: cpu-small, constant lr 2e-3, 4,000 steps): found at step 3,325 and not
    before, though the run wobbled by up to 1.18 times its lowest before it."""
    from pathlib import Path

    log = Path(__file__).parents[1] / "benchmarks/results/reference_run_4000_constant_lr_loss_by_sigma.csv"
    ratios = interval_ratios(log)
    found = find_collapse(ratios)
    assert found is not None and found.step == 3325 and found.ratio > 1.0 and found.lowest < 0.37
    assert find_collapse([(step, r) for step, r in ratios if step < 3325]) is None


def test_a_collapsed_run_is_named_in_the_log_the_result_and_the_warning(tmp_path, capsys):
    def sabotage(info):  # the raw weights blown up at step 8: what a divergence does to a denoiser
        if info["step"] == 8:
            with torch.no_grad():
                for p in info["denoiser"].parameters():
                    p.mul_(8.0)

    config = tiny(steps=14, log_every=2, state_every=2)
    run = tmp_path / "run"
    result = pretrain(config, run, device="cpu", progress=False, callback=sabotage)
    ratios = dict(interval_ratios(run / "loss_by_sigma.csv"))
    lowest = min(r for step, r in ratios.items() if step <= 8)
    assert result.collapse is not None and result.collapse.step == 10  # the first interval after the sabotage
    assert result.collapse.ratio == pytest.approx(ratios[10]) and result.collapse.ratio > 2 * lowest
    assert "warning: pre-training collapsed at step 10" in capsys.readouterr().err
    assert pretrain(config, run, device="cpu", progress=False).collapse == result.collapse  # read back when finished
    from freqlab.cli import main

    cli = ["pretrain", "--preset", "tiny", "--steps", "14", "--log-every", "2", "--state-every", "2", "--out", str(run)]
    assert main([*cli, "--quiet"]) == 0
    assert "warning: pre-training collapsed at step 10" in capsys.readouterr().out
    assert main([*cli, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["collapse"]["step"] == 10

    control = pretrain(config, tmp_path / "control", device="cpu", progress=False)
    assert control.collapse is None and "collapsed" not in capsys.readouterr().err


def test_a_collapse_before_a_resume_is_not_warned_of_twice_and_one_after_it_is(tmp_path, capsys):
    config = tiny(steps=14, log_every=2, state_every=2)
    run = tmp_path / "run"
    pretrain(config, run, device="cpu", progress=False, max_steps_this_call=6)
    rows = read_loss_log(run)
    with open(run / "loss_by_sigma.csv", "w", newline="") as fh:  # the interval ending at step 4 made to collapse
        w = csv.DictWriter(fh, fieldnames=LOSS_COLUMNS)
        w.writeheader()
        for r in rows:
            if r["step"] == "4":
                r["loss"] = str(float(r["loss"]) * 10)
            w.writerow(r)
    capsys.readouterr()
    result = pretrain(config, run, resume=True, device="cpu", progress=False)
    assert result.collapse is not None and result.collapse.step == 4
    assert "collapsed" not in capsys.readouterr().err  # found in the kept rows, not warned of again


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    a = pretrain(tiny(steps=4), tmp_path / "a", device="cpu", progress=False)
    b = pretrain(tiny(steps=4), tmp_path / "b", device="cpu", progress=False)
    pretrain(tiny(steps=4, seed=1), tmp_path / "c", device="cpu", progress=False)
    assert_same_tensors(load_file(a.final / "model.safetensors"), load_file(b.final / "model.safetensors"))
    assert not torch.equal(final_state(tmp_path / "a")["model"]["unet.conv_in.weight"],
                           final_state(tmp_path / "c")["model"]["unet.conv_in.weight"])


# ---------------------------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------------------------
class Killed(Exception):
    pass


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_resume_after_stop_and_kill_equals_uninterrupted_run(tmp_path, dropout):
    config = tiny(dropout=dropout)  # dropout draws from torch's global generator: seeded per step too
    pretrain(config, tmp_path / "whole", device="cpu", progress=False)

    run = tmp_path / "pieces"
    part = pretrain(config, run, device="cpu", progress=False, max_steps_this_call=3)  # a clean stop
    assert not part.finished and part.step == 3 and final_state(run)["step"] == 3

    def kill_at_7(info):  # a kill between two saved states (state_every=4, checkpoints at 5 and 12)
        if info["step"] == 7:
            raise Killed

    with pytest.raises(Killed):
        pretrain(config, run, resume=True, device="cpu", progress=False, callback=kill_at_7)
    assert final_state(run)["step"] == 5
    with pytest.raises(ValueError, match="unfinished run"):
        pretrain(config, run, device="cpu", progress=False)
    done = pretrain(config, run, resume=True, device="cpu", progress=False)
    assert done.finished

    whole, pieces = final_state(tmp_path / "whole"), final_state(run)
    assert_same_tensors(whole["model"], pieces["model"])
    assert_same_tensors(whole["ema"], pieces["ema"])
    for a, b in zip(discover_checkpoints(tmp_path / "whole"), discover_checkpoints(run)):
        assert a.step == b.step
        assert_same_tensors(load_file(a.path / "model.safetensors"), load_file(b.path / "model.safetensors"))
        assert load_checkpoint_metadata(a.path)["loss"] == pytest.approx(load_checkpoint_metadata(b.path)["loss"])
    # the loss log of the resumed run counts every image once, as the uninterrupted one does
    with open(run / "loss_by_sigma.csv", newline="") as fh:
        assert sum(int(r["count"]) for r in csv.DictReader(fh)) == config.steps * config.batch_size


# ---------------------------------------------------------------------------------------------------------------
# refusals and bad input
# ---------------------------------------------------------------------------------------------------------------
def test_refuses_a_different_run_unless_overwrite(tmp_path):
    run = tmp_path / "run"
    pretrain(tiny(steps=2), run, device="cpu", progress=False)
    again = pretrain(tiny(steps=2), run, device="cpu", progress=False)  # finished: nothing to do
    assert again.finished and again.seconds == 0 and len(again.checkpoints) == len(checkpoint_steps(2, 5))
    with pytest.raises(ValueError, match=r"different pre-training run \(differs in lr\)") as err:
        pretrain(tiny(steps=2, lr=1e-4), run, device="cpu", progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="different pre-training run"):
        pretrain(tiny(steps=2, lr=1e-4), run, resume=True, device="cpu", progress=False)
    redone = pretrain(tiny(steps=3, lr=1e-4), run, overwrite=True, device="cpu", progress=False)
    assert [i.step for i in discover_checkpoints(run)] == checkpoint_steps(3, 5)
    assert redone.finished
    assert json.loads((run / "run.json").read_text())["config"]["lr"] == 1e-4


def test_refuses_stray_pretrain_files_without_run_json(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(ValueError, match="without run.json"):
        pretrain(tiny(steps=2), tmp_path, device="cpu", progress=False)


def test_batch_larger_than_data(tmp_path):
    path = tmp_path / "three.npy"
    np.save(path, np.zeros((3, 16, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="batch size 4 is larger than the data"):
        pretrain(tiny(data="array", data_path=str(path)), tmp_path / "run", device="cpu", progress=False)


def test_finite_data_epochs_are_permutations(tmp_path):
    path = tmp_path / "eight.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3), dtype=np.uint8))
    config = tiny(data="array", data_path=str(path))
    from freqlab.data.sources import make_source

    batches = pt._Batches(config, make_source("array", path=str(path), resolution=16))
    first = [batches.data_index(k) for k in range(8)]
    second = [batches.data_index(k) for k in range(8, 16)]
    assert sorted(first) == sorted(second) == list(range(8)) and first != second


def test_non_finite_loss_stops_and_names_step_and_sigma(tmp_path, monkeypatch):
    config = tiny()
    original = pt.edm_loss
    calls = []

    def poisoned(denoiser, x0, sigma, noise):
        loss = original(denoiser, x0, sigma, noise)
        calls.append(1)
        if len(calls) == 2 + 7:  # call 1 is the loss of the step-0 checkpoint; step k is call k + 2
            loss = loss.clone()
            loss[2] = float("nan")
        return loss

    monkeypatch.setattr(pt, "edm_loss", poisoned)
    with pytest.raises(NonFiniteLossError) as err:
        pretrain(config, tmp_path / "run", device="cpu", progress=False)
    ids = range(7 * config.batch_size, 8 * config.batch_size)
    sigma = math.exp(config.p_mean + config.p_std * float(per_sample_randn(config.seed, "pretrain/sigma", ids, (1,))[2]))
    message = str(err.value)
    assert "step 7" in message and f"{sigma:.3g}" in message and "\n" not in message
    assert isinstance(err.value, ValueError)
    # nothing was written for the bad step: the last good state and checkpoints stay
    assert final_state(tmp_path / "run")["step"] == 5
    assert [i.step for i in discover_checkpoints(tmp_path / "run")] == [0, 1, 2, 5]


def test_absurd_learning_rate_is_caught(tmp_path):
    with pytest.raises(NonFiniteLossError, match="non-finite at step"):
        pretrain(tiny(lr=1e30, warmup_steps=0, grad_clip=0.0), tmp_path / "run", device="cpu", progress=False)


# ---------------------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------------------
def test_cli_options_are_the_config_fields_and_show_each_presets_value(capsys):
    from freqlab.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["pretrain"])
    offered = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli", True)}
    assert len(offered) > 25 and all(getattr(args, name) is None for name in offered)  # None: the preset's value
    parsed = parser.parse_args(["pretrain", "--channels", "8,16", "--no-amp", "--checkpoints", "3", "--ema-decay", "none"])
    assert (parsed.channels, parsed.amp, parsed.n_checkpoints, parsed.ema_decay) == ((8, 16), False, 3, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["pretrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "cpu-small 800; cifar 400000; tiny 12" in text and "preset's value" in text


def test_cli_runs_and_refuses_in_one_line(tmp_path, capsys):
    from freqlab.cli import main

    out = str(tmp_path / "run")
    assert main(["pretrain", "--preset", "tiny", "--steps", "2", "--channels", "8,16", "--out", out, "--quiet",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "step-000000" in printed and "step-000002" in printed
    assert "x the skip-only baseline" in printed  # the loss is stated relative to the baseline, not alone
    assert main(["pretrain", "--preset", "tiny", "--steps", "2", "--lr", "1e-4", "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("freqlab pretrain: error:") and "different pre-training run" in err and "\n" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--preset", "nope", "--out", out])
    assert exit_info.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_cli_help_has_examples(capsys):
    from freqlab.cli import main

    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--resume" in text and "cpu-small" in text


def test_prefetched_batches_equal_plain_ones():
    config = tiny()
    from freqlab.data.sources import make_source

    batches = pt._Batches(config, make_source("natural", resolution=16))
    plain = list(pt._batch_stream(batches, 2, 5, prefetch=False))
    fetched = list(pt._batch_stream(batches, 2, 5, prefetch=True))
    assert len(plain) == len(fetched) == 3
    for a, b in zip(plain, fetched):
        for ta, tb in zip(a, b):
            assert torch.equal(ta, tb)
    stream = pt._batch_stream(batches, 0, 10, prefetch=True)
    next(stream)
    stream.close()  # an interrupted loop shuts the thread down
