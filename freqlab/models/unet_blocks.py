"""The blocks of a denoiser's UNet that freqlab hooks, by readable name, and the shape of each one's feature map.

Two families: diffusers ``UNet2DModel`` (``conv_in``, the residual blocks and resamplers of ``down_blocks`` and
``up_blocks``, ``mid_block``, ``conv_out``) and EDM's ``SongUNet``/``DhariwalUNet`` (every entry of ``enc`` and
``dec``). :mod:`freqlab.inside.layer_spectra` measures the spectra of their outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from freqlab import spectral

__all__ = ["SUPPORTED", "BlockInfo", "block_stage", "describe_blocks", "feature_map", "unet_blocks"]

SUPPORTED = ("EDMDenoiser and DiffusersDenoiser (a diffusers UNet2DModel at .unet), EDMNetworkDenoiser (an EDM "
             "SongUNet or DhariwalUNet at .net.model, with enc/dec ModuleDicts), or those networks themselves")

def _diffusers_unet(module) -> torch.nn.Module | None:
    for m in (module, getattr(module, "unet", None)):
        if m is not None and all(hasattr(m, a) for a in ("conv_in", "down_blocks", "up_blocks")):
            return m
    return None


def _edm_model(module) -> torch.nn.Module | None:
    net = getattr(module, "net", None)
    for m in (module, getattr(module, "model", None), net, getattr(net, "model", None)):
        if m is not None and all(isinstance(getattr(m, a, None), torch.nn.ModuleDict) for a in ("enc", "dec")):
            return m
    return None


def _stage_blocks(stage, prefix: str, resamplers: str) -> dict[str, torch.nn.Module]:
    """The residual blocks and resamplers of a diffusers UNet's down or up blocks, named as named_modules does."""
    blocks = {}
    for i, block in enumerate(stage):
        blocks.update({f"{prefix}.{i}.resnets.{j}": r for j, r in enumerate(getattr(block, "resnets", []))})
        if getattr(block, resamplers, None) is not None:
            blocks.update({f"{prefix}.{i}.{resamplers}.{j}": m for j, m in enumerate(getattr(block, resamplers))})
    return blocks


def unet_blocks(denoiser: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The blocks to hook, in forward order, by readable name.

    A diffusers UNet: ``conv_in``, every ``down_blocks.i.resnets.j`` and ``down_blocks.i.downsamplers.0``,
    ``mid_block``, every ``up_blocks.i.resnets.j`` and ``up_blocks.i.upsamplers.0``, ``conv_out`` (names as in its
    ``named_modules``). An EDM network (SongUNet, DhariwalUNet): every entry of ``enc`` and ``dec`` as
    ``enc.<key>``/``dec.<key>`` (e.g. ``enc.32x32_block0``, ``dec.16x16_up``). A fine-tuning generator (a module
    holding its denoiser at ``.denoiser``) is looked through. Which of them output a 4-D feature map is found by
    :func:`describe_blocks`. ValueError for any other architecture.
    """
    inner = getattr(denoiser, "denoiser", None)
    if isinstance(inner, torch.nn.Module):
        denoiser = inner
    unet = _diffusers_unet(denoiser)
    if unet is not None:
        blocks = {"conv_in": unet.conv_in, **_stage_blocks(unet.down_blocks, "down_blocks", "downsamplers")}
        if getattr(unet, "mid_block", None) is not None:
            blocks["mid_block"] = unet.mid_block
        blocks.update(_stage_blocks(unet.up_blocks, "up_blocks", "upsamplers"))
        if getattr(unet, "conv_out", None) is not None:
            blocks["conv_out"] = unet.conv_out
        return blocks
    model = _edm_model(denoiser)
    if model is not None:
        return {f"{side}.{key}": m for side in ("enc", "dec") for key, m in getattr(model, side).items()}
    raise ValueError(f"cannot find the UNet blocks of a {type(denoiser).__name__}; supported: {SUPPORTED}")


def block_stage(name: str) -> str:
    """Short stage label of a block name: in, down, mid, up, out (diffusers) or enc, dec (EDM)."""
    head = name.split(".", 1)[0]
    return {"conv_in": "in", "down_blocks": "down", "mid_block": "mid", "up_blocks": "up", "conv_out": "out",
            "enc": "enc", "dec": "dec"}.get(head, head)


@dataclass(frozen=True)
class BlockInfo:
    """A hookable block: its name, stage, and the shape of its output feature map."""

    name: str
    stage: str
    channels: int
    height: int
    width: int

    @property
    def resolution(self) -> str:
        return f"{self.height}x{self.width}"


def feature_map(output) -> torch.Tensor | None:
    """A block's output as a 4-D float feature map (a diffusers output's ``.sample``), or None."""
    out = getattr(output, "sample", output)
    if isinstance(out, torch.Tensor) and out.ndim == 4 and out.is_floating_point():
        return out
    return None


def describe_blocks(denoiser: torch.nn.Module, image_shape=None, sigma: float | None = None,
                    device=None) -> tuple[list[BlockInfo], list[str]]:
    """Run one image through ``denoiser`` (at ``sigma``, default its ``sigma_max``) and return the blocks of
    :func:`unet_blocks` whose output is a 4-D float feature map at least ``4 × 4`` (what a radial spectrum needs),
    in the order they run, and the names of the blocks left out."""
    blocks = unet_blocks(denoiser)
    shape = tuple(int(s) for s in (image_shape if image_shape is not None else getattr(denoiser, "image_shape")))
    sigma = float(sigma if sigma is not None else getattr(denoiser, "sigma_max", 1.0))
    device = device if device is not None else next((p.device for p in denoiser.parameters()), torch.device("cpu"))
    seen: dict[str, tuple[int, ...] | None] = {}

    def recorder(name):
        def hook(_module, _inputs, output):
            fm = feature_map(output)
            if name not in seen:
                seen[name] = tuple(fm.shape[1:]) if fm is not None else None
        return hook

    handles = [m.register_forward_hook(recorder(n)) for n, m in blocks.items()]
    try:
        with torch.inference_mode():
            x = torch.zeros((1, *shape), device=device)
            denoiser(x, torch.full((1,), sigma, device=device))
    finally:
        for h in handles:
            h.remove()
    found = [BlockInfo(n, block_stage(n), *seen[n]) for n in seen
             if seen[n] is not None and min(seen[n][1:]) >= spectral.spectra.MIN_SIZE]
    skipped = [n for n in blocks if n not in {b.name for b in found}]
    if not found:
        raise ValueError(f"no hookable blocks in {type(denoiser).__name__}: none of its {len(blocks)} blocks output "
                         f"a 4-D feature map of at least {spectral.spectra.MIN_SIZE}x{spectral.spectra.MIN_SIZE}")
    return found, skipped
