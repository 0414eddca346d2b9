"""The one-step spectral sweep: spectra of one-step outputs across noise levels σ and checkpoints.

For every checkpoint and every σ on a grid, take **one** step of the denoiser and measure, per frequency, what it
produces against the data:

* ``denoise`` mode, input ``x0 + σ·n``: power of the output ``x̂0``, of the error ``x̂0 − x0`` and the
  cross-spectrum of ``x̂0`` with ``x0`` (→ transfer function and coherence), and the per-pixel MSE. The images
  ``x0`` and the noise ``n`` are the same for every checkpoint **and every σ** (per-sample seeds from
  :mod:`freqlab.runtime.rng`, so also the same for any batch size): differences between checkpoints are the models'.
* ``generate`` mode, input ``σ·z``: power of the output. At ``σ = σ_max`` this is the D2O generator before
  fine-tuning. ``z`` is the same for every checkpoint and σ.
* ``sample`` mode (opt-in: ``2N − 1`` model calls per image with Heun), the **multi-step reference**: EDM's
  deterministic sampler (:mod:`freqlab.models.sampler`, N = ``sample_steps`` steps) from the generate mode's
  ``σ_max·z``, so a checkpoint's N-step sample and its one-step output pair image by image; measured like every
  output, at σ_max only, into variables of its own (``sample_<name>``, no ``sigma`` or ``mode`` dim), plus the band
  power of the sampler's estimate ``x̂0`` before each step (``sample_trajectory_*``, :mod:`freqlab.sweep.sample_mode`).
* once: the data power, the **stationary Wiener reference** for the σ grid (the best shift-invariant linear
  denoiser), computed per Fourier mode from the data's periodic 2-D mean spectrum (see :func:`wiener_reference`),
  then binned like the measurements, and the **full-covariance linear MMSE denoiser** (the best linear denoiser)
  fitted on held-out images and run on the same noisy inputs (``linear_mse``; small images only).
* derived, through :mod:`freqlab.measure.core` (the code and names the fine-tuning log and the data spectra share):
  relative power in dB, the two-sided cutoff ``f_c`` (|relative power| > 3 dB) and, in denoise mode, the coherence
  cutoff (coherence with the clean image < 0.5), each with a bound flag; per-band log-spectral distance; error
  relative to the Wiener error per band; the SNR crossover ``f*(σ)``; per-image band statistics, DC excluded
  (diversity ratio, exact 1-D Wasserstein distance of log band power, kurtosis gap) against the data's.

Spectra use freqlab's window (Hann after removing each image's mean, :data:`freqlab.measure.core.WINDOW`) unless told
otherwise. The result is one :class:`xarray.Dataset`, saved atomically after each checkpoint when ``out`` is given;
rerunning resumes, skipping finished checkpoints (recognised by name *and* the content of the weights as loaded:
a checkpoint of the same name with other weights is measured again, :mod:`freqlab.checkpoints.identity`), and refuses
a file written with other settings or other images (every measured image is digested before any work and checked
again as it is read, the references' images as the fit reads them: :mod:`freqlab.data.digest`). While it runs, the output is locked (:func:`freqlab.runtime.outputs.hold`): a second run into it refuses. Under
``torchrun`` the work is split across processes (images or whole checkpoints, see ``distribute``), the
accumulators are merged and rank 0 writes: the numbers are those of one process to float tolerance.

The run lives here and one checkpoint's pass over the images in :mod:`freqlab.sweep.checkpoint_pass`;
:mod:`freqlab.sweep.inputs` resolves the checkpoints and data, :mod:`freqlab.measure.references` holds the Wiener and linear
references, :mod:`freqlab.sweep.dataset` the xarray layer and :func:`summarize`.

Dataset layout (long names and units of every variable in :data:`VARIABLES` and in each variable's attrs)
------------------------------------------------------------------------------------------------------------
coords: ``checkpoint`` (str) with ``step``, ``images_seen`` (float, NaN unknown), ``checkpoint_path`` and
``checkpoint_fingerprint``;
``sigma``; ``mode`` (the one-step modes swept); ``sampler_step`` with ``sampler_sigma`` (sample mode); ``channel``; ``freq`` (cycles/pixel)
with ``freq_count``; ``band`` with ``band_lo``, ``band_hi``.

=====================================================  ================================================
dims                                                   variables
=====================================================  ================================================
(channel, freq)                                        data_power, data_power_sem
(channel, band)                                        data_band_log_power, data_band_log_power_std,
                                                       data_band_kurtosis, data_band_kurtosis_sem
(sigma, channel)                                       snr_crossover, wiener_mse, wiener_coherence_cutoff(_bound),
                                                       linear_mse (when fitted)
(sigma, channel, freq)                                 wiener_output_power, wiener_error_power,
                                                       wiener_transfer, wiener_coherence
(checkpoint, sigma, mode, channel, freq)               output_power, output_power_sem, relative_power_db
(checkpoint, sigma, mode, channel)                     cutoff_freq, cutoff_freq_bound
(checkpoint, sigma, mode, channel, band)               lsd, band_log_power, band_log_power_std,
                                                       band_kurtosis, band_kurtosis_sem, diversity_ratio,
                                                       band_power_wasserstein, kurtosis_gap
(checkpoint, sigma, channel, freq)  [denoise only]     error_power, error_power_sem, cross_power,
                                                       cross_power_sem, transfer, coherence
(checkpoint, sigma, channel)        [denoise only]     coherence_cutoff, coherence_cutoff_bound, mse, mse_sem
(checkpoint, sigma, channel, band)  [denoise only]     error_wiener_ratio
(checkpoint, channel, freq)  [sample]                  sample_output_power, sample_output_power_sem,
                                                       sample_relative_power_db (the N-step sample at σ_max)
(checkpoint, channel)  [sample]                        sample_cutoff_freq, sample_cutoff_freq_bound
(checkpoint, channel, band)  [sample]                  sample_lsd, sample_band_log_power, ... (every variable of
                                                       the (checkpoint, sigma, mode, ...) rows, prefixed)
(checkpoint, sampler_step, channel, freq)  [sample]    sample_trajectory_power
(checkpoint, sampler_step, channel, band)  [sample]    sample_trajectory_db, sample_trajectory_lsd
=====================================================  ================================================

Loop order and cost: checkpoint → batch → σ (then the sample mode's sampler on the batch's images, 2N − 1 model
calls, analysed once per step: 0.3 % of its time, ``benchmarks/bench_sample_mode.py``). Each batch of images and
noise is drawn and Fourier-transformed once per checkpoint and reused for every σ; per (batch, σ) the analysis is
two forward FFTs of the output (windowed for the radial spectra, plain for the band statistics), one inverse FFT per
band (kurtosis of the band-pass image) and small matmuls (binning). Nothing image-sized outlives a batch; every
statistic is a streaming sum, except the Wasserstein distance, which keeps the per-image log band powers (``C ×
n_bands`` floats per σ and mode) of the first ``wasserstein_images`` images (default 1024), so memory does not grow
with the number of images.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from freqlab import spectral
from freqlab.measure import core as measure
from freqlab.measure import references
from freqlab.measure.core import Analysis, ImageStats
from freqlab.measure.sigmas import check_sigmas, model_sigmas
from freqlab.models import sampler as sampler_module
from freqlab.runtime import distributed, results
from freqlab.runtime.outputs import holding
from freqlab.runtime.settings import configure
from freqlab.sweep import sample_mode
from freqlab.sweep.checkpoint_pass import SweepJob, sweep_checkpoint, units
from freqlab.sweep.config import SweepConfig
from freqlab.sweep.dataset import (
    assemble,
    checkpoint_dataset,
    data_dataset,
    keep_unchanged,
    order_checkpoints,
    split_parts,
)
from freqlab.data.digest import DigestAsRead, digest_images
from freqlab.sweep.inputs import Entry, check_shape, data_fingerprint, make_data, resolve_models

__all__ = ["sweep", "VARIABLES", "FORMAT_VERSION",]

FORMAT_VERSION = 2  # 2: content digests of every measured image and of the weights as loaded
REFERENCE_BATCH = 256  # images per batch of the references' fit (and of their digest)
REFERENCE_DIGEST_ATTR = "references_images_digest"  # the digest of the images the references were fitted on

#: name → (long name, units) of every variable a sweep writes (the shared registry); dims in the table above.
VARIABLES = measure.VARIABLES


# --------------------------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------------------------
@holding("out")
def sweep(
    models: Any,
    data: Any = "natural",
    sigmas: Sequence[float] | int | None = None,
    *,
    config: SweepConfig | None = None,
    device: str | torch.device = "auto",
    out: str | os.PathLike | None = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    trust_pickle: bool = False,
    spectra: bool = True,
    **settings,
) -> xr.Dataset:
    """Spectra of one-step outputs of every checkpoint at every noise level.

    Parameters
    ----------
    models : run directory, checkpoint path(s), Denoiser(s), or ``{name: path or Denoiser}``
        A directory with several checkpoints sweeps all of them (:func:`freqlab.checkpoints.store.discover_checkpoints`,
        in training order); paths are loaded one at a time with :func:`freqlab.checkpoints.store.load_denoiser`.
        In-memory models are moved to ``device`` and put in eval mode for the sweep. The names of a mapping are the
        checkpoints' names in the Dataset and in the figures' legends.
    data : DataSource or a source name for :func:`freqlab.data.sources.make_source`
        A name gets the model's resolution and channels, and the config's ``split`` and ``data_options``.
    sigmas : sequence of σ, an int, or None
        The noise levels (sorted ascending). None or an int ``n``: ``n`` (default :data:`DEFAULT_N_SIGMAS`)
        log-spaced levels from the first model's ``sigma_min`` to its ``sigma_max``, ``sigma_max`` included.
    config : :class:`freqlab.sweep.config.SweepConfig`, what determines the numbers (modes, images, seed, window,
        bands, references, sampler; each field documented there). ``**settings`` set single fields of it
        (``sweep(run, n_images=64)``); an unknown name is a ValueError that lists the settings.
    device : "auto" (CUDA when there is one, else the CPU), "cpu", "cuda", ...
    out : netCDF path; written atomically after each checkpoint. None: keep in memory only.
    resume : continue an existing ``out`` written with the same settings, skipping its finished checkpoints.
    overwrite : replace an existing ``out`` (needed when the settings differ).
    progress : tqdm bar over (checkpoint, σ) on stderr.
    trust_pickle : allow loading EDM pickles (they execute code); see :func:`freqlab.checkpoints.store.load_denoiser`.
    spectra : False runs models and data exactly the same but skips every analysis (for timing its cost);
        nothing is saved and the result holds only coordinates.

    Under ``torchrun`` (``distribute`` in the config): ``"images"`` splits each checkpoint's batches across ranks
    and merges their accumulators; ``"checkpoints"`` gives each rank whole checkpoints; ``"auto"`` takes
    ``"checkpoints"`` when the checkpoints left divide evenly among the ranks. Either way the noise and images of
    every sample are those of a single-process run (per-sample seeds), the numbers agree with it to float
    tolerance, only rank 0 writes ``out`` and prints progress, and every rank returns the whole Dataset.

    Returns
    -------
    xarray.Dataset with the variables of :data:`VARIABLES` (see the module docstring and README).

    Examples
    --------
    >>> ds = sweep("runs/pretrain", "natural", n_images=256, out="runs/sweep.nc")      # doctest: +SKIP
    >>> ds.cutoff_freq.sel(mode="generate").isel(sigma=-1).mean("channel")             # doctest: +SKIP
    """
    cfg = configure(SweepConfig, config, settings, what="sweep")
    if sigmas is not None and not isinstance(sigmas, (int, np.integer)):
        sigmas = check_sigmas(sigmas)
    dev = distributed.setup(device)
    entries = resolve_models(models, device=dev, trust_pickle=trust_pickle)
    first = entries[0].get()
    entries[0].take_fingerprint(first)
    job = _prepare(cfg, entries[0].name, first, data, sigmas, dev, spectra)
    fingerprint, attrs = _describe(job, entries)
    existing = results.open_for_resume(out, fingerprint, resume=resume, overwrite=overwrite) if spectra else None
    if existing is not None:  # a resumed file keeps its creation date and history
        attrs.update({k: existing.attrs[k] for k in ("date_created", "history") if k in existing.attrs})
    distributed.barrier()  # every rank has read the file before rank 0 may replace it
    shared, parts = split_parts(existing) if existing is not None else (None, [])
    parts = keep_unchanged(parts, entries, out)
    done = {str(p.checkpoint.values[0]) for p in parts}
    todo = [e for e in entries if e.name not in done]
    if todo:
        stored = None if existing is None else existing.attrs.get(REFERENCE_DIGEST_ATTR)
        shared = _measure(job, entries, todo, {entries[0].name: first}, shared, parts, attrs, out, progress, stored)
        distributed.barrier()  # the file is complete when sweep returns on any rank
    del first
    if not spectra:
        return xr.Dataset(coords={"checkpoint": [e.name for e in entries], "sigma": np.asarray(job.sigmas),
                                  "mode": list(cfg.modes)}, attrs=attrs)
    return order_checkpoints(assemble(shared, parts, attrs), entries)


def _prepare(cfg: SweepConfig, name: str, first, data, sigmas, dev, spectra: bool) -> SweepJob:
    """The σ grid (the first model's range by default), the data source at the model's shape, the analysis."""
    sigmas = model_sigmas(first, sigmas)
    band_dict = spectral.resolve_bands(cfg.bands)
    model_shape = getattr(first, "image_shape", None)
    source = make_data(data, tuple(model_shape) if model_shape is not None else None, cfg.split, cfg.data_options)
    shape = tuple(int(s) for s in source.shape)
    check_shape(name, first, shape, cfg.any_resolution)  # before any work; the others as they load
    size = getattr(source, "size", None)
    if size is not None and cfg.n_images > size:
        raise ValueError(f"data source {source.name!r} has {size} images, fewer than n_images={cfg.n_images}")
    reference, start = _reference_source(cfg, data, source, shape)
    n_linear = references.linear_fit_count(reference, start, cfg.linear_reference) if "denoise" in cfg.modes else 0
    n_reference = n_linear or _spectrum_count(reference, start, cfg.n_images)
    steps = sample_mode.sampler_sigmas(cfg.sample_steps, float(sigmas[-1]), first) if "sample" in cfg.modes \
        else None
    return SweepJob(cfg, dev, source, shape, np.asarray(sigmas), bool(cfg.autocast) and dev.type != "cpu",
                    Analysis(shape, band_dict, cfg.window, dev) if spectra else None, n_linear, steps,
                    reference=reference, reference_start=start, n_reference=n_reference,
                    digest=digest_images(source, 0, cfg.n_images, cfg.batch_size))


def _reference_source(cfg: SweepConfig, data, source, shape) -> tuple:
    """Where the references are fitted: the ``reference_split`` of a source given by name (from its first image),
    else held-out images of the measured source (from image ``n_images`` on)."""
    if cfg.reference_split is None or not isinstance(data, str) or cfg.reference_split == cfg.split:
        return source, cfg.n_images
    return make_data(data, shape, cfg.reference_split, cfg.data_options), 0


def _spectrum_count(reference, start: int, n_images: int) -> int:
    """Images of the Wiener spectrum when no linear reference is fitted: max(n_images, 1024), as the source has."""
    size = getattr(reference, "size", None)
    want = max(n_images, 1024)
    return want if size is None else max(0, min(want, size - start))


def _describe(job: SweepJob, entries: list[Entry]) -> tuple[str, dict]:
    """The settings fingerprint (a resumed file must match it) and the file's attributes."""
    cfg, source, n_linear = job.cfg, job.source, job.n_linear
    window = cfg.window if cfg.window is None or isinstance(cfg.window, (str, tuple)) else "tensor"
    band_dict = spectral.resolve_bands(cfg.bands)
    fields = dict(format_version=FORMAT_VERSION, sigmas=[float(s) for s in job.sigmas], data=data_fingerprint(
        source), n_images=cfg.n_images, seed=int(cfg.seed), bands={k: list(v) for k, v in
        band_dict.items()}, modes=list(cfg.modes), window=window, bf16_autocast=job.use_autocast,
        wasserstein_images=cfg.keep, linear_reference=n_linear, measured_images_digest=job.digest.total,
        references=dict(source=data_fingerprint(job.reference), start=job.reference_start, n=job.n_reference))
    if job.sample_sigmas is not None:  # only then: files without the sample mode keep their fingerprint
        fields.update(sampler=cfg.sampler, sampler_sigmas=[float(t) for t in job.sample_sigmas],
                      sample_images=cfg.n_sample)
    attrs = {
        "title": "freqlab one-step spectral sweep", "fingerprint": results.make_fingerprint(**fields),
        "format_version": FORMAT_VERSION, "data_source": str(source.name), "n_images": cfg.n_images,
        "seed": int(cfg.seed), "modes": ",".join(cfg.modes), "window": str(window),
        "bf16_autocast": int(job.use_autocast), "wasserstein_images": cfg.keep,
        "image_shape": ",".join(str(s) for s in job.shape),
        "noise_convention": "x_sigma = x0 + sigma*n (variance exploding); generate input sigma*z; n and z per image "
                            "from (seed, stream, index), the same for every checkpoint and sigma",
        "spectrum_normalisation": measure.NORMALISATION,
        "spectrum_window": measure.window_text(cfg.window),
        "band_statistics": measure.BAND_STATISTICS,
        "wiener_reference": "stationary (shift-invariant) Wiener filter, per Fourier mode from the periodic "
                            f"(unwindowed) 2-D mean spectrum, about the mean, of {_fitted_on(job, job.n_reference)}; "
                            "its expected output, error and cross powers in the measurements' convention (with a "
                            "window: DC zeroed, convolved with the window's |W|^2 over the plane), then binned; "
                            "wiener_mse exact",
        "cutoff_definition": measure.CUTOFF_DEFINITION,
        "bands": results.make_fingerprint(**{k: list(v) for k, v in band_dict.items()}),
        "linear_reference": "none" if not n_linear else (
            f"full-covariance linear MMSE denoiser fitted on {_fitted_on(job, n_linear)}"),
        "references_fitted_on": _fitted_on(job, job.n_reference, why=False),
        "references_split": cfg.reference_split if job.reference is not source else (
            "held-out" if job.n_reference else "measured"),
    }
    if job.sample_sigmas is not None:
        calls = sampler_module.model_calls(cfg.sample_steps, cfg.sampler)
        attrs["sample_mode"] = (
            f"EDM's deterministic {cfg.sampler} sampler, {cfg.sample_steps} steps ({calls} model calls) from "
            f"sigma_max*z (the generate mode's z) to 0 over EDM's time discretisation (rho = 7), on the first "
            f"{cfg.n_sample} images; measured at the grid's largest sigma only (the other sigma of mode 'sample' "
            "are NaN, their bound flags 0)")
        attrs["sample_images"] = cfg.n_sample
    if isinstance(getattr(source, "attrs", None), Mapping):
        attrs.update({f"data_{k}": v for k, v in source.attrs.items() if isinstance(v, (str, int, float))})
    attrs.update(results.provenance_attrs(*[e.path for e in entries if e.path]))
    return attrs["fingerprint"], attrs


def _fitted_on(job: SweepJob, n: int, why: bool = True) -> str:
    """Which images a reference is fitted on, in words (``why``: and how they relate to the measured ones)."""
    first, last = job.reference_start, job.reference_start + n - 1
    if n == 0:
        return f"the measured images 0 to {job.cfg.n_images - 1}" + (" (the source holds no others)" if why else "")
    if job.reference is job.source:
        return f"images {first} to {last} of the measured source" + (
            f" (held out: the sweep measures images 0 to {job.cfg.n_images - 1})" if why else "")
    return f"images {first} to {last} of the {job.cfg.reference_split} split" + (
        f" (what a model learned from; the sweep measures the {job.cfg.split} split)" if why else "")


def _measure(job: SweepJob, entries: list[Entry], todo: list[Entry], loaded: dict, shared, parts: list, attrs: dict,
             out, progress: bool, stored_reference_digest: str | None = None):
    """Measure the checkpoints ``todo`` (one at a time, or one per rank), appending their parts to ``parts`` and
    saving the file after each round; returns the shared (data and reference) part. The references are fitted
    first; ``stored_reference_digest`` (a resumed file's) must be the digest of the images they are fitted on."""
    world, rank = distributed.world_size(), distributed.rank()
    by_checkpoint = world > 1 and (job.cfg.distribute == "checkpoints" or (
        job.cfg.distribute == "auto" and len(todo) % world == 0))
    rounds = [todo[i: i + world] for i in range(0, len(todo), world)] if by_checkpoint else [[e] for e in todo]
    n, size = job.cfg.n_images, job.cfg.batch_size
    batches = [range(i, min(i + size, n)) for i in range(0, n, size)]
    mine = batches if by_checkpoint else distributed.shard(batches)
    if job.an is not None:
        read = DigestAsRead(job.reference_start, REFERENCE_BATCH)
        job.linear, job.spectrum = references.fit_references(job.reference, job.reference_start, job.n_reference,
                                                             job.n_linear, job.dev, REFERENCE_BATCH, check=read.add)
        attrs[REFERENCE_DIGEST_ATTR] = read.digest().total
        if stored_reference_digest is not None and stored_reference_digest != attrs[REFERENCE_DIGEST_ATTR]:
            raise results.SettingsDiffer(
                f"results file {out} was written with references fitted on other images ({REFERENCE_DIGEST_ATTR}: "
                f"file {stored_reference_digest} vs this run {attrs[REFERENCE_DIGEST_ATTR]}); refusing to mix "
                "them: pass overwrite=True (--overwrite) to replace it, or choose another output path")
    bar = _progress(len(rounds) * units(job), progress and distributed.is_main())
    data_stats: ImageStats | None = None
    try:
        for group in rounds:
            # one checkpoint per rank; in the last round some ranks may have none
            entry = (group[rank] if rank < len(group) else None) if by_checkpoint else group[0]
            stats = _measure_entry(job, entry, loaded, mine, data_stats is None, bar)
            if job.an is None:
                continue
            shared, data_stats = _collect(job, entry, stats, by_checkpoint, shared, data_stats, parts)
            if out is not None and distributed.is_main():
                results.save(order_checkpoints(assemble(shared, parts, attrs), entries), out)
    finally:
        bar.close()
    return shared


def _measure_entry(job: SweepJob, entry: Entry | None, loaded: dict, batches, need_data: bool, bar):
    """One checkpoint's accumulators (None for a rank without a checkpoint this round); an error on any rank is
    raised on every rank."""
    stats, error = None, None
    if entry is not None:
        bar.set_postfix_str(entry.name, refresh=False)
        try:
            model = loaded.pop(entry.name) if entry.name in loaded else entry.get()
            entry.take_fingerprint(model)  # of the weights measured, whatever the files hold by now
            loaded.clear()  # a loaded checkpoint is dropped once swept: one model in memory at a time
            stats = sweep_checkpoint(entry, model, job, batches, need_data=need_data, bar=bar)
            del model
        except Exception as err:  # noqa: BLE001 - re-raised below, on every rank
            error = err
    distributed.raise_on_every_rank(error)
    return stats


def _collect(job: SweepJob, entry, stats, by_checkpoint: bool, shared, data_stats, parts: list):
    """Turn one round's accumulators into Dataset parts (every rank gets all of them); returns the shared part
    and the data's accumulators."""
    local = None
    if stats is not None:
        outs, new_data = stats if by_checkpoint else _merge_ranks(*stats)
        if new_data is not None:
            data_stats, linear = new_data
            shared = data_dataset(data_stats, job.an, job.sigmas, linear, job.spectrum)
        local = checkpoint_dataset(entry, outs, job.cfg.modes, job.an, job.sigmas, data_stats, shared,
                                   sample_sigmas=job.sample_sigmas, sampler=job.cfg.sampler)
        del outs, stats
    if by_checkpoint:  # each rank swept its own checkpoint: everyone gets all of this round's results
        gathered = distributed.all_gather_objects((local, shared if distributed.rank() == 0 else None))
        parts.extend(part for part, _ in gathered if part is not None)
        shared = shared if shared is not None else gathered[0][1]
    else:
        parts.append(local)
    return shared, data_stats


def _merge_ranks(outs: dict, data: tuple | None) -> tuple[dict, tuple | None]:
    """Every rank's accumulators of one checkpoint merged in rank order (the same sums on every rank)."""
    if not distributed.is_distributed():
        return outs, data
    everyone = distributed.all_gather_objects((outs, data))
    merged_outs, merged_data = everyone[0]
    for other_outs, other_data in everyone[1:]:
        for key, st in merged_outs.items():
            st.merge(other_outs[key])
        if merged_data is not None:
            merged_data[0].merge(other_data[0])
            for mine, theirs in zip(merged_data[1] or [], other_data[1] or []):
                mine.merge(theirs)
    return merged_outs, merged_data


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, file=sys.stderr, desc="sweep", unit="σ", dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} (checkpoint, σ) "
                           "[{elapsed}<{remaining}{postfix}]")


