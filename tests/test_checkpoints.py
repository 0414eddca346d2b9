"""Tests of freqlab.checkpoints.store: freqlab, diffusers, state-dict and EDM-pickle formats, discovery, bad input."""

from __future__ import annotations

import json
import os
import pickle
import stat
import sys
import types

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from safetensors.torch import load_file, save_file

from freqlab.checkpoints.builders import FORMAT
from freqlab.checkpoints.edm_pickle import UntrustedPickleError, load_edm_pickle
from freqlab.checkpoints.store import (
    detect_format,
    discover_checkpoints,
    load_checkpoint_metadata,
    load_denoiser,
    save_checkpoint,
)
from freqlab.models.denoisers import DiffusersDenoiser, EDMDenoiser, EDMNetworkDenoiser, build_unet

SIGMAS = torch.tensor([0.05, 0.5, 5.0])



def tiny_edm(seed: int = 0, **kwargs) -> EDMDenoiser:
    torch.manual_seed(seed)
    return EDMDenoiser(build_unet(sample_size=8, block_out_channels=(4, 8)), **kwargs).eval()


def tiny_diffusers_unet(seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, block_out_channels=(4, 8), norm_num_groups=2, layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4).eval()


def outputs(denoiser, seed: int = 1, sigma=SIGMAS) -> torch.Tensor:
    x = torch.randn(len(sigma), *denoiser.image_shape, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        return denoiser(x, sigma)


META = {"step": 1200, "images_seen": 76800, "loss": 0.125, "ema": True, "kind": "pretrain", "note": "tiny"}


# --------------------------------------------------------------------------------------------------------------
# freqlab format
# --------------------------------------------------------------------------------------------------------------
def test_freqlab_round_trip_same_outputs_and_metadata(tmp_path):
    den = tiny_edm(sigma_max=40.0, sigma_data=0.4)
    path = save_checkpoint(tmp_path / "run" / "step-1200", den, metadata=dict(META, loss=torch.tensor(0.125)))
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in path.parent.iterdir()] == ["step-1200"]  # no temporary directories left behind
    config = json.loads((path / "config.json").read_text())
    assert config["format"] == FORMAT and config["format_version"] == 1
    assert config["unet"]["block_out_channels"] == [4, 8] and config["denoiser"]["sigma_max"] == 40.0
    assert config["metadata"] == META and load_checkpoint_metadata(path) == META
    loaded = load_denoiser(path)
    assert isinstance(loaded, EDMDenoiser) and detect_format(path) == "freqlab"
    assert (loaded.sigma_min, loaded.sigma_max, loaded.sigma_data) == (0.002, 40.0, 0.4)
    assert torch.equal(outputs(loaded), outputs(den))
    assert all(n.startswith("unet.") for n, _ in loaded.named_parameters())
    # a file inside the directory resolves to the checkpoint
    assert torch.equal(outputs(load_denoiser(path / "model.safetensors")), outputs(den))


def test_freqlab_overwrite_dtype_and_refusals(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", tiny_edm(0), metadata={"step": 1})
    newer = tiny_edm(1)
    save_checkpoint(path, newer, metadata={"step": 2})
    assert load_checkpoint_metadata(path) == {"step": 2}
    assert torch.equal(outputs(load_denoiser(path)), outputs(newer))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    as64 = load_denoiser(path, dtype=torch.float64)
    assert next(as64.parameters()).dtype == torch.float64
    torch.testing.assert_close(outputs(as64).float(), outputs(newer), rtol=1e-4, atol=1e-5)
    other = tmp_path / "not-a-checkpoint"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        save_checkpoint(other, newer, metadata={})
    with pytest.raises(ValueError, match="'step' must be a non-negative int"):
        save_checkpoint(tmp_path / "x", newer, metadata={"step": -1})
    with pytest.raises(ValueError, match="'extra'.*object"):
        save_checkpoint(tmp_path / "x", newer, metadata={"extra": object()})
    with pytest.raises(ValueError, match="saves an EDMDenoiser, a DiffusersDenoiser"):
        save_checkpoint(tmp_path / "x", EDMNetworkDenoiser(torch.nn.Identity(), image_shape=(1, 8, 8)), metadata={})
    with pytest.raises(ValueError, match="dtype"):
        load_denoiser(path, dtype="half")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
@pytest.mark.parametrize("mask, mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_freqlab_checkpoint_files_get_the_mode_the_umask_gives(tmp_path, mask, mode, dir_mode):
    old = os.umask(mask)
    try:
        path = save_checkpoint(tmp_path / "run" / "ckpt", tiny_edm(), metadata={"step": 1})
        for _ in range(2):  # a new checkpoint, then one replacing it
            assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
            for name in ("config.json", "model.safetensors"):
                assert stat.S_IMODE((path / name).stat().st_mode) == mode, name
            assert stat.S_IMODE(path.stat().st_mode) == dir_mode
            assert [p.name for p in path.parent.iterdir()] == ["ckpt"]  # no temporary files or folders left
            path = save_checkpoint(path, tiny_edm(1), metadata={"step": 2})
        assert load_checkpoint_metadata(path)["step"] == 2
    finally:
        os.umask(old)


def test_freqlab_bad_weights_and_mismatched_config(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", tiny_edm(), metadata={"step": 1})
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors") as info:
        load_denoiser(path)
    assert info.value.__cause__ is not None  # re-raised from the library's error
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        load_denoiser(path)
    weights.write_bytes(data)
    config = json.loads((path / "config.json").read_text())
    config["unet"]["block_out_channels"] = [4, 16]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"do not match the model config.*shape mismatches.*\(8,\)"):
        load_denoiser(path)
    config["unet"]["block_out_channels"], config["unet"]["layers_per_block"] = [4, 8], 2
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="missing keys: .*resnets.1"):
        load_denoiser(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        load_denoiser(path / "model.safetensors")


def test_missing_path_unknown_directory_and_bad_images(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_denoiser(tmp_path / "nowhere")
    empty = tmp_path / "stuff"
    empty.mkdir()
    (empty / "readme.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"stuff.*model_index\.json.*\.pkl"):
        load_denoiser(empty)
    with pytest.raises(ValueError, match="readme.txt"):
        load_denoiser(empty / "readme.txt")
    loaded = load_denoiser(save_checkpoint(tmp_path / "ckpt", tiny_edm(), metadata={}))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        loaded(torch.randn(1, 1, 8, 8), 1.0)
    with pytest.raises(ValueError, match="not divisible"):
        loaded(torch.randn(1, 3, 7, 7), 1.0)
    with pytest.raises(ValueError, match="nan"):
        loaded(torch.randn(1, 3, 8, 8), float("nan"))
    with pytest.raises(ValueError, match="-0.5"):
        loaded(torch.randn(1, 3, 8, 8), -0.5)


# --------------------------------------------------------------------------------------------------------------
# diffusers directories, offline
# --------------------------------------------------------------------------------------------------------------
def test_diffusers_model_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    unet = tiny_diffusers_unet()
    scheduler = DDPMScheduler(num_train_timesteps=200, prediction_type="v_prediction", clip_sample=False)
    unet.save_pretrained(tmp_path / "model")
    reference = DiffusersDenoiser(unet, scheduler)
    sigma = torch.tensor([0.1, 1.0, 2.0])  # within this schedule's range, about [0.01, 2.56]
    with pytest.raises(ValueError, match="scheduler="):
        load_denoiser(tmp_path / "model")
    passed = load_denoiser(tmp_path / "model", scheduler=scheduler)
    torch.testing.assert_close(outputs(passed, sigma=sigma), outputs(reference, sigma=sigma))
    scheduler.save_pretrained(tmp_path / "model")  # scheduler_config.json beside the model
    loaded = load_denoiser(tmp_path / "model")
    assert isinstance(loaded, DiffusersDenoiser) and loaded.prediction_type == "v_prediction"
    assert detect_format(tmp_path / "model") == "diffusers-model"
    torch.testing.assert_close(outputs(loaded, sigma=sigma), outputs(reference, sigma=sigma))
    with pytest.raises(ValueError, match="outside"):
        loaded(torch.randn(1, 3, 8, 8), 1e4)
    clamped = load_denoiser(tmp_path / "model", clamp=True)
    with pytest.warns(UserWarning):
        clamped(torch.randn(1, 3, 8, 8), 1e4)
    weights = tmp_path / "model" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    with pytest.raises(ValueError, match="diffusion_pytorch_model.safetensors"):
        load_denoiser(tmp_path / "model")


def test_diffusers_model_config_mismatch(tmp_path):
    tiny_diffusers_unet().save_pretrained(tmp_path / "model")
    DDPMScheduler().save_pretrained(tmp_path / "model")
    config_path = tmp_path / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config["block_out_channels"] = [4, 16]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"do not match .*config\.json; shape mismatches: .*\(8\) in the file"):
        load_denoiser(tmp_path / "model")
    config["block_out_channels"] = [4, 8]
    config_path.write_text(json.dumps(config))
    weights = tmp_path / "model" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    state.pop("conv_out.bias")
    save_file(state, str(weights))
    with pytest.raises(ValueError, match="missing keys: conv_out.bias"):
        load_denoiser(tmp_path / "model")


@pytest.mark.parametrize("pipeline_cls, scheduler_cls", [(DDPMPipeline, DDPMScheduler), (DDIMPipeline, DDIMScheduler)])
def test_diffusers_pipeline_directory(tmp_path, pipeline_cls, scheduler_cls):
    unet = tiny_diffusers_unet(3)
    scheduler = scheduler_cls(num_train_timesteps=100, clip_sample=False)
    pipeline_cls(unet=unet, scheduler=scheduler).save_pretrained(tmp_path / "pipe")
    loaded = load_denoiser(tmp_path / "pipe")
    assert detect_format(tmp_path / "pipe") == "diffusers-pipeline"
    assert isinstance(loaded, DiffusersDenoiser) and loaded.prediction_type == "epsilon"
    reference = DiffusersDenoiser(unet, scheduler)
    assert loaded.sigma_max == pytest.approx(reference.sigma_max)
    sigma = torch.tensor([0.05, 0.5, 1.0])  # within this schedule's range, about [0.01, 1.33]
    torch.testing.assert_close(outputs(loaded, sigma=sigma), outputs(reference, sigma=sigma))
    # the UNet folder of a pipeline finds its scheduler in ../scheduler
    unet_only = load_denoiser(tmp_path / "pipe" / "unet")
    torch.testing.assert_close(outputs(unet_only, sigma=sigma), outputs(reference, sigma=sigma))


# --------------------------------------------------------------------------------------------------------------
# plain state dicts, weights_only
# --------------------------------------------------------------------------------------------------------------
class _Boobytrap:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_state_dict_files(tmp_path):
    den = tiny_edm(sigma_max=20.0)
    ckpt = save_checkpoint(tmp_path / "ckpt", den, metadata={})
    torch.save(den.state_dict(), ckpt / "weights.pt")  # names start with "unet.", config.json beside it
    loaded = load_denoiser(ckpt / "weights.pt")
    assert detect_format(ckpt / "weights.pt") == "state-dict"
    assert loaded.sigma_max == 20.0 and torch.equal(outputs(loaded), outputs(den))
    torch.save({"ema": den.unet.state_dict(), "step": 5}, tmp_path / "train.pth")
    with pytest.raises(ValueError, match="needs its model config"):
        load_denoiser(tmp_path / "train.pth")
    bare = load_denoiser(tmp_path / "train.pth", config=dict(den.unet.config))
    assert bare.sigma_max == 80.0 and torch.equal(outputs(bare), outputs(den))
    assert torch.equal(outputs(load_denoiser(tmp_path / "train.pth", config=ckpt / "config.json")), outputs(den))
    vp = load_denoiser(tmp_path / "train.pth", config=dict(den.unet.config), scheduler=DDPMScheduler())
    assert isinstance(vp, DiffusersDenoiser)
    state = den.unet.state_dict()
    state.pop("conv_in.bias")
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"partial\.pt.*missing keys: conv_in\.bias"):
        load_denoiser(tmp_path / "partial.pt", config=ckpt / "config.json")


def test_state_dict_is_loaded_weights_only(tmp_path):
    marker = tmp_path / "code-ran"
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"weight": _Boobytrap(marker)}, f, protocol=2)
    with pytest.raises(ValueError, match=r"evil\.pt.*weights_only=True"):
        load_denoiser(tmp_path / "evil.pt", config=dict(tiny_edm().unet.config))
    assert not marker.exists()
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"cut\.pt"):
        load_denoiser(tmp_path / "cut.pt", config=dict(tiny_edm().unet.config))


# --------------------------------------------------------------------------------------------------------------
# EDM pickles: written here in the structure of EDM's torch_utils.persistence, loaded without it
# --------------------------------------------------------------------------------------------------------------
TINY_EDM_SOURCE = '''
import os
import torch
from torch_utils import persistence
from torch_utils import misc  # imported by real EDM modules; unused here

if os.environ.get("FREQLAB_TEST_MARKER"):
    open(os.environ["FREQLAB_TEST_MARKER"], "a").write("source executed\\n")


@persistence.persistent_class
class TinyNet(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.emb = torch.nn.Linear(1, channels)

    def forward(self, x, noise_labels):
        return self.conv(x) + self.emb(noise_labels.reshape(-1, 1)).reshape(x.shape[0], -1, 1, 1)


@persistence.persistent_class
class TinyPrecond(torch.nn.Module):
    def __init__(self, img_resolution, img_channels, sigma_data=0.5):
        super().__init__()
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.sigma_min, self.sigma_max, self.sigma_data = 0, float("inf"), sigma_data
        self.model = TinyNet(img_channels)

    def forward(self, x, sigma, class_labels=None, force_fp32=False):
        x = x.to(torch.float32)
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        c_skip = self.sigma_data ** 2 / (sigma ** 2 + self.sigma_data ** 2)
        c_out = sigma * self.sigma_data / (sigma ** 2 + self.sigma_data ** 2).sqrt()
        c_in = 1 / (self.sigma_data ** 2 + sigma ** 2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip * x + c_out * self.model(c_in * x, c_noise.flatten())


@persistence.persistent_class
class TinyLoss:
    def __init__(self, P_mean=-1.2):
        self.P_mean = P_mean
'''


def _writer_modules(source: str) -> dict[str, types.ModuleType]:
    """Stand-ins for EDM's torch_utils.persistence / dnnlib as the *writer* of a pickle sees them."""
    persistence = types.ModuleType("torch_utils.persistence")
    exec("def _reconstruct_persistent_obj(meta):\n    raise RuntimeError('only for writing')", persistence.__dict__)

    def persistent_class(orig):
        class Decorator(orig):
            def __reduce__(self):
                fields = list(super().__reduce__()) + [None] * 3
                meta = dict(type="class", version=6, module_src=source, class_name=orig.__name__, state=fields[2])
                return (persistence._reconstruct_persistent_obj, (meta,), None)

        Decorator.__name__ = orig.__name__
        return Decorator

    persistence.persistent_class = persistent_class
    torch_utils = types.ModuleType("torch_utils")
    torch_utils.persistence, torch_utils.misc = persistence, types.ModuleType("torch_utils.misc")
    util = types.ModuleType("dnnlib.util")
    exec("class EasyDict(dict):\n    pass", util.__dict__)
    dnnlib = types.ModuleType("dnnlib")
    dnnlib.util = util
    return {"torch_utils": torch_utils, "torch_utils.persistence": persistence, "torch_utils.misc": torch_utils.misc,
            "dnnlib": dnnlib, "dnnlib.util": util}


def write_edm_pickle(path, monkeypatch, *, snapshot: bool = False, source: str = TINY_EDM_SOURCE, seed: int = 0):
    """Pickle a TinyPrecond as EDM does; return its outputs for reference. No stand-in survives the call."""
    with monkeypatch.context() as m:
        modules = _writer_modules(source)
        for name, module in modules.items():
            m.setitem(sys.modules, name, module)
        m.delenv("FREQLAB_TEST_MARKER", raising=False)
        networks = types.ModuleType("training.networks")
        exec(source, networks.__dict__)
        torch.manual_seed(seed)
        net = networks.TinyPrecond(8, 3).eval()
        data = {"ema": net}
        if snapshot:
            data.update(loss_fn=networks.TinyLoss(), augment_pipe=None,
                        dataset_kwargs=modules["dnnlib.util"].EasyDict(resolution=8))
        with open(path, "wb") as f:
            pickle.dump(data, f)
        x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            return net(x, SIGMAS)
    assert "torch_utils" not in sys.modules


def test_edm_pickle_refused_without_trust(tmp_path, monkeypatch):
    path = tmp_path / "edm-tiny-8x8.pkl"
    write_edm_pickle(path, monkeypatch, source=TINY_EDM_SOURCE + "\n# refused\n")
    marker = tmp_path / "marker"
    monkeypatch.setenv("FREQLAB_TEST_MARKER", str(marker))
    with pytest.raises(UntrustedPickleError, match=r"runs the code.*trust_pickle=True.*--trust-pickle"):
        load_denoiser(path)
    assert isinstance(UntrustedPickleError("x"), ValueError)
    assert not marker.exists()


def test_edm_pickle_loads_with_trust_and_without_edm(tmp_path, monkeypatch):
    path = tmp_path / "edm-tiny-8x8.pkl"
    expected = write_edm_pickle(path, monkeypatch, source=TINY_EDM_SOURCE + "\n# trusted\n")
    marker = tmp_path / "marker"
    monkeypatch.setenv("FREQLAB_TEST_MARKER", str(marker))
    den = load_denoiser(path, trust_pickle=True)
    assert marker.read_text() == "source executed\n"  # the carried source ran, once, only with the flag
    assert isinstance(den, EDMNetworkDenoiser) and detect_format(path) == "edm-pickle"
    assert den.image_shape == (3, 8, 8) and (den.sigma_min, den.sigma_max, den.sigma_data) == (0.002, 80.0, 0.5)
    torch.testing.assert_close(outputs(den), expected)
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    den(x, 1.0).sum().backward()
    assert x.grad is not None and den.net.model.conv.weight.grad is not None


def test_edm_training_snapshot_and_bad_pickles(tmp_path, monkeypatch):
    path = tmp_path / "network-snapshot-000200.pkl"
    expected = write_edm_pickle(path, monkeypatch, snapshot=True)
    data = load_edm_pickle(path, trust_pickle=True)
    assert set(data) == {"ema", "loss_fn", "augment_pipe", "dataset_kwargs"}
    assert data["dataset_kwargs"].resolution == 8 and data["loss_fn"].P_mean == -1.2
    torch.testing.assert_close(outputs(load_denoiser(path, trust_pickle=True)), expected)
    cut = tmp_path / "edm-cut.pkl"
    cut.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"edm-cut\.pkl"):
        load_denoiser(cut, trust_pickle=True)
    with open(tmp_path / "no-ema.pkl", "wb") as f:
        pickle.dump({"G": 1}, f)
    with pytest.raises(ValueError, match="without an 'ema' network"):
        load_denoiser(tmp_path / "no-ema.pkl", trust_pickle=True)
    with pytest.raises(ValueError, match="dtype"):
        load_denoiser(path, trust_pickle=True, dtype=torch.float16)


# --------------------------------------------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------------------------------------------
def test_discover_orders_by_metadata_step_then_name(tmp_path, monkeypatch):
    den = tiny_edm()
    for name, step in (("b", 3000), ("a", 200), ("c", 10)):  # name order differs from step order
        save_checkpoint(tmp_path / "run" / f"ckpt-{name}", den, metadata={"step": step, "images_seen": step * 64,
                                                                          "ema": name != "a"})
    (tmp_path / "run" / "log.txt").write_text("not a checkpoint")
    (tmp_path / "run" / ".ckpt-d.tmp-1234").mkdir()  # an interrupted atomic write
    infos = discover_checkpoints(tmp_path / "run")
    assert [i.step for i in infos] == [10, 200, 3000] and [i.name for i in infos] == ["ckpt-c", "ckpt-a", "ckpt-b"]
    assert [i.images_seen for i in infos] == [640, 12800, 192000] and [i.ema for i in infos] == [True, False, True]
    for step in (100, 2, 30):
        torch.save(den.unet.state_dict(), tmp_path / f"step-{step}.pt")
    assert [i.step for i in discover_checkpoints(tmp_path)] == [2, 30, 100]
    (tmp_path / "edm").mkdir()
    write_edm_pickle(tmp_path / "edm" / "network-snapshot-000400.pkl", monkeypatch)
    write_edm_pickle(tmp_path / "edm" / "network-snapshot-000050.pkl", monkeypatch)
    snapshots = discover_checkpoints(tmp_path / "edm")
    assert [i.images_seen for i in snapshots] == [50_000, 400_000] and all(i.ema for i in snapshots)


def test_discover_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing-run"):
        discover_checkpoints(tmp_path / "missing-run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no checkpoints found in .*empty"):
        discover_checkpoints(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        discover_checkpoints(tmp_path / "file.txt")
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        load_checkpoint_metadata(tmp_path / "nothing-here")


def test_a_diffusers_denoiser_saves_and_loads_with_its_schedule(tmp_path):
    """A (fine-tuned) DDPM-family UNet in freqlab's format: the UNet, its scheduler's config, prediction type and
    clamp setting come back, and the outputs are the same."""
    scheduler = DDPMScheduler(num_train_timesteps=200, prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2")
    original = DiffusersDenoiser(tiny_diffusers_unet(3), scheduler, clamp=True)
    path = save_checkpoint(tmp_path / "vp", original, metadata={"step": 4, "kind": "finetune"})
    loaded = load_denoiser(path)
    assert isinstance(loaded, DiffusersDenoiser) and detect_format(path) == "freqlab"
    assert (loaded.prediction_type, loaded.clamp, loaded.sigma_max) == ("v_prediction", True, original.sigma_max)
    assert torch.equal(outputs(loaded), outputs(original))
    assert discover_checkpoints(tmp_path)[0].step == 4


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["denoiser"].update(image_shape=[3, 16]), "image_shape must be"),
    (lambda c: c["denoiser"].update(image_shape=[1, 32, 32]), "does not match its UNet"),
    (lambda c: c["denoiser"].update({"class": "Foo"}), 'denoiser.class "Foo" is not one freqlab saves'),
])
def test_a_config_that_contradicts_its_network_is_one_clear_error(tmp_path, edit, match):
    import json

    from freqlab.checkpoints.store import load_denoiser, save_checkpoint
    from freqlab.models.denoisers import EDMDenoiser, build_unet

    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "c", EDMDenoiser(build_unet(sample_size=16, block_out_channels=(8, 16),
                                                                  norm_num_groups=4, attention_head_dim=8)),
                           metadata={"step": 0})
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=match):
        load_denoiser(path)
