"""Freezing policies: which parameters a fine-tune trains (D2O: none frozen; D2O-F: the conv policy), and the
per-layer-type breakdown of what is frozen."""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
import xarray as xr
from torch import nn

__all__ = ["CONV_POLICY_PATTERN", "D2O_EDM_RULE", "FreezeReport", "freeze_policy", "layer_type", "parameter_breakdown"]

#: Parameters the ``conv`` policy (D2O-F) freezes, as a regex over parameter names (``re.search``).
#:
#: * ``resnets.N.conv1`` / ``conv2``: the 3x3 convolutions inside residual blocks — the paper's frozen core.
#: * ``attentions.N.to_out`` (``proj_attn`` in old diffusers files): attention output projections.
#: * ``downsamplers.N.conv`` / ``upsamplers.N.conv``: frozen too (neither is a trainable layer of D2O-F): in the EDM
#:   UNets of the paper resampling happens *inside* residual blocks (``UNetBlock(down=True)``, whose convs the
#:   paper freezes, with parameter-free FIR resampling), and diffusers moves exactly that 3x3 spatial conv into a
#:   separate ``Downsample2D``/``Upsample2D``. Freezing it keeps ``conv`` closest to the paper's set of frozen
#:   spatial filters; pass a regex without it to train them.
#:
#: Trainable under ``conv``: normalisation layers (``norm1``, ``norm2``, ``group_norm``, ``conv_norm_out``),
#: time-embedding projections (``time_embedding.*``, ``time_emb_proj``), 1x1 shortcut convs (``conv_shortcut``),
#: attention ``to_q``/``to_k``/``to_v``, and the input/output convs (``conv_in``, ``conv_out``).
#: The D2O code's D2O-F rule (``--freeze=1``) for EDM networks: a parameter is frozen when its name (as EDM's
#: preconditioned network names it, e.g. ``model.enc.32x32_block0.conv0.weight``) contains one of the first words
#: and one of the second.
D2O_EDM_RULE: tuple[tuple[str, ...], tuple[str, ...]] = (("block", "up", "down", "in"), ("conv", "proj"))


def d2o_edm_frozen(name: str) -> bool:
    """Whether the D2O rule (:data:`D2O_EDM_RULE`) freezes the EDM network parameter ``name``."""
    places, layers = D2O_EDM_RULE
    return any(p in name for p in places) and any(layer in name for layer in layers)


CONV_POLICY_PATTERN = (
    r"(^|\.)resnets\.\d+\.conv[12]\."
    r"|(^|\.)attentions\.\d+\.(to_out|proj_attn)\b"
    r"|(^|\.)(downsamplers|upsamplers)\.\d+\.conv\."
)

#: Layer types of :func:`parameter_breakdown`, in a fixed order (checked in this order against the name).
LAYER_TYPES: tuple[tuple[str, str], ...] = (  # diffusers names, then EDM's (SongUNet / DhariwalUNet)
    ("resnet conv", r"(^|\.)resnets\.\d+\.conv[12]\.|_(block\d+|in\d+|down|up)\.conv[01]\."),
    ("shortcut conv", r"conv_shortcut|_(block\d+|in\d+|down|up)\.skip\."),
    ("resampler conv", r"(^|\.)(downsamplers|upsamplers)\.\d+\.|_aux_(down|up|residual)\."),
    ("attention out", r"(^|\.)(to_out|proj_attn|proj)\b"),
    ("attention q/k/v", r"(^|\.)(to_q|to_k|to_v|query|key|value|qkv)\b"),
    ("time embedding", r"time_emb|time_proj|(^|\.)class_embedding|(^|\.)map_\w+|\.affine\."),
    ("in/out conv", r"(^|\.)conv_(in|out)\.|_(conv|aux_conv)\."),
)
LAYER_TYPE_NAMES = tuple(t for t, _ in LAYER_TYPES) + ("normalisation", "other")


class FreezeReport(NamedTuple):
    """What a freezing policy did: counts are numbers of scalar parameters (not tensors)."""

    policy: str
    pattern: str
    n_total: int
    n_frozen: int
    frozen_names: tuple[str, ...]
    trainable_names: tuple[str, ...]

    @property
    def frozen_share(self) -> float:
        return self.n_frozen / self.n_total if self.n_total else 0.0

    def summary(self) -> str:
        return (f"freeze policy {self.policy!r}: {self.n_frozen:,} of {self.n_total:,} parameters frozen "
                f"({self.frozen_share:.1%}), {len(self.frozen_names)} of "
                f"{len(self.frozen_names) + len(self.trainable_names)} tensors")


def freeze_policy(model: nn.Module, policy: str = "conv") -> FreezeReport:
    """Freeze ``model``'s parameters in place by policy; returns a :class:`FreezeReport`.

    ``policy``: ``"none"`` (D2O: everything trains), ``"conv"`` (D2O-F: :data:`CONV_POLICY_PATTERN` on freqlab and
    diffusers UNets; on an EDM network the D2O code's own rule, :data:`D2O_EDM_RULE`), or any other
    string, taken as a regular expression searched in each parameter name (as ``model.named_parameters()`` gives
    them, e.g. ``unet.down_blocks.0.resnets.0.conv1.weight`` for freqlab's EDM models): matching parameters are
    frozen. Frozen parameters get ``requires_grad=False`` so they receive no gradient and, left out of the optimizer,
    no Adam state. Parameters that were already not trainable (e.g. fixed Fourier features) stay frozen.

    Raises ValueError when a pattern is not a valid regex, or freezes nothing or everything (a typo, most likely).
    """
    from freqlab.models.denoisers import EDMNetworkDenoiser

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError("the model has no trainable parameters to apply a freezing policy to")
    if policy == "none":
        pattern = ""
    elif policy == "conv" and isinstance(model, EDMNetworkDenoiser):  # D2O's own rule, on EDM's own names
        pattern = "D2O rule: name has one of {} and one of {}".format(*("/".join(w) for w in D2O_EDM_RULE))
        for n, p in model.net.named_parameters():
            if d2o_edm_frozen(n):
                p.requires_grad_(False)
    else:
        pattern = CONV_POLICY_PATTERN if policy == "conv" else policy
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise ValueError(f"freeze pattern {policy!r} is not a valid regular expression ({err})") from None
        hits = sum(bool(regex.search(n)) for n in names)
        example = names[min(len(names) - 1, 8)]
        if hits == 0:
            raise ValueError(f"freeze pattern {policy!r} matches no parameter name (names look like {example!r})")
        if hits == len(names):
            raise ValueError(f"freeze pattern {policy!r} matches every parameter, nothing would train; narrow it")
        for n, p in model.named_parameters():
            if regex.search(n):
                p.requires_grad_(False)
    frozen = tuple(n for n, p in model.named_parameters() if not p.requires_grad)
    trainable = tuple(n for n, p in model.named_parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    n_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return FreezeReport(policy, pattern, n_total, n_frozen, frozen, trainable)


def layer_type(name: str, module: nn.Module | None = None) -> str:
    """The layer type of parameter ``name`` (one of :data:`LAYER_TYPE_NAMES`), from its name and owning module."""
    if isinstance(module, (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm2d, nn.InstanceNorm2d)):
        return "normalisation"
    for kind, pattern in LAYER_TYPES:
        if re.search(pattern, name):
            return kind
    if re.search(r"norm", name.rsplit(".", 1)[0]):
        return "normalisation"
    return "other"


def parameter_breakdown(model: nn.Module) -> xr.Dataset:
    """Frozen and trainable parameter counts by layer type, for a bar chart of what a policy freezes.

    Returns a Dataset with dim ``layer_type`` (:data:`LAYER_TYPE_NAMES`, all listed even when empty) and int64
    variables ``n_frozen``, ``n_trainable`` (scalar parameters, from each parameter's ``requires_grad``).
    """
    frozen = dict.fromkeys(LAYER_TYPE_NAMES, 0)
    trainable = dict.fromkeys(LAYER_TYPE_NAMES, 0)
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            kind = layer_type(f"{mod_name}.{p_name}" if mod_name else p_name, module)
            (trainable if p.requires_grad else frozen)[kind] += p.numel()
    coords = {"layer_type": list(LAYER_TYPE_NAMES)}
    attrs = {"units": "parameters"}
    return xr.Dataset(
        {
            "n_frozen": ("layer_type", np.array(list(frozen.values()), dtype=np.int64), attrs),
            "n_trainable": ("layer_type", np.array(list(trainable.values()), dtype=np.int64), attrs),
        },
        coords=coords,
    )
