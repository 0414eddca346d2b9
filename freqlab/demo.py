"""The end-to-end demo: pre-training → sweep → D2O-F fine-tuning and its random-init control → figures → report.

Every stage writes into one results directory and resumes: rerunning the demo reuses finished stages (a finished
pre-training run, the sweep's finished checkpoints, a finished fine-tune) and continues an interrupted one.

Layout of the results directory::

    pretrain/                 the pre-training run (checkpoints/step-*/ at log-spaced steps, loss per σ range)
    sweep.nc                  one-step spectra across σ × checkpoints (freqlab.sweep)
    finetune-pretrained/      D2O-F (conv-frozen) GAN fine-tune from the final pre-training checkpoint (first seed)
    finetune-random/          the same fine-tune from a random initialisation (the control; first seed)
    finetune-*-seed<k>/       the same two fine-tunes repeated with seed + k (the spread over seeds)
    data_spectra.nc           spectra of the default data beside dead leaves, a GRF and white noise
    figures/                  every figure (PNG and PDF), see freqlab.figures
    report.md                 what the numbers say, in plain words
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from freqlab.devices import resolve_device
from freqlab.outputs import holding

__all__ = ["DemoSettings", "demo_settings", "run_demo"]


@dataclass
class DemoSettings:
    """Sizes of each stage. ``demo_settings`` picks them for CPU, GPU or ``--quick``."""

    preset: str = "cpu-small"
    pretrain_overrides: dict = field(default_factory=dict)
    sweep_images: int = 64
    sweep_batch: int = 64
    n_sigmas: int = 13  # the sweep's default grid, the one benchmarks/pretrain_quality.py checks the model on
    finetune_images: int = 1_500
    finetune_batch: int = 32
    finetune_log_every: int = 250
    # hinge: within the demo's 1,500 images, D2O-F from cpu-small with the paper's non-saturating loss reached the
    # effect the report counts on 1 of 5 seeds, with the hinge loss on 4 of 4 measured (benchmarks/README.md,
    # "The demo's fine-tunes from this model")
    finetune_loss: str = "hinge"
    finetune_seeds: int = 5  # each fine-tune runs with seeds seed, seed + 1, ...: the report gives the spread
    finetune_workers: int | None = None  # parallel fine-tunes (one torch thread each); None: one per CPU core on a
    #                                      CPU (small models use two threads poorly), one on a GPU
    spectra_images: int = 512
    finetune_early: bool = False  # also fine-tune from an early checkpoint (slower; the GAN measurements do)


# the GPU demo's departures from the cifar preset (EDM's 400k-step CIFAR-10 schedule) for an 800-step run: in so
# few steps the preset's 5,000-step warm-up and 500k-image EMA half-life would leave the model at its initialisation,
# EDM's σ sampling leaves σ > 7.6 untrained (as measured on cpu-small) and dropout slows an underfitted model, so
# the demo takes cpu-small's σ recipe, no dropout and a higher learning rate
GPU_PRETRAIN = {"steps": 800, "n_checkpoints": 6, "warmup_steps": 200, "ema_halflife_images": 40_000.0,
                "lr": 5e-4, "dropout": 0.0, "loguniform_share": 0.75, "p_mean": 1.0, "p_std": 1.2,
                "log_every": 100}


def demo_settings(*, quick: bool = False, device: str = "cpu") -> DemoSettings:
    """Stage sizes: the CPU default fits 12 minutes on two cores; ``quick`` is a smoke test (< 2 minutes)."""
    if quick:
        return DemoSettings(preset="tiny", sweep_images=16, sweep_batch=16, n_sigmas=5, finetune_images=96,
                            finetune_batch=8, finetune_log_every=32, spectra_images=64, finetune_seeds=2)
    if resolve_device(device).type == "cuda":
        # measured end to end on one H200: 2.7 min (figures/gpu-h200/). Fine-tunes of 2,000 images with a log row
        # every 1,000: each row saves the resumable state, several hundred MB for this model
        return DemoSettings(preset="cifar", pretrain_overrides=GPU_PRETRAIN, sweep_images=256, sweep_batch=256,
                            finetune_images=2_000, finetune_batch=32, finetune_log_every=1_000, spectra_images=4096,
                            finetune_seeds=3)
    return DemoSettings()


def _stage(i: int, n: int, name: str, start: float) -> None:
    print(f"[demo {i}/{n}] {name}  (elapsed {time.monotonic() - start:.0f} s)", file=sys.stderr, flush=True)


def _finetune_job(job: dict) -> tuple[str, int, float]:
    """One fine-tune (in a worker process when the demo runs several at once): ``(folder, images, seconds)``."""
    import torch

    from freqlab import gan

    job = dict(job)
    threads = job.pop("threads", None)
    if threads:
        torch.set_num_threads(threads)
    t0 = time.monotonic()
    run = gan.finetune(**job)
    return str(job["out_dir"]), int(run.log.images_seen.values[-1]), time.monotonic() - t0


def run_finetunes(jobs: list[dict], workers: int) -> None:
    """Run the fine-tuning ``jobs`` (keyword arguments of :func:`freqlab.gan.finetune`), ``workers`` at a time.

    With one worker they run here, in order, with their progress bars; with more, each runs in its own process
    with one torch thread and a line is printed as each finishes. Every run resumes, so an interrupted demo loses
    at most the work since each run's last saved state.
    """
    if workers <= 1:
        for job in jobs:
            _finetune_job(job)
        return
    jobs = [{**job, "progress": False, "threads": 1} for job in jobs]
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(_finetune_job, job) for job in jobs]
        for i, future in enumerate(as_completed(futures), 1):
            folder, images, seconds = future.result()
            print(f"  fine-tune {i}/{len(jobs)} done: {Path(folder).name}, {images:,} images, {seconds:.0f} s",
                  file=sys.stderr, flush=True)


@holding("out")
def run_demo(out: str | Path = "runs/demo", *, quick: bool = False, device: str = "auto", seed: int = 0,
             settings: DemoSettings | None = None, progress: bool = True) -> Path:
    """Run (or resume) every stage of the demo into ``out``; returns the path of ``report.md``."""
    from freqlab import dataspectra, figures, pretrain, report, results, sweep
    from freqlab.checkpoints import discover_checkpoints

    out = Path(out)
    dev = resolve_device(device)
    s = settings or demo_settings(quick=quick, device=str(dev))
    start = time.monotonic()
    n = 6
    out.mkdir(parents=True, exist_ok=True)

    _stage(1, n, f"pre-training ({s.preset})", start)
    config = pretrain.make_config(s.preset, seed=seed, **s.pretrain_overrides)
    run = pretrain.pretrain(config, out / "pretrain", resume=True, device=dev, progress=progress)
    if not run.finished or run.final is None:
        raise ValueError(f"pre-training in {out / 'pretrain'} did not finish; rerun the demo to resume it")
    checkpoints = discover_checkpoints(out / "pretrain")

    _stage(2, n, f"sweep over {len(checkpoints)} checkpoints x {s.n_sigmas} noise levels", start)
    ds = sweep.sweep(out / "pretrain", "natural", s.n_sigmas, n_images=s.sweep_images, batch_size=s.sweep_batch,
                     seed=seed, device=dev, out=out / "sweep.nc", resume=True, progress=progress)
    print(sweep.summarize(ds), file=sys.stderr)

    _stage(3, n, f"GAN fine-tuning, {s.finetune_seeds} seed(s) each: D2O-F from the final checkpoint, and from a "
              "random init (control)", start)
    runs = {"pretrained": (checkpoints[-1].path, "checkpoint"), "random": (checkpoints[-1].path, "random")}
    if s.finetune_early:
        early = checkpoints[min(2, len(checkpoints) - 1)]
        runs["early"] = (early.path, "checkpoint")
    jobs = [dict(init=path, out_dir=out / figures.run_dir(name, k), init_kind=kind, freeze="conv", loss=s.finetune_loss,
                 n_images=s.finetune_images, batch_size=s.finetune_batch, log_every=s.finetune_log_every,
                 seed=seed + k, device=str(dev), resume=True, progress=progress)
            for k in range(s.finetune_seeds) for name, (path, kind) in runs.items()]
    workers = s.finetune_workers or (1 if dev.type != "cpu" else min(len(jobs), os.cpu_count() or 1))
    run_finetunes(jobs, workers)

    _stage(4, n, "data spectra", start)
    spectra_path = out / "data_spectra.nc"
    if not spectra_path.exists():
        res = 16 if quick else 32
        results.save(dataspectra.data_spectra(n_images=s.spectra_images, resolution=res, seed=seed, device=dev,
                                              progress=progress), spectra_path)

    _stage(5, n, "figures", start)
    written = figures.make_figures(out, out / "figures")

    _stage(6, n, "report", start)
    path = report.write_report(out)
    minutes = (time.monotonic() - start) / 60
    print(f"demo finished in {minutes:.1f} min: {len(written)} figure files in {out / 'figures'}, report {path}",
          file=sys.stderr)
    return path
