"""EDM pre-training of a small ``UNet2DModel`` with a checkpoint trajectory at log-spaced steps.

The loss (EDM's) and its yardstick, the loss of the skip connection alone (``loss_by_sigma.csv`` logs both per σ
range), are in :mod:`freqlab.pretrain.loss`.

A run is deterministic: image ``k`` of the run (``k = step·batch_size + row``) takes its data index, its σ and its
noise from :mod:`freqlab.runtime.rng` streams keyed by ``(seed, k)``, and the initial weights come from ``seed``. So a run
killed at any point and resumed from its last saved training state ends with the same weights as an uninterrupted
run (same seed, same device).

Run directory::

    OUT/run.json                        the TrainConfig (a rerun with a different config is refused)
    OUT/checkpoints/step-000000/ ...    EMA weights at log-spaced steps, 0 (random init) and the last included
    OUT/loss_by_sigma.csv               training loss per σ range, per logging interval, with its skip-only
                                        baseline and loss_over_baseline
    OUT/state/state.pt                  resumable training state (raw and EMA weights, optimizer, step)

Presets (parameter counts measured with :func:`freqlab.models.denoisers.count_parameters`):

* ``cpu-small`` (default): 32×32 RGB, channels (16, 32, 64, 64), attention at 4×4, 1.09 M parameters; 800 steps
  of 32 images, about 6 minutes on two CPU cores. A faithful denoiser over the whole σ range the sweep and D2O use
  (held-out MSE at most the stationary Wiener filter's from σ = 0.002 to 80, ``benchmarks/pretrain_quality.py``),
  which EDM's CIFAR-10 recipe is not at this budget. Its deviations from EDM, each measured (``benchmarks/README.md``,
  "Pre-training recipe"): σ drawn log-uniform over [σ_min, σ_max] for 3/4 of the images and log-normal around
  σ ≈ 2.7 (``p_mean`` 1.0, ``p_std`` 1.2) for the rest, instead of EDM's log-normal (−1.2, 1.2) that puts 0.4 % of the
  images above σ = 7.6; a narrow first level (16 channels) and a fourth level, 1.75× the images per second of
  (32, 64, 64) at the same size; lr 2e-3; no dropout; gradient clipping; an EMA half-life of 2,000 images.
* ``cifar``: 32×32 RGB, channels (128, 256, 256, 256), two ResNets per level, attention at 16×16, 35.7 M
  parameters (the size of DDPM's CIFAR-10 UNet); for a GPU, bf16 autocast there.
* ``tiny``: 16×16 RGB, channels (8, 16), 0.05 M parameters, 12 steps; for tests (seconds).

Example
-------
>>> from freqlab.pretrain.loop import make_config, pretrain
>>> result = pretrain(make_config("tiny"), "runs/tiny", progress=False)      # doctest: +SKIP
>>> [p.name for p in result.checkpoints]                                     # doctest: +SKIP
['step-000000', 'step-000001', 'step-000003', 'step-000006', 'step-000012']
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from freqlab import __version__
from freqlab.pretrain.config import TrainConfig, make_config
from freqlab.pretrain.loss import edm_loss, skip_baseline, training_sigma
from freqlab.runtime.outputs import check_writable_under, holding, note, write_atomic
from freqlab.runtime.rng import per_sample_randn, sample_seed
from freqlab.training.averaging import ema_beta, ema_lerp
from freqlab.training.monitor import Collapse, LossBySigmaLog, check_finite, find_collapse, interval_ratios

__all__ = [
    "PretrainResult",
    "pretrain",
    "checkpoint_steps",
    "build_denoiser",
]

RUN_FILE, STATE_DIR, STATE_FILE, LOSS_FILE, CKPT_DIR = "run.json", "state", "state.pt", "loss_by_sigma.csv", "checkpoints"


def checkpoint_steps(steps: int, n: int) -> list[int]:
    """About ``n`` log-spaced steps in ``[0, steps]``, 0 and ``steps`` included (fewer where they coincide)."""
    if steps < 1 or n < 2:
        raise ValueError(f"need steps >= 1 and n >= 2, got steps={steps}, n={n}")
    out = {0, steps}
    for i in range(n - 1):
        out.add(round(steps ** (i / (n - 2))) if n > 2 else steps)
    return sorted(out)


@dataclass
class PretrainResult:
    """What :func:`pretrain` did. ``checkpoints`` are ordered by step; ``finished`` is False after an early stop."""

    out: Path
    checkpoints: list[Path]
    step: int
    finished: bool
    seconds: float
    images_per_second: float
    loss: float | None
    #: ``loss`` over the skip-only baseline of the same steps (:func:`skip_baseline`); below 1 = learned
    loss_over_baseline: float | None = None
    #: the first interval of the whole run's loss log whose loss collapsed (:class:`~freqlab.training.monitor.Collapse`)
    collapse: Collapse | None = None

    @property
    def final(self) -> Path | None:
        """The last checkpoint written (the final EMA weights when ``finished``)."""
        return self.checkpoints[-1] if self.checkpoints else None


# --------------------------------------------------------------------------------------------------------------
# pieces of the loop
# --------------------------------------------------------------------------------------------------------------
def build_denoiser(config: TrainConfig, channels_in: int):
    """The initial ``EDMDenoiser`` of a run: weights drawn on the CPU from ``config.seed`` (device independent)."""
    from freqlab.models.denoisers import EDMDenoiser, build_unet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(sample_seed(config.seed, "pretrain/init", 0))
        unet = build_unet(**config.unet_config(channels_in))
    return EDMDenoiser(unet, sigma_min=config.sigma_min, sigma_max=config.sigma_max, sigma_data=config.sigma_data)


class _Batches:
    """Data indices, σ and noise of image ``k`` of the run, from ``(seed, k)`` only."""

    def __init__(self, config: TrainConfig, source):
        self.config, self.source, self.shape = config, source, tuple(source.shape)
        self._perm: tuple[int, torch.Tensor] | None = None

    def data_index(self, k: int) -> int:
        n = self.source.size
        if n is None:
            return k
        epoch = k // n  # finite data: a fresh permutation per epoch, drawn from (seed, epoch)
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(sample_seed(self.config.seed, "pretrain/epoch", epoch))
            self._perm = (epoch, torch.randperm(n, generator=gen))
        return int(self._perm[1][k % n])

    def __call__(self, step: int):
        b = self.config.batch_size
        ids = list(range(step * b, (step + 1) * b))
        x0 = self.source.images([self.data_index(k) for k in ids])
        xi = per_sample_randn(self.config.seed, "pretrain/sigma", ids, (1,)).flatten()
        pick = (per_sample_randn(self.config.seed, "pretrain/sigma-mix", ids, (1,)).flatten()
                if self.config.loguniform_share else xi)  # EDM's sampling draws no second stream
        sigma = training_sigma(xi, pick, self.config)
        noise = per_sample_randn(self.config.seed, "pretrain/noise", ids, self.shape)
        return x0, sigma, noise


def _batch_stream(batches: _Batches, start: int, stop: int, *, prefetch: bool):
    """Yield ``batches(step)`` for ``step`` in ``[start, stop)``; with ``prefetch`` the next batch is made in a
    thread while the caller trains on this one (on an accelerator the CPU would otherwise idle while cropping)."""
    if not prefetch:
        for step in range(start, stop):
            yield batches(step)
        return
    pool = ThreadPoolExecutor(1, thread_name_prefix="freqlab-batches")
    try:
        pending = pool.submit(batches, start) if start < stop else None
        for step in range(start, stop):
            batch = pending.result()
            pending = pool.submit(batches, step + 1) if step + 1 < stop else None
            yield batch
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _step_rng(config: TrainConfig, step: int, dev: torch.device):
    """Dropout draws from torch's global generator: seed it from ``(seed, step)`` (restored afterwards), so that
    a resumed run draws the same masks. A no-op without dropout."""
    if not config.dropout:
        yield
        return
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(sample_seed(config.seed, "pretrain/dropout", step))
        yield


def _lr(config: TrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    if config.lr_schedule == "cosine" and step >= config.warmup_steps:
        span = max(1, config.steps - config.warmup_steps)
        warm *= 0.5 * (1 + math.cos(math.pi * min(1.0, (step - config.warmup_steps) / span)))
    return config.lr * warm


def _save_state(path: Path, state: dict) -> None:
    write_atomic(path, lambda tmp: torch.save(state, tmp))  # a kill leaves the previous state intact


def _cpu(state_dict: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}


def _prepare_out_dir(out: Path, config: TrainConfig, *, overwrite: bool) -> bool:
    """Check ``out`` against ``config``; return True when a saved state should be resumed."""
    run_file = out / RUN_FILE
    ours = (RUN_FILE, STATE_DIR, LOSS_FILE, CKPT_DIR)
    check_writable_under(out, include_self=True)
    if overwrite:
        for name in ours:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    elif run_file.is_file():
        try:
            saved = json.loads(run_file.read_text()).get("config")
        except (OSError, ValueError, AttributeError) as err:
            raise ValueError(f"{run_file} is unreadable ({err}); pass overwrite=True (--overwrite) to start over") from err
        if saved != config.to_dict():
            diff = sorted(k for k in set(saved or {}) | set(config.to_dict())
                          if (saved or {}).get(k) != config.to_dict().get(k))
            raise ValueError(f"{out} holds a different pre-training run (differs in {', '.join(diff)}); choose "
                             "another --out, or pass --overwrite to replace it")
        return True
    elif out.is_dir() and any(out.iterdir()):
        found = [p.name for p in out.iterdir() if p.name in ours]
        if found:
            raise ValueError(f"{out} holds pre-training files ({', '.join(found)}) without {RUN_FILE}; pass "
                             "--overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    payload = {"freqlab_version": __version__, "kind": "pretrain", "config": config.to_dict()}
    write_atomic(run_file, lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))
    return False


def _checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


# --------------------------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """A pre-training run in memory: networks, optimizer, data, the step reached and ``interval``, the loss sum
    and count since the last checkpoint (its ``loss`` metadata)."""

    config: TrainConfig
    out: Path
    dev: torch.device
    denoiser: torch.nn.Module
    ema: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_log: LossBySigmaLog
    batches: _Batches
    step: int = 0
    interval: list = field(default_factory=lambda: [0.0, 0])

    def __post_init__(self):
        self.params, self.ema_params = list(self.denoiser.parameters()), list(self.ema.parameters())
        self.state_path = self.out / STATE_DIR / STATE_FILE

    def state_dict(self) -> dict:
        """The resumable training state (on the CPU)."""
        return {"step": self.step, "images_seen": self.step * self.config.batch_size,
                "model": _cpu(self.denoiser.state_dict()), "ema": _cpu(self.ema.state_dict()),
                "optimizer": self.optimizer.state_dict(), "interval_loss": self.interval[0],
                "interval_count": self.interval[1]}


@holding("out")
def pretrain(config: TrainConfig | None = None, out="runs/pretrain", *, resume: bool = False,
             overwrite: bool = False, device="auto", progress: bool = True, max_steps_this_call: int | None = None,
             callback: Callable[[dict], None] | None = None) -> PretrainResult:
    """Train an ``EDMDenoiser(build_unet(...))`` with the EDM loss; write checkpoints at log-spaced steps.

    Parameters
    ----------
    config : TrainConfig, default ``make_config("cpu-small")``
    out : path of the run directory (layout in the module docstring).
    resume : continue the run in ``out`` from its last saved training state (a fresh start where there is none).
    overwrite : delete a previous run's files in ``out`` first.
    device : ``"auto"``, ``"cpu"``, ``"cuda"``...; bf16 autocast on accelerators when ``config.amp``.
    progress : tqdm bar on stderr (smoothed loss, loss_over_baseline, images/s, time left).
    max_steps_this_call : stop after this many steps, saving the training state (resume later).
    callback : called after every step with a dict ``step``, ``images_seen``, ``loss``, ``lr``, ``denoiser``.

    Returns
    -------
    PretrainResult; ``checkpoints`` lists the checkpoint directories written so far, ordered by step.
    ``loss`` is the smoothed training loss of the last steps and ``loss_over_baseline`` its ratio to the
    skip-only baseline of the same steps (below 1 = learned); both None when no step ran in this call.

    Raises
    ------
    ValueError : a directory with a different run (unless ``overwrite``), an unfinished run without ``resume``,
        a batch larger than a finite data set, unknown data source. NonFiniteLossError (a ValueError) when the loss
        or the gradient is not finite, naming the step and σ; nothing is written for that step, so the last good
        checkpoint and training state stay.
    """
    from tqdm.auto import tqdm

    from freqlab.runtime.devices import resolve_device

    config = (config or make_config()).validate()
    dev = resolve_device(device)
    source, out = _training_source(config), Path(out)
    has_run = _prepare_out_dir(out, config, overwrite=overwrite)
    run = _new_run(config, out, dev, source)
    finished = _resume_or_start(run, has_run=has_run, resume=resume)
    if finished is not None:
        return finished
    targets = checkpoint_steps(config.steps, config.n_checkpoints)
    if run.step == 0 and not (out / CKPT_DIR / _checkpoint_name(0)).is_dir():
        _write_checkpoint(run)
    start_step = run.step
    stop = config.steps if max_steps_this_call is None else min(config.steps, start_step + int(max_steps_this_call))
    bar = tqdm(total=config.steps, initial=start_step, unit="step", file=sys.stderr, disable=not progress,
               desc=f"pretrain {config.preset}", dynamic_ncols=True)
    train_seconds, smooth, smooth_baseline = 0.0, None, None
    stream = _batch_stream(run.batches, start_step, stop, prefetch=dev.type != "cpu")
    try:
        while run.step < stop:
            t0 = time.perf_counter()
            loss_value, lr, baseline = _train_step(run, next(stream))
            train_seconds += time.perf_counter() - t0
            smooth, smooth_baseline = _smoothed(smooth, loss_value), _smoothed(smooth_baseline, float(baseline.mean()))
            _save_progress(run, targets, stop)
            bar.update(1)
            bar.set_postfix(loss=f"{smooth:.4f}", loss_over_baseline=f"{smooth / smooth_baseline:.3f}",
                            img_s=f"{(run.step - start_step) * config.batch_size / train_seconds:.1f}", refresh=False)
            if callback is not None:
                callback({"step": run.step, "images_seen": run.step * config.batch_size, "loss": loss_value,
                          "lr": lr, "denoiser": run.denoiser, "ema": run.ema})
    finally:
        bar.close()
        stream.close()
    return _result(out, run.step, config, train_seconds, run.step - start_step, smooth,
                   None if smooth is None else smooth / smooth_baseline)


def _training_source(config: TrainConfig):
    """The run's data source, checked: no data option that has its own setting, some images, at least a batch."""
    from freqlab.data.sources import make_source

    reserved = sorted(set(config.data_options) & {"path", "split", "seed", "resolution", "grayscale"})
    if reserved:
        raise ValueError(f"data option(s) {', '.join(reserved)} have their own settings (--data-path, --data-seed, "
                         "--resolution, --grayscale); pass them there, not as --data-option")
    source = make_source(config.data, resolution=config.resolution, grayscale=config.grayscale, split="train",
                         seed=config.data_seed, path=config.data_path, **config.data_options)
    if source.size == 0:
        raise ValueError(f"the data source {config.data!r} holds no images")
    if source.size is not None and config.batch_size > source.size:
        raise ValueError(f"batch size {config.batch_size} is larger than the data ({source.size} images in "
                         f"{config.data!r}); use --batch-size {source.size} or less")
    return source


def _new_run(config: TrainConfig, out: Path, dev: torch.device, source) -> _Run:
    """A run at step 0: the initial weights (raw and EMA alike) and a fresh optimizer."""
    denoiser = build_denoiser(config, source.shape[0]).to(dev).train()
    ema = build_denoiser(config, source.shape[0]).to(dev).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(list(denoiser.parameters()), lr=config.lr, betas=tuple(config.betas))
    loss_log = LossBySigmaLog(out / LOSS_FILE, config.loss_sigma_edges, dev)
    return _Run(config, out, dev, denoiser, ema, optimizer, loss_log, _Batches(config, source))


def _resume_or_start(run: _Run, *, has_run: bool, resume: bool) -> PretrainResult | None:
    """Load the saved training state of a run there is one of (``resume`` needed for an unfinished one) and drop
    the loss log's rows after it; the result, with nothing to do, of a run that had already finished."""
    if has_run and run.state_path.is_file():
        try:
            state = torch.load(run.state_path, map_location="cpu", weights_only=True)
            saved_step = int(state["step"])
        except Exception as err:  # noqa: BLE001 - torch raises many kinds for a truncated or foreign file
            raise ValueError(f"the resume state {run.state_path} is unreadable (truncated or corrupt: "
                             f"{type(err).__name__}); pass --overwrite to start over") from None
        if saved_step >= run.config.steps:  # finished: reruns skip finished work
            return _result(run.out, saved_step, run.config, 0.0, 0, None)
        if not resume:
            raise ValueError(f"{run.out} holds an unfinished run (step {saved_step} of {run.config.steps}); pass "
                             "--resume to continue it or --overwrite to start over")
        run.denoiser.load_state_dict(state["model"])
        run.ema.load_state_dict(state["ema"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.step, run.interval = saved_step, [float(state["interval_loss"]), int(state["interval_count"])]
    run.loss_log.truncate(run.step)
    return None


def _train_step(run: _Run, batch) -> tuple[float, float, torch.Tensor]:
    """One optimisation step on ``batch`` (x0, σ, noise): Adam at the step's learning rate, then the EMA; the loss
    is added to the σ log and the checkpoint interval. Returns the loss, the learning rate and the skip-only
    baseline of these very images and σ (per image: what the loss must get below to have learned)."""
    from freqlab.runtime.devices import autocast_context

    config, dev = run.config, run.dev
    x0, sigma, noise = (t.to(dev, non_blocking=True) for t in batch)
    lr = _lr(config, run.step)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    with autocast_context(dev, config.amp), _step_rng(config, run.step, dev):
        per_image = edm_loss(run.denoiser, x0, sigma, noise)
    loss = per_image.mean()
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.params, config.grad_clip if config.grad_clip > 0 else math.inf)
    loss_value = float(loss.detach())
    _check_finite(run, loss_value, grad_norm, per_image, sigma)
    run.optimizer.step()
    run.step += 1
    ema_lerp(run.ema_params, run.params, ema_beta(run.step * config.batch_size, config.batch_size,
                                                  config.ema_halflife_images, config.ema_rampup_ratio,
                                                  config.ema_decay))
    baseline = skip_baseline(sigma.double(), x0.float().square().mean(dim=(1, 2, 3)).double(), config.sigma_data)
    run.loss_log.add(sigma, per_image, baseline)
    run.interval[0] += loss_value
    run.interval[1] += 1
    return loss_value, lr, baseline


def _check_finite(run: _Run, loss: float, grad_norm: torch.Tensor, per_image: torch.Tensor,
                  sigma: torch.Tensor) -> None:
    """Stop before the optimizer step at a non-finite loss or gradient (:func:`freqlab.training.monitor.check_finite`),
    naming the σ of the images whose loss is not finite (of the whole batch for the gradient)."""

    def sigmas(name: str, value: float) -> str:
        bad = ~torch.isfinite(per_image.detach())
        where = sigma[bad] if bool(bad.any()) else sigma
        return f"σ = {', '.join(f'{s:.3g}' for s in where[:4].tolist())}{', ...' if len(where) > 4 else ''}"

    check_finite({"loss": loss, "gradient": grad_norm}, step=run.step, detail=sigmas,
                 kept=f"the last good training state and checkpoints in {run.out} are kept",
                 advice=f"lower --lr (now {run.config.lr:g}) or --grad-clip")


def _smoothed(smooth: float | None, value: float) -> float:
    """The progress bar's running mean: ``value`` at first, then 0.9·``smooth`` + 0.1·``value``."""
    return value if smooth is None else 0.9 * smooth + 0.1 * value


def _save_progress(run: _Run, targets: list[int], stop: int) -> None:
    """After a step: the loss log every ``log_every`` steps, a checkpoint at the target steps, the training state
    every ``state_every`` steps (each also at the checkpoints, the state and the log at the call's last step)."""
    step, config = run.step, run.config
    if step % config.log_every == 0 or step % config.state_every == 0 or step in targets or step == stop:
        collapse = run.loss_log.flush(step, step * config.batch_size)
        if collapse is not None:
            note(f"warning: {collapse.message(config.lr, config.lr_schedule)}")
    if step in targets:
        _write_checkpoint(run)
    if step % config.state_every == 0 or step in targets or step == stop:
        _save_state(run.state_path, run.state_dict())


def _write_checkpoint(run: _Run) -> None:
    """The EMA weights at ``run.step``, with the mean loss since the last checkpoint as ``loss`` (at step 0, the
    control's: the initial weights on the first batch); the interval starts again."""
    from freqlab.checkpoints.store import save_checkpoint
    from freqlab.runtime.devices import autocast_context

    config, step = run.config, run.step
    loss = run.interval[0] / run.interval[1] if run.interval[1] else None
    if step == 0 and loss is None:
        with torch.no_grad(), autocast_context(run.dev, config.amp), _step_rng(config, 0, run.dev):
            x0, sigma, noise = (t.to(run.dev) for t in run.batches(0))
            loss = float(edm_loss(run.denoiser, x0, sigma, noise).mean())
    save_checkpoint(run.out / CKPT_DIR / _checkpoint_name(step), run.ema, metadata={
        "kind": "pretrain", "ema": True, "preset": config.preset, "data": config.data, "seed": config.seed,
        "batch_size": config.batch_size, "step": step, "images_seen": step * config.batch_size, "loss": loss})
    run.interval[:] = [0.0, 0]


def _result(out: Path, step: int, config: TrainConfig, seconds: float, done: int, loss,
            loss_over_baseline=None) -> PretrainResult:
    from freqlab.checkpoints.store import discover_checkpoints

    checkpoints = [info.path for info in discover_checkpoints(out)] if (out / CKPT_DIR).is_dir() else []
    return PretrainResult(out=out, checkpoints=checkpoints, step=step, finished=step >= config.steps,
                          seconds=seconds, images_per_second=done * config.batch_size / seconds if seconds else math.nan,
                          loss=loss, loss_over_baseline=loss_over_baseline,
                          collapse=find_collapse(interval_ratios(out / LOSS_FILE)))
