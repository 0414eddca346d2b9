"""One-step GAN fine-tuning of a pre-trained denoiser (D2O / D2O-F), minimal on purpose.

The generator is the denoiser applied once to pure noise at its largest noise level,

    G(z) = D_θ(σ_g·z, σ_g),   z ~ N(0, I),   σ_g = the model's sigma_max (80 for EDM),

so before fine-tuning it is exactly the ``generate`` mode of a sweep at σ_max. It is trained with nothing but a GAN
loss against a small from-scratch discriminator (no distillation, no teacher): non-saturating (default) or hinge,
lazy R1 on real images, Adam with β = (0, 0.99) inside lookahead-minmax (every 5 steps G and D move back halfway
to their slow weights, which damps the game's swings), an EMA of G. Freezing policies choose which parameters train
(``none`` = D2O, ``conv`` = D2O-F, or a regex). While it learns, the spectra and per-image band statistics of a
fixed batch of G's outputs are logged against the data to an xarray Dataset with dim ``images_seen``.

Under ``torchrun`` (or a process group the caller initialised) the loop trains with DistributedDataParallel: the
batch size is the *global* batch, each rank takes its contiguous slice of it (images and z by global index), so the
result equals the single-process run up to float rounding; losses are averaged over ranks; rank 0 alone measures
spectra, writes the files below and prints.

The parts live in their own modules: :mod:`freqlab.finetune.generator` (G and the random-init control),
:mod:`freqlab.finetune.discriminator`, :mod:`freqlab.finetune.losses` (losses, R1), :mod:`freqlab.training.averaging` (EMA, lookahead),
:mod:`freqlab.finetune.freezing` (policies), :mod:`freqlab.training.monitor` (what a log row measures), :mod:`freqlab.finetune.config`
and :mod:`freqlab.finetune.state` (checkpoints, resume state), :mod:`freqlab.finetune.game` (:func:`gan_step`, one step
of the game); this module holds the loop around it and re-exports their public names.

Layout of a run directory ``out``::

    finetune.nc                       the log (see :func:`finetune` for its variables)
    samples/images_seen-0001024.png   a grid of the logged outputs at each log moment (samples/data.png: the data)
    checkpoints/finetune-0001024/     G in freqlab's checkpoint format (save_checkpoint), loadable by load_denoiser
    checkpoints/finetune-0001024-ema/ the EMA of G, same format
    state/images_seen-0001024/        resume state: weights.safetensors (G, EMA, D), optimizers.pt, state.json
    state/latest.json                 points at the newest complete resume state (written last, atomically)
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import xarray as xr
from torch import nn

from freqlab.finetune.config import DISCRIMINATORS, FinetuneConfig
from freqlab.finetune.discriminator import Discriminator
from freqlab.finetune.freezing import FreezeReport, freeze_policy, parameter_breakdown
from freqlab.finetune.game import GanNets, gan_step
from freqlab.finetune.generator import Generator, make_generator
from freqlab.finetune.state import (
    LOG_FORMAT_VERSION,
    LOG_NAME,
    _export,
    _load_rows,
    _load_state,
    _open_run,
    _save_state,
)
from freqlab.measure import core as measure
from freqlab.measure.conventions import WINDOW
from freqlab.runtime import distributed, results
from freqlab.runtime.outputs import holding
from freqlab.runtime.rng import per_sample_randn, sample_seed
from freqlab.training.averaging import EMA, Lookahead
from freqlab.training.monitor import SpectralMonitor, assemble_log, check_finite, log_row, save_grid

__all__ = [
    "FinetuneRun",
    "finetune",
]


# --------------------------------------------------------------------------------------------------------------
# the fine-tuning loop
# --------------------------------------------------------------------------------------------------------------


@dataclass
class FinetuneRun:
    """What :func:`finetune` returns: the log and the trained networks, on the run's device."""

    out: Path
    log: xr.Dataset
    generator: Generator
    generator_ema: Generator
    discriminator: nn.Module
    freeze: FreezeReport
    images_seen: int


class _DataStream:
    """Training images by index, deterministic: unlimited sources are read in order (after the reference
    images), finite ones in a seeded permutation per epoch, so a resumed run sees the same images."""

    def __init__(self, source, seed: int, skip: int):
        self.source, self.seed, self.skip = source, seed, skip
        self._perm: tuple[int, torch.Tensor] | None = None

    def indices(self, start: int, n: int) -> list[int]:
        size = self.source.size
        if size is None:
            return [self.skip + i for i in range(start, start + n)]
        out = []
        for i in range(start, start + n):
            epoch, j = divmod(i, size)
            if self._perm is None or self._perm[0] != epoch:
                gen = torch.Generator().manual_seed(sample_seed(self.seed, "finetune-data-order", epoch))
                self._perm = (epoch, torch.randperm(size, generator=gen))
            out.append(int(self._perm[1][j]))
        return out

    def batch(self, start: int, n: int) -> torch.Tensor:
        return self.source.images(self.indices(start, n))


@holding("out")
def finetune(
    init,
    out: str | os.PathLike,
    *,
    config: FinetuneConfig | None = None,
    device="auto",
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    discriminator_factory: Callable[[tuple[int, int, int]], nn.Module] | None = None,
    trust_pickle: bool = False,
    **settings,
) -> FinetuneRun:
    """Fine-tune a denoiser into a one-step generator with a GAN loss; log spectra, samples and checkpoints.

    Parameters
    ----------
    init : a checkpoint path (anything :func:`freqlab.checkpoints.store.load_denoiser` accepts) or a ``Denoiser``.
    out : the run directory (layout in the module docstring).
    config : :class:`freqlab.finetune.config.FinetuneConfig`, what determines the numbers (each field documented
        there); ``**settings`` set single fields of it (an unknown name is a ValueError), e.g.
        ``init_kind`` (``"checkpoint"``: its weights; ``"random"``: same architecture, fresh seeded weights),
        ``freeze`` (``"none"`` D2O, ``"conv"`` D2O-F, or a regex over parameter names, :func:`freeze_policy`),
        ``loss``, ``n_images``, ``batch_size``, ``log_every``, ``lr_g``, ``lr_d``, ``seed``.
    resume : continue the run found in ``out`` (its config must match, except ``n_images`` and
        ``checkpoint_every``); a run that already reached ``n_images`` returns at once. ``resume=False`` with a run
        there is an error unless ``overwrite``.
    overwrite : delete a previous run's files in ``out`` (log, samples, checkpoints, state) first.
    trust_pickle : allow an EDM network pickle as ``init`` (unpickling runs its code; only for files you trust).
        Its fine-tuned checkpoints hold the weights and name the source pickle (with its sha256) for the
        architecture: :func:`freqlab.checkpoints.store.load_denoiser` and ``freqlab sweep --trust-pickle`` load them.
    discriminator_factory : the hook for another discriminator (e.g. a projected discriminator on frozen features,
        or :class:`Discriminator` with other ``max_channels`` or ``spectral_norm``): called with the image shape
        ``(C, H, W)`` under a seeded RNG, returns the module (logits ``(N,)`` or ``(N, K)`` for images
        ``(N, C, H, W)``). Default: :class:`Discriminator` with ``d_channels`` base channels and the arguments of
        the named ``discriminator`` (:data:`freqlab.finetune.config.DISCRIMINATORS`).

    Returns
    -------
    FinetuneRun. Its ``log`` (also ``out/finetune.nc``) has dim ``images_seen`` (int, images the generator was
    trained on; the first row, 0, is the initial model, i.e. the denoiser's one-step output at σ_max), and:

    * per row: ``power``, ``power_sem`` (images_seen, channel, freq); ``relative_power_db`` (images_seen, freq);
      ``log_spectral_distance``, ``diversity_ratio``, ``wasserstein_log_band_power``, ``kurtosis``,
      ``kurtosis_gap`` (images_seen, band); ``log_band_power`` (images_seen, sample, band);
      ``log_spectral_distance_all``, ``cutoff_frequency``, ``loss_d``, ``loss_g``, ``r1_penalty``, ``d_real``,
      ``d_fake``, ``images_per_second`` (images_seen) — losses are means since the previous row, NaN in row 0;
    * once: ``data_power``, ``data_power_sem`` (channel, freq); ``data_log_band_power`` (data_sample, band);
      ``data_kurtosis`` (band); ``n_frozen``, ``n_trainable`` (layer_type);
    * attrs: ``frozen_share``, ``n_parameters``, ``n_frozen_parameters``, ``sigma_g``, ``logged_network``, and the
      config (``config_*``).

    Raises ValueError for a checkpoint that is not a denoiser, a freeze pattern that freezes nothing or everything,
    data that do not match the model's image shape, a batch size not divisible by the number of processes, and a
    non-finite loss (the run stops; the last good state and checkpoints stay on disk; the message says at which
    ``images_seen``).

    Under torchrun every rank calls this with the same arguments and trains G and D with DDP on its share of the
    global ``batch_size``; only rank 0 writes ``out`` and shows progress; every rank returns the same networks and
    rank 0's log. Distributed (launched by torchrun, or inside a process group the caller initialised; see
    :mod:`freqlab.runtime.distributed`): ``batch_size`` is the global batch and must be divisible by the number of
    processes; rank ``r`` trains on images and z of global indices ``[s + r·b/W, s + (r+1)·b/W)`` of the step
    starting at ``s``, so DDP's gradient average is the gradient of the single-process mean loss. The logged losses
    are global means (all-reduced before the non-finite check, so all ranks stop together). Rank 0 clears the run
    for ``overwrite``, measures the spectra and writes the log, samples, checkpoints and resume state; every rank
    resumes from the same state files.
    """
    from tqdm.auto import tqdm

    provenance = str(init) if isinstance(init, (str, os.PathLike)) else f"<{type(init).__name__} object>"
    config = FinetuneConfig.from_settings(provenance, settings, config)

    device = distributed.setup(device)
    progress = progress and distributed.is_main()
    out = Path(out)
    previous = _open_run(out, config, resume=resume, overwrite=overwrite)
    nets = _build_networks(init, config, device, discriminator_factory, trust_pickle=trust_pickle, progress=progress)
    run = _start(out, config, device, nets, previous)
    bar = tqdm(total=config.n_images, initial=min(run.images_seen, config.n_images), unit="img", file=sys.stderr,
               disable=not progress, desc="finetune", dynamic_ncols=True)
    try:
        while True:
            if _log_due(run):
                _log_moment(run)
            if run.images_seen >= config.n_images:
                break
            scalars, seconds = _train_step(run)
            bar.update(min(run.images_seen, config.n_images) - bar.n)
            bar.set_postfix(loss_d=f"{float(scalars['loss_d']):.3f}", loss_g=f"{float(scalars['loss_g']):.3f}",
                            img_s=f"{config.batch_size / seconds:.0f}", refresh=False)
    finally:
        bar.close()
    log = assemble_log(run.rows, run.watch.static) if run.watch is not None else None
    if distributed.is_distributed():  # every rank returns rank 0's log (and waits for its last files)
        log = distributed.all_gather_objects(log)[0]
    return FinetuneRun(out, log, nets.gen, nets.ema.model, nets.disc, nets.freeze, run.images_seen)


@dataclass
class _Networks:
    """What a fine-tune trains, as plain modules (the EMA, logging, export and resume state use these): G with its
    freezing report, D, their optimizers, G's EMA, the lookahead over both, and D's trainable parameters."""

    gen: Generator
    freeze: FreezeReport
    disc: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema: EMA
    lookahead: Lookahead
    d_params: list


@dataclass
class _Watch:
    """Rank 0's measuring kit: the spectral monitor on the reference images, the fixed z of the logged outputs and
    the static part of the log (data side, parameter breakdown, attrs)."""

    monitor: SpectralMonitor
    z_eval: torch.Tensor
    static: xr.Dataset


def _zero_sums() -> dict[str, float]:
    """The training scalars summed since the previous log row (:func:`freqlab.training.monitor.log_row`), at zero."""
    return dict.fromkeys(("loss_d", "loss_g", "r1_penalty", "d_real", "d_fake", "n_steps", "n_r1", "images",
                          "seconds"), 0.0)


@dataclass
class _Run:
    """A fine-tune in progress: its networks (``train``: as trained, DDP-wrapped under torchrun), data, rank 0's
    ``watch`` (None on the other ranks), the log rows, and where it stands: images seen, steps, the next log moment,
    the last row logged and the last state saved (``last_good``, None before the first)."""

    out: Path
    config: FinetuneConfig
    device: torch.device
    nets: _Networks
    stream: _DataStream
    watch: _Watch | None
    train: GanNets | None = None
    rows: list = field(default_factory=list)
    images_seen: int = 0
    step: int = 0
    next_log: int = 0
    logged_at: int = -1
    last_good: int | None = None
    sums: dict = field(default_factory=_zero_sums)


def _build_networks(init, config: FinetuneConfig, device: torch.device, discriminator_factory, *,
                    trust_pickle: bool, progress: bool) -> _Networks:
    """G from ``init`` with the freezing policy applied (its summary printed with ``progress``), D from a seeded
    RNG, Adam for each (β = (0, 0.99), trainable parameters only), G's EMA and the lookahead over both."""
    gen = make_generator(init, init_kind=config.init_kind, seed=config.seed, device=device, trust_pickle=trust_pickle)
    gen.train()
    freeze = freeze_policy(gen.denoiser, config.freeze)
    if progress:
        print(freeze.summary(), file=sys.stderr)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(sample_seed(config.seed, "discriminator-init", 0))
        factory = discriminator_factory or (lambda s: Discriminator(
            s, channels=config.d_channels, **DISCRIMINATORS[config.discriminator]))
        disc = factory(tuple(gen.image_shape)).to(device)
    g_params = [p for p in gen.parameters() if p.requires_grad]
    d_params = [p for p in disc.parameters() if p.requires_grad]
    opt_g = torch.optim.Adam(g_params, lr=config.lr_g, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(d_params, lr=config.lr_d, betas=(0.0, 0.99))
    return _Networks(gen, freeze, disc, opt_g, opt_d, EMA(gen, config.ema), Lookahead(g_params + d_params,
                                                                                       config.lookahead), d_params)


def _start(out: Path, config: FinetuneConfig, device: torch.device, nets: _Networks, previous: dict | None) -> _Run:
    """The run before its first step: the data, rank 0's watch, and for a resumed run its saved state (every rank
    reads the same files) and log rows; no rank goes on before all have read the state."""
    from freqlab.data.sources import make_source

    shape = nets.gen.image_shape
    c, h, w = shape
    source = make_source(config.data, resolution=h if h == w else (h, w), grayscale=(c == 1), path=config.data_path)
    if tuple(source.shape) != tuple(shape):
        raise ValueError(f"data source {config.data!r} gives images of shape {tuple(source.shape)} but the model "
                         f"expects {tuple(shape)}")
    n_data = config.n_data if source.size is None else min(config.n_data, source.size)
    if n_data < 2:
        raise ValueError(f"data source {config.data!r}{'' if config.data_path is None else f' ({config.data_path})'} "
                         f"holds {source.size} image(s); fine-tuning needs at least 2 (the reference statistics "
                         "compare images with each other)")
    stream = _DataStream(source, config.seed, skip=n_data)
    watch = _watch(out, config, device, nets, source.images(range(n_data)), fresh=previous is None) \
        if distributed.is_main() else None
    run = _Run(out, config, device, nets, stream, watch)
    if previous is not None:  # every rank resumes from the same files, so all hold the same state
        run.images_seen, run.step, run.next_log = _load_state(out, previous, nets.gen, nets.ema, nets.disc,
                                                              nets.opt_g, nets.opt_d, nets.lookahead, device)
        run.rows, created = _load_rows(out / LOG_NAME, run.images_seen)
        if watch is not None:  # a resumed log keeps its creation date and history
            watch.static.attrs.update(created)
        run.logged_at = int(run.rows[-1].images_seen[-1]) if run.rows else -1
        run.last_good = run.images_seen
    distributed.barrier()  # no rank reads the state any more when rank 0 starts replacing it
    # The modules that train: DDP averages the gradients of the trainable parameters (frozen ones are left out
    # by DDP and the optimizers alike); gen and disc stay the plain modules for the EMA, logging, export, state.
    run.train = GanNets(_data_parallel(nets.gen, device), nets.disc, _data_parallel(nets.disc, device), nets.opt_g,
                        nets.opt_d, nets.d_params)
    return run


def _watch(out: Path, config: FinetuneConfig, device: torch.device, nets: _Networks, reference: torch.Tensor, *,
           fresh: bool) -> _Watch:
    """Rank 0's measuring kit from the ``reference`` data images (their grid saved as samples/data.png when the run
    is ``fresh``)."""
    monitor = SpectralMonitor(reference, config.bands)
    z_eval = per_sample_randn(config.seed, measure.GENERATE_STREAM, range(config.n_eval), nets.gen.image_shape,
                              device=device)
    static = monitor.reference_dataset().merge(parameter_breakdown(nets.gen.denoiser))
    static.attrs.update(_attrs(config, nets.freeze, nets.gen))
    if fresh:
        save_grid(reference[: config.n_eval], out / "samples" / "data.png")
    return _Watch(monitor, z_eval, static)


def _log_due(run: _Run) -> bool:
    """Whether the run is at a log moment it has not logged yet: the next ``log_every`` mark, or the budget's end."""
    seen = run.images_seen
    return (seen >= run.next_log or seen >= run.config.n_images) and run.logged_at != seen


def _log_moment(run: _Run) -> None:
    """A log moment (rank 0 writes, every rank waits until the state is on disk): a row of the log measured on the
    EMA's outputs for the fixed z, their sample grid, G and its EMA when a checkpoint is due, the resume state; the
    sums start again."""
    config, nets, images_seen = run.config, run.nets, run.images_seen
    run.next_log = (images_seen // config.log_every + 1) * config.log_every
    if run.watch is not None:
        outputs = _generate(nets.ema.model, run.watch.z_eval, config.batch_size)
        run.rows.append(log_row(images_seen, run.watch.monitor.measure(outputs), run.sums))
        results.save(assemble_log(run.rows, run.watch.static), run.out / LOG_NAME)
        save_grid(outputs, run.out / "samples" / f"images_seen-{images_seen:07d}.png")
        every = config.checkpoint_every or config.log_every
        if images_seen == 0 or images_seen >= config.n_images or images_seen // every > run.logged_at // every:
            _export(run.out, nets.gen, nets.ema, images_seen, run.step, run.rows[-1])
        _save_state(run.out, images_seen, run.step, run.next_log, config, nets.freeze, nets.gen, nets.ema, nets.disc,
                    nets.opt_g, nets.opt_d, nets.lookahead)
    distributed.barrier()  # the state is complete on disk before any rank goes on
    run.last_good = run.logged_at = images_seen
    run.sums = _zero_sums()


def _train_step(run: _Run) -> tuple[dict[str, torch.Tensor], float]:
    """One step of the game on this rank's slice of the next global batch, then the lookahead and the EMA; its
    scalars are added to the sums of the next log row. Returns them and the seconds the step took."""
    t0 = time.perf_counter()
    config, nets, b = run.config, run.nets, run.config.batch_size
    local = b // distributed.world_size()  # images per rank and step
    # this rank's contiguous slice of the global batch: images and z by global index, so the union over ranks is
    # the single-process batch and DDP's gradient average is the gradient of its mean loss
    first = run.images_seen + distributed.rank() * local
    real = run.stream.batch(first, local).to(run.device)
    z = per_sample_randn(config.seed, "finetune-z", range(first, first + local), nets.gen.image_shape,
                         device=run.device)
    do_r1 = config.r1_gamma > 0 and run.step % config.r1_every == 0
    out, images_seen, step, last_good = run.out, run.images_seen, run.step, run.last_good
    scalars = gan_step(run.train, real, z, config, r1_now=do_r1,
                       check=lambda **losses: _check_finite(out, images_seen, step, last_good, **losses))
    run.images_seen += b
    run.step += 1
    nets.lookahead.step(run.step)
    nets.ema.update(nets.gen, run.images_seen, b)
    dt = time.perf_counter() - t0
    for key, value in {**scalars, "n_r1": do_r1, "n_steps": 1, "images": b, "seconds": dt}.items():
        run.sums[key] += float(value)
    return scalars, dt


@torch.no_grad()
def _generate(net: nn.Module, z: torch.Tensor, chunk: int) -> torch.Tensor:
    return torch.cat([net(z[i : i + chunk]) for i in range(0, z.shape[0], chunk)])


def _data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel when several processes train, else ``module`` itself."""
    if not distributed.is_distributed():
        return module
    return nn.parallel.DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


def _check_finite(out: Path, images_seen: int, step: int, last_good: int | None, **losses: torch.Tensor) -> None:
    """Stop at a non-finite loss before its backward pass (:func:`freqlab.training.monitor.check_finite`): which loss, at
    which step and images_seen, the last good state kept, what to do."""
    kept = (f"the last good state (images_seen={last_good}) is kept in {out / 'state'}"
            if last_good is not None else "nothing was saved")
    check_finite(losses, step=step, detail=lambda name, value: f"{value} at images_seen={images_seen}", kept=kept,
                 advice="lower the learning rates or raise r1_gamma and start over")


def _attrs(config: FinetuneConfig, freeze: FreezeReport, gen: Generator) -> dict:
    attrs = {
        "title": "freqlab GAN fine-tuning log (D2O / D2O-F)",
        "frozen_share": float(freeze.frozen_share),
        "n_parameters": int(freeze.n_total),
        "n_frozen_parameters": int(freeze.n_frozen),
        "freeze_pattern": freeze.pattern,
        "sigma_g": float(gen.sigma),
        "logged_network": "EMA of the generator (equal to G when ema = 0), fixed z: the z of a sweep's generate "
                          "mode with the same seed",
        "format_version": LOG_FORMAT_VERSION,
        "spectrum_normalisation": measure.NORMALISATION,
        "spectrum_window": measure.window_text(WINDOW),
        "band_statistics": measure.BAND_STATISTICS,
        "cutoff_definition": measure.CUTOFF_DEFINITION,
        "wasserstein_images": "all",
        **results.provenance_attrs(config.init),
    }
    for key, value in config.to_dict().items():
        attrs[f"config_{key}"] = "none" if value is None else (json.dumps(value) if isinstance(value, list) else
                                                               int(value) if isinstance(value, bool) else value)
    return attrs


