"""Checkpoints named the way users name them: ``final``/``latest``, Hub ids from the local cache, latent pipelines."""

from __future__ import annotations

import pytest
import torch

from freqlab.checkpoints import hub as locate
from freqlab.checkpoints import store as checkpoints
from freqlab.cli import main
from freqlab.sweep import study as sweep


def test_final_and_latest_name_the_last_checkpoint_of_a_run(make_tiny_run, tmp_path):
    run = make_tiny_run([(0, 0), (10, 1), (4, 2)])
    for alias in ("final", "latest"):
        assert checkpoints.resolve_checkpoint(run / "checkpoints" / alias) == run / "checkpoints" / "step-000010"
        assert checkpoints.resolve_checkpoint(run / alias) == run / "checkpoints" / "step-000010"
    loaded = checkpoints.load_denoiser(run / "checkpoints" / "final")
    expected = checkpoints.load_denoiser(run / "checkpoints" / "step-000010")
    for (name, a), (_, b) in zip(loaded.state_dict().items(), expected.state_dict().items()):
        assert torch.equal(a, b), name
    ds = sweep.sweep(run / "checkpoints" / "final", "white", [0.5], n_images=4, device="cpu", progress=False)
    assert list(ds.checkpoint.values) == ["step-000010"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="names the last checkpoint of a run, but no checkpoints found"):
        checkpoints.resolve_checkpoint(tmp_path / "empty" / "final")


def _cache_with(tmp_path, repo: str, make) -> None:
    """A Hugging Face cache in ``tmp_path/hub`` holding ``repo`` at revision main, as ``hf download`` leaves it."""
    owner, name = repo.split("/")
    folder = tmp_path / "hub" / f"models--{owner}--{name}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    make(folder / "snapshots" / "0123456789abcdef0123456789abcdef01234567")


def _ddpm(path) -> None:
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), norm_num_groups=4,
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=50)).save_pretrained(path)


def test_a_hub_id_is_read_from_the_local_cache_never_downloaded(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)  # no local folder of that name
    _cache_with(tmp_path, "someone/tiny-ddpm", _ddpm)
    model = checkpoints.load_denoiser("someone/tiny-ddpm")
    assert model.image_shape == (3, 8, 8)
    assert checkpoints.resolve_checkpoint("someone/tiny-ddpm/unet").name == "unet"  # owner/name/subfolder
    with pytest.raises(FileNotFoundError, match=r"not in the local Hugging Face cache .*huggingface-cli download "
                                                r"someone/absent"):
        checkpoints.load_denoiser("someone/absent")
    assert main(["sweep", "someone/absent", "--out", str(tmp_path / "x.nc"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "huggingface-cli download someone/absent" in err
    assert not locate.looks_like_hub_id("/abs/path") and not locate.looks_like_hub_id("../up/one")
    assert not locate.looks_like_hub_id("single")


def test_a_latent_pipeline_is_refused_with_the_reason(tmp_path, capsys):
    from diffusers import DDIMScheduler, LDMPipeline, UNet2DModel, VQModel

    vq = VQModel(in_channels=3, out_channels=3, latent_channels=3, block_out_channels=(8,), norm_num_groups=4,
                 layers_per_block=1, num_vq_embeddings=16, vq_embed_dim=3)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), norm_num_groups=4,
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    LDMPipeline(vqvae=vq, unet=unet, scheduler=DDIMScheduler()).save_pretrained(tmp_path / "ldm")
    for path in (tmp_path / "ldm", tmp_path / "ldm" / "unet"):  # the pipeline, or its UNet alone
        with pytest.raises(ValueError, match="latent diffusion pipeline .*vqvae's latents, not pixels"):
            checkpoints.load_denoiser(path)
        assert main(["sweep", str(path), "--out", str(tmp_path / "x.nc"), "--quiet"]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "x.nc").exists()
