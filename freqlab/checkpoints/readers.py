"""Small readers that turn library exceptions into one-line errors naming the file (JSON, safetensors, state
dicts, diffusers UNet configs), for the checkpoint loaders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"could not read the JSON file {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own error types for truncated or corrupt files
        raise ValueError(f"could not read the weights file {path} (truncated or not safetensors?): {err}") from err


def first_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:limit]


def read_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a ``.pt``/``.pth``/``.bin`` file loaded with ``weights_only=True``.

    A training checkpoint dict is unwrapped through its ``ema``, ``state_dict``, ``model``, ``unet`` or ``net`` entry.
    """
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        refused = "weights_only" in str(err) and "Unsupported global" in str(err)
        why = ("it holds Python objects other than tensors, which could run code, so it is refused" if refused
               else f"truncated, corrupt or not a torch file ({type(err).__name__})")
        raise ValueError(f"could not read {path} as a torch state dict with torch.load(weights_only=True): {why}. "
                         "freqlab loads only plain tensors from "
                         ".pt/.pth/.bin files (EDM networks go in .pkl files, loaded with --trust-pickle)") from None

    def is_tensors(d):
        return isinstance(d, Mapping) and d and all(isinstance(v, torch.Tensor) for v in d.values())

    if is_tensors(obj):
        return dict(obj)
    for key in ("ema", "state_dict", "model", "unet", "net"):
        if isinstance(obj, Mapping) and is_tensors(obj.get(key)):
            return dict(obj[key])
    raise ValueError(f"{path} holds no state dict (a dict of tensors, possibly under 'ema', 'state_dict' or 'model')")


def strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in ("unet.", "module.unet.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def listing(names, limit: int = 5) -> str:
    names = list(names)
    more = f" ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(map(str, names[:limit])) + more


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """``load_state_dict(strict=True)`` with a ValueError naming missing/unexpected keys and shape mismatches."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} in the file vs {tuple(v.shape)} in the config"
                  for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = [f"{what}: {listing(names)}" for what, names in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if names]
    if problems:
        raise ValueError(f"the weights in {source} do not match the model config; " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def unet_from_config(config: Mapping, source: Path):
    from diffusers import UNet2DModel

    if not isinstance(config, Mapping):
        raise ValueError(f"the UNet config in {source} must be a JSON object")
    clean = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        return UNet2DModel.from_config(clean)
    except Exception as err:
        raise ValueError(f"the UNet config in {source} does not build a UNet2DModel: {err}") from err
