"""The one-step spectral sweep: spectra of one-step outputs across noise levels σ and checkpoints.

For every checkpoint and every σ on a grid, take **one** step of the denoiser and measure, per frequency, what it
produces against the data:

* ``denoise`` mode, input ``x0 + σ·n``: power of the output ``x̂0``, of the error ``x̂0 − x0`` and the
  cross-spectrum of ``x̂0`` with ``x0`` (→ transfer function and coherence), and the per-pixel MSE. The images
  ``x0`` and the noise ``n`` are the same for every checkpoint **and every σ** (per-sample seeds from
  :mod:`freqlab.rng`, so also the same for any batch size): differences between checkpoints are the models'.
* ``generate`` mode, input ``σ·z``: power of the output. At ``σ = σ_max`` this is the D2O generator before
  fine-tuning. ``z`` is the same for every checkpoint and σ.
* once: the data power, and the **Wiener reference** for the σ grid, computed per Fourier mode from the data's
  2-D mean spectrum (see :func:`wiener_reference`), then binned like the measurements.
* derived: relative power in dB, the −3 dB cutoff ``f_c``, per-band log-spectral distance, error relative to the
  Wiener error per band, the SNR crossover ``f*(σ)`` and per-image band statistics (diversity ratio, 1-D
  Wasserstein distance of log band power, kurtosis gap) against the data's.

The result is one :class:`xarray.Dataset`, saved atomically after each checkpoint when ``out`` is given; rerunning
resumes, skipping finished checkpoints (recognised by name), and refuses a file written with other settings.
Under ``torchrun`` the work is split across processes (images or whole checkpoints, see ``distribute``), the
accumulators are merged and rank 0 writes: the numbers are those of one process to float tolerance.

Dataset layout (long names and units of every variable in :data:`VARIABLES` and in each variable's attrs)
------------------------------------------------------------------------------------------------------------
coords: ``checkpoint`` (str) with ``step``, ``images_seen`` (int, -1 unknown) and ``checkpoint_path``; ``sigma``;
``mode``; ``channel``; ``freq`` (cycles/pixel) with ``freq_count``; ``band`` with ``band_lo``, ``band_hi``.

=====================================================  ================================================
dims                                                   variables
=====================================================  ================================================
(channel, freq)                                        data_power, data_power_sem
(channel, band)                                        data_band_log_power, data_band_log_power_std,
                                                       data_band_kurtosis, data_band_kurtosis_sem
(sigma, channel)                                       snr_crossover, wiener_mse
(sigma, channel, freq)                                 wiener_output_power, wiener_error_power,
                                                       wiener_transfer, wiener_coherence
(checkpoint, sigma, mode, channel, freq)               output_power, output_power_sem, relative_power_db
(checkpoint, sigma, mode, channel)                     cutoff_freq
(checkpoint, sigma, mode, channel, band)               lsd, band_log_power, band_log_power_std,
                                                       band_kurtosis, band_kurtosis_sem, diversity_ratio,
                                                       band_power_wasserstein, kurtosis_gap
(checkpoint, sigma, channel, freq)  [denoise only]     error_power, error_power_sem, cross_power,
                                                       cross_power_sem, transfer, coherence
(checkpoint, sigma, channel, band)  [denoise only]     error_wiener_ratio
(checkpoint, sigma, channel)        [denoise only]     mse, mse_sem
=====================================================  ================================================

Loop order and cost: checkpoint → batch → σ. Each batch of images and noise is drawn and Fourier-transformed once
per checkpoint and reused for every σ; per (batch, σ) the analysis is one forward FFT of the output, one inverse
FFT per band (kurtosis of the band-pass image) and two small matmuls (binning). Nothing image-sized outlives a
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

from freqlab import distributed, results, spectral
from freqlab.devices import autocast_context
from freqlab.rng import per_sample_randn
from freqlab.stats import CrossSpectrumAccumulator, SpectrumAccumulator

__all__ = ["sweep", "summarize", "default_sigmas", "check_sigmas", "wiener_reference", "snr_crossover",
           "MODES", "DEFAULT_N_SIGMAS", "VARIABLES", "FORMAT_VERSION"]

MODES = ("denoise", "generate")
DISTRIBUTE = ("auto", "images", "checkpoints")
DEFAULT_N_SIGMAS = 13
FORMAT_VERSION = 1
#: Fewest images per checkpoint: standard errors and the Wasserstein distance need a sample.
MIN_IMAGES = 2
_LOG_FLOOR = 1e-30  # band power of an all-zero band-pass image; keeps log10 finite (-300 dB)

POWER = "image units² per mode (|DFT(w·x)|²/(H·W·mean(w²)), images in [-1, 1])"
#: name → (long name, units) of every variable a sweep writes; dims in the module docstring's table.
VARIABLES: dict[str, tuple[str, str]] = {
    "data_power": ("mean radial power of the data", POWER),
    "data_power_sem": ("standard error of data_power", POWER),
    "data_band_log_power": ("mean over images of per-image band power", "dB (10·log10 of power)"),
    "data_band_log_power_std": ("standard deviation over images of per-image band power", "dB"),
    "data_band_kurtosis": ("mean kurtosis of the data's band-pass images (3 for Gaussian)", "1"),
    "data_band_kurtosis_sem": ("standard error of data_band_kurtosis", "1"),
    "snr_crossover": ("SNR crossover f*(σ): lowest frequency where data_power falls to σ² (log-log interpolated; "
                      "NaN if below σ² at every non-DC bin, the top bin if never)", "cycles/pixel"),
    "wiener_output_power": ("Wiener filter output power, per mode P_d²/(P_d+σ²) plus the mean's, binned", POWER),
    "wiener_error_power": ("Wiener filter error power, per mode P_d·σ²/(P_d+σ²), binned", POWER),
    "wiener_transfer": ("Wiener transfer function as estimated from cross-spectra (<Pxy>/<Pyy> per bin)", "1"),
    "wiener_coherence": ("Wiener coherence <Pxy>²/(<Pxx><Pyy>) per bin", "1"),
    "wiener_mse": ("Wiener filter MSE per pixel (mean over all modes of the error power)", "image units²"),
    "output_power": ("mean radial power of the one-step output x̂0", POWER),
    "output_power_sem": ("standard error of output_power", POWER),
    "relative_power_db": ("output power relative to the data's, 10·log10(output_power/data_power)", "dB"),
    "cutoff_freq": ("−3 dB cutoff f_c: lowest non-DC frequency where relative_power_db < −3 (interpolated)",
                    "cycles/pixel"),
    "lsd": ("log-spectral distance of output_power to data_power per band (non-DC bins)", "dB"),
    "band_log_power": ("mean over images of per-image output band power", "dB (10·log10 of power)"),
    "band_log_power_std": ("standard deviation over images of per-image output band power", "dB"),
    "band_kurtosis": ("mean kurtosis of the output's band-pass images (3 for Gaussian)", "1"),
    "band_kurtosis_sem": ("standard error of band_kurtosis", "1"),
    "diversity_ratio": ("std of per-image log band power, output / data (1: as diverse as the data)", "1"),
    "band_power_wasserstein": ("1-D Wasserstein distance between per-image log band power of output and data "
                               "(the first wasserstein_images images, see attrs)", "dB"),
    "kurtosis_gap": ("band_kurtosis − data_band_kurtosis (negative: more Gaussian than the data)", "1"),
    "error_power": ("mean radial power of the denoising error x̂0 − x0", POWER),
    "error_power_sem": ("standard error of error_power", POWER),
    "cross_power": ("mean radial cross-spectrum Re(X̂0·conj(X0)) of output and clean image", POWER),
    "cross_power_sem": ("standard error of cross_power", POWER),
    "transfer": ("transfer function <Pxy>/<Pyy> of the one-step denoiser", "1"),
    "coherence": ("coherence <Pxy>²/(<Pxx><Pyy>) of output and clean image", "1"),
    "error_wiener_ratio": ("band error power / Wiener band error power (1: Wiener-optimal, < 1: beats it)", "1"),
    "mse": ("mean squared error per pixel of x̂0 against x0", "image units²"),
    "mse_sem": ("standard error of mse", "image units²"),
}


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
        raise ValueError(f"noise levels must be finite and > 0, got {bad[0]!r}")
    grid = np.sort(grid)
    if np.any(np.diff(grid) == 0):
        raise ValueError(f"the σ grid has duplicate values: {grid.tolist()}")
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

    def get(self) -> torch.nn.Module:
        return self.model if self.model is not None else self.load()


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
                       -1 if i.images_seen is None else int(i.images_seen), str(i.path))
                for i in checkpoints.discover_checkpoints(path)]
    if not single:
        checkpoints.detect_format(path)  # the loader's own message: which formats it expected
    meta = checkpoints.load_checkpoint_metadata(path)
    return [_Entry(path.name, loader(path), _metadata_int(meta, "step"), _metadata_int(meta, "images_seen"),
                   str(path))]


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


def _check_shape(name: str, model: torch.nn.Module, shape: tuple[int, int, int]) -> None:
    expected = getattr(model, "image_shape", None)
    if expected is None:
        return
    c, h, w = (int(s) for s in expected)
    multiple = getattr(model, "size_multiple", None)
    if shape[0] != c:
        raise ValueError(f"data images have {shape[0]} channel(s) but checkpoint {name!r} expects {c}; "
                         f"choose data with {c} channel(s) (grayscale={c == 1})")
    if multiple is None and tuple(shape[1:]) != (h, w):
        raise ValueError(f"data images are {shape[1]}x{shape[2]} but checkpoint {name!r} expects {h}x{w}")
    if multiple is not None and (shape[1] % int(multiple) or shape[2] % int(multiple)):
        raise ValueError(f"data images are {shape[1]}x{shape[2]}, not divisible by {multiple} as checkpoint "
                         f"{name!r} needs")


# --------------------------------------------------------------------------------------------------------------
# the analysis of one batch: FFTs, binning, per-image band statistics
# --------------------------------------------------------------------------------------------------------------
class _Analysis:
    """Everything fixed by the image shape, bands and window, on the device; methods work on one batch.

    Spectra (binning, band powers) run in float32 on the device; accumulators sum in float64 on the CPU (a few
    numbers per image, so results and merges across processes need no device). With a window the radial spectra
    use the windowed FFT and the per-image band statistics a plain FFT (band-pass filters act on the image itself);
    without one, one FFT serves both.
    """

    def __init__(self, shape: tuple[int, int, int], bands: dict[str, tuple[float, float]], window, device):
        c, h, w = shape
        self.h, self.w, self.wr = h, w, w // 2 + 1
        binning = spectral.radial_binning(h, w, device=device, dtype=torch.float32)
        matrix = binning.matrix
        if matrix.shape[0] == 2 * h * self.wr:  # real/imag interleaved layout: both rows carry the mode's weight
            matrix = matrix[0::2]
        self.freq = binning.freq.detach().cpu().double()
        self.counts = binning.counts.detach().cpu()
        self.bin_matrix64 = matrix.double()
        self.window = spectral.make_window(window, h, w, device=device, dtype=torch.float32)
        self.norm = float(h * w) * (float(self.window.double().square().mean()) if self.window is not None else 1.0)
        f = spectral.radial_frequency(h, w, device=device, dtype=torch.float64)
        weights = spectral.halfplane_weights(h, w).to(device)
        masks = torch.stack([spectral.band_mask(f, lo, hi) for lo, hi in bands.values()])  # (B, H, Wr)
        self.n_bands = masks.shape[0]
        band_cols = (weights * masks) / (weights * masks).sum((-2, -1), keepdim=True).clamp_min(1.0) / (h * w)
        self.band_matrix = band_cols.reshape(self.n_bands, -1).T.to(torch.float32)  # (H·Wr, B)
        self.bin_matrix = (matrix / self.norm).to(torch.float32)  # (H·Wr, n_bins)
        self.masks = masks.to(torch.float32)
        # without a window, one matmul gives radial bins and band powers at once
        self.joint = torch.cat([self.bin_matrix, self.band_matrix], 1) if self.window is None else None
        self.weights = weights

    def fft(self, x: torch.Tensor) -> torch.Tensor:
        """rfft2 of the windowed images, ``(N, C, H, Wr)`` complex64."""
        return torch.fft.rfft2(x * self.window if self.window is not None else x)

    def spectra(self, x: torch.Tensor, fx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Radial power ``(N, C, n_bins)`` and per-image band power ``(N, C, B)`` of ``x`` with spectrum ``fx``."""
        p = spectral.abs2(fx).flatten(-2)
        if self.joint is not None:
            both = p @ self.joint
            return both[..., : self.bin_matrix.shape[1]], both[..., self.bin_matrix.shape[1]:]
        plain = spectral.abs2(torch.fft.rfft2(x)).flatten(-2)
        return p @ self.bin_matrix, plain @ self.band_matrix

    def kurtosis(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        """Kurtosis ``E[b⁴]/E[b²]²`` of each band-pass image, ``(N, C, B)``; NaN for a band with no energy."""
        spec = fx if self.window is None else torch.fft.rfft2(x)
        b = torch.fft.irfft2(spec.unsqueeze(2) * self.masks, s=(self.h, self.w))  # (N, C, B, H, W)
        b2 = b.square()
        m2 = b2.mean((-2, -1))
        m4 = b2.square().mean((-2, -1))
        return torch.where(m2 > 0, m4 / m2.square().clamp_min(1e-30), torch.nan)


class _NanMean:
    """Streaming mean and standard error that skips NaN entries (kurtosis of an empty band)."""

    def __init__(self):
        self.n = self.s = self.ss = None

    def update(self, v: torch.Tensor) -> None:
        v = v.detach().double().cpu()
        ok = ~torch.isnan(v)
        z = torch.where(ok, v, 0.0)
        n, s, ss = ok.sum(0).double(), z.sum(0), z.square().sum(0)
        if self.n is None:
            self.n, self.s, self.ss = n, s, ss
        else:
            self.n += n
            self.s += s
            self.ss += ss

    def merge(self, other: "_NanMean") -> "_NanMean":
        if other.n is not None:
            if self.n is None:
                self.n, self.s, self.ss = other.n.clone(), other.s.clone(), other.ss.clone()
            else:
                self.n += other.n
                self.s += other.s
                self.ss += other.ss
        return self

    @property
    def mean(self) -> torch.Tensor:
        return torch.where(self.n > 0, self.s / self.n.clamp_min(1), torch.nan)

    @property
    def sem(self) -> torch.Tensor:
        n = self.n.clamp_min(2)
        var = ((self.ss - self.n * self.mean.nan_to_num().square()) / (n - 1)).clamp_min(0)
        return torch.where(self.n > 1, (var / n).sqrt(), torch.nan)


class _LogPower:
    """Per-image band power in dB: mean and std over all images (streaming, float64), and the values of the first
    ``keep`` images for the Wasserstein distance, so memory is bounded by ``keep``, not by the number of images."""

    def __init__(self, keep: int, c: int, n_bands: int):
        self.keep = keep
        self.values = torch.zeros(keep, c, n_bands, dtype=torch.float32)
        self.acc = SpectrumAccumulator(device="cpu")

    def update(self, rows: slice, band_power: torch.Tensor) -> None:
        db = 10 * torch.log10(band_power.clamp_min(_LOG_FLOOR))
        self.acc.update(db)
        n = min(rows.stop, self.keep) - rows.start
        if n > 0:
            self.values[rows.start: rows.start + n] = db[:n].cpu()

    def merge(self, other: "_LogPower") -> "_LogPower":
        """Add another process's images; its rows of ``values`` are disjoint from ours (zeros elsewhere)."""
        self.acc.merge(other.acc)
        self.values += other.values
        return self

    @property
    def samples(self) -> torch.Tensor:
        return self.values[: min(self.acc.count, self.keep)].double()


class _DataStats:
    """The data's spectra and per-image band statistics, accumulated during the first checkpoint's pass."""

    def __init__(self, keep: int, shape, n_bands: int):
        c, h, w = shape
        self.power = SpectrumAccumulator(device="cpu")
        self.pixel_sum = torch.zeros(c, dtype=torch.float64)  # → the data mean μ per channel
        self.mode_power = torch.zeros(c, h, w // 2 + 1, dtype=torch.float64)  # Σ |X(k)|²
        self.log_power = _LogPower(keep, c, n_bands)
        self.kurtosis = _NanMean()
        self.count = 0

    def update(self, rows: slice, x, fx, binned, band_power, kurt) -> None:
        self.power.update(binned)
        self.pixel_sum += x.double().sum((0, 2, 3)).cpu()
        self.mode_power += spectral.abs2(fx).sum(0).to("cpu", torch.float64)
        self.log_power.update(rows, band_power)
        self.kurtosis.update(kurt)
        self.count += fx.shape[0]

    def merge(self, other: "_DataStats") -> "_DataStats":
        self.power.merge(other.power)
        self.pixel_sum += other.pixel_sum
        self.mode_power += other.mode_power
        self.log_power.merge(other.log_power)
        self.kurtosis.merge(other.kurtosis)
        self.count += other.count
        return self


class _OutputStats:
    """Output spectra and band statistics of one (σ, mode) over the images of one checkpoint."""

    def __init__(self, keep: int, c: int, n_bands: int, denoise: bool):
        self.cross = CrossSpectrumAccumulator(device="cpu") if denoise else None
        self.power = SpectrumAccumulator(device="cpu") if not denoise else None
        self.error = SpectrumAccumulator(device="cpu") if denoise else None
        self.mse = SpectrumAccumulator(device="cpu") if denoise else None
        self.log_power = _LogPower(keep, c, n_bands)
        self.kurtosis = _NanMean()

    @property
    def output(self) -> SpectrumAccumulator:
        return self.cross.xx if self.cross is not None else self.power

    def merge(self, other: "_OutputStats") -> "_OutputStats":
        for name in ("cross", "power", "error", "mse", "log_power", "kurtosis"):
            mine = getattr(self, name)
            if mine is not None:
                mine.merge(getattr(other, name))
        return self


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
def _var(name: str, dims: tuple[str, ...], values) -> tuple:
    long_name, units = VARIABLES[name]
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return dims, np.asarray(values, dtype=np.float64), {"long_name": long_name, "units": units}


def _base_coords(freq, counts, sigmas, channels: int, bands: dict) -> dict:
    return {
        "sigma": ("sigma", np.asarray(sigmas, dtype=np.float64),
                  {"long_name": "noise level σ (x_σ = x0 + σ·n)", "units": "image units ([-1, 1] images)"}),
        "channel": ("channel", np.arange(channels, dtype=np.int64), {"long_name": "image channel"}),
        "freq": ("freq", freq.numpy(), {"long_name": "radial frequency (bin centre)", "units": "cycles/pixel"}),
        "freq_count": ("freq", counts.numpy().astype(np.int64), {"long_name": "full-plane Fourier modes in the bin"}),
        "band": ("band", np.array(list(bands), dtype=object), {"long_name": "frequency band"}),
        "band_lo": ("band", np.array([b[0] for b in bands.values()]), {"units": "cycles/pixel"}),
        "band_hi": ("band", np.array([b[1] for b in bands.values()]),
                    {"units": "cycles/pixel", "long_name": "upper band edge (closed at 0.5)"}),
    }


def _data_dataset(stats: _DataStats, an: _Analysis, sigmas, bands) -> tuple[xr.Dataset, dict]:
    """Data-only variables and the Wiener reference; also returns the tensors the derived metrics need."""
    c, h, wr = stats.mode_power.shape
    mode_power = stats.mode_power / stats.count / an.norm
    # the mean image is the constant μ per channel (as WienerDenoiser's): its spectrum is μ·DFT(w), the DC mode
    # alone without a window. (The sample mean of each mode would add its sampling noise, ~P/N, to every mode.)
    mu = stats.pixel_sum / (stats.count * h * an.w)
    ones = an.window.double().cpu() if an.window is not None else torch.ones(h, an.w, dtype=torch.float64)
    mode_mean = spectral.abs2(mu.view(-1, 1, 1) * torch.fft.rfft2(ones)) / an.norm
    ref = wiener_reference(mode_power, mode_mean, sigmas, an.bin_matrix64.cpu(), an.weights.cpu())
    data_power = stats.power.mean
    lp = stats.log_power
    cdims, sdims = ("channel", "freq"), ("sigma", "channel", "freq")
    ds = xr.Dataset(
        {
            "data_power": _var("data_power", cdims, data_power),
            "data_power_sem": _var("data_power_sem", cdims, stats.power.sem),
            "data_band_log_power": _var("data_band_log_power", ("channel", "band"), lp.acc.mean),
            "data_band_log_power_std": _var("data_band_log_power_std", ("channel", "band"), lp.acc.std),
            "data_band_kurtosis": _var("data_band_kurtosis", ("channel", "band"), stats.kurtosis.mean),
            "data_band_kurtosis_sem": _var("data_band_kurtosis_sem", ("channel", "band"), stats.kurtosis.sem),
            "snr_crossover": _var("snr_crossover", ("sigma", "channel"), snr_crossover(an.freq, data_power, sigmas)),
            "wiener_output_power": _var("wiener_output_power", sdims, ref["output"]),
            "wiener_error_power": _var("wiener_error_power", sdims, ref["error"]),
            "wiener_transfer": _var("wiener_transfer", sdims, ref["transfer"]),
            "wiener_coherence": _var("wiener_coherence", sdims, ref["coherence"]),
            "wiener_mse": _var("wiener_mse", ("sigma", "channel"), ref["mse"]),
        },
        coords=_base_coords(an.freq, an.counts, sigmas, c, bands),
    )
    return ds, {"power": data_power, "log_power": lp, "kurtosis": stats.kurtosis.mean, "wiener": ref}


def _checkpoint_dataset(entry: _Entry, outs: dict, modes, an: _Analysis, sigmas, bands, data: dict) -> xr.Dataset:
    """Per-checkpoint variables, with a ``checkpoint`` dim of length 1."""
    freq = an.freq
    nondc = freq > 0
    data_power = data["power"]  # (C, F)
    c = data_power.shape[0]
    nm, ns = len(modes), len(sigmas)
    f = torch.full
    out_p = f((ns, nm, c, freq.numel()), math.nan, dtype=torch.float64)
    out_sem = torch.full_like(out_p, math.nan)
    lblp, lbls, kurt, kurt_sem, div, w1 = (f((ns, nm, c, an.n_bands), math.nan, dtype=torch.float64) for _ in range(6))
    for (s, m), st in outs.items():
        mi = modes.index(m)
        out_p[s, mi] = st.output.mean
        out_sem[s, mi] = st.output.sem
        lp, ref = st.log_power, data["log_power"]
        lblp[s, mi], lbls[s, mi] = lp.acc.mean, lp.acc.std
        kurt[s, mi], kurt_sem[s, mi] = st.kurtosis.mean, st.kurtosis.sem
        div[s, mi] = lp.acc.std / ref.acc.std  # spectral.diversity_ratio, from streaming sums over all images
        w1[s, mi] = spectral.wasserstein_1d(lp.samples, ref.samples)
    rel = spectral.relative_power_db(out_p, data_power)
    cutoff = spectral.cutoff_frequency(freq[nondc], rel[..., nondc])
    lsd = spectral.log_spectral_distance(out_p[..., nondc], data_power[..., nondc], freq[nondc], bands)
    five = ("checkpoint", "sigma", "mode", "channel")
    variables = {
        "output_power": _var("output_power", five + ("freq",), out_p[None]),
        "output_power_sem": _var("output_power_sem", five + ("freq",), out_sem[None]),
        "relative_power_db": _var("relative_power_db", five + ("freq",), rel[None]),
        "cutoff_freq": _var("cutoff_freq", five, cutoff[None]),
        "lsd": _var("lsd", five + ("band",), lsd[None]),
        "band_log_power": _var("band_log_power", five + ("band",), lblp[None]),
        "band_log_power_std": _var("band_log_power_std", five + ("band",), lbls[None]),
        "band_kurtosis": _var("band_kurtosis", five + ("band",), kurt[None]),
        "band_kurtosis_sem": _var("band_kurtosis_sem", five + ("band",), kurt_sem[None]),
        "diversity_ratio": _var("diversity_ratio", five + ("band",), div[None]),
        "band_power_wasserstein": _var("band_power_wasserstein", five + ("band",), w1[None]),
        "kurtosis_gap": _var("kurtosis_gap", five + ("band",), (kurt - data["kurtosis"])[None]),
    }
    if "denoise" in modes:
        den = [outs[(s, "denoise")] for s in range(ns)]
        err = torch.stack([d.error.mean for d in den])
        wiener = data["wiener"]
        band_err = spectral.band_power(freq, err, an.counts, bands)
        band_wiener = spectral.band_power(freq, wiener["error"], an.counts, bands)
        three = ("checkpoint", "sigma", "channel")
        variables.update({
            "error_power": _var("error_power", three + ("freq",), err[None]),
            "error_power_sem": _var("error_power_sem", three + ("freq",), torch.stack([d.error.sem for d in den])[None]),
            "cross_power": _var("cross_power", three + ("freq",), torch.stack([d.cross.xy.mean for d in den])[None]),
            "cross_power_sem": _var("cross_power_sem", three + ("freq",),
                                    torch.stack([d.cross.xy.sem for d in den])[None]),
            "transfer": _var("transfer", three + ("freq",), torch.stack([d.cross.transfer for d in den])[None]),
            "coherence": _var("coherence", three + ("freq",), torch.stack([d.cross.coherence for d in den])[None]),
            "error_wiener_ratio": _var("error_wiener_ratio", three + ("band",), (band_err / band_wiener)[None]),
            "mse": _var("mse", three, torch.stack([d.mse.mean for d in den])[None]),
            "mse_sem": _var("mse_sem", three, torch.stack([d.mse.sem for d in den])[None]),
        })
    coords = _base_coords(freq, an.counts, sigmas, c, bands)
    coords.update({
        "checkpoint": ("checkpoint", np.array([entry.name], dtype=object), {"long_name": "checkpoint name"}),
        "step": ("checkpoint", np.array([entry.step], dtype=np.int64),
                 {"long_name": "training step (-1: unknown)"}),
        "images_seen": ("checkpoint", np.array([entry.images_seen], dtype=np.int64),
                        {"long_name": "training images seen (-1: unknown)"}),
        "checkpoint_path": ("checkpoint", np.array([entry.path], dtype=object),
                            {"long_name": "checkpoint path ('' for an in-memory model)"}),
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
    window=None,
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
    distribute: str = "auto",
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
    window : window of the radial spectra (None, "hann", ...; see :func:`freqlab.spectral.make_window`).
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
    distribute : with several processes (``torchrun``, see :mod:`freqlab.distributed`): ``"images"`` splits each
        checkpoint's batches across ranks and merges their accumulators; ``"checkpoints"`` gives each rank whole
        checkpoints (rounds of one checkpoint per rank); ``"auto"`` (default) takes ``"checkpoints"`` when the
        checkpoints left divide evenly among the ranks, else ``"images"``. Either way the noise and images of every
        sample are those of a single-process run (per-sample seeds), the numbers agree with it to float
        tolerance, only rank 0 writes ``out`` and prints progress, and every rank returns the whole Dataset.
        Ignored in one process.

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
    size = getattr(source, "size", None)
    if size is not None and n_images > size:
        raise ValueError(f"data source {source.name!r} has {size} images, fewer than n_images={n_images}")

    use_autocast = bool(autocast) and dev.type != "cpu"
    fields = dict(format_version=FORMAT_VERSION, sigmas=[float(s) for s in sigmas], data=_data_fingerprint(
        source, n_images), n_images=n_images, seed=int(seed), bands={k: list(v) for k, v in band_dict.items()},
        modes=list(modes), window=window if window is None or isinstance(window, (str, tuple)) else "tensor",
        bf16_autocast=use_autocast, wasserstein_images=keep)
    fingerprint = results.make_fingerprint(**fields)
    attrs = {
        "title": "freqlab one-step spectral sweep", "fingerprint": fingerprint, "format_version": FORMAT_VERSION,
        "data_source": str(source.name), "n_images": n_images, "seed": int(seed), "modes": ",".join(modes),
        "window": str(fields["window"]), "bf16_autocast": int(use_autocast), "wasserstein_images": keep,
        "image_shape": ",".join(str(s) for s in shape),
        "noise_convention": "x_sigma = x0 + sigma*n (variance exploding); generate input sigma*z; n and z per image "
                            "from (seed, stream, index), the same for every checkpoint and sigma",
        "spectrum_normalisation": "P(k) = |DFT(w*x)(k)|^2/(H*W*mean(w^2)); radial power = mean of P(k) over the "
                                  "full-plane modes of the bin; corners beyond 0.5 cycles/pixel excluded",
        "wiener_reference": "per Fourier mode from the data's mean 2-D spectrum about its mean image, then binned",
        "cutoff_definition": "lowest non-DC frequency where relative_power_db < -3 dB, linearly interpolated",
        "bands": results.make_fingerprint(**{k: list(v) for k, v in band_dict.items()}),
    }
    if isinstance(getattr(source, "attrs", None), Mapping):
        attrs.update({f"data_{k}": v for k, v in source.attrs.items() if isinstance(v, (str, int, float))})

    existing = results.open_for_resume(out, fingerprint, resume=resume, overwrite=overwrite) if spectra else None
    distributed.barrier()  # every rank has read the file before rank 0 may replace it
    shared, parts = _split(existing) if existing is not None else (None, [])
    done = {str(p.checkpoint.values[0]) for p in parts}
    todo = [e for e in entries if e.name not in done]
    if not todo:
        return _order(_assemble(shared, parts, attrs), entries)

    world, rank = distributed.world_size(), distributed.rank()
    by_checkpoint = world > 1 and (distribute == "checkpoints" or (distribute == "auto" and len(todo) % world == 0))
    rounds = [todo[i: i + world] for i in range(0, len(todo), world)] if by_checkpoint else [[e] for e in todo]
    batches = [range(i, min(i + batch_size, n_images)) for i in range(0, n_images, batch_size)]
    mine = batches if by_checkpoint else distributed.shard(batches)
    an = _Analysis(shape, band_dict, window, dev) if spectra else None
    bar = _progress(len(rounds) * len(sigmas), progress and distributed.is_main())
    data_stats: dict | None = None
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
                    model = first if entry is entries[0] else entry.get()
                    first = None  # a loaded checkpoint is dropped once swept: one model in memory at a time
                    stats = _sweep_checkpoint(entry, model, source, mine, sigmas, modes, shape, int(seed), dev,
                                              use_autocast, an, keep, len(band_dict),
                                              need_data=data_stats is None, bar=bar)
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
                    shared, data_stats = _data_dataset(new_data, an, sigmas, band_dict)
                local = _checkpoint_dataset(entry, outs, modes, an, sigmas, band_dict, data_stats)
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


def _merge_ranks(outs: dict, data: "_DataStats | None") -> tuple[dict, "_DataStats | None"]:
    """Every rank's accumulators of one checkpoint merged in rank order (the same sums on every rank)."""
    if not distributed.is_distributed():
        return outs, data
    everyone = distributed.all_gather_objects((outs, data))
    merged_outs, merged_data = everyone[0]
    for other_outs, other_data in everyone[1:]:
        for key, st in merged_outs.items():
            st.merge(other_outs[key])
        if merged_data is not None:
            merged_data.merge(other_data)
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
                      an: _Analysis | None, keep, n_bands, *, need_data: bool, bar):
    """One pass over the images for one checkpoint, every σ and mode. Returns ({(σ index, mode): stats}, data)."""
    _check_shape(entry.name, model, shape)
    was_training = getattr(model, "training", False)
    if hasattr(model, "to"):
        model.to(dev)
    if hasattr(model, "eval"):
        model.eval()
    c = shape[0]
    outs = {(s, m): _OutputStats(keep, c, n_bands, m == "denoise") for s in range(len(sigmas)) for m in modes
            } if an is not None else {}
    data = _DataStats(keep, shape, n_bands) if (need_data and an is not None) else None
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
                hint = f" (this model's σ range is [{lo:g}, {hi:g}])" if lo is not None and hi is not None else ""
                raise ValueError(f"checkpoint {entry.name!r}: {err}{hint}") from err
            for idx in batches:
                rows = slice(idx.start, idx.stop)
                x0 = source.images(list(idx)).to(dev)
                noise = per_sample_randn(seed, "sweep/denoise", idx, shape, device=dev) if "denoise" in modes else None
                z = per_sample_randn(seed, "sweep/generate", idx, shape, device=dev) if "generate" in modes else None
                if an is not None:
                    fx = an.fft(x0)
                    data_binned, data_band = an.spectra(x0, fx)
                    if data is not None:
                        data.update(rows, x0, fx, data_binned, data_band, an.kurtosis(x0, fx))
                for si, sigma in enumerate(sigmas):
                    for m in modes:
                        x_in = x0 + sigma * noise if m == "denoise" else sigma * z
                        y = _forward(entry, model, x_in, sigma, dev, use_autocast)
                        if an is None:
                            continue
                        _analyse(outs[(si, m)], an, y, rows, x0, fx, data_binned, f"checkpoint {entry.name!r} "
                                 f"at σ={sigma:g} ({m} mode)")
                    bar.update(step)
    finally:
        if hasattr(model, "train"):
            model.train(was_training)
    return None if an is None else (outs, data)


def _analyse(st: _OutputStats, an: _Analysis, y, rows: slice, x0, fx, data_binned, where: str) -> None:
    fy = an.fft(y)
    binned, band = an.spectra(y, fy)
    if not bool(torch.isfinite(band).all()):  # a NaN/Inf pixel reaches every band power: checks the whole image
        raise ValueError(f"{where} produced NaN or Inf outputs")
    st.log_power.update(rows, band)
    st.kurtosis.update(an.kurtosis(y, fy))
    if st.cross is None:
        st.power.update(binned)
        return
    cross = spectral.cross_power(fy, fx).flatten(-2) @ an.bin_matrix
    error = spectral.abs2(fy - fx).flatten(-2) @ an.bin_matrix
    st.cross.update(binned, data_binned, cross)
    st.error.update(error)
    st.mse.update((y - x0).square().mean((-2, -1)))


# --------------------------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------------------------
def summarize(ds: xr.Dataset, *, lsd_match_db: float = 3.0) -> str:
    """A one-paragraph text summary of a sweep: f_c at σ_max for the first and last checkpoint, bands matched,
    MSE against Wiener's."""
    if "checkpoint" not in ds.dims or ds.sizes["checkpoint"] == 0 or "cutoff_freq" not in ds:
        return "The sweep holds no results."
    names = [str(c) for c in ds.checkpoint.values]
    steps = [int(s) for s in ds.step.values]
    sig = ds.sigma.values
    s_max = float(sig[-1])
    mode = "generate" if "generate" in ds.mode.values else "denoise"

    def label(i: int) -> str:
        return f"{names[i]} (step {steps[i]})" if steps[i] >= 0 else names[i]

    def fc(i: int) -> float:
        return float(ds.cutoff_freq.isel(checkpoint=i, sigma=-1).sel(mode=mode).mean("channel"))

    lowest = float(ds.freq.values[ds.freq.values > 0][0])

    def fc_text(i: int) -> str:
        value = fc(i)
        return f"≤ {lowest:.3f} cycles/px (below −3 dB already at the lowest frequency)" if value <= lowest * (1 + 1e-9) else \
            f"{value:.3f} cycles/px"

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
    parts.append(f"At σ_max = {s_max:.3g} ({mode} mode) the −3 dB cutoff f_c is {text}; the SNR crossover f* is "
                 f"{star}.")
    lsd = ds.lsd.isel(checkpoint=last, sigma=-1).sel(mode=mode).mean("channel")
    matched = [str(b) for b, v in zip(ds.band.values, lsd.values) if v <= lsd_match_db]
    unmatched = [f"{b} ({v:.1f} dB)" for b, v in zip(ds.band.values, lsd.values) if not v <= lsd_match_db]
    parts.append(f"At σ_max the last checkpoint matches the data's spectrum within {lsd_match_db:g} dB (LSD) in "
                 f"band(s): {', '.join(matched) or 'none'}" + (f"; not in {', '.join(unmatched)}." if unmatched
                                                                  else "."))
    if "mse" in ds:
        ratio = (ds.mse.isel(checkpoint=last) / ds.wiener_mse).mean("channel").values
        i_best = int(np.nanargmin(ratio))
        parts.append(f"Its denoising MSE is {np.nanmin(ratio):.2f}–{np.nanmax(ratio):.2f}x Wiener's across σ "
                     f"(best {ratio[i_best]:.2f}x at σ = {float(sig[i_best]):.3g}).")
    return " ".join(parts)
