"""What fine-tuning moves: the change of every weight tensor between two checkpoints, against a freezing policy.

D2O-F fine-tunes a pre-trained denoiser into a one-step generator with ~85 % of its weights frozen (the ``conv``
policy of :mod:`freqlab.finetune.freezing`); D2O (``--freeze none``) trains them all. :func:`weight_change` compares a
checkpoint before and after a fine-tune, parameter tensor by parameter tensor (matched by name), and asks whether
an unfrozen fine-tune moves mostly what D2O-F leaves trainable.

Definitions (all sums in float64, ``W`` = the tensor before, ``ΔW`` = after − before, ``‖·‖`` the Frobenius norm):

* per tensor: ``rel_change = ‖ΔW‖ / ‖W‖`` (NaN where ``‖W‖ = 0``; ``abs_change = ‖ΔW‖`` is still given),
  ``abs_change``, ``norm_before``, ``n_params``, ``share_of_change = ‖ΔW‖² / Σ_all ‖ΔW‖²``,
  ``frozen_by_policy`` (whether a fine-tune from ``before`` under ``policy`` leaves it frozen) and the coordinate
  ``parameter_layer_type`` (:func:`freqlab.finetune.freezing.layer_type`);
* per layer type (dim ``layer_type``, :data:`freqlab.finetune.freezing.LAYER_TYPE_NAMES`, every type listed):
  ``type_rel_change = sqrt(Σ‖ΔW‖²) / sqrt(Σ‖W‖²)`` over the type's tensors (NaN for an empty type),
  ``type_abs_change``, ``type_norm_before``, ``type_n_params``, ``type_share_of_change`` and
  ``type_frozen_share`` (share of the type's parameters the policy freezes);
* scalars: ``frozen_share_of_change = Σ_frozen ‖ΔW‖² / Σ_all ‖ΔW‖²`` (NaN when nothing changed) beside
  ``frozen_share_of_params`` (frozen parameters / all parameters): equal when the fine-tune moves weights in
  proportion to their count, lower when it mostly moves what the policy leaves trainable; ``rel_change_frozen``,
  ``rel_change_trainable`` and ``rel_change_total`` (the aggregate relative change of each set, as for a type).

The frozen set is what :func:`freqlab.finetune.loop.finetune` would freeze when started from ``before``: a deep copy of
``before`` prepared as :func:`freqlab.finetune.generator.make_generator` prepares it (an EDM network is made trainable) and
frozen by :func:`freqlab.finetune.freezing.freeze_policy` (on EDM networks ``conv`` is the D2O code's own rule). A tensor
that is not trainable in ``before`` itself (fixed Fourier features) counts as frozen, as it does in the fine-tune.
The caller's models are never changed.
"""

from __future__ import annotations

import copy
import json
import math
import os
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from freqlab.finetune.freezing import LAYER_TYPE_NAMES, freeze_policy, layer_type
from freqlab.runtime import results
from freqlab.runtime.outputs import holding

__all__ = ["weight_change", "load_model", "change_per_parameter_ratio", "top_layer_types", "summarize", "to_json", "frozen_set", "FILE_NAME",
           "PROPORTIONAL"]

FILE_NAME = "weight_change.nc"


def _describe(model: Any) -> str:
    return os.fspath(model) if isinstance(model, (str, os.PathLike)) else f"<{type(model).__name__} object>"


def load_model(model: Any, *, trust_pickle: bool = False, role: str = "model") -> nn.Module:
    """The denoiser ``model`` names: a checkpoint path (anything :func:`freqlab.checkpoints.store.load_denoiser` loads,
    ``RUN/final`` and ``RUN/latest`` included, loaded on the CPU) or an in-memory module. A fine-tuning
    :class:`~freqlab.finetune.generator.Generator` (parameters prefixed ``denoiser.``) and a ``DataParallel`` /
    ``DistributedDataParallel`` wrapper (``module.``) are unwrapped, so names line up with the checkpoints'."""
    if isinstance(model, (str, os.PathLike)):
        from pathlib import Path

        from freqlab.checkpoints.store import load_denoiser

        if Path(model).is_dir() and (Path(model) / "checkpoints").is_dir():
            raise ValueError(f"{role} {os.fspath(model)} is a run directory; name one of its checkpoints, e.g. "
                             f"{Path(model) / 'final'} (its last one)")
        return load_denoiser(model, trust_pickle=trust_pickle)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{role} must be a checkpoint path or a torch module, got {type(model).__name__}")
    from freqlab.finetune.generator import Generator

    while True:
        if isinstance(model, Generator):
            model = model.denoiser
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


def _check_match(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    for name, tensor in before.items():
        if name not in after:
            raise ValueError(f"the architectures differ: parameter {name!r} of before is missing from after "
                             f"({len(before)} vs {len(after)} parameter tensors)")
        if tuple(after[name].shape) != tuple(tensor.shape):
            raise ValueError(f"the architectures differ: parameter {name!r} has shape {tuple(tensor.shape)} in before "
                             f"but {tuple(after[name].shape)} in after")
    extra = [name for name in after if name not in before]
    if extra:
        raise ValueError(f"the architectures differ: parameter {extra[0]!r} is in after only "
                         f"({len(extra)} such tensor(s))")


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def _metadata(path: Any) -> str:
    """The checkpoint's freqlab metadata (step, images_seen, kind, ema) as JSON; ``{}`` for others."""
    if not isinstance(path, (str, os.PathLike)):
        return "{}"
    from freqlab.checkpoints.store import load_checkpoint_metadata, resolve_checkpoint

    try:
        meta = load_checkpoint_metadata(resolve_checkpoint(path))
    except (OSError, ValueError):
        meta = {}
    return json.dumps({k: meta[k] for k in ("kind", "step", "images_seen", "ema") if k in meta}, sort_keys=True)


def _var(dims, values, units: str, long_name: str, **attrs) -> tuple:
    return (dims, values, {"units": units, "long_name": long_name, **attrs})


@torch.no_grad()
@holding("out")
def weight_change(before, after, *, policy: str = "conv", trust_pickle: bool = False, out=None) -> xr.Dataset:
    """The change of every parameter tensor from ``before`` to ``after``, against the freezing ``policy``.

    Parameters
    ----------
    before, after : checkpoint paths (anything :func:`freqlab.checkpoints.store.load_denoiser` loads: a pre-training
        checkpoint, a fine-tune's exported ``checkpoints/finetune-*`` or ``RUN/final``, a diffusers folder, an EDM
        pickle with ``trust_pickle``) or in-memory modules (see :func:`load_model`). Parameters are matched by name.
    policy : the freezing policy whose frozen set is compared (``"conv"``: D2O-F; ``"none"``; or a regex), as
        :func:`freqlab.finetune.freezing.freeze_policy` takes it.
    trust_pickle : allow EDM pickles (and fine-tunes saved against one); unpickling runs the file's code.
    out : netCDF path, written atomically (:func:`freqlab.runtime.results.save`); None: memory only. The weights
        are compared on the CPU (no forward pass: nothing to gain from a device).

    Returns
    -------
    xarray.Dataset, variables as the module docstring defines them: dim ``parameter`` (the names, in the order of
    ``before.named_parameters()``, i.e. registration order, which follows the forward pass of a UNet), dim
    ``layer_type``, and scalars. Attrs: ``policy``, ``policy_pattern``, ``before``/``after`` (as given),
    ``before_metadata``/``after_metadata`` (JSON), the definitions, and :func:`freqlab.runtime.results.provenance_attrs`.

    Raises ValueError when the two architectures differ (the first missing name or differing shape is named) and
    for a policy :func:`~freqlab.finetune.freezing.freeze_policy` refuses; FileNotFoundError for a missing checkpoint.
    """
    model_before = load_model(before, trust_pickle=trust_pickle, role="before")
    model_after = load_model(after, trust_pickle=trust_pickle, role="after")
    params_before = dict(model_before.named_parameters())
    params_after = dict(model_after.named_parameters())
    if not params_before:
        raise ValueError(f"before ({_describe(before)}) has no parameters")
    _check_match(params_before, params_after)
    report = frozen_set(model_before, policy)
    t = _per_tensor(model_before, params_before, params_after, set(report.frozen_names))
    data = {**_tensor_variables(t, policy), **_type_variables(_per_type(t), policy), **_set_variables(t)}
    coords = {"parameter": t["names"], "parameter_layer_type": (
                  "parameter", t["types"], {"long_name": "layer type of the tensor (freqlab.finetune.freezing.layer_type)"}),
              "layer_type": list(LAYER_TYPE_NAMES)}
    ds = xr.Dataset(data, coords=coords)
    ds.parameter.attrs["long_name"] = "parameter tensor name, in the order of before.named_parameters()"
    ds.attrs.update(results.provenance_attrs(*(_resolved(x) for x in (before, after))))
    ds.attrs.update({
        "title": "What fine-tuning moves: weight change per parameter tensor",
        "before": _describe(before), "after": _describe(after),
        "before_metadata": _metadata(before), "after_metadata": _metadata(after),
        "policy": policy, "policy_pattern": report.pattern,
        "n_parameters": int(t["n_params"].sum()), "n_tensors": len(t["names"]),
        "definitions": "ΔW = W_after − W_before, norms Frobenius, sums in float64. frozen_share_of_change equals "
                       "frozen_share_of_params when the change falls on weights in proportion to their count; "
                       "below it the fine-tune mostly moves what the policy leaves trainable.",
        "frozen_set": "what freqlab.finetune.loop.finetune freezes when started from before under the policy (a tensor "
                      "already untrainable in before counts as frozen)",
    })
    if out is not None:
        results.save(ds, out)
    return ds


def frozen_set(model_before: nn.Module, policy: str):
    """The policy's report on a copy of ``before`` prepared as :func:`freqlab.finetune.generator.make_generator` prepares it."""
    from freqlab.models.denoisers import EDMNetworkDenoiser

    twin = copy.deepcopy(model_before)
    if isinstance(twin, EDMNetworkDenoiser):  # as make_generator: EDM saves its snapshots with requires_grad off
        twin.requires_grad_(True)
    return freeze_policy(twin, policy)


def _per_tensor(model_before: nn.Module, params_before: dict, params_after: dict, frozen_set: set) -> dict:
    """Per tensor, in float64: the change, the norm before, the size, whether frozen, the layer type."""
    names = list(params_before)
    n = len(names)
    abs_change, norm_before = np.zeros(n), np.zeros(n)
    n_params = np.zeros(n, dtype=np.int64)
    frozen = np.zeros(n, dtype=bool)
    types = []
    for i, name in enumerate(names):
        w0 = params_before[name].detach().to("cpu", torch.float64)
        w1 = params_after[name].detach().to("cpu", torch.float64)
        abs_change[i] = float(torch.linalg.vector_norm(w1 - w0))
        norm_before[i] = float(torch.linalg.vector_norm(w0))
        n_params[i] = w0.numel()
        frozen[i] = name in frozen_set
        types.append(layer_type(name, model_before.get_submodule(name.rpartition(".")[0])))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_change = np.where(norm_before > 0, abs_change / np.where(norm_before > 0, norm_before, 1.0), np.nan)
    return {"names": names, "types": types, "abs_change": abs_change, "norm_before": norm_before,
            "n_params": n_params, "frozen": frozen, "rel_change": rel_change, "sq_change": abs_change**2,
            "sq_norm": norm_before**2, "total_sq": float((abs_change**2).sum())}


def _per_type(t: dict) -> dict:
    """The per-tensor numbers summed by layer type (every type of LAYER_TYPE_NAMES, NaN where it has none)."""
    k = len(LAYER_TYPE_NAMES)
    out = {"abs": np.zeros(k), "norm": np.zeros(k), "share": np.full(k, np.nan), "n": np.zeros(k, dtype=np.int64),
           "frozen": np.full(k, np.nan), "rel": np.full(k, np.nan)}
    kinds = np.array(t["types"], dtype=object)
    for j, kind in enumerate(LAYER_TYPE_NAMES):
        sel = kinds == kind
        out["n"][j] = int(t["n_params"][sel].sum())
        out["abs"][j], out["norm"][j] = math.sqrt(t["sq_change"][sel].sum()), math.sqrt(t["sq_norm"][sel].sum())
        if out["n"][j]:
            out["rel"][j] = _ratio(out["abs"][j], out["norm"][j])
            out["frozen"][j] = t["n_params"][sel & t["frozen"]].sum() / out["n"][j]
            out["share"][j] = _ratio(float(t["sq_change"][sel].sum()), t["total_sq"])
    return out


def _tensor_variables(t: dict, policy: str) -> dict:
    p = ("parameter",)
    return {
        "rel_change": _var(p, t["rel_change"], "1", "relative change ‖W_after − W_before‖_F / ‖W_before‖_F "
                           "(NaN where ‖W_before‖ = 0)"),
        "abs_change": _var(p, t["abs_change"], "weight units", "absolute change ‖W_after − W_before‖_F"),
        "norm_before": _var(p, t["norm_before"], "weight units", "Frobenius norm of the tensor before, ‖W_before‖_F"),
        "n_params": _var(p, t["n_params"], "parameters", "scalar parameters in the tensor"),
        "share_of_change": _var(p, np.array([_ratio(v, t["total_sq"]) for v in t["sq_change"]]), "1",
                                "share of the squared weight change, ‖ΔW‖² / Σ_all ‖ΔW‖² (NaN when nothing changed)"),
        "frozen_by_policy": _var(p, t["frozen"], "1", f"frozen by the freezing policy {policy!r} in a fine-tune "
                                 "started from before (the D2O-F frozen set for policy 'conv')"),
    }


def _type_variables(ty: dict, policy: str) -> dict:
    t = ("layer_type",)
    return {
        "type_rel_change": _var(t, ty["rel"], "1", "relative change of the layer type, sqrt(Σ‖ΔW‖²) / "
                                "sqrt(Σ‖W_before‖²) over its tensors (NaN for a type without parameters)"),
        "type_abs_change": _var(t, ty["abs"], "weight units", "absolute change of the layer type, sqrt(Σ‖ΔW‖²)"),
        "type_norm_before": _var(t, ty["norm"], "weight units", "norm of the layer type before, sqrt(Σ‖W_before‖²)"),
        "type_n_params": _var(t, ty["n"], "parameters", "scalar parameters of the layer type"),
        "type_share_of_change": _var(t, ty["share"], "1", "share of the squared weight change on the layer type, "
                                     "Σ_type ‖ΔW‖² / Σ_all ‖ΔW‖²"),
        "type_frozen_share": _var(t, ty["frozen"], "1", f"share of the layer type's parameters the policy {policy!r} "
                                  "freezes (NaN for a type without parameters)"),
    }


def _set_variables(t: dict) -> dict:
    """Scalars: the frozen set's share of the change and of the parameters, and each set's relative change."""
    frozen, sq_change, sq_norm = t["frozen"], t["sq_change"], t["sq_norm"]

    def aggregate(sel) -> float:
        return _ratio(math.sqrt(sq_change[sel].sum()), math.sqrt(sq_norm[sel].sum()))

    return {
        "frozen_share_of_change": _var((), _ratio(float(sq_change[frozen].sum()), t["total_sq"]), "1",
                                       "share of the squared weight change on the frozen set, Σ_frozen ‖ΔW‖² / "
                                       "Σ_all ‖ΔW‖² (NaN when nothing changed)"),
        "frozen_share_of_params": _var((), t["n_params"][frozen].sum() / int(t["n_params"].sum()), "1",
                                       "share of the parameters in the frozen set"),
        "rel_change_frozen": _var((), aggregate(frozen), "1", "relative change of the frozen set, "
                                  "sqrt(Σ_frozen ‖ΔW‖²) / sqrt(Σ_frozen ‖W_before‖²) (NaN when it is empty)"),
        "rel_change_trainable": _var((), aggregate(~frozen), "1", "relative change of the trainable set, "
                                     "sqrt(Σ_trainable ‖ΔW‖²) / sqrt(Σ_trainable ‖W_before‖²) (NaN when it is empty)"),
        "rel_change_total": _var((), aggregate(np.ones(len(frozen), dtype=bool)), "1",
                                 "relative change of all parameters, sqrt(Σ‖ΔW‖²) / sqrt(Σ‖W_before‖²)"),
    }


def _resolved(model: Any) -> Any:
    """A path argument resolved through the run aliases (``RUN/final``), for the provenance attrs."""
    if isinstance(model, (str, os.PathLike)):
        from freqlab.checkpoints.store import resolve_checkpoint

        try:
            return resolve_checkpoint(model)
        except (OSError, ValueError):
            return model
    return None


#: A per-parameter ratio within this factor of 1 is reported as "about in proportion" by :func:`summary`.
PROPORTIONAL = 1.25


def change_per_parameter_ratio(ds: xr.Dataset) -> float:
    """Mean squared change per parameter of the frozen set over that of the trainable set,
    ``(fc / fp) / ((1 − fc) / (1 − fp))`` with ``fc = frozen_share_of_change``, ``fp = frozen_share_of_params``:
    1 when the change falls in proportion to parameter count, below 1 when it favours the trainable set. NaN when
    nothing changed or the policy freezes nothing or everything; inf when only the frozen set changed."""
    fc, fp = float(ds.frozen_share_of_change), float(ds.frozen_share_of_params)
    if not (np.isfinite(fc) and 0 < fp < 1):
        return math.nan
    return math.inf if fc == 1 else (fc / fp) / ((1 - fc) / (1 - fp))


def top_layer_types(ds: xr.Dataset, k: int = 3) -> list[tuple[str, float, float, int]]:
    """The ``k`` layer types with the largest ``type_rel_change``: ``(type, rel_change, share_of_change,
    n_params)``, types without parameters or without a defined change left out."""
    rows = [(str(t), float(r), float(s), int(n)) for t, r, s, n in zip(
        ds.layer_type.values, ds.type_rel_change.values, ds.type_share_of_change.values, ds.type_n_params.values)
        if n > 0 and np.isfinite(r)]
    return sorted(rows, key=lambda row: -row[1])[:k]


def summarize(ds: xr.Dataset) -> str:
    """A few lines of plain text: the share of the change on the frozen set against its share of the parameters,
    the aggregate changes, and the three layer types that moved most."""
    policy = ds.attrs.get("policy", "?")
    fc, fp = float(ds.frozen_share_of_change), float(ds.frozen_share_of_params)
    lines = [f"weight change {ds.attrs.get('before', '?')} -> {ds.attrs.get('after', '?')} "
             f"({int(ds.attrs.get('n_tensors', ds.sizes['parameter']))} tensors, "
             f"{int(ds.attrs.get('n_parameters', int(ds.n_params.sum()))):,} parameters)"]
    if not np.isfinite(fc):
        lines.append(f"no weight changed: every tensor is identical (the frozen set of policy {policy!r} holds "
                     f"{fp:.1%} of the parameters)")
        return "\n".join(lines)
    lines.append(f"share of the squared change on the frozen set (policy {policy!r}): {fc:.1%}, vs its share of the "
                 f"parameters: {fp:.1%}")
    ratio = change_per_parameter_ratio(ds)
    if not np.isfinite(ratio):
        lines.append("  (the policy freezes nothing or everything: no frozen/trainable comparison)")
    elif fc == 0:
        lines.append("  the frozen set did not move at all (every frozen tensor identical), as in a fine-tune under "
                     "this policy")
    else:
        if ratio < 1 / PROPORTIONAL:
            how = "the change favours what the policy leaves trainable"
        elif ratio > PROPORTIONAL:
            how = "the change favours the frozen set"
        else:
            how = f"about in proportion to parameter count (within {PROPORTIONAL}x): no preference for either set"
        lines.append(f"  per parameter, the frozen set moved {ratio:.3g}x the squared change of the trainable set: {how}")
        lines.append(f"  most of the squared change is on the {'trainable' if fc < 0.5 else 'frozen'} set")
    lines.append(f"relative change ‖ΔW‖/‖W‖: frozen set {float(ds.rel_change_frozen):.3g}, trainable set "
                 f"{float(ds.rel_change_trainable):.3g}, all {float(ds.rel_change_total):.3g}")
    top = top_layer_types(ds)
    if top:
        lines.append("layer types that moved most (relative change, share of the squared change, parameters):")
        for kind, rel, share, count in top:
            frozen = float(ds.type_frozen_share.sel(layer_type=kind))
            lines.append(f"  {kind:<16} {rel:.3g}  {share:6.1%}  {count:>10,}  ({frozen:.0%} frozen by the policy)")
    return "\n".join(lines)


def to_json(ds: xr.Dataset) -> dict:
    """The shares and each layer type's relative change as a JSON-ready document (``freqlab weights --json``)."""
    keep = ds.type_n_params.values > 0
    return {"before": ds.attrs.get("before"), "after": ds.attrs.get("after"), "policy": ds.attrs.get("policy"),
            "frozen_share_of_change": float(ds.frozen_share_of_change),
            "frozen_share_of_params": float(ds.frozen_share_of_params),
            "layer_types": {str(t): {"rel_change": float(r), "n_params": int(n)} for t, r, n in
                            zip(ds.layer_type.values[keep], ds.type_rel_change.values[keep],
                                ds.type_n_params.values[keep])}}
