"""Radially averaged power spectra and band metrics, in pure torch.

Conventions (docs/CONVENTIONS.md):

* Images are real tensors of shape ``(..., H, W)``; any leading dims (``N, C``) are kept.
* With window ``w`` (all ones when none) the per-mode power is
  ``P(k) = |DFT(w·x)(k)|² / (H·W·mean(w²))``, so white noise of variance ``s²`` is flat at ``s²``.
* The radial frequency of mode ``(ky, kx)`` is ``|f| = sqrt((ky/H)² + (kx/W)²)`` in cycles/pixel, which is right
  for non-square images. The radial power of a bin is the **mean of P(k) over the full-plane modes** whose
  ``|f|`` falls in the bin; counts are full-plane mode counts. With no window and every mode binned
  (``include_corners=True``), ``Σ_b counts_b·power_b = H·W·mean(x²)`` (Parseval).
* Only the ``rfft2`` half plane is computed; each half-plane column stands for itself and its mirror image
  (weight 2), except the zero column and, for even ``W``, the Nyquist column (weight 1).
* Default bins are centred on ``k / max(H, W)`` for ``k = 0 .. max(H, W)//2`` with width ``1/max(H, W)``, so bin 0
  holds the DC mode and axis-aligned modes sit on bin centres (never on an edge). Modes with ``|f| > 0.5`` (the
  corners beyond Nyquist) are left out unless ``include_corners=True``.

Nothing here does I/O or knows about models; every function takes device and dtype from its input and is
differentiable, so spectra can sit inside a loss.
"""

from freqlab.spectral.bandstats import (
                                        BandStatistics,
                                        band_masks,
                                        band_statistics,
                                        bandpass,
                                        central_kurtosis,
                                        diversity_ratio,
                                        kurtosis_gap,
                                        wasserstein_1d,
)
from freqlab.spectral.metrics import (
                                        CUTOFF_BOUND_FLAGS,
                                        Cutoff,
                                        SlopeFit,
                                        band_mask,
                                        band_power,
                                        coherence_cutoff,
                                        cutoff_frequency,
                                        first_departure,
                                        log_spectral_distance,
                                        relative_power_db,
                                        resolve_bands,
                                        spectral_slope,
)
from freqlab.spectral.spectra import (
                                        DEFAULT_BANDS,
                                        RadialBinning,
                                        RadialSpectrum,
                                        WindowSpec,
                                        abs2,
                                        cross_power,
                                        halfplane_weights,
                                        make_window,
                                        power_spectrum_2d,
                                        radial_binning,
                                        radial_cross_spectrum,
                                        radial_frequency,
                                        radial_power_spectrum,
                                        radial_spectra,
)

__all__ = [
    "DEFAULT_BANDS",
    "RadialSpectrum",
    "RadialBinning",
    "SlopeFit",
    "radial_binning",
    "radial_power_spectrum",
    "radial_cross_spectrum",
    "radial_spectra",
    "power_spectrum_2d",
    "make_window",
    "WindowSpec",
    "spectral_slope",
    "resolve_bands",
    "band_power",
    "relative_power_db",
    "log_spectral_distance",
    "Cutoff",
    "CUTOFF_BOUND_FLAGS",
    "first_departure",
    "cutoff_frequency",
    "coherence_cutoff",
    "radial_frequency",
    "halfplane_weights",
    "abs2",
    "cross_power",
    "band_mask",
    "BandStatistics",
    "band_masks",
    "bandpass",
    "central_kurtosis",
    "band_statistics",
    "diversity_ratio",
    "wasserstein_1d",
    "kurtosis_gap",
]
