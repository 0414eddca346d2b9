"""The measurement core: what freqlab measures of a set of images against the data, and what every quantity is called.

One code path serves the sweep (one-step outputs per checkpoint, σ and mode), the GAN fine-tuning log (the
generator's outputs per row) and the data spectra. Each set of images is streamed batch by batch into an
:class:`ImageStats` (radial spectra, per-image band power and band-pass kurtosis, and, for outputs paired with their
clean images, cross-spectra, error spectra and MSE); :func:`data_variables` and :func:`compare` turn the sums into
named results. :data:`VARIABLES` is the one registry of names, long names and units for every results file, so a
``finetune.nc`` row is the same thing as a ``sweep.nc`` cell at (σ_max, generate) and the two compare directly.

Conventions (docs/CONVENTIONS.md has the whole list)
------------------------------------------------------
* Radial spectra use :data:`WINDOW` (Hann) after removing each image's mean: crops are not periodic, and without a
  window the border discontinuity puts spurious power along the frequency axes (measured in
  ``benchmarks/window_leakage.py``). The mean is removed first because a window spreads the DC power into the lowest
  bins. ``window=None`` gives the plain periodic spectrum (exact Parseval; the analytic Wiener tests use it).
* Per-image band statistics never include the DC mode (brightness is not structure) and take the image itself, not
  its windowed version (band-pass filters act on the image): :func:`freqlab.spectral.band_statistics`.
* Cutoffs skip the DC bin and say when they are bounds (:func:`freqlab.spectral.first_departure`).
* Accumulation is float64 on the CPU (a few numbers per image), so merges across processes need no device.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from freqlab import spectral
from freqlab.measure.accumulators import SpectrumAccumulator
from freqlab.measure.conventions import COHERENCE_THRESHOLD, CUTOFF_DB, MATCH_DB, WINDOW
from freqlab.runtime.results import UDUNITS

__all__ = ["VARIABLES", "variable_attrs", "Analysis", "ImageStats", "data_variables", "compare", "PAIRED", "coords", "variable", "to_variables",
           "GENERATE_STREAM", "window_text", "channel_cutoff", "cutoff_text"]

#: The noise stream of generate mode (z per image), shared by the sweep and the fine-tuning log, so that a log
#: row and a sweep cell at (σ_max, generate) with the same seed see the same z, image by image.
GENERATE_STREAM = "sweep/generate"
NORMALISATION = ("P(k) = |DFT(w*(x - mean x))(k)|^2/(H*W*mean(w^2)) (without a window: |DFT(x)(k)|^2/(H*W)); "
                 "radial power = mean of P(k) over the full-plane modes of the bin; corners beyond 0.5 "
                 "cycles/pixel excluded")
BAND_STATISTICS = ("per image and band, DC excluded, on the unwindowed image: mean power of the band's modes; "
                   "kurtosis m4/m2^2 about the mean of the band-pass image (scipy fisher=False)")
CUTOFF_DEFINITION = (f"cutoff_freq: lowest non-DC frequency where |relative_power_db| > {CUTOFF_DB:g} dB; "
                     f"coherence_cutoff: lowest non-DC frequency where coherence < {COHERENCE_THRESHOLD:g}; both "
                     "linearly interpolated between the last bin inside and the first outside; *_bound flags "
                     "-1 (out at the first bin: upper bound), 0 (measured), +1 (never out: lower bound)")


def window_text(window) -> str:
    """How the radial spectra were windowed, for file attributes."""
    if window is None:
        return "none (periodic spectrum)"
    name = window if isinstance(window, str) else window[0] if isinstance(window, tuple) else "user tensor"
    return f"{name}, applied after removing each image's mean"


#: Variables only outputs paired with their clean images have (the sweep's denoise mode).
PAIRED = ("error_power", "error_power_sem", "cross_power", "cross_power_sem", "transfer", "coherence",
          "coherence_cutoff", "coherence_cutoff_bound", "mse", "mse_sem")
LOG_FLOOR = 1e-30  # band power of an all-zero band-pass image; keeps log10 finite (-300 dB)

POWER = "image units² per mode"
DB = "dB"
CPP = "cycles/pixel"

#: name → (long name, units) of every spectral quantity in sweep.nc, finetune.nc and data_spectra.nc.
VARIABLES: dict[str, tuple[str, str]] = {
    # the data
    "data_power": ("mean radial power of the data", POWER),
    "data_power_sem": ("standard error of data_power", POWER),
    "data_band_log_power": ("mean over images of per-image band power of the data, DC excluded", DB),
    "data_band_log_power_std": ("standard deviation over images of per-image band power of the data", DB),
    "data_band_kurtosis": ("mean kurtosis of the data's band-pass images (DC excluded; 3 for Gaussian)", "1"),
    "data_band_kurtosis_sem": ("standard error of data_band_kurtosis", "1"),
    # outputs against the data
    "output_power": ("mean radial power of the outputs", POWER),
    "output_power_sem": ("standard error of output_power", POWER),
    "relative_power_db": ("output power relative to the data's, 10·log10(output_power/data_power)", DB),
    "cutoff_freq": (f"cutoff f_c: lowest non-DC frequency where |relative_power_db| > {CUTOFF_DB:g} dB (too little "
                    "or too much power; interpolated); a bound where cutoff_freq_bound is not 0", CPP),
    "cutoff_freq_bound": ("0: cutoff_freq measured; -1: already out at the first non-DC bin (an upper bound); "
                          "+1: never out (a lower bound)", "1"),
    "lsd": ("log-spectral distance of output_power to data_power per band (non-DC bins)", DB),
    "band_log_power": ("mean over images of per-image output band power, DC excluded", DB),
    "band_log_power_std": ("standard deviation over images of per-image output band power", DB),
    "band_kurtosis": ("mean kurtosis of the outputs' band-pass images (DC excluded; 3 for Gaussian)", "1"),
    "band_kurtosis_sem": ("standard error of band_kurtosis", "1"),
    "diversity_ratio": ("std of per-image log band power, outputs / data (1: as diverse as the data)", "1"),
    "band_power_wasserstein": ("exact 1-D Wasserstein distance between per-image log band power of outputs and "
                               "data (over the images the file's wasserstein_images attr says)", DB),
    "kurtosis_gap": ("band_kurtosis − data_band_kurtosis (negative: more Gaussian than the data)", "1"),
    # the sample mode's trajectory along the sampler's steps
    "sample_trajectory_power": ("mean radial power of the sampler's estimate x̂0 = D(x_i, t_i) before step i",
                                POWER),
    "sample_trajectory_db": ("band power of the sampler's estimate before step i relative to the data's, "
                             "10·log10 of the band means of the radial spectra (DC excluded)", DB),
    "sample_trajectory_lsd": ("log-spectral distance of the sampler's estimate before step i to the data per band "
                              "(non-DC bins; step 0: the one-step output of the same images)", DB),
    # outputs paired with their clean images (denoise mode)
    "error_power": ("mean radial power of the denoising error x̂0 − x0", POWER),
    "error_power_sem": ("standard error of error_power", POWER),
    "cross_power": ("mean radial cross-spectrum Re(X̂0·conj(X0)) of output and clean image", POWER),
    "cross_power_sem": ("standard error of cross_power", POWER),
    "transfer": ("transfer function <Pxy>/<Pyy> of output against clean image", "1"),
    "coherence": ("coherence <Pxy>²/(<Pxx><Pyy>) of output and clean image", "1"),
    "coherence_cutoff": (f"lowest non-DC frequency where coherence < {COHERENCE_THRESHOLD:g} (signal recovered "
                         "below it, not noise passed through); a bound where coherence_cutoff_bound is not 0", CPP),
    "coherence_cutoff_bound": ("0: coherence_cutoff measured; -1: already below at the first non-DC bin (an "
                               "upper bound); +1: never below (a lower bound)", "1"),
    "mse": ("mean squared error per pixel of x̂0 against x0", "image units²"),
    "mse_sem": ("standard error of mse", "image units²"),
    # references (sweep only)
    "snr_crossover": ("SNR crossover f*(σ): lowest frequency where data_power falls to σ² (log-log interpolated; "
                      "NaN if below σ² at every non-DC bin, the top bin if never)", CPP),
    "wiener_output_power": ("stationary Wiener filter output power, per mode P_d²/(P_d+σ²) plus the mean's, "
                            "binned", POWER),
    "wiener_error_power": ("stationary Wiener filter error power, per mode P_d·σ²/(P_d+σ²), binned", POWER),
    "wiener_transfer": ("stationary Wiener filter transfer <Pxy>/<Pyy> per bin", "1"),
    "wiener_coherence": ("stationary Wiener filter coherence <Pxy>²/(<Pxx><Pyy>) per bin", "1"),
    "wiener_coherence_cutoff": (f"lowest non-DC frequency where wiener_coherence < {COHERENCE_THRESHOLD:g}", CPP),
    "wiener_coherence_cutoff_bound": ("0: wiener_coherence_cutoff measured; -1: an upper bound; +1: a lower bound",
                                      "1"),
    "wiener_mse": ("stationary (shift-invariant) Wiener filter MSE per pixel, from the data's spectrum",
                   "image units²"),
    "error_wiener_ratio": ("band error power / stationary Wiener band error power (< 1: beats it)", "1"),
    "linear_mse": ("MSE per pixel of the full-covariance linear MMSE denoiser (the best linear denoiser, fitted on "
                   "held-out training images) on the same noisy inputs", "image units²"),
}


def variable_attrs(name: str) -> dict[str, str]:
    """``long_name``, ``units`` as a reader writes them (``dB``, ``cycles/pixel``; ``1`` for true ratios) and their
    UDUNITS form ``units_udunits`` of a registered variable."""
    long_name, units = VARIABLES[name]
    attrs = {"long_name": long_name, "units": units, "units_udunits": UDUNITS[units]}
    if name.endswith("_bound"):
        attrs.update(flag_values="-1, 0, 1", flag_meanings=" ".join(spectral.CUTOFF_BOUND_FLAGS.values()))
    return attrs


# --------------------------------------------------------------------------------------------------------------
# the analysis of one batch
# --------------------------------------------------------------------------------------------------------------
class Analysis:
    """Everything fixed by the image shape, bands and window, on the device; methods work on one batch.

    ``fft`` gives the spectrum the radial spectra are binned from (mean removed and windowed when there is a
    window); ``band_statistics`` works on the images themselves. Binning runs in float32 on the device.
    """

    def __init__(self, shape, bands=None, window=WINDOW, device="cpu"):
        c, h, w = (int(s) for s in shape)
        self.shape = (c, h, w)
        self.bands = spectral.resolve_bands(bands)
        binning = spectral.radial_binning(h, w, device=device, dtype=torch.float32)
        matrix = binning.matrix[0::2]  # real and imaginary rows carry the same weight: one row per mode
        self.freq = binning.freq.detach().cpu().double()
        self.counts = binning.counts.detach().cpu()
        self.window = spectral.make_window(window, h, w, device=device, dtype=torch.float32)
        self.norm = float(h * w) * (float(self.window.double().square().mean()) if self.window is not None else 1.0)
        self.bin_matrix = (matrix / self.norm).to(torch.float32)  # (H·Wr, n_bins)
        self.bin_matrix64 = matrix.detach().cpu().double()
        self.weights = spectral.halfplane_weights(h, w)

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    def fft(self, x: torch.Tensor) -> torch.Tensor:
        """``rfft2`` of the images as the radial spectra see them, ``(N, C, H, Wr)``."""
        if self.window is None:
            return torch.fft.rfft2(x)
        return torch.fft.rfft2((x - x.mean((-2, -1), keepdim=True)) * self.window)

    def radial(self, fx: torch.Tensor) -> torch.Tensor:
        """Radial power ``(N, C, n_bins)`` from a spectrum of :meth:`fft`."""
        return spectral.abs2(fx).flatten(-2) @ self.bin_matrix

    def radial_cross(self, fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
        """Radial cross-spectrum ``Re(X·conj(Y))`` ``(N, C, n_bins)``."""
        return spectral.cross_power(fx, fy).flatten(-2) @ self.bin_matrix

    def band_statistics(self, x: torch.Tensor) -> spectral.BandStatistics:
        return spectral.band_statistics(x, self.bands, check_finite=False)


# --------------------------------------------------------------------------------------------------------------
# accumulators
# --------------------------------------------------------------------------------------------------------------
class NanMean:
    """Streaming mean and standard error that skips NaN entries (kurtosis of an empty band)."""

    def __init__(self):
        self.n = self.s = self.ss = None

    def update(self, v: torch.Tensor) -> None:
        v = v.detach().double().cpu()
        ok = ~torch.isnan(v)
        z = torch.where(ok, v, 0.0)
        self.merge_sums(ok.sum(0).double(), z.sum(0), z.square().sum(0))

    def merge_sums(self, n, s, ss) -> None:
        if self.n is None:
            self.n, self.s, self.ss = n.clone(), s.clone(), ss.clone()
        else:
            self.n += n
            self.s += s
            self.ss += ss

    def merge(self, other: "NanMean") -> "NanMean":
        if other.n is not None:
            self.merge_sums(other.n, other.s, other.ss)
        return self

    @property
    def mean(self) -> torch.Tensor:
        return torch.where(self.n > 0, self.s / self.n.clamp_min(1), torch.nan)

    @property
    def sem(self) -> torch.Tensor:
        n = self.n.clamp_min(2)
        var = ((self.ss - self.n * self.mean.nan_to_num().square()) / (n - 1)).clamp_min(0)
        return torch.where(self.n > 1, (var / n).sqrt(), torch.nan)


class LogPower:
    """Per-image band power in dB: mean and std over all images (streaming, float64), and the values of the first
    ``keep`` images for the Wasserstein distance, so memory is bounded by ``keep``, not by the number of images."""

    def __init__(self, keep: int, c: int, n_bands: int):
        self.keep = keep
        self.values = torch.zeros(keep, c, n_bands, dtype=torch.float64)
        self.acc = SpectrumAccumulator(device="cpu")

    def update(self, rows: slice, band_power: torch.Tensor) -> None:
        db = 10 * torch.log10(band_power.detach().double().cpu().clamp_min(LOG_FLOOR))
        self.acc.update(db)
        n = min(rows.stop, self.keep) - rows.start
        if n > 0:
            self.values[rows.start: rows.start + n] = db[:n]

    def merge(self, other: "LogPower") -> "LogPower":
        """Add another process's images; its rows of ``values`` are disjoint from ours (zeros elsewhere)."""
        self.acc.merge(other.acc)
        self.values += other.values
        return self

    @property
    def samples(self) -> torch.Tensor:
        return self.values[: min(self.acc.count, self.keep)]


class ImageStats:
    """Spectra and per-image band statistics of one set of images, streamed batch by batch.

    ``paired``: the images are outputs paired with clean images (denoise mode); also accumulates the
    cross-spectrum with the clean image, the error spectrum and the per-pixel MSE. ``modes``: also keep
    ``Σ_images |DFT(x)(k)|²`` per mode of the *unwindowed* images and the pixel sum (the data, for the Wiener
    reference, which acts on the periodic spectrum whatever window the reported spectra use).
    """

    def __init__(self, an: Analysis, keep: int, *, paired: bool = False, modes: bool = False):
        c = an.shape[0]
        self.power = SpectrumAccumulator(device="cpu")
        self.log_power = LogPower(keep, c, an.n_bands)
        self.kurtosis = NanMean()
        self.cross = SpectrumAccumulator(device="cpu") if paired else None
        self.error = SpectrumAccumulator(device="cpu") if paired else None
        self.mse = SpectrumAccumulator(device="cpu") if paired else None
        self.mode_power = torch.zeros(c, an.shape[1], an.shape[2] // 2 + 1, dtype=torch.float64) if modes else None
        self.pixel_sum = torch.zeros(c, dtype=torch.float64) if modes else None

    @property
    def count(self) -> int:
        return self.power.count

    def update(self, an: Analysis, x: torch.Tensor, rows: slice, *, fx: torch.Tensor | None = None,
               clean: tuple[torch.Tensor, torch.Tensor] | None = None, what: str = "images") -> torch.Tensor:
        """Add a batch ``x`` ``(N, C, H, W)``, images ``rows`` of the set; returns its spectrum ``an.fft(x)``.

        ``fx``: that spectrum when already computed. ``clean``: ``(x0, an.fft(x0))`` for paired outputs.
        """
        fx = an.fft(x) if fx is None else fx
        bs = an.band_statistics(x)
        if not bool(torch.isfinite(bs.power).all()):  # one NaN/Inf pixel reaches every band power
            raise ValueError(f"{what} contain NaN or Inf values")
        self.power.update(an.radial(fx))
        self.log_power.update(rows, bs.power)
        self.kurtosis.update(bs.kurtosis)
        if self.cross is not None:
            x0, f0 = clean
            self.cross.update(an.radial_cross(fx, f0))
            self.error.update(an.radial(fx - f0))
            self.mse.update((x - x0).double().square().mean((-2, -1)))
        if self.mode_power is not None:  # the periodic spectrum, whatever the window: see wiener_reference
            plain = fx if an.window is None else torch.fft.rfft2(x)
            self.mode_power += spectral.abs2(plain).sum(0).to("cpu", torch.float64)
            self.pixel_sum += x.double().sum((0, 2, 3)).cpu()
        return fx

    def merge(self, other: "ImageStats") -> "ImageStats":
        """Add another process's share of the same set (same settings)."""
        for name in ("power", "log_power", "kurtosis", "cross", "error", "mse"):
            mine = getattr(self, name)
            if mine is not None:
                mine.merge(getattr(other, name))
        if self.mode_power is not None:
            self.mode_power += other.mode_power
            self.pixel_sum += other.pixel_sum
        return self


# --------------------------------------------------------------------------------------------------------------
# named results
# --------------------------------------------------------------------------------------------------------------
Named = dict[str, tuple[tuple[str, ...], torch.Tensor]]


def _sem(acc: SpectrumAccumulator) -> torch.Tensor:
    return acc.sem if acc.count > 1 else acc.mean * math.nan


def data_variables(data: ImageStats) -> Named:
    """The data's variables, ``{name: (dims, values)}`` with dims from ``channel``, ``freq``, ``band``."""
    lp = data.log_power.acc
    return {
        "data_power": (("channel", "freq"), data.power.mean),
        "data_power_sem": (("channel", "freq"), _sem(data.power)),
        "data_band_log_power": (("channel", "band"), lp.mean),
        "data_band_log_power_std": (("channel", "band"), lp.std if lp.count > 1 else lp.mean * math.nan),
        "data_band_kurtosis": (("channel", "band"), data.kurtosis.mean),
        "data_band_kurtosis_sem": (("channel", "band"), data.kurtosis.sem),
    }


def compare(out: ImageStats, data: ImageStats, an: Analysis) -> Named:
    """Outputs against the data: spectra, cutoffs, band distances and per-image band statistics.

    Returns ``{name: (dims, values)}`` with dims from ``channel``, ``freq``, ``band``; paired outputs also get the
    error and cross spectra, transfer, coherence, its cutoff and the MSE. The transfer function and coherence use
    the data power of the same images (``data``), as the sweep pairs every output with its clean image.
    """
    freq, nondc = an.freq, an.freq > 0
    data_power, power = data.power.mean, out.power.mean
    rel = spectral.relative_power_db(power, data_power)
    cut = spectral.cutoff_frequency(freq[nondc], rel[..., nondc], CUTOFF_DB)
    lp, ref = out.log_power, data.log_power
    kurt = out.kurtosis.mean
    named: Named = {
        "output_power": (("channel", "freq"), power),
        "output_power_sem": (("channel", "freq"), _sem(out.power)),
        "relative_power_db": (("channel", "freq"), rel),
        "cutoff_freq": (("channel",), cut.freq),
        "cutoff_freq_bound": (("channel",), cut.bound),
        "lsd": (("channel", "band"), spectral.log_spectral_distance(power[..., nondc], data_power[..., nondc],
                                                                     freq[nondc], an.bands)),
        "band_log_power": (("channel", "band"), lp.acc.mean),
        "band_log_power_std": (("channel", "band"), lp.acc.std if lp.acc.count > 1 else lp.acc.mean * math.nan),
        "band_kurtosis": (("channel", "band"), kurt),
        "band_kurtosis_sem": (("channel", "band"), out.kurtosis.sem),
        # from streaming sums over all images (spectral.diversity_ratio needs every value at once)
        "diversity_ratio": (("channel", "band"), lp.acc.std / ref.acc.std),
        "band_power_wasserstein": (("channel", "band"), spectral.wasserstein_1d(lp.samples, ref.samples)),
        "kurtosis_gap": (("channel", "band"), kurt - data.kurtosis.mean),
    }
    if out.cross is not None:
        cross = out.cross.mean
        coherence = cross.square() / (power * data_power)
        coh_cut = spectral.coherence_cutoff(freq[nondc], coherence[..., nondc], COHERENCE_THRESHOLD)
        named.update({
            "error_power": (("channel", "freq"), out.error.mean),
            "error_power_sem": (("channel", "freq"), _sem(out.error)),
            "cross_power": (("channel", "freq"), cross),
            "cross_power_sem": (("channel", "freq"), _sem(out.cross)),
            "transfer": (("channel", "freq"), cross / data_power),
            "coherence": (("channel", "freq"), coherence),
            "coherence_cutoff": (("channel",), coh_cut.freq),
            "coherence_cutoff_bound": (("channel",), coh_cut.bound),
            "mse": (("channel",), out.mse.mean),
            "mse_sem": (("channel",), _sem(out.mse)),
        })
    return named


def variable(name: str, dims: tuple[str, ...], values) -> tuple:
    """``(dims, array, attrs)`` of a registered variable for :class:`xarray.Dataset`: float64, or int8 for the
    bound flags of cutoffs."""
    import numpy as np

    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return dims, np.asarray(values, dtype=np.int8 if name.endswith("_bound") else np.float64), variable_attrs(name)


def to_variables(named: Mapping[str, tuple[tuple[str, ...], torch.Tensor]]) -> dict:
    """``{name: (dims, array, attrs)}`` of :func:`compare` / :func:`data_variables` output, for xarray."""
    return {name: variable(name, dims, values) for name, (dims, values) in named.items()}


def coords(an: Analysis) -> dict:
    """The coordinates every results file shares: ``channel``, ``freq`` (with ``freq_count``) and ``band`` (with
    ``band_lo``, ``band_hi``)."""
    import numpy as np

    cpp = {"units": CPP, "units_udunits": "1"}
    return {
        "channel": ("channel", np.arange(an.shape[0], dtype=np.int64), {"long_name": "image channel"}),
        "freq": ("freq", an.freq.numpy(), {"long_name": "radial frequency, bin centre (cycles per pixel)", **cpp}),
        "freq_count": ("freq", an.counts.numpy().astype(np.int64),
                       {"long_name": "full-plane Fourier modes in the bin", "units": "1"}),
        "band": ("band", np.array(list(an.bands), dtype=object), {"long_name": "frequency band"}),
        "band_lo": ("band", np.array([b[0] for b in an.bands.values()]),
                    {"long_name": "lower band edge (cycles per pixel)", **cpp}),
        "band_hi": ("band", np.array([b[1] for b in an.bands.values()]),
                    {"long_name": "upper band edge (cycles per pixel; closed at 0.5)", **cpp}),
    }


def channel_cutoff(values, bound):
    """Channel mean of a cutoff (an :class:`xarray.DataArray` with a ``channel`` dim) and its bound flag: -1 or +1
    when any channel's value is a bound (upper bounds first), else 0. Channels where it is undefined (flag 2: no
    power) are left out; 2 and NaN when it is undefined in every channel."""
    defined = bound != 2
    bound = bound.where(defined, 0)
    flag = (bound < 0).any("channel") * -1 + ((bound > 0).any("channel") & ~(bound < 0).any("channel")) * 1
    flag = flag.where(defined.any("channel"), 2)
    return values.where(defined).mean("channel"), flag


def cutoff_text(value, flag, *, short: bool = False) -> str:
    """A (channel-mean) cutoff for reports: ``"0.163 cycles/px"``, or a bound, ``"≤ 0.031 cycles/px (an upper bound:
    off already at the lowest frequency in some channel)"`` / ``"≥ 0.500 cycles/px (a lower bound: ...)"``.
    ``short``: only the number with its ≤ / ≥ mark, for tables (``"≤ 0.031"``)."""
    value, flag = float(value), int(flag)
    if flag == 2 or not math.isfinite(value):
        return "undefined" if short else "undefined (no power to compare in any channel)"
    mark = "≤ " if flag < 0 else "≥ " if flag > 0 else ""
    if short:
        return f"{mark}{value:.3f}"
    why = {-1: " (an upper bound: off already at the lowest frequency in some channel)",
           1: " (a lower bound: never off in some channel)"}.get(flag, "")
    return f"{mark}{value:.3f} cycles/px{why}"


def bands_within(lsd, lsd_match_db: float = MATCH_DB) -> list[str]:
    """The bands of a per-band log-spectral distance ``lsd`` (an xarray DataArray with dim ``band``) at most
    ``lsd_match_db`` from the data."""
    return [str(b) for b, v in zip(lsd.band.values, lsd.values) if v <= lsd_match_db]
