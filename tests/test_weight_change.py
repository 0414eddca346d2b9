"""Tests of freqlab.inside.weight_change (what fine-tuning moves), its figure and ``freqlab weights``, on tiny UNets."""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from freqlab.checkpoints.store import load_denoiser
from freqlab.cli import main
from freqlab.finetune import loop as gan
from freqlab.finetune.freezing import LAYER_TYPE_NAMES, freeze_policy
from freqlab.inside.weight_change import change_per_parameter_ratio, summarize, weight_change
from freqlab.plots.weights import weight_change_figure
from freqlab.runtime import results

ROOT = Path(__file__).resolve().parents[1]
FROZEN = "unet.down_blocks.0.resnets.0.conv1.weight"   # frozen by D2O-F ('conv')
TRAINABLE = "unet.time_embedding.linear_2.weight"       # trainable under D2O-F
# a fine-tune of a handful of steps: 2 steps of 2 images, one log row and one export at the end
TINY_FT = dict(n_images=4, batch_size=2, log_every=4, n_eval=2, n_data=2, r1_every=2, ema=8.0, device="cpu",
               progress=False)


@pytest.fixture(scope="module")
def checkpoint(make_tiny_run):
    return make_tiny_run([(1, 0)]) / "checkpoints" / "step-000001"


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_denoiser(checkpoint)


@pytest.fixture(scope="module")
def finetunes(checkpoint, tmp_path_factory):
    """A D2O-F (freeze conv) and a D2O (freeze none) tiny fine-tune from ``checkpoint``: their run directories."""
    root = tmp_path_factory.mktemp("finetunes")
    runs = {freeze: gan.finetune(checkpoint, root / freeze, freeze=freeze, **TINY_FT) for freeze in ("conv", "none")}
    return runs


def _perturbed(model, deltas: dict[str, torch.Tensor]):
    after = copy.deepcopy(model)
    params = dict(after.named_parameters())
    with torch.no_grad():
        for name, delta in deltas.items():
            params[name].add_(delta)
    return after


# ----------------------------------------------------------------------------------------------------------------
# (a) a checkpoint against itself: exactly zero everywhere
# ----------------------------------------------------------------------------------------------------------------
def test_self_comparison_is_exactly_zero(checkpoint, model):
    ds = weight_change(checkpoint, checkpoint)
    assert (ds.abs_change.values == 0).all()
    finite = np.isfinite(ds.rel_change.values)
    assert (ds.rel_change.values[finite] == 0).all()
    assert (np.isnan(ds.rel_change.values) == (ds.norm_before.values == 0)).all()  # only zero tensors are NaN
    assert math.isnan(float(ds.frozen_share_of_change))  # nothing changed: no share to speak of
    assert float(ds.rel_change_total) == 0.0
    populated = ds.type_n_params.values > 0
    assert (ds.type_rel_change.values[populated] == 0).all()
    assert "no weight changed" in summarize(ds)
    # the same with an in-memory module on one side; the caller's module is not frozen in place
    again = weight_change(model, checkpoint)
    assert (again.abs_change.values == 0).all()
    assert all(p.requires_grad for p in model.parameters())
    assert ds.sizes["parameter"] == len(list(model.parameters()))
    assert int(ds.n_params.sum()) == sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------------
# (b) a known perturbation: the formulas, tensor by tensor and per layer type
# ----------------------------------------------------------------------------------------------------------------
def test_known_perturbation_follows_the_formulas(model, tmp_path):
    params = dict(model.named_parameters())
    torch.manual_seed(1)
    deltas = {FROZEN: 0.01 * torch.randn_like(params[FROZEN]), TRAINABLE: 0.02 * torch.randn_like(params[TRAINABLE])}
    after = _perturbed(model, deltas)
    ds = weight_change(model, after)

    def norm(t):
        return float(np.linalg.norm(t.detach().double().numpy().ravel()))

    after_params = dict(after.named_parameters())
    sq = {}
    for name in deltas:
        moved = after_params[name].detach().double() - params[name].detach().double()  # δ as float32 stored it
        sq[name] = norm(moved) ** 2
        assert float(ds.abs_change.sel(parameter=name)) == pytest.approx(norm(moved), rel=1e-12)
        assert float(ds.rel_change.sel(parameter=name)) == pytest.approx(norm(moved) / norm(params[name]), rel=1e-12)
        assert float(ds.rel_change.sel(parameter=name)) == pytest.approx(norm(deltas[name]) / norm(params[name]),
                                                                         rel=1e-5)
        assert float(ds.norm_before.sel(parameter=name)) == pytest.approx(norm(params[name]), rel=1e-12)
    others = ds.abs_change.drop_sel(parameter=list(deltas))
    assert (others.values == 0).all()

    frozen = {n for n in freeze_policy(copy.deepcopy(model), "conv").frozen_names}
    assert bool(ds.frozen_by_policy.sel(parameter=FROZEN)) and not bool(ds.frozen_by_policy.sel(parameter=TRAINABLE))
    assert set(ds.parameter.values[ds.frozen_by_policy.values]) == frozen
    n_frozen = sum(p.numel() for n, p in params.items() if n in frozen)
    n_total = sum(p.numel() for p in params.values())
    assert float(ds.frozen_share_of_params) == pytest.approx(n_frozen / n_total, rel=1e-12)
    assert float(ds.frozen_share_of_change) == pytest.approx(sq[FROZEN] / (sq[FROZEN] + sq[TRAINABLE]), rel=1e-12)
    sq_norm_frozen = sum(norm(p) ** 2 for n, p in params.items() if n in frozen)
    sq_norm_trainable = sum(norm(p) ** 2 for n, p in params.items() if n not in frozen)
    assert float(ds.rel_change_frozen) == pytest.approx(math.sqrt(sq[FROZEN] / sq_norm_frozen), rel=1e-10)
    assert float(ds.rel_change_trainable) == pytest.approx(math.sqrt(sq[TRAINABLE] / sq_norm_trainable), rel=1e-10)

    # per layer type: sqrt(Σ‖ΔW‖²)/sqrt(Σ‖W‖²) over the type; every type listed, empty ones NaN
    assert list(ds.layer_type.values) == list(LAYER_TYPE_NAMES)
    kinds = ds.parameter_layer_type
    for kind, name in (("resnet conv", FROZEN), ("time embedding", TRAINABLE)):
        assert kinds.sel(parameter=name).item() == kind
        members = [str(n) for n in ds.parameter.values[kinds.values == kind]]
        expected = math.sqrt(sq[name] / sum(norm(params[n]) ** 2 for n in members))
        assert float(ds.type_rel_change.sel(layer_type=kind)) == pytest.approx(expected, rel=1e-10)
        assert int(ds.type_n_params.sel(layer_type=kind)) == sum(params[n].numel() for n in members)
    untouched = [k for k in LAYER_TYPE_NAMES if k not in ("resnet conv", "time embedding")
                 and int(ds.type_n_params.sel(layer_type=k)) > 0]
    assert untouched and (ds.type_rel_change.sel(layer_type=untouched).values == 0).all()
    assert float(ds.type_frozen_share.sel(layer_type="resnet conv")) == 1.0
    assert float(ds.type_frozen_share.sel(layer_type="normalisation")) == 0.0
    assert math.isnan(float(ds.type_frozen_share.sel(layer_type="other")))  # no parameters of that type
    assert int(ds.type_n_params.sum()) == n_total
    assert float(ds.type_share_of_change.sum()) == pytest.approx(1.0)
    fc, fp = float(ds.frozen_share_of_change), float(ds.frozen_share_of_params)
    assert change_per_parameter_ratio(ds) == pytest.approx((fc / fp) / ((1 - fc) / (1 - fp)))

    # the file keeps every value, the booleans and the names
    path = results.save(ds, tmp_path / "weight_change.nc")
    loaded = results.load(path)
    assert loaded.frozen_by_policy.dtype == bool
    assert (loaded.frozen_by_policy.values == ds.frozen_by_policy.values).all()
    np.testing.assert_array_equal(loaded.rel_change.values, ds.rel_change.values)
    assert list(loaded.parameter_layer_type.values) == list(ds.parameter_layer_type.values)
    assert loaded.attrs["policy"] == "conv" and "Σ" in loaded.frozen_share_of_change.attrs["long_name"]


def test_zero_norm_tensor_has_nan_relative_but_real_absolute_change(model):
    before = copy.deepcopy(model)
    with torch.no_grad():
        dict(before.named_parameters())[TRAINABLE].zero_()
    after = _perturbed(before, {TRAINABLE: torch.full_like(dict(model.named_parameters())[TRAINABLE], 0.5)})
    ds = weight_change(before, after)
    n = dict(model.named_parameters())[TRAINABLE].numel()
    assert math.isnan(float(ds.rel_change.sel(parameter=TRAINABLE)))
    assert float(ds.abs_change.sel(parameter=TRAINABLE)) == pytest.approx(0.5 * math.sqrt(n))
    assert float(ds.frozen_share_of_change) == 0.0


def test_policy_none_and_a_bad_policy(model):
    after = _perturbed(model, {FROZEN: torch.ones_like(dict(model.named_parameters())[FROZEN])})
    ds = weight_change(model, after, policy="none")
    assert float(ds.frozen_share_of_params) == 0.0 and not ds.frozen_by_policy.values.any()
    assert math.isnan(change_per_parameter_ratio(ds))
    with pytest.raises(ValueError, match="matches no parameter"):
        weight_change(model, after, policy="no_such_layer")


# ----------------------------------------------------------------------------------------------------------------
# (c) tiny fine-tunes: D2O-F leaves its frozen set exactly as it was, D2O moves it
# ----------------------------------------------------------------------------------------------------------------
def test_d2o_f_finetune_leaves_the_frozen_set_exactly(checkpoint, finetunes):
    out = finetunes["conv"].out
    for after in (out / "final", out / "checkpoints" / "finetune-0000004"):  # the EMA and the raw generator
        ds = weight_change(checkpoint, after)
        frozen = ds.frozen_by_policy.values
        assert frozen.any() and (ds.abs_change.values[frozen] == 0).all()
        assert float(ds.frozen_share_of_change) == 0.0 and float(ds.rel_change_frozen) == 0.0
        assert (ds.abs_change.values[~frozen] > 0).any()
        assert float(ds.frozen_share_of_params) == pytest.approx(finetunes["conv"].freeze.frozen_share)
    assert "did not move at all" in summarize(ds)


def test_d2o_finetune_moves_the_d2o_f_frozen_set(checkpoint, finetunes):
    run = finetunes["none"]
    ds = weight_change(checkpoint, run.out / "final")
    frozen = ds.frozen_by_policy.values
    assert (ds.abs_change.values[frozen] > 0).any()
    assert 0 < float(ds.frozen_share_of_change) < 1 and float(ds.rel_change_frozen) > 0
    # the in-memory generator (names prefixed 'denoiser.') lines up with its exported checkpoint
    live = weight_change(checkpoint, run.generator)
    saved = weight_change(checkpoint, run.out / "checkpoints" / "finetune-0000004")
    np.testing.assert_array_equal(live.abs_change.values, saved.abs_change.values)


# ----------------------------------------------------------------------------------------------------------------
# (d) different architectures: one clear line
# ----------------------------------------------------------------------------------------------------------------
def test_mismatched_architectures_are_one_line(model):
    from freqlab.models.denoisers import EDMDenoiser, build_unet

    other = EDMDenoiser(build_unet(sample_size=16, in_channels=1, block_out_channels=(8, 8), norm_num_groups=4,
                                   attention_head_dim=8))
    with pytest.raises(ValueError, match=r"architectures differ: parameter '[^']+' has shape") as err:
        weight_change(model, other)
    assert "\n" not in str(err.value)
    extra = copy.deepcopy(model)
    extra.register_parameter("extra", nn.Parameter(torch.zeros(3)))
    with pytest.raises(ValueError, match="'extra' is in after only"):
        weight_change(model, extra)
    with pytest.raises(ValueError, match="'extra' of before is missing from after"):
        weight_change(extra, model)
    with pytest.raises(ValueError, match="checkpoint path or a torch module"):
        weight_change(model, 3.0)


# ----------------------------------------------------------------------------------------------------------------
# (e) the command line, (f) the figure and its analyses script
# ----------------------------------------------------------------------------------------------------------------
def test_cli_writes_the_files_and_prints_a_summary(checkpoint, finetunes, tmp_path, capsys):
    out = tmp_path / "weights"
    assert main(["weights", str(checkpoint), str(finetunes["none"].out / "final"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    for name in ("weight_change.nc", "weight_change.png", "weight_change.pdf"):
        assert (out / name).is_file()
    assert "share of the squared change on the frozen set (policy 'conv')" in captured.out
    assert "layer types that moved most" in captured.out and "resnet conv" in captured.out
    assert captured.err.strip().startswith("wrote ")
    ds = results.load(out / "weight_change.nc")
    assert float(ds.frozen_share_of_change) > 0

    assert main(["weights", str(checkpoint), str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("freqlab weights: error:") and "\n" not in err
    assert main(["weights", str(checkpoint.parents[1]), str(checkpoint), "--out", str(tmp_path / "z")]) == 2
    assert "is a run directory" in capsys.readouterr().err
    assert main(["weights", str(checkpoint), str(checkpoint), "--policy", "(", "--out", str(tmp_path / "y")]) == 2
    assert "not a valid regular expression" in capsys.readouterr().err


def test_figure_and_analyses_script(model, tmp_path):
    after = _perturbed(model, {FROZEN: 0.01 * torch.ones_like(dict(model.named_parameters())[FROZEN]),
                               TRAINABLE: 0.01 * torch.ones_like(dict(model.named_parameters())[TRAINABLE])})
    for ds in (weight_change(model, after), weight_change(model, model)):  # a change, and none at all
        axes = weight_change_figure(ds)
        assert axes.shape == (1, 2) and len(axes[0][0].figure.axes) == 2
        plt.close(axes[0][0].figure)
    results.save(weight_change(model, after), tmp_path / "weight_change.nc")
    spec = importlib.util.spec_from_file_location("fig_weight_change", ROOT / "analyses" / "fig_weight_change.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    axes = script.draw(tmp_path)
    assert axes.shape == (1, 2)
    plt.close(axes[0][0].figure)
    from freqlab.plots.registry import script_main

    assert script_main("weight_change", argv=[str(tmp_path / "nowhere")], draw=script.draw) == 2


def test_function_change_tells_which_part_of_the_change_moves_the_outputs(model, tmp_path):
    from freqlab.inside.function_change import function_change, summarize

    params = dict(model.named_parameters())
    trainable_only = _perturbed(model, {TRAINABLE: 0.2 * torch.randn_like(params[TRAINABLE])})
    ds = function_change(model, trainable_only, n_images=8, batch_size=4, out=tmp_path / "f.nc")
    np.testing.assert_allclose(ds.lost_share.sel(part="trainable").values, 0.0, atol=1e-12)  # it alone: all of it
    np.testing.assert_allclose(ds.lost_share.sel(part="frozen").values, 1.0, atol=1e-9)  # without it: nothing left
    assert (ds.moved.values > 0).all() and (tmp_path / "f.nc").exists()
    frozen_only = _perturbed(model, {FROZEN: 0.2 * torch.randn_like(params[FROZEN])})
    flipped = function_change(model, frozen_only, n_images=8, batch_size=4)
    np.testing.assert_allclose(flipped.lost_share.sel(part="frozen").values, 0.0, atol=1e-12)
    np.testing.assert_allclose(flipped.lost_share.sel(part="trainable").values, 1.0, atol=1e-9)
    assert "the frozen set's change alone" in summarize(flipped)
