"""Tests of the GAN fine-tuning core (freqlab.finetune.loop) and ``freqlab finetune``, on tiny UNets and 16x16 images."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
import xarray as xr
from torch import nn

from freqlab.finetune import discriminator, freezing, losses
from freqlab.finetune import loop as gan
from freqlab.finetune.config import FinetuneConfig
from freqlab.models.denoisers import EDMDenoiser, build_unet
from freqlab.runtime import results
from freqlab.training.monitor import NonFiniteLossError

SHAPE = (3, 16, 16)
TINY = dict(n_images=8, batch_size=4, log_every=4, n_eval=4, n_data=8, r1_every=2, ema=8.0, device="cpu",
            progress=False)



def tiny_denoiser(seed: int = 0) -> EDMDenoiser:
    torch.manual_seed(seed)
    return EDMDenoiser(build_unet(sample_size=16, block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=8))


@pytest.fixture(scope="module")
def denoiser() -> EDMDenoiser:
    return tiny_denoiser()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, denoiser):
    from freqlab.checkpoints.store import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(path, denoiser, metadata={"step": 10, "images_seen": 100, "loss": 0.5, "ema": False, "kind": "pretrain"})
    return path


def fresh(denoiser):
    import copy

    return copy.deepcopy(denoiser)


# ----------------------------------------------------------------------------------------------------------------
# freezing policies
# ----------------------------------------------------------------------------------------------------------------
def trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_conv_policy_freezes_block_convs_and_attention_out(denoiser):
    model = fresh(denoiser)
    report = gan.freeze_policy(model, "conv")
    names = {n for n, _ in model.named_parameters()}
    train = trainable(model)
    frozen = names - train
    # frozen: residual-block convs, attention output projections, resampler convs
    for name in frozen:
        assert re.search(r"resnets\.\d+\.conv[12]\.|attentions\.\d+\.to_out\.|(down|up)samplers\.\d+\.conv\.", name), name
    assert "unet.down_blocks.0.resnets.0.conv1.weight" in frozen
    assert "unet.mid_block.attentions.0.to_out.0.weight" in frozen
    assert "unet.up_blocks.0.upsamplers.0.conv.weight" in frozen
    # trainable: norms, time embedding, shortcut convs, q/k/v, input/output convs
    for name in ("unet.conv_in.weight", "unet.conv_out.bias", "unet.time_embedding.linear_1.weight",
                 "unet.down_blocks.0.resnets.0.time_emb_proj.weight", "unet.down_blocks.0.resnets.0.norm1.weight",
                 "unet.up_blocks.0.resnets.0.conv_shortcut.weight", "unet.mid_block.attentions.0.to_q.weight",
                 "unet.mid_block.attentions.0.to_v.bias", "unet.mid_block.attentions.0.group_norm.weight",
                 "unet.conv_norm_out.weight"):
        assert name in train, name
    assert set(report.frozen_names) == frozen
    n_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert report.n_frozen == n_frozen and report.n_total == sum(p.numel() for p in model.parameters())
    assert 0.5 < report.frozen_share < 0.95
    assert f"{report.frozen_share:.1%}" in report.summary()


def test_none_and_regex_policies(denoiser):
    model = fresh(denoiser)
    report = gan.freeze_policy(model, "none")
    assert report.n_frozen == 0 and report.frozen_share == 0.0 and trainable(model) == {n for n, _ in model.named_parameters()}
    model = fresh(denoiser)
    report = gan.freeze_policy(model, r"^unet\.conv_(in|out)\.")
    assert set(report.frozen_names) == {"unet.conv_in.weight", "unet.conv_in.bias", "unet.conv_out.weight", "unet.conv_out.bias"}


@pytest.mark.parametrize("pattern, message", [("no_such_layer", "matches no parameter"), (".", "matches every"),
                                              ("unet", "matches every"), ("(", "not a valid regular expression")])
def test_bad_freeze_patterns(denoiser, pattern, message):
    model = fresh(denoiser)
    with pytest.raises(ValueError, match=message):
        gan.freeze_policy(model, pattern)
    assert trainable(model) == {n for n, _ in model.named_parameters()}  # nothing half-frozen


def test_parameter_breakdown_adds_up(denoiser):
    model = fresh(denoiser)
    report = gan.freeze_policy(model, "conv")
    table = gan.parameter_breakdown(model)
    assert list(table.layer_type.values) == list(freezing.LAYER_TYPE_NAMES)
    assert int(table.n_frozen.sum()) == report.n_frozen
    assert int(table.n_frozen.sum() + table.n_trainable.sum()) == report.n_total
    assert int(table.n_frozen.sel(layer_type="resnet conv")) > 0 and int(table.n_trainable.sel(layer_type="resnet conv")) == 0
    assert int(table.n_trainable.sel(layer_type="normalisation")) > 0 and int(table.n_frozen.sel(layer_type="normalisation")) == 0
    assert int(table.n_trainable.sel(layer_type="other")) == 0  # every parameter of the UNet has a named type


# ----------------------------------------------------------------------------------------------------------------
# losses, R1, EMA, networks
# ----------------------------------------------------------------------------------------------------------------
def test_losses_on_toy_logits():
    zero = torch.zeros(5)
    assert losses.discriminator_loss(zero, zero, "ns").item() == pytest.approx(2 * math.log(2))
    assert losses.generator_loss(zero, "ns").item() == pytest.approx(math.log(2))
    assert losses.discriminator_loss(zero, zero, "hinge").item() == pytest.approx(2.0)
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-1.0, 0.5])
    ns = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-0.5))) / 2 + (math.log1p(math.exp(-1)) + math.log1p(math.exp(0.5))) / 2
    assert losses.discriminator_loss(real, fake, "ns").item() == pytest.approx(ns)
    assert losses.discriminator_loss(real, fake, "hinge").item() == pytest.approx((0 + 0.5) / 2 + (0 + 1.5) / 2)
    assert losses.generator_loss(fake, "ns").item() == pytest.approx((math.log1p(math.exp(1)) + math.log1p(math.exp(-0.5))) / 2)
    assert losses.generator_loss(fake, "hinge").item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="loss must be one of"):
        losses.generator_loss(fake, "wgan")


def test_r1_penalty_on_toy_discriminators():
    torch.manual_seed(0)
    w = torch.randn(1, 2, 3, 3, requires_grad=True)
    x = torch.randn(4, 2, 3, 3, requires_grad=True)
    logits = (w * x).flatten(1).sum(1)                     # linear D: ∇_x D = w for every image
    penalty = losses.r1_penalty(logits, x, gamma=0.3, gain=4)
    assert penalty.item() == pytest.approx(0.5 * 0.3 * 4 * w.square().sum().item(), rel=1e-6)
    (grad_w,) = torch.autograd.grad(penalty, w)            # the graph is kept, so R1 trains D: d/dw = γ·gain·w
    assert torch.allclose(grad_w, 0.3 * 4 * w.detach(), rtol=1e-5)
    x2 = torch.randn(3, 1, 4, 4, requires_grad=True)
    logits2 = 0.5 * x2.square().flatten(1).sum(1)          # quadratic D: ∇_x D = x
    expected = 0.5 * 2.0 * x2.detach().square().flatten(1).sum(1).mean()
    assert losses.r1_penalty(logits2, x2, gamma=2.0).item() == pytest.approx(expected.item(), rel=1e-6)


def test_ema_decay_and_halflife():
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = gan.EMA(model, halflife=8, rampup=None)
    assert ema.beta(100, 8) == pytest.approx(0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, images_seen=8, batch=8)              # half-way after one half-life
    assert torch.allclose(ema.model.weight, torch.full((1, 2), 0.5))
    ramped = gan.EMA(model, halflife=1000, rampup=0.05)
    assert ramped.beta(160, 8) == pytest.approx(0.5)       # half-life ramped to 0.05·160 = 8 images
    assert gan.EMA(model, halflife=0).beta(10, 4) == 0.0   # no averaging: a copy


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32), (3, 28, 20), (3, 8, 8)])
def test_discriminator_adapts_to_resolution(shape):
    d = gan.Discriminator(shape, channels=8)
    x = torch.randn(4, *shape, requires_grad=True)
    out = d(x)
    n_blocks = {16: 2, 32: 3, 20: 2, 8: 1}[min(shape[1:])]
    assert out.shape == (4, (n_blocks + 1) * 16)           # a 4x4 map of local verdicts per scale, and the global one
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert sum(1 for m in d.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)) == n_blocks
    plain = gan.Discriminator(shape, channels=8, highpass_gain=0, patch_logits=False, minibatch_std=0)
    assert plain(x).shape == (4,) and plain.stem[0].in_channels == shape[0]
    assert d.stem[0].in_channels == 2 * shape[0]           # image and its high-pass detail


def test_highpass_view_and_minibatch_std():
    flat = torch.full((2, 3, 8, 8), 0.3)
    view = discriminator.HighPassView(gain=4.0)(flat)
    assert torch.equal(view[:, :3], flat) and view[:, 3:].abs().max() < 1e-6      # no detail in a flat image
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 1.0
    detail = discriminator.HighPassView(gain=2.0)(edge)[:, 1]
    assert detail[0, 0, 3].item() == pytest.approx(2.0 * (0 - 1 / 3))           # left of the edge: 2·(0 − 3/9)
    assert detail[0, 0, 0].abs().item() == 0 and detail[0, 0, 7].abs().item() == 0
    x = torch.randn(8, 5, 2, 2)
    x[4:] = x[4]                                            # second group of 4: identical images, no variety
    out = discriminator.MinibatchStd(group=4)(x)
    assert out.shape == (8, 6, 2, 2) and torch.equal(out[:, :5], x)
    assert (out[:4, 5] > 0.1).all() and (out[4:, 5] < 1e-3).all()
    expected = x[:4].var(0, unbiased=False).add(1e-8).sqrt().mean()
    assert out[0, 5, 0, 0].item() == pytest.approx(expected.item(), rel=1e-6)
    assert discriminator.MinibatchStd(group=4)(torch.randn(6, 2, 1, 1)).shape == (6, 3, 1, 1)  # groups of 3 when 4 ∤ 6


def test_r1_penalty_uses_each_images_mean_logit():
    torch.manual_seed(1)
    x = torch.randn(3, 2, 4, 4, requires_grad=True)
    w = torch.randn(2, 2, 4, 4)
    logits = torch.stack([(w[0] * x).flatten(1).sum(1), (w[1] * x).flatten(1).sum(1)], 1)   # (N, 2)
    mean_w = w.mean(0)                                      # ∇_x of the mean logit
    expected = 0.5 * 1.5 * mean_w.square().sum().item()
    assert losses.r1_penalty(logits, x, gamma=1.5).item() == pytest.approx(expected, rel=1e-6)


def test_generator_is_one_step_denoiser_at_sigma_max(denoiser):
    g = gan.make_generator(denoiser)
    z = torch.randn(2, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(g(z), denoiser(80.0 * z, torch.full((2,), 80.0)), atol=1e-6)
    assert g.sigma == denoiser.sigma_max == 80.0
    assert g.denoiser is not denoiser  # the caller's model is never trained in place


def test_random_init_keeps_architecture_with_fresh_seeded_weights(denoiser):
    a, b, c = (gan.make_generator(denoiser, init_kind="random", seed=s).denoiser for s in (1, 1, 2))
    sa, sb, sc, s0 = a.state_dict(), b.state_dict(), c.state_dict(), denoiser.state_dict()
    assert sa.keys() == s0.keys() and all(sa[k].shape == s0[k].shape for k in s0)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # same seed, same weights
    name = "unet.down_blocks.0.resnets.0.conv1.weight"
    assert not torch.equal(sa[name], s0[name]) and not torch.equal(sa[name], sc[name])
    assert (a.sigma_max, a.image_shape) == (denoiser.sigma_max, denoiser.image_shape)


def test_not_a_denoiser_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a denoiser"):
        gan.make_generator(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="init_kind"):
        gan.make_generator(tiny_denoiser(), init_kind="pretrained")


# ----------------------------------------------------------------------------------------------------------------
# the loop: log, samples, checkpoints, resume, errors
# ----------------------------------------------------------------------------------------------------------------
PER_ROW = {  # the names, dims and code of the sweep's (checkpoint, sigma, mode) cells: freqlab.measure.core
    "output_power": ("images_seen", "channel", "freq"), "output_power_sem": ("images_seen", "channel", "freq"),
    "relative_power_db": ("images_seen", "channel", "freq"), "lsd": ("images_seen", "channel", "band"),
    "diversity_ratio": ("images_seen", "channel", "band"), "band_power_wasserstein": ("images_seen", "channel", "band"),
    "band_kurtosis": ("images_seen", "channel", "band"), "kurtosis_gap": ("images_seen", "channel", "band"),
    "band_log_power": ("images_seen", "channel", "band"), "cutoff_freq": ("images_seen", "channel"),
    "cutoff_freq_bound": ("images_seen", "channel"), "loss_d": ("images_seen",), "loss_g": ("images_seen",),
    "r1_penalty": ("images_seen",), "d_real": ("images_seen",), "d_fake": ("images_seen",),
    "images_per_second": ("images_seen",),
}
STATIC = {"data_power": ("channel", "freq"), "data_power_sem": ("channel", "freq"),
          "data_band_kurtosis": ("channel", "band"), "data_band_log_power": ("channel", "band"),
          "n_frozen": ("layer_type",), "n_trainable": ("layer_type",)}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, checkpoint):
    out = tmp_path_factory.mktemp("ft")
    return gan.finetune(checkpoint, out, **TINY)


def test_tiny_finetune_writes_log_samples_and_checkpoints(tiny_run, checkpoint):
    from PIL import Image

    from freqlab.checkpoints.store import load_denoiser
    from freqlab.runtime import results

    out = tiny_run.out
    ds = results.load(out / "finetune.nc")
    assert list(ds.images_seen.values) == [0, 4, 8]
    for name, dims in {**PER_ROW, **STATIC}.items():
        assert ds[name].dims == dims, name
        assert ds[name].attrs.get("units"), name
    assert list(ds.band.values) == ["low", "mid", "high"] and ds.sizes["freq"] == 9
    assert math.isnan(float(ds.loss_d[0])) and all(math.isfinite(float(v)) for v in ds.loss_d[1:])
    # one step per row, R1 every 2 steps: on step 0 (row 4), not on step 1 (row 8, no R1 step to average: NaN)
    assert float(ds.r1_penalty[1]) > 0 and math.isnan(float(ds.r1_penalty[2]))
    assert bool(xr.apply_ufunc(math.isfinite, ds.lsd, vectorize=True).all())
    assert ds.attrs["frozen_share"] == pytest.approx(tiny_run.freeze.frozen_share)
    assert ds.attrs["Conventions"].startswith("CF-") and ds.attrs["source_paths_absolute"] == str(checkpoint.resolve())
    assert (out / ds.attrs["source_paths"]).resolve() == checkpoint.resolve()  # relative to the file: portable
    assert 0 < ds.attrs["frozen_share"] < 1 and ds.attrs["config_freeze"] == "conv"
    assert int(ds.n_frozen.sum()) == ds.attrs["n_frozen_parameters"]
    for seen in (0, 4, 8):
        png = out / "samples" / f"images_seen-{seen:07d}.png"
        assert Image.open(png).size == (2 * 17 + 1, 2 * 17 + 1)  # 4 images, 2 per row, 1 px padding
    assert (out / "samples" / "data.png").is_file()
    g = load_denoiser(out / "checkpoints" / "finetune-0000008")
    for name, tensor in tiny_run.generator.denoiser.state_dict().items():
        assert torch.equal(g.state_dict()[name], tensor.cpu()), name
    assert (out / "checkpoints" / "finetune-0000008-ema").is_dir()


def test_a_log_row_is_a_sweep_cell_at_sigma_max_generate(tmp_path, checkpoint):
    """One measurement core: the fine-tuning log's first row (the generator before any step) equals a sweep of the
    same checkpoint at (σ_max, generate) with the same seed, data and number of images, variable by variable."""
    from freqlab.data.sources import make_source
    from freqlab.measure import core as measure
    from freqlab.sweep import study as sweep

    run = gan.finetune(checkpoint, tmp_path / "ft", **{**TINY, "n_images": 4, "n_eval": 8, "n_data": 8})
    row = run.log.isel(images_seen=0)
    data = make_source("natural", resolution=16, split="train")  # finetune's data: its default source and split
    ds = sweep.sweep([checkpoint], data, [run.generator.sigma], modes=("generate",), n_images=8, batch_size=8,
                     seed=0, device="cpu", progress=False)
    cell = ds.isel(checkpoint=0, sigma=0).sel(mode="generate")
    names = [n for n in measure.VARIABLES if n in row and n in cell]
    assert len(names) >= 18, names  # every output and data variable the two have in common
    for name in names:
        xr.testing.assert_allclose(row[name].drop_vars("images_seen", errors="ignore").reset_coords(drop=True),
                                   cell[name].reset_coords(drop=True), rtol=1e-5, atol=1e-6)
        assert row[name].attrs == cell[name].attrs, name


def test_old_log_format_is_refused_on_resume(tmp_path, checkpoint):
    from freqlab.runtime import results

    out = tmp_path / "old"
    gan.finetune(checkpoint, out, **{**TINY, "n_images": 4})
    log = results.load(out / "finetune.nc")
    log.attrs["format_version"] = 1
    results.save(log, out / "finetune.nc")
    with pytest.raises(ValueError, match="log format 1"):
        gan.finetune(checkpoint, out, **TINY)


def _saved_optimizers(out) -> dict:
    latest = json.loads((out / "state" / "latest.json").read_text())
    return torch.load(out / "state" / latest["dir"] / "optimizers.pt", weights_only=True)


def test_frozen_parameters_train_not_and_have_no_adam_state(tiny_run, denoiser):
    start = denoiser.state_dict()
    after = tiny_run.generator.denoiser.state_dict()
    frozen, train = set(tiny_run.freeze.frozen_names), set(tiny_run.freeze.trainable_names)
    assert all(torch.equal(after[n], start[n]) for n in frozen)
    assert any(not torch.equal(after[n], start[n]) for n in train)
    opts = _saved_optimizers(tiny_run.out)
    assert len(opts["generator"]["state"]) == len(train)  # Adam moments only for trainable tensors
    assert opts["generator"]["param_groups"][0]["betas"] == (0.0, 0.99)


def test_resumed_run_matches_uninterrupted_run(tmp_path, checkpoint, tiny_run):
    out = tmp_path / "resumed"
    gan.finetune(checkpoint, out, **{**TINY, "n_images": 4})
    log = results.load(out / "finetune.nc")
    log.attrs["date_created"] = "2000-01-01T00:00:00Z"  # a date no rerun could write: it must survive the resume
    results.save(log, out / "finetune.nc")
    resumed = gan.finetune(checkpoint, out, **TINY)  # same settings, larger budget: continues from images_seen=4
    assert results.load(out / "finetune.nc").attrs["date_created"] == "2000-01-01T00:00:00Z"
    for name, tensor in tiny_run.generator.state_dict().items():
        assert torch.equal(resumed.generator.state_dict()[name], tensor), name
    for name, tensor in tiny_run.generator_ema.state_dict().items():
        assert torch.equal(resumed.generator_ema.state_dict()[name], tensor), name
    for name, tensor in tiny_run.discriminator.state_dict().items():
        assert torch.equal(resumed.discriminator.state_dict()[name], tensor), name
    a, b = tiny_run.log.drop_vars("images_per_second"), resumed.log.drop_vars("images_per_second")
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    again = gan.finetune(checkpoint, out, **TINY)  # finished: returns at once with the same log
    assert list(again.log.images_seen.values) == [0, 4, 8]


def test_random_init_run_and_existing_run_errors(tmp_path, checkpoint):
    out = tmp_path / "random"
    run = gan.finetune(checkpoint, out, **{**TINY, "n_images": 4, "init_kind": "random", "freeze": "none"})
    assert run.freeze.n_frozen == 0 and run.log.attrs["config_init_kind"] == "random"
    with pytest.raises(ValueError, match="other settings .*freeze"):
        gan.finetune(checkpoint, out, **{**TINY, "init_kind": "random", "freeze": "conv"})
    with pytest.raises(FileExistsError, match="--overwrite"):
        gan.finetune(checkpoint, out, **{**TINY, "init_kind": "random", "freeze": "none"}, resume=False)
    run = gan.finetune(checkpoint, out, **{**TINY, "n_images": 4}, overwrite=True)
    assert run.log.attrs["config_init_kind"] == "checkpoint" and list(run.log.images_seen.values) == [0, 4]


class NaNAfter(nn.Module):
    """A discriminator that returns NaN logits after ``after`` calls (three calls per step)."""

    def __init__(self, shape, after):
        super().__init__()
        self.inner, self.after, self.calls = gan.Discriminator(shape, channels=4), after, 0

    def forward(self, x):
        self.calls += 1
        out = self.inner(x)
        return out * float("nan") if self.calls > self.after else out


def test_non_finite_loss_stops_and_keeps_last_good_state(tmp_path, denoiser):
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"the training loss_d became non-finite at step 2 \(nan at "
                       r"images_seen=8\); the last good state \(images_seen=8\) is kept in .*; lower the learning "
                       r"rates") as err:
        gan.finetune(denoiser, out, **{**TINY, "n_images": 16}, discriminator_factory=lambda s: NaNAfter(s, 6))
    # one error type for pre-training and fine-tuning, a ValueError (the CLI's one-line errors)
    assert err.type is NonFiniteLossError and isinstance(err.value, ValueError) and "\n" not in str(err.value)
    latest = json.loads((out / "state" / "latest.json").read_text())
    assert latest["images_seen"] == 8
    assert (out / "checkpoints" / "finetune-0000008").is_dir()


def test_data_that_do_not_fit_the_model_are_refused(tmp_path, denoiser):
    gray = EDMDenoiser(build_unet(sample_size=16, in_channels=1, block_out_channels=(8, 16), norm_num_groups=4))
    with pytest.raises(ValueError, match="unknown data source"):
        gan.finetune(gray, tmp_path / "x", **TINY, data="nonsense")
    with pytest.raises(ValueError, match="lr_g must be > 0"):
        gan.finetune(denoiser, tmp_path / "y", **{**TINY, "lr_g": 0.0})
    with pytest.raises(ValueError, match="unknown fine-tuning setting.*lr_decay; known: init_kind"):
        gan.finetune(denoiser, tmp_path / "z", **{**TINY, "lr_decay": 0.5})  # a knob that was removed


def test_lookahead_syncs_every_k_steps_towards_the_fast_weights():
    fast = torch.zeros(3)
    look = gan.Lookahead([fast], k=2, alpha=0.25)
    fast += 4.0
    look.step(1)  # not a multiple of k: nothing happens
    assert torch.equal(fast, torch.full((3,), 4.0)) and torch.equal(look.slow[0], torch.zeros(3))
    look.step(2)  # slow moves a quarter of the way to the fast weights, which restart from it
    assert torch.equal(look.slow[0], torch.ones(3)) and torch.equal(fast, torch.ones(3))
    off = gan.Lookahead([fast], k=0)
    fast += 1.0
    off.step(2)
    assert off.slow == [] and torch.equal(fast, torch.full((3,), 2.0))
    with pytest.raises(ValueError, match="lookahead must be a whole number"):
        FinetuneConfig(lookahead=-1)


@pytest.mark.slow
def test_lookahead_run_resumes_like_an_uninterrupted_one(tmp_path, checkpoint):
    # 4 steps with a sync every 2: the state saved after step 3 holds slow weights (from the sync at step 2) that
    # are neither the fast weights nor the initial ones
    settings = {**TINY, "n_images": 16, "lookahead": 2}
    whole = gan.finetune(checkpoint, tmp_path / "whole", **settings)
    plain = gan.finetune(checkpoint, tmp_path / "plain", **{**settings, "lookahead": 0})
    trained = whole.freeze.trainable_names  # lookahead changes where the trainable weights end
    g_whole, g_plain = whole.generator.denoiser.state_dict(), plain.generator.denoiser.state_dict()
    assert not all(torch.equal(g_whole[n], g_plain[n]) for n in trained)
    out = tmp_path / "resumed"
    gan.finetune(checkpoint, out, **{**settings, "n_images": 12})
    resumed = gan.finetune(checkpoint, out, **settings)
    for a, b in ((whole.generator, resumed.generator), (whole.discriminator, resumed.discriminator)):
        for name, tensor in a.state_dict().items():
            assert torch.equal(b.state_dict()[name], tensor), name


def test_a_run_saved_before_lookahead_existed_resumes_without_it(tmp_path, checkpoint):
    old = {**TINY, "lookahead": 0}  # what such a run did
    out = tmp_path / "old"
    gan.finetune(checkpoint, out, **{**old, "n_images": 4})
    latest = json.loads((out / "state" / "latest.json").read_text())
    del latest["config"]["lookahead"]  # the state as written before the field existed
    (out / "state" / "latest.json").write_text(json.dumps(latest))
    with pytest.raises(ValueError, match=r"other settings \(lookahead: 0 -> 5\)"):
        gan.finetune(checkpoint, out, **TINY)  # today's default would change the run
    assert list(gan.finetune(checkpoint, out, **old).log.images_seen.values) == [0, 4, 8]


def test_the_discriminator_is_one_of_the_named_choices():
    from freqlab.finetune.config import DISCRIMINATORS

    assert FinetuneConfig().discriminator == "highpass"
    assert DISCRIMINATORS["highpass"] == dict(highpass_gain=4.0, patch_logits=True, minibatch_std=4)  # as before
    with pytest.raises(ValueError, match="discriminator must be one of highpass, pixel-patch, pixel, got 'patch'"):
        FinetuneConfig(discriminator="patch")


@pytest.mark.parametrize("old, name", [((4.0, True, 4), "highpass"), ((0.0, True, 4), "pixel-patch"),
                                       ((0, False, 0), "pixel"), ((2.0, True, 4), None)])
def test_a_run_saved_with_the_discriminator_knobs_resumes_as_the_choice_they_match(tmp_path, checkpoint, old, name):
    from freqlab.finetune.config import DISCRIMINATORS

    out = tmp_path / "old"
    first = {**TINY, "n_images": 4, "discriminator": name or "highpass"}
    gan.finetune(checkpoint, out, **first)
    latest = json.loads((out / "state" / "latest.json").read_text())
    del latest["config"]["discriminator"]  # the state as written before the knobs became one choice
    latest["config"].update(d_highpass=old[0], d_patch=old[1], d_mbstd=old[2])
    (out / "state" / "latest.json").write_text(json.dumps(latest))
    if name is None:  # no named choice: other settings, whichever is asked for now
        for now in ("highpass", "pixel"):
            with pytest.raises(ValueError, match=r"other settings \(discriminator: 'd_highpass=2.0, d_patch=True, "
                                                 rf"d_mbstd=4 \(no named choice\)' -> '{now}'\)"):
                gan.finetune(checkpoint, out, **{**TINY, "discriminator": now})
        return
    other = next(k for k in ("pixel", "highpass") if k != name)
    with pytest.raises(ValueError, match=rf"other settings \(discriminator: '{name}' -> '{other}'\)"):
        gan.finetune(checkpoint, out, **{**TINY, "discriminator": other})
    run = gan.finetune(checkpoint, out, **{**TINY, "discriminator": name})
    assert list(run.log.images_seen.values) == [0, 4, 8] and run.log.attrs["config_discriminator"] == name
    disc, kw = run.discriminator, DISCRIMINATORS[name]  # the run's D is the one the name stands for
    assert (disc.view is not None, disc.mbstd is not None) == (bool(kw["highpass_gain"]), bool(kw["minibatch_std"]))
    assert (disc(torch.randn(4, *SHAPE)).dim() == 2) == kw["patch_logits"]  # per-scale logits: (N, K)


# ----------------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------------
def test_cli_options_are_the_config_fields_with_its_defaults():
    from freqlab.cli import build_parser
    from freqlab.commands.options import setting_values

    args = build_parser().parse_args(["finetune", "CKPT"])
    settings = setting_values(FinetuneConfig, args)
    defaults = FinetuneConfig()
    assert set(settings) == set(FinetuneConfig.settings())  # every setting has an option (seed: --seed)
    for key, value in settings.items():
        assert getattr(defaults, key) == value, key
    parsed = build_parser().parse_args(["finetune", "CKPT", "--init", "random", "--images", "8", "--bands", "0,0.3,0.5"])
    assert (parsed.init_kind, parsed.n_images, parsed.bands) == ("random", 8, (0.0, 0.3, 0.5))


def test_cli_runs_and_reports_bad_input_in_one_line(tmp_path, checkpoint, capsys):
    from freqlab.cli import main
    from freqlab.runtime import results

    args = ["finetune", str(checkpoint), "--images", "4", "--batch-size", "4", "--log-every", "4", "--n-eval", "4",
            "--n-data", "8", "--device", "cpu", "--quiet", "--out", str(tmp_path / "cli")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "parameters frozen" in out and "high band: log-spectral distance" in out and "kurtosis gap" in out
    plain = ["--d-channels", "8", "--discriminator", "pixel", "--lookahead", "3", "--lr-g", "3e-4"]
    assert main(args[:-1] + [str(tmp_path / "plain")] + plain) == 0   # the discriminator and lr options reach the run
    attrs = results.load(tmp_path / "plain" / "finetune.nc").attrs
    assert (attrs["config_discriminator"], attrs["config_d_channels"]) == ("pixel", 8)
    assert not any(k in attrs for k in ("config_d_highpass", "config_d_patch", "config_d_mbstd"))
    assert (attrs["config_lookahead"], attrs["config_lr_g"]) == (3, 3e-4)
    capsys.readouterr()
    assert main(args[:2] + ["--freeze", "nothing_matches"] + args[2:] + ["--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matches no parameter" in err[0]
    assert main(["finetune", str(tmp_path / "missing"), "--out", str(tmp_path / "m"), "--quiet"]) == 2


def test_a_fine_tuned_diffusers_unet_is_exported_loaded_and_swept(tmp_path):
    from diffusers import DDPMScheduler, UNet2DModel

    from freqlab.checkpoints.store import load_denoiser
    from freqlab.models.denoisers import DiffusersDenoiser
    from freqlab.sweep import study as sweep

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, block_out_channels=(4, 8), norm_num_groups=2, layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    ddpm = DiffusersDenoiser(unet, DDPMScheduler(num_train_timesteps=100))
    run = gan.finetune(ddpm, tmp_path / "ddpm", **{**TINY, "freeze": "none"})
    final = load_denoiser(tmp_path / "ddpm" / "checkpoints" / "final")  # the EMA generator of the last save
    assert isinstance(final, DiffusersDenoiser) and final.sigma_max == pytest.approx(ddpm.sigma_max)
    z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(final(final.sigma_max * z, final.sigma_max), run.generator_ema(z), atol=1e-6)
    ds = sweep.sweep(tmp_path / "ddpm", "natural", [0.5], n_images=4, device="cpu", progress=False, modes=["denoise"])
    assert "finetune-0000008-ema" in [str(c) for c in ds.checkpoint.values]
