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

import hashlib
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from freqlab import distributed, identity, measure, results, spectral
from freqlab.devices import autocast_context
from freqlab.outputs import holding
from freqlab.rng import per_sample_randn
from freqlab.measure import Analysis, ImageStats
from freqlab.stats import SpectrumAccumulator

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
# models and data
# --------------------------------------------------------------------------------------------------------------
@dataclass
class _Entry:
    """One checkpoint to sweep: loaded on demand, so a resumed sweep never loads finished ones."""

    name: str
    load: Callable[[], torch.nn.Module]
    step: int = -1
    images_seen: int = -1
    path: str = ""
    model: torch.nn.Module | None = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)

    def get(self) -> torch.nn.Module:
        return self.model if self.model is not None else self.load()

    @property
    def fingerprint(self) -> str:
        """What is measured (:mod:`freqlab.identity`): the files of a checkpoint on disk, the weights in memory."""
        if self._fingerprint is None:
            self._fingerprint = (identity.module_fingerprint(self.model) if self.model is not None
                                 else identity.path_fingerprint(self.path))
        return self._fingerprint


def _metadata_int(meta: Mapping | None, key: str) -> int:
    try:
        return int((meta or {}).get(key, -1))
    except (TypeError, ValueError):
        return -1


def _from_module(name: str, module: torch.nn.Module) -> _Entry:
    meta = getattr(module, "metadata", None)
    return _Entry(name, lambda: module, _metadata_int(meta, "step"), _metadata_int(meta, "images_seen"), "", module)


def _from_path(path: Path, device: torch.device, trust_pickle: bool) -> list[_Entry]:
    """A checkpoint (file or directory) or a run directory of checkpoints, as entries in training order."""
    from freqlab.locate import resolve_checkpoint

    path = resolve_checkpoint(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint or run directory {path} does not exist")
    if path.is_dir() and not any(path.iterdir()):
        raise FileNotFoundError(f"no checkpoints found in {path}: the directory is empty")
    from freqlab import checkpoints

    def loader(p: Path) -> Callable[[], torch.nn.Module]:
        return lambda: checkpoints.load_denoiser(p, device=device, trust_pickle=trust_pickle)

    try:
        checkpoints.detect_format(path)
        single = True
    except ValueError:
        single = False
    if path.is_dir() and not single:  # a run directory (raises a clear ValueError when it holds no checkpoint)
        return [_Entry(str(i.name), loader(Path(i.path)), -1 if i.step is None else int(i.step),
                       -1 if i.images_seen is None else int(i.images_seen), str(Path(i.path).resolve()))
                for i in checkpoints.discover_checkpoints(path)]
    if not single:
        checkpoints.detect_format(path)  # the loader's own message: which formats it expected
    meta = checkpoints.load_checkpoint_metadata(path)
    return [_Entry(path.name, loader(path), _metadata_int(meta, "step"), _metadata_int(meta, "images_seen"),
                   str(path.resolve()))]


def resolve_models(models: Any, *, device: torch.device, trust_pickle: bool = False) -> list[_Entry]:
    """Checkpoints to sweep, in order, from a run directory, paths, Denoisers or a ``{name: model}`` mapping."""
    if isinstance(models, (str, os.PathLike, torch.nn.Module)):
        items: list[tuple[str | None, Any]] = [(None, models)]
    elif isinstance(models, Mapping):
        items = [(str(k), v) for k, v in models.items()]
    else:
        try:
            items = [(None, m) for m in models]
        except TypeError:
            raise ValueError(f"models must be a run directory, paths, Denoisers or a mapping, got "
                             f"{type(models).__name__}") from None
    entries: list[_Entry] = []
    for i, (name, item) in enumerate(items):
        if isinstance(item, torch.nn.Module):
            entries.append(_from_module(name or getattr(item, "name", None) or f"model{i}", item))
        elif isinstance(item, (str, os.PathLike)):
            found = _from_path(Path(item).expanduser(), device, trust_pickle)
            if name is not None and len(found) == 1:
                found[0].name = name
            entries.extend(found)
        else:
            raise ValueError(f"cannot sweep a {type(item).__name__}; give checkpoint paths or Denoiser objects")
    if not entries:
        raise ValueError("no models to sweep: give a run directory, checkpoint paths or Denoiser objects")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):  # same checkpoint names from two runs: qualify with the parent directory
        for e in entries:
            if names.count(e.name) > 1 and e.path:
                e.name = f"{Path(e.path).parent.name}/{e.name}"
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"checkpoint names must be unique, got duplicates {dup}; pass a {{name: model}} mapping")
    return entries


def _make_data(data: Any, shape: tuple[int, int, int] | None, split: str, options: Mapping | None):
    if not isinstance(data, str):
        if options:
            raise ValueError("data_options apply only when data is given by name")
        for attr in ("name", "shape", "images"):
            if not hasattr(data, attr):
                raise ValueError(f"data must be a DataSource or a data source name, got {type(data).__name__}")
        return data
    from freqlab.data import make_source

    kwargs: dict[str, Any] = {"split": split}
    if shape is not None:
        kwargs.update(resolution=(shape[1], shape[2]), grayscale=shape[0] == 1)
    kwargs.update(options or {})
    return make_source(data, **kwargs)


def _data_fingerprint(data, n_images: int) -> dict:
    """Name, settings and a digest of the first images: catches another split or seed even without settings."""
    probe = data.images(list(range(min(4, n_images)))).double()
    digest = hashlib.blake2b(np.round(probe.numpy() * 1e4).astype(np.int64).tobytes(), digest_size=8).hexdigest()
    attrs = getattr(data, "attrs", None)
    return {"name": str(data.name), "shape": list(data.shape), "size": getattr(data, "size", None),
            "settings": {str(k): v for k, v in attrs.items()} if isinstance(attrs, Mapping) else None,
            "digest": digest}


def _check_shape(name: str, model: torch.nn.Module, shape: tuple[int, int, int], any_resolution: bool) -> None:
    """Data must have the model's channels, and its declared resolution unless ``any_resolution`` (a UNet runs at
    any size its downsampling divides, but a model trained at 32x32 measured at 16x16 is another experiment)."""
    expected = getattr(model, "image_shape", None)
    if expected is None:
        return
    c, h, w = (int(s) for s in expected)
    multiple = getattr(model, "size_multiple", None)
    if shape[0] != c:
        raise ValueError(f"data images have {shape[0]} channel(s) but checkpoint {name!r} expects {c}; "
                         f"choose data with {c} channel(s) (grayscale={c == 1})")
    if (multiple is None or not any_resolution) and tuple(shape[1:]) != (h, w):
        hint = "" if multiple is None else "; pass any_resolution=True (--any-resolution) to measure it at this size"
        raise ValueError(f"data images are {shape[1]}x{shape[2]} but checkpoint {name!r} was made for {h}x{w}"
                         f"{hint}")
    if multiple is not None and (shape[1] % int(multiple) or shape[2] % int(multiple)):
        raise ValueError(f"data images are {shape[1]}x{shape[2]}, not divisible by {multiple} as checkpoint "
                         f"{name!r} needs")


def _linear_fit_count(source, n_images: int, n_fit: int | None) -> int:
    """How many held-out images the linear reference is fitted on (0: none); see :func:`_linear_reference`."""
    dim = int(np.prod(source.shape))
    if n_fit == 0 or (n_fit is None and dim > 4096):
        return 0
    asked = n_fit is not None
    # 8·D images: with 2·D the low-variance directions are underestimated enough that the fitted reference did
    # worse than the identity at σ = 0.002 on natural crops (MSE 1.87·σ²; 8·D: 1.00·σ²)
    n_fit = 8 * dim if n_fit is None else int(n_fit)
    size = getattr(source, "size", None)
    if size is not None and size - n_images < n_fit:
        if not asked:
            return 0
        raise ValueError(f"data source {source.name!r} has {size} images: the {n_images} swept leave "
                         f"{size - n_images}, fewer than linear_reference={n_fit}; lower either, or pass 0")
    return n_fit


def _linear_reference(source, n_images: int, n_fit: int, dev):
    """The full-covariance linear MMSE denoiser fitted on held-out images of the data source, or None for 0.

    Held out: images ``n_images … n_images + n_fit − 1`` of the same source, right after the ones the sweep
    measures (for ``natural``, other crops of the same photographs), so the reference knows the evaluation
    distribution as well as the stationary Wiener filter does (which takes the evaluated images' spectrum) without
    having seen the evaluated images themselves (fitted on them it would overfit).
    """
    from freqlab.denoisers import LinearMMSEDenoiser

    if n_fit == 0:
        return None
    return LinearMMSEDenoiser.from_source(source, n_fit, start=n_images, device=dev).to(dev)


# --------------------------------------------------------------------------------------------------------------
# the Wiener reference and the SNR crossover
# --------------------------------------------------------------------------------------------------------------
def wiener_reference(mode_power: torch.Tensor, mode_mean: torch.Tensor, sigmas: Sequence[float],
                     bin_matrix: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """Wiener curves for each σ, computed per Fourier mode and then binned like the measurements.

    Parameters
    ----------
    mode_power : ``(C, H, Wr)``  mean per-mode power ``E|X(k)|²/norm`` of the data (rfft2 half plane).
    mode_mean : ``(C, H, Wr)``   ``|DFT(w·μ)(k)|²/norm``, the power of the (constant) mean image μ.
    bin_matrix : ``(H·Wr, n_bins)``  mode → bin-mean matrix (float64).
    weights : ``(H, Wr)``  half-plane multiplicities, for the MSE over all modes.

    The Wiener filter acts on the fluctuation about the data mean, ``x̂0 = μ + H·(x_σ − μ)`` with
    ``H = P/(P+σ²)`` and ``P = mode_power − mode_mean`` its per-mode variance (as
    :class:`freqlab.denoisers.WienerDenoiser`). Expected per mode: output power ``|μ|² + P²/(P+σ²)``, error power
    ``P·σ²/(P+σ²)``, cross-power ``|μ|² + H·P``. Transfer and coherence are formed from the *binned* curves,
    ``<Pxy>/<Pyy>`` and ``<Pxy>²/(<Pxx><Pyy>)``, exactly as the sweep estimates them from a model, so the two
    compare like for like. Working per mode (not on the radial mean) keeps anisotropic spectra right: the formulas
    are nonlinear in P, so applying them to a bin's mean power would be biased.

    Returns ``output``, ``error``, ``transfer``, ``coherence`` ``(S, C, n_bins)`` and ``mse`` ``(S, C)``.
    """
    p = (mode_power - mode_mean).clamp_min(0.0)
    s2 = torch.as_tensor(np.asarray(sigmas, dtype=np.float64)).view(-1, 1, 1, 1) ** 2
    h = p / (p + s2)
    h = torch.where(p + s2 > 0, h, torch.zeros_like(h))
    out = mode_mean + p * h
    err = s2 * h
    cross = mode_mean + p * h
    m = bin_matrix.double()

    def binned(q):
        return q.flatten(-2) @ m

    data_b, out_b, err_b, cross_b = binned(mode_power).unsqueeze(0), binned(out), binned(err), binned(cross)
    n_modes = float(weights.sum())
    mse = (err * weights).sum((-2, -1)) / n_modes
    return {"output": out_b, "error": err_b, "transfer": cross_b / data_b,
            "coherence": cross_b.square() / (out_b * data_b), "mse": mse}


def snr_crossover(freq: torch.Tensor, data_power: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """``f*(σ)``: lowest frequency where the data power falls to ``σ²``, interpolated in log-log, ``(S, C)``.

    ``data_power`` ``(C, n_bins)``; the DC bin (f = 0) is left out. NaN when the data power is already at or below
    ``σ²`` at the lowest non-DC bin (every resolved frequency is drowned); the top bin's frequency when it never
    falls that low (nothing is drowned).
    """
    freq = torch.as_tensor(freq, dtype=torch.float64)
    pos = freq > 0
    lf = freq[pos].log()
    lp = data_power.double()[..., pos].clamp_min(1e-300).log()  # (C, F)
    out = torch.full((len(sigmas), lp.shape[0]), math.nan, dtype=torch.float64)
    for i, s in enumerate(sigmas):
        ls2 = 2 * math.log(float(s))
        below = lp <= ls2
        for c in range(lp.shape[0]):
            idx = torch.nonzero(below[c]).flatten()
            if idx.numel() == 0:
                out[i, c] = float(freq[pos][-1])
            elif int(idx[0]) > 0:
                j = int(idx[0])
                t = float((lp[c, j - 1] - ls2) / (lp[c, j - 1] - lp[c, j]))
                out[i, c] = math.exp(float(lf[j - 1]) + t * float(lf[j] - lf[j - 1]))
    return out


# --------------------------------------------------------------------------------------------------------------
# labelled results
# --------------------------------------------------------------------------------------------------------------
_var = measure.variable


def _base_coords(an: Analysis, sigmas) -> dict:
    return {"sigma": ("sigma", np.asarray(sigmas, dtype=np.float64),
                      {"long_name": "noise level σ of x_σ = x0 + σ·n ([-1, 1] images)", "units": "1"}),
            **measure.coords(an)}


def _data_dataset(data: ImageStats, an: Analysis, sigmas, linear: list | None) -> xr.Dataset:
    """Data-only variables, the stationary Wiener reference and (when fitted) the linear MMSE reference."""
    # The stationary Wiener filter acts on the periodic spectrum of the images (as WienerDenoiser does), so its
    # reference comes from the unwindowed per-mode power: exact MSE by Parseval, the per-image brightness (DC)
    # included. With a window, the binned curves are those of the periodic spectrum beside windowed estimates.
    c, h, wr = data.mode_power.shape
    w = an.shape[2]
    mode_power = data.mode_power / data.count / (h * w)
    # the mean image is the constant μ per channel (as WienerDenoiser's): its spectrum is the DC mode alone.
    # (The sample mean of each mode would add its sampling noise, ~P/N, to every mode.)
    mu = data.pixel_sum / (data.count * h * w)
    mode_mean = torch.zeros_like(mode_power)
    mode_mean[:, 0, 0] = mu.square() * (h * w)
    ref = wiener_reference(mode_power, mode_mean, sigmas, an.bin_matrix64, an.weights)
    data_power = data.power.mean
    nondc = an.freq > 0
    wiener_cut = spectral.coherence_cutoff(an.freq[nondc], ref["coherence"][..., nondc], measure.COHERENCE_THRESHOLD)
    sdims = ("sigma", "channel", "freq")
    variables = measure.to_variables(measure.data_variables(data))
    variables.update({
        "snr_crossover": _var("snr_crossover", ("sigma", "channel"), snr_crossover(an.freq, data_power, sigmas)),
        "wiener_output_power": _var("wiener_output_power", sdims, ref["output"]),
        "wiener_error_power": _var("wiener_error_power", sdims, ref["error"]),
        "wiener_transfer": _var("wiener_transfer", sdims, ref["transfer"]),
        "wiener_coherence": _var("wiener_coherence", sdims, ref["coherence"]),
        "wiener_coherence_cutoff": _var("wiener_coherence_cutoff", ("sigma", "channel"), wiener_cut.freq),
        "wiener_coherence_cutoff_bound": _var("wiener_coherence_cutoff_bound", ("sigma", "channel"), wiener_cut.bound),
        "wiener_mse": _var("wiener_mse", ("sigma", "channel"), ref["mse"]),
    })
    if linear is not None:
        variables["linear_mse"] = _var("linear_mse", ("sigma", "channel"), torch.stack([a.mean for a in linear]))
    return xr.Dataset(variables, coords=_base_coords(an, sigmas))


def _checkpoint_dataset(entry: _Entry, outs: dict, modes, an: Analysis, sigmas, data: ImageStats,
                        shared: xr.Dataset) -> xr.Dataset:
    """Per-checkpoint variables, with a ``checkpoint`` dim of length 1.

    Every (σ, mode) cell is :func:`freqlab.measure.compare` of its outputs with the data; variables that only
    paired outputs have (denoise mode) have no ``mode`` dim.
    """
    ns, nm = len(sigmas), len(modes)
    cells = {key: measure.compare(st, data, an) for key, st in outs.items()}
    variables = {}
    for name, (dims, value) in cells[(0, modes[0])].items():
        if name in measure.PAIRED:
            continue
        full = torch.zeros((ns, nm, *value.shape), dtype=value.dtype)
        for (s, m), cell in cells.items():
            full[s, modes.index(m)] = cell[name][1]
        variables[name] = _var(name, ("checkpoint", "sigma", "mode") + dims, full[None])
    if "denoise" in modes:
        den = [cells[(s, "denoise")] for s in range(ns)]
        for name in measure.PAIRED:
            variables[name] = _var(name, ("checkpoint", "sigma") + den[0][name][0],
                                   torch.stack([d[name][1] for d in den])[None])
        band_err = spectral.band_power(an.freq, torch.stack([d["error_power"][1] for d in den]), an.counts, an.bands)
        wiener_err = torch.as_tensor(shared.wiener_error_power.values)
        band_wiener = spectral.band_power(an.freq, wiener_err, an.counts, an.bands)
        variables["error_wiener_ratio"] = _var("error_wiener_ratio", ("checkpoint", "sigma", "channel", "band"),
                                               (band_err / band_wiener)[None])
    coords = _base_coords(an, sigmas)
    coords.update({
        "checkpoint": ("checkpoint", np.array([entry.name], dtype=object), {"long_name": "checkpoint name"}),
        "step": ("checkpoint", np.array([entry.step if entry.step >= 0 else math.nan], dtype=np.float64),
                 {"long_name": "training step (NaN: unknown)", "units": "1"}),
        "images_seen": ("checkpoint", np.array([entry.images_seen if entry.images_seen >= 0 else math.nan],
                                                dtype=np.float64),
                        {"long_name": "training images seen (NaN: unknown)", "units": "1"}),
        "checkpoint_path": ("checkpoint", np.array([entry.path], dtype=object),
                            {"long_name": "absolute checkpoint path ('' for an in-memory model)"}),
        "checkpoint_fingerprint": ("checkpoint", np.array([entry.fingerprint], dtype=object),
                                   {"long_name": "content fingerprint of what was measured (freqlab.identity): "
                                                 "a resumed sweep measures a checkpoint again when it differs"}),
        "mode": ("mode", np.array(list(modes), dtype=object),
                 {"long_name": "sweep mode: denoise (input x0 + σ·n) or generate (input σ·z)"}),
    })
    return xr.Dataset(variables, coords=coords)


def _assemble(shared: xr.Dataset | None, parts: list[xr.Dataset], attrs: dict) -> xr.Dataset:
    pieces = []
    if parts:
        pieces.append(parts[0] if len(parts) == 1 else xr.concat(parts, dim="checkpoint", data_vars="minimal",
                                                                 coords="minimal", compat="override",
                                                                 join="override"))
    if shared is not None:
        pieces.append(shared)
    ds = xr.merge(pieces, compat="override", join="override") if pieces else xr.Dataset()
    ds.attrs = dict(attrs)
    return ds


def _split(ds: xr.Dataset) -> tuple[xr.Dataset, list[xr.Dataset]]:
    """A results Dataset into its data-only part and one Dataset per checkpoint."""
    per_ckpt = [v for v in ds.data_vars if "checkpoint" in ds[v].dims]
    shared = ds.drop_vars(per_ckpt + [c for c in ds.coords if "checkpoint" in ds[c].dims or c == "mode"])
    ckpt = ds[per_ckpt]
    parts = [ckpt.isel(checkpoint=[i]) for i in range(ckpt.sizes.get("checkpoint", 0))]
    return shared, parts


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
        :class:`freqlab.denoisers.LinearMMSEDenoiser`), measured as ``linear_mse`` on the same noisy inputs as the
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
    source = _make_data(data, tuple(model_shape) if model_shape is not None else None, split, data_options)
    shape = tuple(int(s) for s in source.shape)
    _check_shape(entries[0].name, first, shape, any_resolution)  # before any work; the others as they load
    size = getattr(source, "size", None)
    if size is not None and n_images > size:
        raise ValueError(f"data source {source.name!r} has {size} images, fewer than n_images={n_images}")

    use_autocast = bool(autocast) and dev.type != "cpu"
    n_linear = _linear_fit_count(source, n_images, linear_reference) if "denoise" in modes else 0
    fields = dict(format_version=FORMAT_VERSION, sigmas=[float(s) for s in sigmas], data=_data_fingerprint(
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
    shared, parts = _split(existing) if existing is not None else (None, [])
    parts = _keep_unchanged(parts, entries, out)
    done = {str(p.checkpoint.values[0]) for p in parts}
    todo = [e for e in entries if e.name not in done]
    if not todo:
        return _order(_assemble(shared, parts, attrs), entries)

    world, rank = distributed.world_size(), distributed.rank()
    by_checkpoint = world > 1 and (distribute == "checkpoints" or (distribute == "auto" and len(todo) % world == 0))
    rounds = [todo[i: i + world] for i in range(0, len(todo), world)] if by_checkpoint else [[e] for e in todo]
    batches = [range(i, min(i + batch_size, n_images)) for i in range(0, n_images, batch_size)]
    mine = batches if by_checkpoint else distributed.shard(batches)
    an = Analysis(shape, band_dict, window, dev) if spectra else None
    linear_model = _linear_reference(source, n_images, n_linear, dev) if spectra else None
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
                    shared = _data_dataset(data_stats, an, sigmas, linear)
                local = _checkpoint_dataset(entry, outs, modes, an, sigmas, data_stats, shared)
                del outs, stats
            if by_checkpoint:  # each rank swept its own checkpoint: everyone gets all of this round's results
                gathered = distributed.all_gather_objects((local, shared if rank == 0 else None))
                parts.extend(part for part, _ in gathered if part is not None)
                shared = shared if shared is not None else gathered[0][1]
            else:
                parts.append(local)
            if out is not None and distributed.is_main():
                results.save(_order(_assemble(shared, parts, attrs), entries), out)
    finally:
        bar.close()
    distributed.barrier()  # the file is complete when sweep returns on any rank
    if not spectra:
        return xr.Dataset(coords={"checkpoint": [e.name for e in entries], "sigma": np.asarray(sigmas),
                                  "mode": list(modes)}, attrs=attrs)
    return _order(_assemble(shared, parts, attrs), entries)


def _keep_unchanged(parts: list[xr.Dataset], entries: list[_Entry], out) -> list[xr.Dataset]:
    """The finished checkpoints of a resumed file that are still what is asked for: a part whose checkpoint has
    the name of a requested one but other content (another run, retrained weights) is dropped, with a note, and
    measured again. Parts of checkpoints not requested now are kept as they are."""
    by_name = {e.name: e for e in entries}
    kept, changed = [], []
    for part in parts:
        name = str(part.checkpoint.values[0])
        entry = by_name.get(name)
        stored = str(part.checkpoint_fingerprint.values[0]) if "checkpoint_fingerprint" in part.coords else None
        if entry is not None and stored != entry.fingerprint:
            changed.append(name if stored is not None else f"{name} (no fingerprint: an older file)")
        else:
            kept.append(part)
    if changed and distributed.is_main():
        print(f"freqlab: {len(changed)} checkpoint(s) in {out} have the names of requested ones but other content "
              f"({', '.join(changed)}); measuring them again", file=sys.stderr, flush=True)
    return kept


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


def _order(ds: xr.Dataset, entries: list[_Entry]) -> xr.Dataset:
    """Checkpoints in the requested order; ones from the file that were not requested keep theirs, after."""
    if "checkpoint" not in ds.dims:
        return ds
    have = [str(c) for c in ds.checkpoint.values]
    wanted = [e.name for e in entries if e.name in have]
    order = wanted + [c for c in have if c not in wanted]
    return ds if order == have else ds.isel(checkpoint=[have.index(c) for c in order])


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, file=sys.stderr, desc="sweep", unit="σ", dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} (checkpoint, σ) "
                           "[{elapsed}<{remaining}{postfix}]")


def _forward(entry: _Entry, model, x: torch.Tensor, sigma: float, dev, use_autocast: bool) -> torch.Tensor:
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
    _check_shape(entry.name, model, shape, any_resolution)
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


# --------------------------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------------------------
def summarize(ds: xr.Dataset, *, lsd_match_db: float = 3.0) -> str:
    """A one-paragraph text summary of a sweep: f_c at σ_max for the first and last checkpoint, bands matched,
    MSE against Wiener's."""
    if "checkpoint" not in ds.dims or ds.sizes["checkpoint"] == 0 or "cutoff_freq" not in ds:
        return "The sweep holds no results."
    names = [str(c) for c in ds.checkpoint.values]
    steps = [float(s) for s in ds.step.values]
    sig = ds.sigma.values
    s_max = float(sig[-1])
    mode = "generate" if "generate" in ds.mode.values else "denoise"

    def label(i: int) -> str:
        return f"{names[i]} (step {int(steps[i])})" if math.isfinite(steps[i]) and steps[i] >= 0 else names[i]

    def fc_text(i: int) -> str:
        row = ds.isel(checkpoint=i, sigma=-1).sel(mode=mode)
        return measure.cutoff_text(*measure.channel_cutoff(row.cutoff_freq, row.cutoff_freq_bound))

    first, last = 0, len(names) - 1
    parts = [
        f"Swept {len(names)} checkpoint(s) x {len(sig)} noise levels (σ {float(sig[0]):.3g} to {s_max:.3g}) on "
        f"{int(ds.attrs.get('n_images', 0))} images of '{ds.attrs.get('data_source', '?')}' "
        f"(modes: {', '.join(map(str, ds.mode.values))})."
    ]
    f_star = float(ds.snr_crossover.isel(sigma=-1).mean("channel"))
    text = f"{fc_text(first)} for {label(first)}"
    if last != first:
        text += f" and {fc_text(last)} for {label(last)}"
    star = "below the lowest resolved frequency" if math.isnan(f_star) else f"{f_star:.3f} cycles/px"
    parts.append(f"At σ_max = {s_max:.3g} ({mode} mode) the cutoff f_c (output power off the data's by more than "
                 f"3 dB) is {text}; the SNR crossover f* is {star}.")
    lsd = ds.lsd.isel(checkpoint=last, sigma=-1).sel(mode=mode).mean("channel")
    matched = [str(b) for b, v in zip(ds.band.values, lsd.values) if v <= lsd_match_db]
    unmatched = [f"{b} ({v:.1f} dB)" for b, v in zip(ds.band.values, lsd.values) if not v <= lsd_match_db]
    parts.append(f"At σ_max the last checkpoint matches the data's spectrum within {lsd_match_db:g} dB (LSD) in "
                 f"band(s): {', '.join(matched) or 'none'}" + (f"; not in {', '.join(unmatched)}." if unmatched
                                                                  else "."))
    if "mse" in ds:
        ratio = (ds.mse.isel(checkpoint=last) / ds.wiener_mse).mean("channel").values
        i_best = int(np.nanargmin(ratio))
        parts.append(f"Its denoising MSE is {np.nanmin(ratio):.2f}–{np.nanmax(ratio):.2f}x the stationary Wiener "
                     f"filter's across σ (best {ratio[i_best]:.2f}x at σ = {float(sig[i_best]):.3g})")
        if "linear_mse" in ds:
            lin = (ds.mse.isel(checkpoint=last) / ds.linear_mse).mean("channel").values
            parts[-1] += (f" and {np.nanmin(lin):.2f}–{np.nanmax(lin):.2f}x the full-covariance linear MMSE "
                          f"denoiser's (the best linear one)")
        parts[-1] += "."
    return " ".join(parts)
