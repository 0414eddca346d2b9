"""D2O / D2O-F from an EDM network pickle: the D2O code's frozen set, training, export, reload, resume and sweep.

The network is EDM-shaped (encoder/decoder blocks named as EDM's SongUNet names them: ``enc.8x8_block0.conv0``,
``...skip``, ``...affine``, an attention block's ``qkv`` and ``proj``), pickled as EDM's ``torch_utils.persistence``
does, saved with ``requires_grad_(False)`` like EDM's snapshots, and loaded without EDM's code.
"""

from __future__ import annotations

import os
import pickle
import stat
import sys
import types

import pytest
import torch
from test_checkpoints import _writer_modules

from freqlab.checkpoints import store as checkpoints
from freqlab.checkpoints.edm_pickle import UntrustedPickleError
from freqlab.cli import main
from freqlab.finetune import generator
from freqlab.finetune import loop as gan
from freqlab.sweep import study as sweep

EDM_SHAPED = '''
import torch
from torch_utils import persistence


@persistence.persistent_class
class Block(torch.nn.Module):
    def __init__(self, c, attention=False):
        super().__init__()
        self.norm0, self.conv0 = torch.nn.GroupNorm(2, c), torch.nn.Conv2d(c, c, 3, padding=1)
        self.affine = torch.nn.Linear(4, c)
        self.norm1, self.conv1 = torch.nn.GroupNorm(2, c), torch.nn.Conv2d(c, c, 3, padding=1)
        self.skip = torch.nn.Conv2d(c, c, 1)
        self.attention = attention
        if attention:
            self.qkv, self.proj = torch.nn.Conv2d(c, 3 * c, 1), torch.nn.Conv2d(c, c, 1)

    def forward(self, x, emb):
        h = self.conv0(torch.nn.functional.silu(self.norm0(x))) + self.affine(emb)[:, :, None, None]
        h = self.conv1(torch.nn.functional.silu(self.norm1(h))) + self.skip(x)
        if self.attention:
            q, k, v = self.qkv(h).chunk(3, dim=1)
            w = torch.softmax((q.flatten(2).transpose(1, 2) @ k.flatten(2)) / q.shape[1] ** 0.5, dim=-1)
            h = h + self.proj((v.flatten(2) @ w.transpose(1, 2)).reshape(h.shape))
        return h


@persistence.persistent_class
class TinySong(torch.nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.map_layer0 = torch.nn.Linear(1, 4)
        self.enc = torch.nn.ModuleDict({"8x8_conv": torch.nn.Conv2d(3, c, 3, padding=1), "8x8_block0": Block(c)})
        self.dec = torch.nn.ModuleDict({"8x8_block0": Block(c), "8x8_block1": Block(c, attention=True),
                                        "8x8_aux_norm": torch.nn.GroupNorm(2, c),
                                        "8x8_aux_conv": torch.nn.Conv2d(c, 3, 3, padding=1)})

    def forward(self, x, noise_labels):
        emb = torch.nn.functional.silu(self.map_layer0(noise_labels.reshape(-1, 1)))
        h = self.enc["8x8_block0"](self.enc["8x8_conv"](x), emb)
        h = self.dec["8x8_block1"](self.dec["8x8_block0"](h, emb), emb)
        return self.dec["8x8_aux_conv"](torch.nn.functional.silu(self.dec["8x8_aux_norm"](h)))


@persistence.persistent_class
class Precond(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.img_resolution, self.img_channels = 8, 3
        self.sigma_min, self.sigma_max, self.sigma_data = 0, float("inf"), 0.5
        self.model = TinySong()

    def forward(self, x, sigma, class_labels=None, force_fp32=False):
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        c_skip = self.sigma_data ** 2 / (sigma ** 2 + self.sigma_data ** 2)
        c_out = sigma * self.sigma_data / (sigma ** 2 + self.sigma_data ** 2).sqrt()
        c_in = 1 / (self.sigma_data ** 2 + sigma ** 2).sqrt()
        return c_skip * x + c_out * self.model(c_in * x, (sigma.log() / 4).flatten())
'''

#: What the D2O code's freeze=1 rule freezes here, worked out by hand from the names: a place word (block, up,
#: down, in) and a layer word (conv, proj). ``skip``, ``affine``, ``qkv``, norms, ``8x8_conv``, ``aux_conv`` and
#: ``map_layer0`` train.
EXPECTED_FROZEN = sorted(f"net.model.{side}.{block}.{layer}.{kind}" for side, block, layers in (
    ("enc", "8x8_block0", ("conv0", "conv1")), ("dec", "8x8_block0", ("conv0", "conv1")),
    ("dec", "8x8_block1", ("conv0", "conv1", "proj"))) for layer in layers for kind in ("weight", "bias"))


@pytest.fixture(scope="module")
def edm_pickle(tmp_path_factory):
    """``network-snapshot-000100.pkl`` holding ``{"ema": net}``, written as EDM writes it (frozen weights)."""
    path = tmp_path_factory.mktemp("edm") / "network-snapshot-000100.pkl"
    saved = dict(sys.modules)
    try:
        sys.modules.update(_writer_modules(EDM_SHAPED))
        networks = types.ModuleType("training.networks")
        exec(EDM_SHAPED, networks.__dict__)
        torch.manual_seed(0)
        net = networks.Precond().eval().requires_grad_(False)
        with open(path, "wb") as f:
            pickle.dump({"ema": net}, f)
    finally:
        for name in set(sys.modules) - set(saved):
            del sys.modules[name]
    return path


def test_d2o_f_on_an_edm_network_freezes_the_d2o_codes_set(edm_pickle, capsys):
    gen = gan.make_generator(edm_pickle, trust_pickle=True)
    assert all(p.requires_grad for p in gen.parameters())  # EDM's snapshots are saved frozen: made trainable
    report = gan.freeze_policy(gen.denoiser, "conv")
    assert sorted(report.frozen_names) == EXPECTED_FROZEN
    assert report.pattern.startswith("D2O rule")
    assert main(["finetune", str(edm_pickle), "--trust-pickle", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{report.n_frozen:,} of {report.n_total:,} parameters frozen" in out
    assert "resnet conv" in out and "attention out" in out and "shortcut conv" in out
    with pytest.raises(ValueError, match="trust_pickle=True"):
        gan.make_generator(edm_pickle)
    with pytest.raises(ValueError, match="cannot re-initialise"):  # nothing would be reset: refused, not faked
        generator.random_init(_with_custom_layer(gen.denoiser))


def _with_custom_layer(denoiser):
    """A copy whose first conv has no reset_parameters (as EDM's own Conv2d)."""
    import copy

    class Frozen(torch.nn.Module):
        def __init__(self, conv):
            super().__init__()
            self.weight = conv.weight

    clone = copy.deepcopy(denoiser)
    clone.net.model.enc["8x8_conv"] = Frozen(clone.net.model.enc["8x8_conv"])
    return clone


def test_fine_tuning_an_edm_network_exports_reloads_resumes_and_sweeps(edm_pickle, tmp_path, capsys):
    out = tmp_path / "ft"
    small = dict(batch_size=8, n_eval=8, n_data=16, log_every=16, device="cpu", progress=False, trust_pickle=True)
    run = gan.finetune(edm_pickle, out, n_images=16, **small)
    assert abs(run.freeze.frozen_share - run.log.attrs["frozen_share"]) < 1e-12
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o666 & ~mask}, modes  # resume state included (safetensors alone writes 0600)
    ckpt = out / "checkpoints" / "final"
    with pytest.raises(UntrustedPickleError, match="fine-tuned EDM network .*--trust-pickle"):
        checkpoints.load_denoiser(ckpt)
    loaded = checkpoints.load_denoiser(ckpt, trust_pickle=True)
    trained = {k: v for k, v in run.generator_ema.denoiser.state_dict().items()}
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0)
    source = checkpoints.load_denoiser(edm_pickle, trust_pickle=True)
    moved = [n for n, p in source.named_parameters() if not torch.equal(p, dict(loaded.named_parameters())[n])]
    assert moved and not set(moved) & set(EXPECTED_FROZEN)  # trained, and the frozen set untouched

    resumed = gan.finetune(edm_pickle, out, n_images=32, **small)  # a larger budget continues the run
    assert list(resumed.log.images_seen.values) == [0, 16, 32]
    fresh = gan.finetune(edm_pickle, tmp_path / "fresh", n_images=32, **small)
    for a, b in zip(resumed.generator.parameters(), fresh.generator.parameters()):
        torch.testing.assert_close(a, b)

    ds = sweep.sweep(out / "checkpoints" / "final", "natural", [0.5, 80.0], n_images=4, device="cpu",
                     progress=False, trust_pickle=True)
    assert ds.sizes["checkpoint"] == 1 and bool(ds.relative_power_db.notnull().all())
    assert main(["sweep", str(out / "checkpoints" / "final"), "--sigmas", "0.5,80", "--n-images", "4",
                 "--out", str(tmp_path / "s.nc"), "--quiet"]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
