"""The end-to-end demo: pre-training → sweep → D2O-F fine-tuning and its random-init control → inside the network
→ figures → report.

Every stage writes into one results directory and resumes: rerunning the demo reuses finished stages (a finished
pre-training run, the sweep's finished checkpoints, a finished fine-tune) and continues an interrupted one.

Layout of the results directory::

    pretrain/                 the pre-training run (checkpoints/step-*/ at log-spaced steps, loss per σ range)
    sweep.nc                  one-step spectra across σ × checkpoints, and EDM's N-step sampler from the same
                              noise with its band trajectory (freqlab.sweep.study, modes denoise, generate, sample)
    finetune-pretrained/      D2O-F (conv-frozen) GAN fine-tune from the final pre-training checkpoint (first seed)
    finetune-random/          the same fine-tune from a random initialisation (the control; first seed)
    finetune-*-seed<k>/       the same two fine-tunes repeated with seed + k (the spread over seeds)
    finetune-unfrozen/        one D2O fine-tune with nothing frozen (what it moves; GPU and --quick only)
    layer_spectra.nc          feature spectra of every UNet block: pre-trained, random init, D2O-F fine-tuned
    weight_change.nc          ‖ΔW‖/‖W‖ per parameter and layer type of the D2O run (without it: of the D2O-F
                              run, whose frozen set must not move), beside the D2O-F frozen set
    data_spectra.nc           spectra of the default data beside dead leaves, a GRF and white noise
    figures/                  every figure (PNG and PDF), see freqlab.plots.registry
    report.md                 what the numbers say, in plain words
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

from freqlab.finetune.config import FinetuneConfig
from freqlab.inside.layer_config import LayerSpectraConfig
from freqlab.measure.data_spectra_config import DataSpectraConfig
from freqlab.runtime.devices import resolve_device
from freqlab.runtime.outputs import holding
from freqlab.runtime.settings import configure
from freqlab.sweep.config import MODES as SWEEP_MODES
from freqlab.sweep.config import SweepConfig

__all__ = ["DemoSettings", "demo_settings", "run_demo", "UNFROZEN", "FINETUNE_RUNS"]

#: The D2O fine-tune (nothing frozen) whose weight change the demo measures.
UNFROZEN = "finetune-unfrozen"
#: The fine-tunes of the verdict, each with every seed: name -> (init_kind, freeze). The two random-init controls
#: tell "pre-training" apart from "a trainable network", with D2O-F's frozen set and with nothing frozen.
FINETUNE_RUNS = {"pretrained": ("checkpoint", "conv"), "random": ("random", "conv"),
                 "random-unfrozen": ("random", "none")}


def _default_sweep() -> SweepConfig:
    # every mode: the sampler is the multi-step reference the README's first figure shows
    return SweepConfig(modes=SWEEP_MODES, n_images=64, batch_size=64, sample_images=16, sample_steps=18)


def _default_finetune() -> FinetuneConfig:
    # 2,000 images: D2O-F's high band is still closing at 1,500 (0.46-0.64 of the pre-trained start over ten seeds,
    # so a seed lands on either side of the report's 0.5); at 2,000 it is under 0.5 on 19 of 20 seeds
    # (benchmarks/README.md, "Ten seeds, and what says no to the control"). Hinge: within 1,500 images, D2O-F from
    # cpu-small with the paper's non-saturating loss brought every band under 0.5x on 1 of 5 seeds, with the hinge
    # loss on 4 of 4 measured (benchmarks/README.md, "The demo's fine-tunes from this model"). A log row every 500
    # images: a row costs about 1 s of a 50 s run (EMA outputs, statistics, netCDF, state).
    return FinetuneConfig(loss="hinge", n_images=2_000, batch_size=32, log_every=500)


def _default_layers() -> LayerSpectraConfig:
    return LayerSpectraConfig(n_images=32, batch_size=32, random_init=True)


def _default_spectra() -> DataSpectraConfig:
    return DataSpectraConfig(n_images=512, resolution=32)


@dataclass
class DemoSettings:
    """The demo's stages, each study with its own config (their seeds are set from the demo's seed).
    :func:`demo_settings` picks them for CPU, GPU or ``--quick``."""

    preset: str = "cpu-small"  # pre-training: a preset of freqlab.pretrain.config and overrides of its fields
    pretrain_overrides: dict = field(default_factory=dict)
    sweep: SweepConfig = field(default_factory=_default_sweep)
    n_sigmas: int = 13  # the sweep's default grid, the one benchmarks/pretrain_quality.py checks the model on
    finetune: FinetuneConfig = field(default_factory=_default_finetune)  # init_kind, freeze, seed set per run
    finetune_seeds: int = 5  # each fine-tune runs with seeds seed, seed + 1, ...: the report gives the spread
    finetune_workers: int | None = None  # parallel fine-tunes (one torch thread each); None: one per CPU core on a
    #                                      CPU (small models use two threads poorly), one on a GPU
    finetune_unfrozen: bool = True  # one D2O fine-tune with nothing frozen from the checkpoint: what it moves in
    #                                 the weights (weight_change.nc, beside D2O-F's) and in the outputs
    #                                 (function_change.nc), docs/INSIDE.md
    layers: LayerSpectraConfig = field(default_factory=_default_layers)  # per-layer feature spectra
    layer_sigmas: int = 4
    spectra: DataSpectraConfig = field(default_factory=_default_spectra)  # the data beside its references
    compare_images: int | None = None  # the verdict's images a set; None: the committed criterion's (quick: fewer)

    @classmethod
    def from_dict(cls, values: dict) -> "DemoSettings":
        """Settings from plain values (JSON): a study's config as a dict of the fields that differ from the
        demo's default for it (``{"finetune": {"n_images": 500}}``)."""
        d, values = cls(), dict(values)
        for name in ("sweep", "finetune", "layers", "spectra"):
            if isinstance(values.get(name), dict):
                values[name] = configure(type(getattr(d, name)), getattr(d, name), values[name], what=name)
        return configure(cls, None, values, what="demo")


# the GPU demo's departures from the cifar preset (EDM's 400k-step CIFAR-10 schedule) for an 800-step run: in so
# few steps the preset's 5,000-step warm-up and 500k-image EMA half-life would leave the model at its initialisation,
# EDM's σ sampling leaves σ > 7.6 untrained (as measured on cpu-small) and dropout slows an underfitted model, so
# the demo takes cpu-small's σ recipe, no dropout and a higher learning rate
GPU_PRETRAIN = {"steps": 800, "n_checkpoints": 6, "warmup_steps": 200, "ema_halflife_images": 40_000.0,
                "lr": 5e-4, "dropout": 0.0, "loguniform_share": 0.75, "p_mean": 1.0, "p_std": 1.2,
                "log_every": 100}


def demo_settings(*, quick: bool = False, device: str = "cpu") -> DemoSettings:
    """Stage sizes: the CPU default fits 12 minutes on two cores; ``quick`` is a smoke test (< 2 minutes)."""
    d = DemoSettings()
    if quick:
        return DemoSettings(
            preset="tiny", n_sigmas=5, finetune_seeds=2, layer_sigmas=2, finetune_unfrozen=True, compare_images=128,
            sweep=replace(d.sweep, n_images=16, batch_size=16, sample_images=8, sample_steps=4),
            finetune=replace(d.finetune, n_images=96, batch_size=8, log_every=32),
            layers=replace(d.layers, n_images=8, batch_size=8), spectra=replace(d.spectra, n_images=64, resolution=16))
    if resolve_device(device).type == "cuda":
        # measured end to end on one H200: 2.7 min (figures/gpu-h200/). Fine-tunes of 2,000 images with a log row
        # every 1,000: each row saves the resumable state, several hundred MB for this model
        return DemoSettings(preset="cifar", pretrain_overrides=GPU_PRETRAIN, finetune_seeds=3, finetune_unfrozen=True,
                            sweep=replace(d.sweep, n_images=256, batch_size=256, sample_images=256),
                            finetune=replace(d.finetune, log_every=1_000),
                            layers=replace(d.layers, n_images=64, batch_size=64),
                            spectra=replace(d.spectra, n_images=4096))
    return d


def _stage(i: int, n: int, name: str, start: float) -> None:
    print(f"[demo {i}/{n}] {name}  (elapsed {time.monotonic() - start:.0f} s)", file=sys.stderr, flush=True)


def _finetune_job(job: dict) -> tuple[str, int, float]:
    """One fine-tune (in a worker process when the demo runs several at once): ``(folder, images, seconds)``."""
    import torch

    from freqlab.finetune import loop as gan

    job = dict(job)
    threads = job.pop("threads", None)
    if threads:
        torch.set_num_threads(threads)
    t0 = time.monotonic()
    run = gan.finetune(**job)
    return str(job["out"]), int(run.log.images_seen.values[-1]), time.monotonic() - t0


def run_finetunes(jobs: list[dict], workers: int) -> None:
    """Run the fine-tuning ``jobs`` (keyword arguments of :func:`freqlab.finetune.loop.finetune`), ``workers`` at a time.

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
    from freqlab import report
    from freqlab.plots import registry as figures

    out = Path(out)
    dev = resolve_device(device)
    s = settings or demo_settings(quick=quick, device=str(dev))
    start = time.monotonic()
    stages = _Stages(start)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = _pretrain_stage(out, s, seed, dev, progress, stages)
    _sweep_stage(out, s, seed, dev, progress, stages, len(checkpoints))
    _finetune_stage(out, s, seed, dev, progress, stages, checkpoints[-1].path)
    _compare_stage(out, s, seed, dev, progress, stages, checkpoints[-1].path)
    _inside_stage(out, s, seed, dev, progress, stages, checkpoints[-1].path)
    _data_spectra_stage(out, s, seed, dev, progress, stages)
    stages.next("figures")
    written = figures.make_figures(out, out / "figures")
    stages.next("report")
    path = report.write_report(out)
    minutes = (time.monotonic() - start) / 60
    print(f"demo finished in {minutes:.1f} min: {len(written)} figure files in {out / 'figures'}, report {path}",
          file=sys.stderr)
    return path


class _Stages:
    """Numbered stage lines on stderr with the elapsed time (the README's timings come from these)."""

    N = 8

    def __init__(self, start: float):
        self.start, self.i = start, 0

    def next(self, name: str) -> None:
        self.i += 1
        _stage(self.i, self.N, name, self.start)


def _pretrain_stage(out: Path, s: DemoSettings, seed: int, dev, progress: bool, stages: _Stages) -> list:
    from freqlab.checkpoints.store import discover_checkpoints
    from freqlab.pretrain import loop as pretrain

    stages.next(f"pre-training ({s.preset})")
    config = pretrain.make_config(s.preset, seed=seed, **s.pretrain_overrides)
    run = pretrain.pretrain(config, out / "pretrain", resume=True, device=dev, progress=progress)
    if not run.finished or run.final is None:
        raise ValueError(f"pre-training in {out / 'pretrain'} did not finish; rerun the demo to resume it")
    return discover_checkpoints(out / "pretrain")


def _sweep_stage(out: Path, s: DemoSettings, seed: int, dev, progress: bool, stages: _Stages, n: int) -> None:
    from freqlab.runtime import results
    from freqlab.sweep import study as sweep
    from freqlab.sweep.dataset import summarize

    stages.next(f"sweep over {n} checkpoints x {s.n_sigmas} noise levels, and {s.sweep.sample_steps}-step Heun "
                f"samples of {s.sweep.n_sample} images from the same noise")
    settings = dict(config=replace(s.sweep, seed=seed), device=dev, out=out / "sweep.nc", progress=progress)
    try:
        ds = sweep.sweep(out / "pretrain", "natural", s.n_sigmas, resume=True, **settings)
    except results.SettingsDiffer:  # e.g. a sweep.nc of an older freqlab, without the sample mode
        print(f"  {out / 'sweep.nc'} was made with other settings (an older version?); measuring again",
              file=sys.stderr, flush=True)
        ds = sweep.sweep(out / "pretrain", "natural", s.n_sigmas, overwrite=True, **settings)
    print(summarize(ds), file=sys.stderr)


def _finetune_stage(out: Path, s: DemoSettings, seed: int, dev, progress: bool, stages: _Stages, final) -> None:
    from freqlab.plots.results_dir import run_dir

    stages.next(f"GAN fine-tuning, {s.finetune_seeds} seed(s) each: D2O-F from the final checkpoint, and from a "
                "random init with D2O-F's frozen set and with nothing frozen (the controls)"
                + ("; one D2O (nothing frozen, from the checkpoint)" if s.finetune_unfrozen else ""))
    runs = {name: (final, kind, freeze) for name, (kind, freeze) in FINETUNE_RUNS.items()}
    # checkpoints of G and its EMA at the start and the end only (the resume state is saved at every log row): the
    # demo reads only `final`, and a row's pair is 8.4 MB for cpu-small (the whole demo held 982 MB with one per row)
    config = replace(s.finetune, checkpoint_every=s.finetune.n_images)
    common = dict(device=str(dev), resume=True, progress=progress)
    jobs = [dict(init=path, out=out / run_dir(name, k), **common,
                 config=replace(config, init_kind=kind, freeze=freeze, seed=seed + k))
            for k in range(s.finetune_seeds) for name, (path, kind, freeze) in runs.items()]
    if s.finetune_unfrozen:  # what an unfrozen fine-tune moves (freqlab.inside.weight_change)
        jobs.insert(0, dict(init=final, out=out / UNFROZEN, **common,
                            config=replace(config, init_kind="checkpoint", freeze="none", seed=seed)))
    workers = s.finetune_workers or (1 if dev.type != "cpu" else min(len(jobs), os.cpu_count() or 1))
    run_finetunes(jobs, workers)


def _compare_stage(out: Path, s: DemoSettings, seed: int, dev, progress: bool, stages: _Stages, final) -> None:
    """Every fine-tune's start and end against held-out data, with the controls: compare.nc (the verdict's input)."""
    from freqlab.checkpoints.store import load_denoiser
    from freqlab.compare.criterion import load_criterion
    from freqlab.compare.study import compare
    from freqlab.runtime import results

    criterion = load_criterion()
    config = criterion.compare_config(seed, s.compare_images)  # the quick demo's fewer: said in the file and report
    stages.next(f"the verdict's comparisons: {config.n_images} samples of each fine-tune's start and end "
                f"against held-out data, beside the controls (criterion {criterion.short_hash})")
    path = out / "compare.nc"
    made = demo_candidates(out, s, final)
    if path.exists() and not _stale(path, *(c.path for c in made.values())):
        if results.load(path).attrs.get("criterion_sha256") == criterion.sha256:
            return
    shape = tuple(load_denoiser(final).image_shape)
    reference, candidates = criterion.sets({name: c.path for name, c in made.items()}, shape, config.n_images, dev)
    ds = compare(reference, candidates, controls=True, config=config, device=dev, progress=progress)
    none = _Candidate(None, "", -1, "")  # the controls: no run, seed or start
    rows = [made.get(str(name), none) for name in ds.candidate.values]
    ds = ds.assign_coords(run=("candidate", [c.run for c in rows]),
                          seed=("candidate", [seed + c.k if c.k >= 0 else -1 for c in rows]),
                          start=("candidate", [c.start for c in rows]))
    ds.attrs.update(criterion_sha256=criterion.sha256, reference=f"{criterion.reference_source} "
                    f"({criterion.reference_split} split, seed {criterion.reference_seed}: {criterion.text['reference']['note']})")
    results.save(ds, path)


@dataclass(frozen=True)
class _Candidate:
    """A generator the verdict compares: its checkpoint, and for a run's end the run, its seed index and where it
    started (``run`` empty and ``k`` -1 for a start)."""
    path: Path | None
    run: str
    k: int
    start: str


def demo_candidates(out: Path, s: DemoSettings, final) -> dict[str, _Candidate]:
    """The generators the verdict compares: ``pretrained-start`` (the pre-trained one step), ``random-init-seed<k>``
    (the random initialisation of seed k, where both random-init controls start), and ``<run>-seed<k>-end`` for
    every run and seed (its final EMA generator)."""
    from freqlab.checkpoints.store import resolve_checkpoint
    from freqlab.plots.results_dir import run_dir

    made = {"pretrained-start": _Candidate(resolve_checkpoint(final), "", -1, "")}
    for k in range(s.finetune_seeds):
        random_start = f"random-init-seed{k}"
        made[random_start] = _Candidate(out / run_dir("random", k) / "checkpoints" / "finetune-0000000", "", -1, "")
        for name in FINETUNE_RUNS:
            made[f"{name}-seed{k}-end"] = _Candidate(resolve_checkpoint(out / run_dir(name, k) / "final"), name, k,
                                                     "pretrained-start" if name == "pretrained" else random_start)
    return made


def _inside_stage(out: Path, s: DemoSettings, seed: int, dev, progress: bool, stages: _Stages, final) -> None:
    """Per-layer feature spectra (pre-trained, random init, D2O-F fine-tuned), what the unfrozen D2O moved in the
    weights (beside D2O-F's change) and what that did to the outputs, part by part."""
    from freqlab.inside import function_change, layer_spectra, weight_change

    moved = UNFROZEN if s.finetune_unfrozen else "finetune-pretrained"
    stages.next(f"inside the network: per-layer feature spectra, and what {moved} moved")
    d2o_f, changed = out / "finetune-pretrained" / "final", out / moved / "final"
    if _stale(out / "layer_spectra.nc", final, d2o_f):
        models = {"pretrained": final, "d2o-f": d2o_f}
        layer_spectra.layer_spectra(models, "natural", s.layer_sigmas, config=replace(s.layers, seed=seed),
                                    device=dev, progress=progress, out=out / "layer_spectra.nc")
    if _stale(out / "weight_change.nc", final, changed):  # D2O's change when it ran, else D2O-F's (frozen set: 0)
        weight_change.weight_change(final, changed, policy="conv", out=out / "weight_change.nc")
    if s.finetune_unfrozen and _stale(out / "weight_change_d2o-f.nc", final, d2o_f):  # to set D2O's beside
        weight_change.weight_change(final, d2o_f, policy="conv", out=out / "weight_change_d2o-f.nc")
    if s.finetune_unfrozen and _stale(out / function_change.FILE_NAME, final, changed):
        function_change.function_change(final, changed, policy="conv", n_images=s.layers.n_images * 8, seed=seed,
                                        out=out / function_change.FILE_NAME)


def _stale(result: Path, *checkpoints) -> bool:
    """Whether ``result`` must be measured (again): missing, or older than a checkpoint it was measured from (a
    stage rerun since, e.g. with ``--overwrite``)."""
    from freqlab.checkpoints.store import resolve_checkpoint

    if not result.exists():
        return True
    newest = max(resolve_checkpoint(c).stat().st_mtime for c in checkpoints)
    return result.stat().st_mtime < newest


def _data_spectra_stage(out: Path, s: DemoSettings, seed: int, dev, progress: bool, stages: _Stages) -> None:
    from freqlab.measure.data_spectra import data_spectra

    stages.next("data spectra")
    path = out / "data_spectra.nc"
    if not path.exists():
        data_spectra(config=replace(s.spectra, seed=seed), device=dev, out=path, progress=progress)
