"""The one-step spectral sweep: spectra of one-step outputs across noise levels σ and checkpoints.

For every checkpoint and every σ on a grid, take **one** step of the denoiser and measure, per frequency, what it
produces against the data:

* ``denoise`` mode, input ``x0 + σ·n``: power of the output ``x̂0``, of the error ``x̂0 − x0`` and the
  cross-spectrum of ``x̂0`` with ``x0`` (→ transfer function and coherence), and the per-pixel MSE. The images
  ``x0`` and the noise ``n`` are the same for every checkpoint **and every σ** (per-sample seeds from
  :mod:`freqlab.rng`, so also the same for any batch size): differences between checkpoints are the models'.
* ``generate`` mode, input ``σ·z``: power of the output. At ``σ = σ_max`` this is the D2O generator before
  fine-tuning. ``z`` is the same for every checkpoint and σ.
* once: the data power, the **stationary Wiener reference** for the σ grid (the best shift-invariant linear
  denoiser), computed per Fourier mode from the data's periodic 2-D mean spectrum (see :func:`wiener_reference`),
  then binned like the measurements, and the **full-covariance linear MMSE denoiser** (the best linear denoiser)
  fitted on held-out images and run on the same noisy inputs (``linear_mse``; small images only).
* derived, through :mod:`freqlab.measure` (the code and names the fine-tuning log and the data spectra share):
  relative power in dB, the two-sided cutoff ``f_c`` (|relative power| > 3 dB) and, in denoise mode, the coherence
  cutoff (coherence with the clean image < 0.5), each with a bound flag; per-band log-spectral distance; error
  relative to the Wiener error per band; the SNR crossover ``f*(σ)``; per-image band statistics, DC excluded
  (diversity ratio, exact 1-D Wasserstein distance of log band power, kurtosis gap) against the data's.

Spectra use freqlab's window (Hann after removing each image's mean, :data:`freqlab.measure.WINDOW`) unless told
otherwise. The result is one :class:`xarray.Dataset`, saved atomically after each checkpoint when ``out`` is given;
rerunning resumes, skipping finished checkpoints (recognised by name *and* content fingerprint: a checkpoint of
the same name with other weights is measured again, :mod:`freqlab.identity`), and refuses a file written with other
settings. While it runs, the output is locked (:func:`freqlab.outputs.hold`): a second run into it refuses. Under
``torchrun`` the work is split across processes (images or whole checkpoints, see ``distribute``), the
accumulators are merged and rank 0 writes: the numbers are those of one process to float tolerance.

The loop lives here; :mod:`freqlab.sweep_inputs` resolves the checkpoints and data, :mod:`freqlab.references`
holds the Wiener and linear references, :mod:`freqlab.sweep_dataset` the xarray layer and :func:`summarize`.

Dataset layout (long names and units of every variable in :data:`VARIABLES` and in each variable's attrs)
------------------------------------------------------------------------------------------------------------
coords: ``checkpoint`` (str) with ``step``, ``images_seen`` (float, NaN unknown), ``checkpoint_path`` and
``checkpoint_fingerprint``;
``sigma``; ``mode``; ``channel``; ``freq`` (cycles/pixel) with ``freq_count``; ``band`` with ``band_lo``,
``band_hi``.

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
=====================================================  ================================================

Loop order and cost: checkpoint → batch → σ. Each batch of images and noise is drawn and Fourier-transformed once
per checkpoint and reused for every σ; per (batch, σ) the analysis is two forward FFTs of the output (windowed for
the radial spectra, plain for the band statistics), one inverse FFT per band (kurtosis of the band-pass image) and
small matmuls (binning). Nothing image-sized outlives a
batch; every statistic is a streaming sum, except the Wasserstein distance, which keeps the per-image log band
powers (``C × n_bands`` floats per σ and mode) of the first ``wasserstein_images`` images (default 1024), so
memory does not grow with the number of images.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from freqlab import distributed, measure, references, results, spectral
from freqlab.devices import autocast_context
from freqlab.measure import Analysis, ImageStats
from freqlab.outputs import holding
from freqlab.references import snr_crossover, wiener_reference  # noqa: F401 (re-exported)
from freqlab.rng import per_sample_randn
from freqlab.stats import SpectrumAccumulator
from freqlab.sweep_dataset import (
    assemble,
    checkpoint_dataset,
    data_dataset,
    keep_unchanged,
    order_checkpoints,
    split_parts,
    summarize,
)
from freqlab.sweep_inputs import Entry, check_shape, data_fingerprint, make_data, resolve_models

__all__ = ["sweep", "summarize", "default_sigmas", "check_sigmas", "wiener_reference", "snr_crossover",
           "MODES", "DEFAULT_N_SIGMAS", "VARIABLES", "FORMAT_VERSION"]

MODES = ("denoise", "generate")
DISTRIBUTE = ("auto", "images", "checkpoints")
DEFAULT_N_SIGMAS = 13
FORMAT_VERSION = 1
#: Fewest images per checkpoint: standard errors and the Wasserstein distance need a sample.
MIN_IMAGES = 2

#: name → (long name, units) of every variable a sweep writes (the shared registry); dims in the table above.
VARIABLES = measure.VARIABLES


# --------------------------------------------------------------------------------------------------------------
# σ grid
# --------------------------------------------------------------------------------------------------------------
def default_sigmas(sigma_min: float, sigma_max: float, n: int = DEFAULT_N_SIGMAS) -> np.ndarray:
    """``n`` log-spaced noise levels from ``sigma_min`` to ``sigma_max``, the last exactly ``sigma_max``."""
    if not (0 < sigma_min < sigma_max < math.inf):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf for a default σ grid, got {sigma_min}, {sigma_max}")
    if int(n) < 1:
        raise ValueError(f"the number of noise levels must be at least 1, got {n}")
    if int(n) == 1:
        return np.array([float(sigma_max)])
    grid = np.logspace(math.log10(sigma_min), math.log10(sigma_max), int(n))
    grid[0], grid[-1] = float(sigma_min), float(sigma_max)
    return grid


def check_sigmas(sigmas: Sequence[float]) -> np.ndarray:
    """The σ grid as a sorted float64 array; ValueError for an empty grid, σ ≤ 0, non-finite σ or duplicates."""
    try:
        grid = np.asarray([float(s) for s in np.atleast_1d(np.asarray(sigmas, dtype=object))], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"noise levels must be numbers, got {sigmas!r}") from err
    if grid.size == 0:
        raise ValueError("the σ grid is empty; give at least one noise level")
    bad = grid[~np.isfinite(grid) | (grid <= 0)]
    if bad.size:
        raise ValueError(f"noise levels must be positive and finite, got {float(bad[0])}")
    grid = np.sort(grid)
    if np.any(np.diff(grid) == 0):
        raise ValueError(f"noise levels must be distinct (strictly increasing once sorted), got {grid.tolist()}")
    return grid


# --------------------------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------------------------
@holding("out")
def sweep(
    models: Any,
    data: Any = "natural",
    sigmas: Sequence[float] | int | None = None,
    *,
    modes: Sequence[str] = MODES,
    n_images: int = 512,
    batch_size: int = 128,
    seed: int = 0,
    device: str | torch.device = "auto",
    bands: Mapping[str, tuple[float, float]] | Sequence[float] | None = None,
    window=measure.WINDOW,
    out: str | os.PathLike | None = None,
    resume: bool = True,
    overwrite: bool = False,
    autocast: bool = False,
    progress: bool = True,
    spectra: bool = True,
    split: str = "test",
    data_options: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    wasserstein_images: int = 1024,
    linear_reference: int | None = None,
    distribute: str = "auto",
    any_resolution: bool = False,
) -> xr.Dataset:
    """Spectra of one-step outputs of every checkpoint at every noise level.

    Parameters
    ----------
    models : run directory, checkpoint path(s), Denoiser(s), or ``{name: path or Denoiser}``
        A directory with several checkpoints sweeps all of them (:func:`freqlab.checkpoints.discover_checkpoints`,
        in training order); paths are loaded one at a time with :func:`freqlab.checkpoints.load_denoiser`.
        In-memory models are moved to ``device`` and put in eval mode for the sweep.
    data : DataSource or a source name for :func:`freqlab.data.make_source`
        A name gets the model's resolution and channels, ``split`` and ``data_options``.
    sigmas : sequence of σ, an int, or None
        The noise levels (sorted ascending). None or an int ``n``: ``n`` (default :data:`DEFAULT_N_SIGMAS`)
        log-spaced levels from the first model's ``sigma_min`` to its ``sigma_max``, ``sigma_max`` included.
    modes : subset of ``("denoise", "generate")``
    n_images, batch_size : images per (checkpoint, σ) and per forward pass. Results do not depend on batch_size.
    seed : seeds the noise (``n`` and ``z``, per image); the data source has its own seed.
    device : "auto", "cpu", "cuda", ...
    bands : frequency bands (cycles/pixel) for the band metrics, as :func:`freqlab.spectral.resolve_bands`.
    window : window of the radial spectra, each image's mean removed first (default Hann, freqlab's convention for
        every spectrum, see :mod:`freqlab.measure`; None: the plain periodic spectrum, for which the Wiener
        reference is exact; other names as :func:`freqlab.spectral.make_window`).
    out : netCDF path; written atomically after each checkpoint. None: keep in memory only.
    resume : continue an existing ``out`` written with the same settings, skipping its finished checkpoints.
    overwrite : replace an existing ``out`` (needed when the settings differ).
    autocast : bf16 autocast for the model on accelerators (ignored on CPU); spectra stay float32/float64.
    progress : tqdm bar over (checkpoint, σ) on stderr.
    spectra : False runs models and data exactly the same but skips every analysis (for timing its cost);
        nothing is saved and the result holds only coordinates.
    trust_pickle : allow loading EDM pickles (they execute code); see :func:`freqlab.checkpoints.load_denoiser`.
    wasserstein_images : the Wasserstein distance of per-image log band power uses the first
        ``min(n_images, wasserstein_images)`` images (their values are kept in memory: C × n_bands floats per image,
        σ and mode); every other statistic uses all images. This bounds memory whatever ``n_images``.
    linear_reference : images to fit the full-covariance linear MMSE denoiser on (the best linear denoiser,
        :class:`freqlab.linear_denoisers.LinearMMSEDenoiser`), measured as ``linear_mse`` on the same noisy inputs as the
        models in denoise mode. It is fitted on the images of the data source right after the ``n_images`` it
        measures (held out: fitted on the evaluated images it would overfit). None (default): ``8·C·H·W`` images
        when an image has at most 4096 values (e.g. 32×32 RGB) and the source has that many more; 0: off.
        Computed once, with the data.
    distribute : with several processes (``torchrun``, see :mod:`freqlab.distributed`): ``"images"`` splits each
        checkpoint's batches across ranks and merges their accumulators; ``"checkpoints"`` gives each rank whole
        checkpoints (rounds of one checkpoint per rank); ``"auto"`` (default) takes ``"checkpoints"`` when the
        checkpoints left divide evenly among the ranks, else ``"images"``. Either way the noise and images of every
        sample are those of a single-process run (per-sample seeds), the numbers agree with it to float
        tolerance, only rank 0 writes ``out`` and prints progress, and every rank returns the whole Dataset.
        Ignored in one process.
    any_resolution : measure checkpoints on data at a resolution other than the one they declare (their
        ``image_shape``; a UNet runs at any size its downsampling divides). Default False: a mismatch is an error.

    Returns
    -------
    xarray.Dataset with the variables of :data:`VARIABLES` (see the module docstring and README).

    Examples
    --------
    >>> ds = sweep("runs/pretrain", "natural", n_images=256, out="runs/sweep.nc")      # doctest: +SKIP
    >>> ds.cutoff_freq.sel(mode="generate").isel(sigma=-1).mean("channel")             # doctest: +SKIP
    """
    modes = tuple(dict.fromkeys(str(m) for m in ([modes] if isinstance(modes, str) else modes)))
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(f"modes must be a non-empty subset of {MODES}, got {modes}")
    n_images, batch_size = int(n_images), int(batch_size)
    if n_images < MIN_IMAGES:
        raise ValueError(f"n_images must be at least {MIN_IMAGES} (standard errors need a sample), got {n_images}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if int(wasserstein_images) < MIN_IMAGES:
        raise ValueError(f"wasserstein_images must be at least {MIN_IMAGES}, got {wasserstein_images}")
    keep = min(n_images, int(wasserstein_images))
    if sigmas is not None and not isinstance(sigmas, (int, np.integer)):
        sigmas = check_sigmas(sigmas)
    band_dict = spectral.resolve_bands(bands)
    if distribute not in DISTRIBUTE:
        raise ValueError(f"distribute must be one of {DISTRIBUTE}, got {distribute!r}")
    dev = distributed.setup(device)
    entries = resolve_models(models, device=dev, trust_pickle=trust_pickle)

    first = entries[0].get()
    if sigmas is None or isinstance(sigmas, (int, np.integer)):
        lo, hi = getattr(first, "sigma_min", None), getattr(first, "sigma_max", None)
        if lo is None or hi is None:
            raise ValueError("the model has no sigma_min/sigma_max; pass the noise levels with sigmas=[...]")
        sigmas = default_sigmas(float(lo), float(hi), DEFAULT_N_SIGMAS if sigmas is None else int(sigmas))
    model_shape = getattr(first, "image_shape", None)
    source = make_data(data, tuple(model_shape) if model_shape is not None else None, split, data_options)
    shape = tuple(int(s) for s in source.shape)
    check_shape(entries[0].name, first, shape, any_resolution)  # before any work; the others as they load
    size = getattr(source, "size", None)
    if size is not None and n_images > size:
        raise ValueError(f"data source {source.name!r} has {size} images, fewer than n_images={n_images}")

    use_autocast = bool(autocast) and dev.type != "cpu"
    n_linear = references.linear_fit_count(source, n_images, linear_reference) if "denoise" in modes else 0
    fields = dict(format_version=FORMAT_VERSION, sigmas=[float(s) for s in sigmas], data=data_fingerprint(
        source, n_images), n_images=n_images, seed=int(seed), bands={k: list(v) for k, v in band_dict.items()},
        modes=list(modes), window=window if window is None or isinstance(window, (str, tuple)) else "tensor",
        bf16_autocast=use_autocast, wasserstein_images=keep, linear_reference=n_linear)
    fingerprint = results.make_fingerprint(**fields)
    attrs = {
        "title": "freqlab one-step spectral sweep", "fingerprint": fingerprint, "format_version": FORMAT_VERSION,
        "data_source": str(source.name), "n_images": n_images, "seed": int(seed), "modes": ",".join(modes),
        "window": str(fields["window"]), "bf16_autocast": int(use_autocast), "wasserstein_images": keep,
        "image_shape": ",".join(str(s) for s in shape),
        "noise_convention": "x_sigma = x0 + sigma*n (variance exploding); generate input sigma*z; n and z per image "
                            "from (seed, stream, index), the same for every checkpoint and sigma",
        "spectrum_normalisation": measure.NORMALISATION,
        "spectrum_window": measure.window_text(window),
        "band_statistics": measure.BAND_STATISTICS,
        "wiener_reference": "stationary (shift-invariant) Wiener filter, per Fourier mode from the data's periodic "
                            "(unwindowed) 2-D mean spectrum about its mean image, then binned; wiener_mse exact",
        "cutoff_definition": measure.CUTOFF_DEFINITION,
        "bands": results.make_fingerprint(**{k: list(v) for k, v in band_dict.items()}),
        "linear_reference": "none" if not n_linear else (
            f"full-covariance linear MMSE denoiser fitted on images {n_images} to {n_images + n_linear - 1} of the "
            f"data source (held out: the sweep measures images 0 to {n_images - 1})"),
    }
    if isinstance(getattr(source, "attrs", None), Mapping):
        attrs.update({f"data_{k}": v for k, v in source.attrs.items() if isinstance(v, (str, int, float))})
    attrs.update(results.provenance_attrs(*[e.path for e in entries if e.path]))

    existing = results.open_for_resume(out, fingerprint, resume=resume, overwrite=overwrite) if spectra else None
    if existing is not None:  # a resumed file keeps its creation date and history
        attrs.update({k: existing.attrs[k] for k in ("date_created", "history") if k in existing.attrs})
    distributed.barrier()  # every rank has read the file before rank 0 may replace it
    shared, parts = split_parts(existing) if existing is not None else (None, [])
    parts = keep_unchanged(parts, entries, out)
    done = {str(p.checkpoint.values[0]) for p in parts}
    todo = [e for e in entries if e.name not in done]
    if not todo:
        return order_checkpoints(assemble(shared, parts, attrs), entries)

    world, rank = distributed.world_size(), distributed.rank()
    by_checkpoint = world > 1 and (distribute == "checkpoints" or (distribute == "auto" and len(todo) % world == 0))
    rounds = [todo[i: i + world] for i in range(0, len(todo), world)] if by_checkpoint else [[e] for e in todo]
    batches = [range(i, min(i + batch_size, n_images)) for i in range(0, n_images, batch_size)]
    mine = batches if by_checkpoint else distributed.shard(batches)
    an = Analysis(shape, band_dict, window, dev) if spectra else None
    linear_model = references.linear_reference(source, n_images, n_linear, dev) if spectra else None
    linear = None
    bar = _progress(len(rounds) * len(sigmas), progress and distributed.is_main())
    data_stats: ImageStats | None = None
    try:
        for group in rounds:
            if by_checkpoint:  # one checkpoint per rank; in the last round some ranks may have none
                entry = group[rank] if rank < len(group) else None
            else:
                entry = group[0]
            stats, error = None, None
            if entry is not None:
                bar.set_postfix_str(entry.name, refresh=False)
                try:
                    entry.fingerprint  # noqa: B018 - taken before the measurement: what is about to be measured
                    model = first if entry is entries[0] else entry.get()
                    first = None  # a loaded checkpoint is dropped once swept: one model in memory at a time
                    stats = _sweep_checkpoint(entry, model, source, mine, sigmas, modes, shape, int(seed), dev,
                                              use_autocast, an, keep, need_data=data_stats is None, bar=bar,
                                              linear=linear_model, any_resolution=any_resolution)
                    del model
                except Exception as err:  # noqa: BLE001 - re-raised below, on every rank
                    error = err
            _raise_on_every_rank(error)
            if not spectra:
                continue
            local = None
            if stats is not None:
                outs, new_data = stats if by_checkpoint else _merge_ranks(*stats)
                if new_data is not None:
                    data_stats, linear = new_data
                    shared = data_dataset(data_stats, an, sigmas, linear)
                local = checkpoint_dataset(entry, outs, modes, an, sigmas, data_stats, shared)
                del outs, stats
            if by_checkpoint:  # each rank swept its own checkpoint: everyone gets all of this round's results
                gathered = distributed.all_gather_objects((local, shared if rank == 0 else None))
                parts.extend(part for part, _ in gathered if part is not None)
                shared = shared if shared is not None else gathered[0][1]
            else:
                parts.append(local)
            if out is not None and distributed.is_main():
                results.save(order_checkpoints(assemble(shared, parts, attrs), entries), out)
    finally:
        bar.close()
    distributed.barrier()  # the file is complete when sweep returns on any rank
    if not spectra:
        return xr.Dataset(coords={"checkpoint": [e.name for e in entries], "sigma": np.asarray(sigmas),
                                  "mode": list(modes)}, attrs=attrs)
    return order_checkpoints(assemble(shared, parts, attrs), entries)


def _raise_on_every_rank(error: BaseException | None) -> None:
    """Raise ``error``; with several processes, raise on every rank if any rank failed (no rank waits forever)."""
    if not distributed.is_distributed():
        if error is not None:
            raise error
        return
    messages = distributed.all_gather_objects(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if failed:
        r, m = failed[0]
        raise ValueError(f"rank {r} failed: {m}")


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


def _forward(entry: Entry, model, x: torch.Tensor, sigma: float, dev, use_autocast: bool) -> torch.Tensor:
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


def _sweep_checkpoint(entry, model, source, batches, sigmas, modes, shape, seed, dev, use_autocast,
                      an: Analysis | None, keep, *, need_data: bool, bar, linear=None, any_resolution=False):
    """One pass over the images for one checkpoint, every σ and mode.

    Returns ``({(σ index, mode): stats}, data)`` where ``data`` (with ``need_data``) is ``(data stats, linear)``
    and ``linear`` the per-σ MSE accumulators of the linear reference (or None).
    """
    check_shape(entry.name, model, shape, any_resolution)
    was_training = getattr(model, "training", False)
    if hasattr(model, "to"):
        model.to(dev)
    if hasattr(model, "eval"):
        model.eval()
    outs = {(s, m): ImageStats(an, keep, paired=m == "denoise") for s in range(len(sigmas)) for m in modes
            } if an is not None else {}
    data = ImageStats(an, keep, modes=True) if (need_data and an is not None) else None
    linear_mse = [SpectrumAccumulator(device="cpu") for _ in sigmas] if data is not None and linear is not None \
        else None
    step = 1.0 / max(len(batches), 1)  # a rank may have no batch when there are more ranks than batches
    try:
        with torch.inference_mode():
            # probe every σ on one image first: a σ the model refuses fails now, before the pass
            probe = source.images([0]).to(dev).expand(len(sigmas), *shape)
            s = torch.as_tensor(np.asarray(sigmas), dtype=torch.float32, device=dev)
            try:
                with autocast_context(dev, use_autocast):
                    model(probe, s)
            except ValueError as err:
                lo, hi = getattr(model, "sigma_min", None), getattr(model, "sigma_max", None)
                known = lo is not None and hi is not None and f"{lo:.6g}, {hi:.6g}" not in str(err)
                hint = f" (this model's σ range is [{lo:g}, {hi:g}])" if known else ""
                raise ValueError(f"checkpoint {entry.name!r}: {err}{hint}") from err
            for idx in batches:
                rows = slice(idx.start, idx.stop)
                x0 = source.images(list(idx)).to(dev)
                noise = per_sample_randn(seed, "sweep/denoise", idx, shape, device=dev) if "denoise" in modes else None
                z = per_sample_randn(seed, measure.GENERATE_STREAM, idx, shape, device=dev) if "generate" in modes else None
                f0 = None
                if an is not None:
                    f0 = data.update(an, x0, rows, what="data images") if data is not None else an.fft(x0)
                if linear_mse is not None:  # the reference sees exactly the models' noisy inputs
                    for si, sigma in enumerate(sigmas):
                        err = linear(x0 + sigma * noise, torch.full((x0.shape[0],), float(sigma), device=dev)) - x0
                        linear_mse[si].update(err.double().square().mean((-2, -1)))
                for si, sigma in enumerate(sigmas):
                    for m in modes:
                        x_in = x0 + sigma * noise if m == "denoise" else sigma * z
                        y = _forward(entry, model, x_in, sigma, dev, use_autocast)
                        if an is not None:
                            outs[(si, m)].update(an, y, rows, clean=(x0, f0) if m == "denoise" else None,
                                                 what=f"checkpoint {entry.name!r} at σ={sigma:g} ({m} mode): outputs")
                    bar.update(step)
    finally:
        if hasattr(model, "train"):
            model.train(was_training)
    return None if an is None else (outs, None if data is None else (data, linear_mse))
