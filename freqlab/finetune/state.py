"""The run directory of a fine-tune: exported checkpoints, the resume state and the log's rows on resume."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Mapping

import torch
import xarray as xr

from freqlab.finetune.config import FinetuneConfig
from freqlab.finetune.generator import Generator
from freqlab.runtime import distributed, results
from freqlab.runtime.outputs import check_writable_under, write_atomic
from freqlab.training.averaging import EMA, Lookahead

LOG_NAME = "finetune.nc"
#: 2: the metrics of freqlab.measure.core (per channel, DC-free band statistics, two-sided cutoff, Hann spectra)
LOG_FORMAT_VERSION = 2


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def _export(out: Path, gen: Generator, ema: EMA, images_seen: int, step: int, row: xr.Dataset) -> None:
    """G and its EMA in freqlab's checkpoint format, for the models save_checkpoint knows: freqlab's EDM models,
    diffusers DDPM-family UNets (with their scheduler config) and EDM networks loaded from a pickle (saved as weights
    beside the name of their source pickle)."""
    from freqlab.checkpoints.store import save_checkpoint
    from freqlab.models.denoisers import DiffusersDenoiser, EDMDenoiser

    exported = (EDMDenoiser, DiffusersDenoiser)
    if not isinstance(gen.denoiser, exported) and getattr(gen.denoiser, "source_pickle", None) is None:
        if images_seen == 0:  # said once, not silently skipped
            print(f"freqlab finetune: no checkpoints/ for a {type(gen.denoiser).__name__} (exported: freqlab's EDM "
                  "models, diffusers DDPM-family UNets and EDM pickles); its trained weights are in state/ (resume "
                  "state) only", file=sys.stderr)
        return
    loss = float(row["loss_g"].values.squeeze())
    loss = loss if math.isfinite(loss) else None  # the first row has no loss yet
    for net, suffix, is_ema in ((gen, "", False), (ema.model, "-ema", True)):
        meta = {"step": step, "images_seen": images_seen, "loss": loss, "ema": is_ema, "kind": "finetune",
                "sigma_g": gen.sigma}
        save_checkpoint(out / "checkpoints" / f"finetune-{images_seen:07d}{suffix}", net.denoiser, metadata=meta)


def _save_state(out: Path, images_seen, step, next_log, config, freeze, gen, ema, disc, opt_g, opt_d,
                lookahead: Lookahead) -> None:
    from safetensors.torch import save_file

    root = out / "state"
    final = root / f"images_seen-{images_seen:07d}"
    tmp = root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {}
    for prefix, module in (("generator.", gen), ("generator_ema.", ema.model), ("discriminator.", disc)):
        tensors.update({prefix + k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()})
    tensors.update({f"lookahead.{i}": v.to("cpu").contiguous() for i, v in enumerate(lookahead.slow)})
    # each file flushed and given the umask's permissions (safetensors alone writes 0600) before the folder is renamed
    write_atomic(tmp / "weights.safetensors", lambda f: save_file(tensors, str(f)))
    optimizers = {"generator": opt_g.state_dict(), "discriminator": opt_d.state_dict()}
    write_atomic(tmp / "optimizers.pt", lambda f: torch.save(optimizers, f))
    state = {"images_seen": images_seen, "step": step, "next_log": next_log, "config": config.to_dict(),
             "frozen_share": freeze.frozen_share, "n_frozen": freeze.n_frozen, "n_parameters": freeze.n_total}
    _write_text(tmp / "state.json", json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_text(root / "latest.json", json.dumps({"dir": final.name, **state}, indent=1))
    for old in root.glob("images_seen-*"):  # keep only the newest complete state
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def _read_latest(out: Path) -> dict | None:
    path = out / "state" / "latest.json"
    if not path.is_file():
        return None
    try:
        latest = json.loads(path.read_text())
        folder = out / "state" / str(latest["dir"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is unreadable ({type(err).__name__}: {err}); start over with --overwrite") from None
    if not (folder / "weights.safetensors").is_file():
        raise ValueError(f"the resume state named in {path} is missing; start over with --overwrite")
    return latest


def _check_resumable(saved: Mapping, config: FinetuneConfig, out: Path) -> None:
    now = config.to_dict()
    saved = config.upgrade(saved)  # a run saved by an earlier freqlab, in today's fields
    diff = [k for k in now if k not in config.RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise ValueError(f"{out} holds a run with other settings ({detail}); use the same settings to resume, "
                         f"or --overwrite to start over")


def _load_state(out: Path, latest: dict, gen, ema, disc, opt_g, opt_d, lookahead: Lookahead,
                device) -> tuple[int, int, int]:
    from safetensors.torch import load_file

    folder = out / "state" / latest["dir"]
    try:
        tensors = load_file(folder / "weights.safetensors", device=str(device))
        for prefix, module in (("generator.", gen), ("generator_ema.", ema.model), ("discriminator.", disc)):
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        for i, slow in enumerate(lookahead.slow):
            slow.copy_(tensors[f"lookahead.{i}"])
        opts = torch.load(folder / "optimizers.pt", map_location=device, weights_only=True)
        opt_g.load_state_dict(opts["generator"])
        opt_d.load_state_dict(opts["discriminator"])
        return int(latest["images_seen"]), int(latest["step"]), int(latest["next_log"])
    except Exception as err:  # noqa: BLE001 - safetensors and torch raise many kinds for a truncated file
        raise ValueError(f"the resume state in {folder} (weights.safetensors, optimizers.pt) is unreadable "
                         f"(truncated or corrupt: {type(err).__name__}); start over with --overwrite") from None


def _load_rows(path: Path, images_seen: int) -> tuple[list[xr.Dataset], dict]:
    """The per-row part of an existing log, up to the resumed state (rows written after it are dropped), and the
    log's provenance attrs to keep (``date_created``, ``history``)."""
    if not path.is_file():
        return [], {}
    ds = results.load(path)
    version = ds.attrs.get("format_version", 1)
    if version != LOG_FORMAT_VERSION:
        raise ValueError(f"{path} was written with log format {version} (this freqlab writes {LOG_FORMAT_VERSION}: "
                         f"other metrics); start over with --overwrite")
    per_row = [k for k in ds.data_vars if "images_seen" in ds[k].dims]
    created = {k: ds.attrs[k] for k in ("date_created", "history") if k in ds.attrs}
    ds = ds[per_row]
    ds = ds.drop_vars([c for c in ds.coords if c != "images_seen"])  # coords come back from the static part
    ds.attrs = {}
    return [ds.sel(images_seen=[int(i)]) for i in ds.images_seen.values if int(i) <= images_seen], created


def _remove_run(out: Path) -> None:
    """Only what a fine-tuning run writes (a pre-training run in the same directory keeps its checkpoints)."""
    for path in (out / "state", out / "samples", *(out / "checkpoints").glob("finetune-*")):
        shutil.rmtree(path, ignore_errors=True)
    (out / LOG_NAME).unlink(missing_ok=True)


def _open_run(out: Path, config: FinetuneConfig, *, resume: bool, overwrite: bool) -> dict | None:
    """Check the batch against the processes, clear ``out`` for ``overwrite`` (rank 0, before any rank reads it) and
    return the state a run there left (None: a fresh start); a run there needs ``resume`` and a matching config."""
    check_writable_under(out, include_self=True)
    n_ranks = distributed.world_size()
    if config.batch_size % n_ranks:
        raise ValueError(f"batch_size {config.batch_size} (the global batch) is not divisible by the "
                         f"{n_ranks} processes; choose a multiple of {n_ranks}")
    if overwrite and distributed.is_main():
        _remove_run(out)
    distributed.barrier()  # every rank reads the run directory only after rank 0 cleared it
    previous = _read_latest(out)
    if previous is not None and not resume:
        raise FileExistsError(f"{out} already holds a fine-tuning run; resume it (resume=True, the command line's "
                              f"default) or start over (--overwrite)")
    if previous is not None:
        _check_resumable(previous["config"], config, out)
    return previous
