"""Pre-training restricted to a range of noise levels (``train_sigma_min`` / ``train_sigma_max``, the σ-ablation of
benchmarks/sigma_ablation.py): the draws stay in the range and follow the truncated distribution, the default is
EDM's (and cpu-small's) draws bit for bit and records the same config, bad ranges are refused."""

import json
import math

import numpy as np
import pytest
import torch

from freqlab.pretrain.config import TrainConfig, make_config
from freqlab.pretrain.loss import training_sigma


def _draws(n=200_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g), torch.randn(n, generator=g)


@pytest.mark.parametrize("share", [0.0, 0.75, 1.0])
@pytest.mark.parametrize("bounds", [(0.3, None), (None, 0.3), (0.05, 2.0), (100.0, None)])
def test_draws_stay_in_the_range_and_follow_the_truncated_distribution(share, bounds):
    lo, hi = bounds
    if share == 1.0 and lo == 100.0:  # outside [σ_min, σ_max] = [0.002, 80]: refused (test below)
        return
    xi, pick = _draws()
    kw = dict(loguniform_share=share, p_mean=1.0, p_std=1.2)
    full = training_sigma(*_draws(4_000_000, seed=1), make_config("cpu-small", **kw)).double()  # the reference
    cut = training_sigma(xi, pick, make_config("cpu-small", train_sigma_min=lo, train_sigma_max=hi, **kw))
    eps = 1e-6  # float32 rounding of the bounds
    assert cut.shape == xi.shape and cut.dtype == xi.dtype
    cut = cut.double()
    assert torch.isfinite(cut).all()
    if lo is not None:
        assert float(cut.min()) >= lo * (1 - eps)
    if hi is not None:
        assert float(cut.max()) <= hi * (1 + eps)
    # the truncated mixture is the full distribution conditioned on the range: compare quantiles with those of
    # other, unrestricted draws that fall inside it (over a thousand even for σ >= 100)
    inside = full[(full >= (lo or 0)) & (full <= (hi or math.inf))]
    assert inside.numel() >= 1_000
    q = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64)
    a, b = torch.quantile(inside.log(), q), torch.quantile(cut.log()[:100_000], q)
    assert torch.allclose(a, b, atol=0.02 + 2 / math.sqrt(inside.numel())), (a, b)


def test_the_default_gives_the_unrestricted_draws_bit_for_bit():
    xi, pick = _draws(10_000)
    edm = make_config("tiny", loguniform_share=0.0)
    assert edm.train_sigma_min is None and edm.train_sigma_max is None
    assert torch.equal(training_sigma(xi, pick, edm), torch.exp(-1.2 + 1.2 * xi))
    small = make_config("cpu-small")
    assert torch.equal(training_sigma(xi, pick, small), training_sigma(xi, pick, make_config(
        "cpu-small", train_sigma_min=None, train_sigma_max=None)))
    # a bound that excludes nothing the draws reach still goes through the truncation, and agrees to rounding
    wide = training_sigma(xi, pick, make_config("cpu-small", train_sigma_min=1e-30, train_sigma_max=1e30))
    np.testing.assert_allclose(wide.double(), training_sigma(xi, pick, small).double(), rtol=1e-5)


def test_an_unrestricted_config_records_what_it_recorded_before():
    d = make_config("cpu-small").to_dict()
    assert "train_sigma_min" not in d and "train_sigma_max" not in d
    assert TrainConfig.from_dict(d) == make_config("cpu-small")
    cut = make_config("cpu-small", train_sigma_min=0.3)
    d = cut.to_dict()
    assert d["train_sigma_min"] == 0.3 and "train_sigma_max" not in d
    assert TrainConfig.from_dict(json.loads(json.dumps(d))) == cut


@pytest.mark.parametrize("kw, match", [
    (dict(train_sigma_min=1.0, train_sigma_max=0.5), "below train_sigma_max"),
    (dict(train_sigma_min=1.0, train_sigma_max=1.0), "below train_sigma_max"),
    (dict(train_sigma_min=0.0), "train_sigma_min must be finite and > 0"),
    (dict(train_sigma_max=-1.0), "train_sigma_max must be finite and > 0"),
    (dict(train_sigma_max=math.inf), "train_sigma_max must be finite"),
    (dict(train_sigma_min=math.nan), "train_sigma_min must be finite"),
    (dict(train_sigma_min=100.0, loguniform_share=1.0), "outside"),
])
def test_bad_ranges_are_refused_in_one_line(kw, match):
    with pytest.raises(ValueError, match=match) as info:
        make_config("cpu-small", **kw)
    assert "\n" not in str(info.value)


def test_the_pretrain_command_takes_the_range_and_records_it(tmp_path, capsys):
    from freqlab.cli import main

    out = tmp_path / "run"
    assert main(["pretrain", "--preset", "tiny", "--steps", "2", "--checkpoints", "2", "--train-sigma-min", "0.5",
                 "--quiet", "--out", str(out)]) == 0
    config = json.loads((out / "run.json").read_text())["config"]
    assert config["train_sigma_min"] == 0.5 and "train_sigma_max" not in config


# --------------------------------------------------------------------------------------------------------------
# the results file, its criterion, the report's section and the figure (freqlab.compare.ablation)
# --------------------------------------------------------------------------------------------------------------
def _ablation(high_above: list[float], low_below: list[float]):
    """A three-seed ablation whose `full` runs sit at 0.5 ± 0.01 in every band, `above`'s high band and `below`'s
    low band at the given values, every other cell at `full`'s."""
    from freqlab.compare import ablation

    bands, rows = ("low", "mid", "high", "image"), []
    for seed, (h, lo) in enumerate(zip(high_above, low_below)):
        for name in ablation.RANGES:
            for stage in ("end", "start"):
                values = {b: 0.5 + 0.01 * seed for b in bands}
                if stage == "end" and name == "above":
                    values["high"] = h
                if stage == "end" and name == "below":
                    values["low"] = lo
                rows.append({"seed": seed, "range": name, "stage": stage, **values, "recall_image": 0.0,
                             **{f"lsd_db_{b}": 1.0 for b in bands}, "loss_over_baseline": 0.4})
    return ablation.to_dataset(rows, bands, {"sigma_split": 0.25, "steps": 10}, {b: 0.0 for b in bands})


def test_the_ablation_criterion_can_pass_fail_and_find_no_effect():
    from freqlab.compare import ablation

    arms, text = ablation.verdict(_ablation([0.9, 0.95, 0.92], [0.8, 0.85, 0.9]))
    assert text == "PASS: both arms as predicted" and [a.seeds_further for a in arms] == [3, 3]
    arms, text = ablation.verdict(_ablation([0.1, 0.15, 0.12], [0.8, 0.85, 0.9]))
    assert text == "FAIL: high arm opposite; low arm as predicted"
    arms, text = ablation.verdict(_ablation([0.9, 0.2, 0.92], [0.505, 0.515, 0.525]))  # mixed; too small
    assert text == "FAIL: high arm no clear effect; low arm no clear effect"


def test_the_ablation_results_file_is_reported_and_drawn_where_it_is(tmp_path):
    from freqlab.compare import ablation
    from freqlab.plots import registry
    from freqlab.plots.results_dir import export_results
    from freqlab.runtime import results

    ds = _ablation([0.1, 0.15, 0.12], [0.8, 0.85, 0.9])
    text = "\n".join(ablation.section(ds))
    assert "**Verdict: FAIL: high arm opposite; low arm as predicted.**" in text and "0 of 3 seeds" in text
    results.save(ds, tmp_path / "r" / ablation.ABLATION_FILE)
    assert [p.name for p in registry.make_figures(tmp_path / "r", tmp_path / "f", quiet=True)] == [
        "sigma_ablation.png", "sigma_ablation.pdf"]
    # a demo's export keeps a benchmark's file it does not make itself, and no figure asks for it where it is not
    (tmp_path / "demo").mkdir()
    export_results(tmp_path / "demo", tmp_path / "r")
    assert (tmp_path / "r" / ablation.ABLATION_FILE).exists()
    with pytest.raises(FileNotFoundError, match="no results to draw"):
        registry.make_figures(tmp_path / "demo", tmp_path / "g", quiet=True)


def test_the_ablation_file_has_one_name_in_every_layer():
    from freqlab.compare import ablation
    from freqlab.plots import registry, results_dir

    assert registry.EXTERNAL_FIGURES["sigma_ablation"] == ablation.ABLATION_FILE
    assert ablation.ABLATION_FILE in results_dir.EXTERNAL_FILES
