"""One checkpoint's pass over the images: every σ and mode of a sweep, batch by batch.

:mod:`freqlab.sweep.study` runs the whole sweep (settings, resume, checkpoints in turn or across ranks, the file); this
module is its inner loop. Each batch of images and noise is drawn and Fourier-transformed once and reused for every
σ; the outputs go straight into the streaming accumulators of :mod:`freqlab.measure.core` (and the sample mode's
trajectory, :mod:`freqlab.sweep.sample_mode`), so nothing image-sized outlives a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from freqlab.measure import core as measure
from freqlab.measure.accumulators import SpectrumAccumulator
from freqlab.measure.core import Analysis, ImageStats
from freqlab.models import sampler as sampler_module
from freqlab.runtime.devices import autocast_context
from freqlab.runtime.rng import per_sample_randn
from freqlab.sweep import sample_mode
from freqlab.sweep.config import SweepConfig
from freqlab.sweep.inputs import Entry, check_shape

__all__ = ["SweepJob", "advance", "sweep_checkpoint", "units"]


@dataclass
class SweepJob:
    """What a sweep measures, fixed for the whole run (the settings, the data, the σ grid, the device)."""

    cfg: SweepConfig
    dev: torch.device
    source: Any
    shape: tuple[int, int, int]
    sigmas: np.ndarray
    use_autocast: bool
    an: Analysis | None
    n_linear: int
    sample_sigmas: torch.Tensor | None
    reference: Any = None  # the source the references are fitted on, from image reference_start on
    reference_start: int = 0
    n_reference: int = 0  # images of the Wiener spectrum (the linear reference's first n_linear of them)
    linear: Any = None  # the linear reference, fitted before the first checkpoint is measured
    spectrum: Any = None  # the Wiener reference's PeriodicSpectrum, from the same pass
    digest: Any = None  # freqlab.data.digest.ImageDigest of the measured images: every batch read is checked


def units(job: SweepJob) -> int:
    """Progress units per checkpoint: one per σ, and the sampler's share of model calls in σ units."""
    if job.sample_sigmas is None:
        return len(job.sigmas)
    per_sigma = len([m for m in job.cfg.modes if m != "sample"]) or 1
    calls = sampler_module.model_calls(job.cfg.sample_steps, job.cfg.sampler) * job.cfg.n_sample / job.cfg.n_images
    return len(job.sigmas) + max(1, round(calls / per_sigma))


def advance(bar, amount: float) -> None:
    """Move the bar on, never past its total (fractions of a batch add up to a hair more than 1)."""
    bar.update(min(amount, max(float(bar.total or 0) - float(bar.n), 0.0)))


def forward(entry: Entry, model, x: torch.Tensor, sigma: float, dev, use_autocast: bool) -> torch.Tensor:
    s = torch.full((x.shape[0],), float(sigma), device=dev, dtype=torch.float32)
    try:
        with autocast_context(dev, use_autocast):
            y = model(x, s)
    except ValueError as err:  # e.g. a σ outside a diffusers schedule: say which checkpoint and σ
        raise ValueError(f"checkpoint {entry.name!r} at σ={sigma:g}: {err}") from err
    y = getattr(y, "sample", y)
    if y.shape != x.shape:
        raise ValueError(f"checkpoint {entry.name!r} returned shape {tuple(y.shape)} for input {tuple(x.shape)}")
    return y.float()


def accumulators(job: SweepJob) -> dict:
    """``{(σ index, mode): ImageStats}`` of one checkpoint's one-step modes; ``"sample"`` (the sample mode, at σ_max
    only) and ``"trajectory"`` when it is swept."""
    cfg, an, ns = job.cfg, job.an, len(job.sigmas)
    outs: dict = {(s, m): ImageStats(an, cfg.keep, paired=m == "denoise") for s in range(ns) for m in cfg.modes
                  if m != "sample"}
    if "sample" in cfg.modes:
        outs["sample"] = ImageStats(an, cfg.keep)
        outs["trajectory"] = sample_mode.Trajectory(cfg.sample_steps)
    return outs


def probe(entry: Entry, model, job: SweepJob) -> None:
    """Every σ on one image first: a σ the model refuses fails now, before the pass."""
    probe = job.source.images([0]).to(job.dev).expand(len(job.sigmas), *job.shape)
    s = torch.as_tensor(np.asarray(job.sigmas), dtype=torch.float32, device=job.dev)
    try:
        with autocast_context(job.dev, job.use_autocast):
            model(probe, s)
    except ValueError as err:
        lo, hi = getattr(model, "sigma_min", None), getattr(model, "sigma_max", None)
        known = lo is not None and hi is not None and f"{lo:.6g}, {hi:.6g}" not in str(err)
        hint = f" (this model's σ range is [{lo:g}, {hi:g}])" if known else ""
        raise ValueError(f"checkpoint {entry.name!r}: {err}{hint}") from err


def sweep_checkpoint(entry: Entry, model, job: SweepJob, batches, *, need_data: bool, bar):
    """One pass over the images for one checkpoint, every σ and mode.

    Returns ``({(σ index, mode): stats, ...}, data)`` where ``data`` (with ``need_data``) is ``(data stats,
    linear)`` and ``linear`` the per-σ MSE accumulators of the linear reference (or None); None without analysis.
    """
    check_shape(entry.name, model, job.shape, job.cfg.any_resolution)
    was_training = getattr(model, "training", False)
    if hasattr(model, "to"):
        model.to(job.dev)
    if hasattr(model, "eval"):
        model.eval()
    an = job.an
    outs = accumulators(job) if an is not None else {}
    data = ImageStats(an, job.cfg.keep, modes=True) if (need_data and an is not None) else None
    linear_mse = [SpectrumAccumulator(device="cpu") for _ in job.sigmas] \
        if data is not None and job.linear is not None else None
    step = 1.0 / max(len(batches), 1)  # a rank may have no batch when there are more ranks than batches
    try:
        with torch.inference_mode():
            probe(entry, model, job)
            for idx in batches:
                sweep_batch(entry, model, job, idx, outs, data, linear_mse, lambda n: advance(bar, step * n),
                             len(batches))
    finally:
        if hasattr(model, "train"):
            model.train(was_training)
    return None if an is None else (outs, None if data is None else (data, linear_mse))


def sweep_batch(entry: Entry, model, job: SweepJob, idx: range, outs: dict, data, linear_mse, advance,
                 n_batches: int) -> None:
    """One batch of images through every σ and mode (the images and noise drawn and transformed once)."""
    cfg, an, dev, modes = job.cfg, job.an, job.dev, job.cfg.modes
    rows = slice(idx.start, idx.stop)
    x0 = job.source.images(list(idx))
    if job.digest is not None:  # what is measured is what the fingerprint says
        job.digest.check(idx.start, x0, "data images")
    x0 = x0.to(dev)
    noise = per_sample_randn(cfg.seed, "sweep/denoise", idx, job.shape, device=dev) if "denoise" in modes else None
    z = per_sample_randn(cfg.seed, measure.GENERATE_STREAM, idx, job.shape, device=dev) \
        if "generate" in modes or "sample" in modes else None
    f0 = None
    if an is not None:
        f0 = data.update(an, x0, rows, what="data images") if data is not None else an.fft(x0)
    if linear_mse is not None:  # the reference sees exactly the models' noisy inputs
        for si, sigma in enumerate(job.sigmas):
            err = job.linear(x0 + sigma * noise, torch.full((x0.shape[0],), float(sigma), device=dev)) - x0
            linear_mse[si].update(err.double().square().mean((-2, -1)))
    for si, sigma in enumerate(job.sigmas):
        for m in modes:
            if m == "sample":
                continue
            x_in = x0 + sigma * noise if m == "denoise" else sigma * z
            y = forward(entry, model, x_in, sigma, dev, job.use_autocast)
            if an is not None:
                outs[(si, m)].update(an, y, rows, clean=(x0, f0) if m == "denoise" else None,
                                     what=f"checkpoint {entry.name!r} at σ={sigma:g} ({m} mode): outputs")
        advance(1)
    if "sample" in modes:
        k = sample_batch(entry, model, job, idx, z, outs)
        # the sampler's units spread over the images it samples: advance(u) moves the bar u / (batches) units
        advance((units(job) - len(job.sigmas)) * k * n_batches / job.cfg.n_sample)


def sample_batch(entry: Entry, model, job: SweepJob, idx: range, z: torch.Tensor, outs: dict) -> int:
    """The N-step samples of the batch's first ``sample_images`` images, measured as the sample mode at σ_max;
    returns how many it sampled."""
    k = max(0, min(idx.stop, job.cfg.n_sample) - idx.start)
    if k == 0:
        return 0
    y = sample_mode.run_sampler(lambda x, s: forward(entry, model, x, s, job.dev, job.use_autocast), z[:k],
                                job.sample_sigmas, job.cfg.sampler, job.an, outs.get("trajectory"),
                                what=f"checkpoint {entry.name!r}")
    if job.an is not None:
        outs["sample"].update(
            job.an, y, slice(idx.start, idx.start + k),
            what=f"checkpoint {entry.name!r} ({job.cfg.sampler} sampler, {job.cfg.sample_steps} steps): samples")
    return k
