"""Denoisers built from what a checkpoint holds: a freqlab config and its weights, a diffusers folder, a bare state
dict with its config, a fine-tuned EDM network's weights beside its trusted source pickle.

:mod:`freqlab.checkpoints.store` recognises a format and calls the builder here; the file names and format constants of
freqlab's own checkpoint directory live here too, so both modules agree on them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Mapping

from freqlab.checkpoints.diffusers_dirs import load_diffusers_unet, scheduler_from
from freqlab.checkpoints.edm_pickle import UntrustedPickleError, denoiser_from_pickle, sha256_of
from freqlab.checkpoints.readers import (
    listing,
    load_strict,
    read_json,
    read_safetensors,
    read_state_dict_file,
    strip_prefix,
    unet_from_config,
)
from freqlab.models.denoisers import Denoiser, DiffusersDenoiser, EDMDenoiser, EDMNetworkDenoiser

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "diffusers_denoiser_from_config",
    "denoiser_from_state_dict",
    "edm_denoiser_from_config",
    "edm_network_from_freqlab",
    "from_diffusers_dir",
]

FORMAT, FORMAT_VERSION = "freqlab-edm", 1
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def edm_denoiser_from_config(config: Mapping, state, *, weights: Path, config_path: Path) -> EDMDenoiser:
    """An EDMDenoiser from a freqlab config (or a bare UNet config, then with EDM's default σ range)."""
    unet_config = config.get("unet", config)
    unet = unet_from_config(unet_config, config_path)
    load_strict(unet, strip_prefix(state), weights)
    params = config.get("denoiser", {}) if "unet" in config else {}
    if not isinstance(params, Mapping):
        raise ValueError(f"{config_path}: 'denoiser' must be a JSON object with sigma_min, sigma_max, sigma_data, "
                         f"got {json.dumps(params)}")
    kwargs = {}
    for key in ("sigma_min", "sigma_max", "sigma_data"):
        if key in params:
            value = params[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{config_path}: denoiser.{key} must be a positive number, got {json.dumps(value)}")
            kwargs[key] = float(value)
    shape = params.get("image_shape")
    if shape is not None:
        _check_image_shape(shape, unet, config_path)
        if not unet.config.sample_size:
            kwargs["image_shape"] = tuple(shape)
    return EDMDenoiser(unet.eval(), **kwargs)


def _check_image_shape(shape, unet, config_path: Path) -> None:
    """``denoiser.image_shape`` must be [C, H, W] of positive integers with the UNet's channels and, when the UNet
    declares one, its size: a config that says otherwise is one clear error, not a silent mismatch."""
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        raise ValueError(f"{config_path}: denoiser.image_shape must be [channels, height, width] of positive "
                         f"integers, got {json.dumps(shape)}")
    channels = int(unet.config.in_channels)
    size = unet.config.sample_size
    sizes = (size, size) if isinstance(size, int) else tuple(size or ())
    if shape[0] != channels or (sizes and tuple(shape[1:]) != tuple(sizes)):
        raise ValueError(f"{config_path}: denoiser.image_shape {json.dumps(shape)} does not match its UNet "
                         f"({channels} channels" + (f", {sizes[0]}x{sizes[1]}" if sizes else "") + ")")


def diffusers_denoiser_from_config(config: Mapping, state, *, weights: Path, config_path: Path,
                                    clamp: bool) -> DiffusersDenoiser:
    """A fine-tuned DDPM-family UNet saved by :func:`save_checkpoint`: the UNet from its config and weights, the
    noise schedule from the saved scheduler config (``clamp``: also when it was saved with clamping on)."""
    if not isinstance(config.get("scheduler"), Mapping):
        raise ValueError(f"{config_path}: a DiffusersDenoiser checkpoint needs its 'scheduler' config")
    unet = unet_from_config(config["unet"], config_path)
    load_strict(unet, strip_prefix(state), weights)
    params = config["denoiser"]
    return DiffusersDenoiser(unet.eval(), dict(config["scheduler"]), clamp=bool(clamp or params.get("clamp")),
                             sigma_data=float(params.get("sigma_data", 0.5)),
                             prediction_type=params.get("prediction_type"))


def edm_network_from_freqlab(root: Path, config: Mapping, trust_pickle: bool) -> EDMNetworkDenoiser:
    """A fine-tuned EDM network: the architecture from its source pickle (checked by hash), the weights from
    ``model.safetensors``. Loading the source pickle runs its code, so this needs ``trust_pickle`` too."""
    params = config["denoiser"]
    source, digest = Path(str(params.get("source_pickle", ""))), str(params.get("source_sha256", ""))
    if not trust_pickle:
        raise UntrustedPickleError(
            f"{root} is a fine-tuned EDM network whose architecture comes from the pickle {source}; loading it runs "
            "that pickle's code: pass trust_pickle=True (--trust-pickle) if you trust that file")
    if not source.is_file():
        raise FileNotFoundError(f"{root} needs its source pickle {source} (the network's architecture), which is "
                                "missing; put it back at that path")
    if sha256_of(source) != digest:
        raise ValueError(f"the source pickle {source} of {root} has changed since the fine-tune (sha256 differs); "
                         "its architecture may no longer match the saved weights")
    denoiser = denoiser_from_pickle(source, trust_pickle=True, sha256=digest)
    weights = root / WEIGHTS_NAME
    load_strict(denoiser.net, read_safetensors(weights), weights)
    for key in ("sigma_min", "sigma_max", "sigma_data"):
        setattr(denoiser, key, float(params[key]))
    return denoiser


def from_diffusers_dir(root: Path, kind: str, scheduler, clamp: bool) -> DiffusersDenoiser:
    """A diffusers UNet2DModel folder (its schedule from ``scheduler``, else beside it or in ../scheduler) or a
    pixel-space pipeline (its unet/ and scheduler/); a latent pipeline is refused."""
    if kind == "diffusers-model":
        if (root.parent / "model_index.json").is_file():  # the unet/ folder of a pipeline
            _refuse_latent(root.parent, read_json(root.parent / "model_index.json"))
        unet = load_diffusers_unet(root, None)
        sched = scheduler_from(scheduler, root / "scheduler_config.json",
                                root.parent / "scheduler" / "scheduler_config.json")
        return DiffusersDenoiser(unet, sched, clamp=clamp)
    index = read_json(root / "model_index.json")
    _refuse_latent(root, index)
    if not (root / "unet").is_dir():
        components = listing(k for k in index if not k.startswith("_"))
        raise ValueError(f"pipeline {root} has no unet/ folder (components: {components}); freqlab's diffusers "
                         "adapter takes pixel-space DDPM/DDIM pipelines")
    unet = load_diffusers_unet(root, "unet")
    return DiffusersDenoiser(unet, scheduler_from(scheduler, root / "scheduler" / "scheduler_config.json"),
                             clamp=clamp)


LATENT_COMPONENTS = ("vae", "vqvae", "vq_vae", "movq")


def _refuse_latent(root: Path, index: Mapping) -> None:
    """A latent diffusion pipeline's UNet denoises the latents of its autoencoder, not pixels: refused."""
    latent = [k for k in index if k in LATENT_COMPONENTS]
    if latent:
        components = listing(k for k in index if not k.startswith("_"))
        raise ValueError(f"{root} is a latent diffusion pipeline (components: {components}): its UNet denoises the "
                         f"{latent[0]}'s latents, not pixels, so freqlab's pixel spectra of its outputs would mean "
                         "nothing; freqlab analyses pixel-space models only (latent models are not supported)")


def denoiser_from_state_dict(path: Path, config, scheduler, clamp: bool) -> Denoiser:
    if config is None:
        config_path = path.parent / CONFIG_NAME
        if not config_path.is_file():
            raise ValueError(f"the state dict {path} needs its model config: put freqlab's {CONFIG_NAME} beside it "
                             "or pass config= (a dict or a path)")
        config = read_json(config_path)
    elif isinstance(config, (str, os.PathLike)):
        config_path = Path(config)
        if not config_path.is_file():
            raise FileNotFoundError(f"config {config_path} does not exist")
        config = read_json(config_path)
    else:
        config_path = Path("<config argument>")
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict or a path to a JSON file, got {type(config).__name__}")
    state = read_state_dict_file(path)
    if scheduler is None:
        return edm_denoiser_from_config(config, state, weights=path, config_path=config_path)
    unet = unet_from_config(config.get("unet", config), config_path)
    load_strict(unet, strip_prefix(state), path)
    return DiffusersDenoiser(unet.eval(), scheduler_from(scheduler), clamp=clamp)
