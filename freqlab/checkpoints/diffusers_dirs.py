"""Reading diffusers directories: a UNet2DModel folder (weights checked against its config, with one-line errors)
and the noise schedule that goes with it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from freqlab.checkpoints.readers import first_line, listing, read_json
from freqlab.models.denoisers import as_scheduler

__all__ = ["load_diffusers_unet", "scheduler_from", "summarise_load_error"]

CONFIG_NAME = "config.json"


def scheduler_from(scheduler, *candidates: Path):
    if scheduler is not None:
        if isinstance(scheduler, (str, os.PathLike)):
            p = Path(scheduler)
            p = p / "scheduler_config.json" if p.is_dir() else p
            if not p.is_file():
                raise FileNotFoundError(f"scheduler config {p} does not exist")
            return as_scheduler(read_json(p))
        return as_scheduler(scheduler)
    for p in candidates:
        if p.is_file():
            return as_scheduler(read_json(p))
    raise ValueError(f"no noise schedule found for the diffusers UNet (looked for {listing(candidates)}); "
                     "pass scheduler= (a diffusers scheduler, its config dict, or its directory)")


def summarise_load_error(text: str) -> str:
    """torch's multi-line ``load_state_dict`` error as one line of key listings ('' if it is not one)."""
    shape = r"torch\.Size\(\[([^\]]*)\]\)"
    mismatched = [f"{name} ({a}) in the file vs ({b}) in the config" for name, a, b in re.findall(
        rf"size mismatch for (\S+): copying a param with shape {shape} from checkpoint, the shape in current "
        rf"model is {shape}", text)]
    missing = re.findall(r'"([^"]+)"', text.partition("Missing key(s) in state_dict:")[2].split("\n")[0])
    unexpected = re.findall(r'"([^"]+)"', text.partition("Unexpected key(s) in state_dict:")[2].split("\n")[0])
    return "; ".join(f"{what}: {listing(names)}" for what, names in
                     (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
                     if names)


def load_diffusers_unet(root: Path, subfolder: str | None):
    from diffusers import UNet2DModel

    folder = root / subfolder if subfolder else root
    weights = next((p for p in sorted(folder.glob("diffusion_pytorch_model*")) if p.is_file()), folder)
    class_name = read_json(folder / CONFIG_NAME).get("_class_name", "UNet2DModel")
    if class_name != "UNet2DModel":
        raise ValueError(f"{folder} holds a {class_name}; freqlab's diffusers adapter takes pixel-space UNet2DModel "
                         "(DDPM-family) models")
    try:
        unet, info = UNet2DModel.from_pretrained(str(root), subfolder=subfolder, local_files_only=True,
                                                 output_loading_info=True, low_cpu_mem_usage=False)
    except Exception as err:
        summary = summarise_load_error(str(err))
        if summary:
            raise ValueError(f"the weights in {weights} do not match {folder / CONFIG_NAME}; {summary}") from err
        raise ValueError(f"could not load the diffusers UNet weights {weights}: {first_line(err)}") from err
    problems = [f"{k.replace('_', ' ')}: {listing(v)}" for k, v in info.items()
                if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v]
    if problems:
        raise ValueError(f"the weights in {weights} do not match {folder / CONFIG_NAME}; " + "; ".join(problems))
    return unet.eval()
