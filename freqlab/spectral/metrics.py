"""Fits and band metrics on radial spectra: spectral slope, bands, band power, relative power, log-spectral
distance, and the cutoffs (where a curve first departs from a criterion, with bound flags)."""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Sequence

import torch

from freqlab.spectral.spectra import DEFAULT_BANDS


class SlopeFit(NamedTuple):
    """Power-law fit ``P ∝ f^slope`` in log-log. Each field has the batch shape of the power given."""

    slope: torch.Tensor
    intercept: torch.Tensor  # log10 P at f = 1 cycle/pixel
    stderr: torch.Tensor
    ci_low: torch.Tensor
    ci_high: torch.Tensor
    n_bins: int


def spectral_slope(
    freq: torch.Tensor,
    power: torch.Tensor,
    fmin: float | None = None,
    fmax: float | None = None,
    *,
    confidence: float = 0.95,
) -> SlopeFit:
    """Least-squares fit of ``log10 P = intercept + slope·log10 f`` over bins with ``fmin <= f <= fmax``.

    Bins with ``f <= 0`` or non-positive or non-finite power are skipped. ``power`` may be batched
    ``(..., n_bins)`` (the bins kept must be the same across the batch). The confidence interval is Student-t with
    ``n - 2`` degrees of freedom on the slope's standard error. Natural images give slopes near -2.
    """
    from scipy.stats import t as student_t  # scipy only for the t quantile

    freq = torch.as_tensor(freq, dtype=torch.float64)
    power = torch.as_tensor(power).to(torch.float64)
    fmin = 0.0 if fmin is None else fmin
    fmax = math.inf if fmax is None else fmax
    sel = (freq > 0) & (freq >= fmin) & (freq <= fmax) & (power > 0).all(dim=tuple(range(power.ndim - 1))).to(freq.device)
    sel &= torch.isfinite(power).all(dim=tuple(range(power.ndim - 1))).to(freq.device)
    n = int(sel.sum())
    if n < 3:
        raise ValueError(f"need at least 3 bins with positive power in [{fmin}, {fmax}] to fit a slope, got {n}")
    lx = torch.log10(freq[sel]).to(power.device)
    ly = torch.log10(power[..., sel])
    mx = lx.mean()
    dx = lx - mx
    sxx = dx.square().sum()
    slope = (ly * dx).sum(-1) / sxx
    intercept = ly.mean(-1) - slope * mx
    resid = ly - (intercept[..., None] + slope[..., None] * lx)
    stderr = torch.sqrt(resid.square().sum(-1) / (n - 2) / sxx)
    q = float(student_t.ppf(0.5 + confidence / 2, n - 2))
    return SlopeFit(slope, intercept, stderr, slope - q * stderr, slope + q * stderr, n)


def resolve_bands(bands: Mapping[str, tuple[float, float]] | Sequence[float] | None = None) -> dict[str, tuple[float, float]]:
    """Bands as ``{name: (lo, hi)}`` in cycles/pixel.

    ``None`` gives :data:`DEFAULT_BANDS`; a mapping is checked; a sequence of edges ``[0, 0.1, 0.3, 0.5]`` gives
    bands named ``"b0", "b1", ...``. Bands are ``[lo, hi)``, except a band ending at or above 0.5, which is closed.
    """
    if bands is None:
        return dict(DEFAULT_BANDS)
    if not isinstance(bands, Mapping):
        edges = [float(e) for e in bands]
        if len(edges) < 2:
            raise ValueError("band edges need at least two values")
        bands = {f"b{i}": (edges[i], edges[i + 1]) for i in range(len(edges) - 1)}
    out = {}
    for name, (lo, hi) in bands.items():
        lo, hi = float(lo), float(hi)
        if not (0 <= lo < hi) or not math.isfinite(hi):
            raise ValueError(f"band {name!r} must satisfy 0 <= lo < hi (cycles/pixel), got ({lo}, {hi})")
        out[str(name)] = (lo, hi)
    return out


def band_mask(freq: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Boolean mask of frequencies in ``[lo, hi)``, closed at ``hi`` when ``hi >= 0.5``."""
    return (freq >= lo) & ((freq <= hi) if hi >= 0.5 else (freq < hi))


def band_power(
    freq: torch.Tensor,
    power: torch.Tensor,
    counts: torch.Tensor | None = None,
    bands: Mapping[str, tuple[float, float]] | Sequence[float] | None = None,
) -> torch.Tensor:
    """Mean power per band, shape ``power.shape[:-1] + (n_bands,)``, bands in :func:`resolve_bands` order.

    With ``counts`` the mean is over modes (bins weighted by their mode counts), i.e. the mean of ``P(k)`` over the
    modes whose bin centre falls in the band; without, a plain mean over bins. NaN for a band with no bins.
    """
    cols = []
    for lo, hi in resolve_bands(bands).values():
        m = band_mask(freq, lo, hi) & torch.isfinite(power).all(dim=tuple(range(power.ndim - 1)))
        wts = (counts.to(power.dtype) if counts is not None else torch.ones_like(freq, dtype=power.dtype)) * m
        total = wts.sum()
        cols.append((power.nan_to_num() * wts).sum(-1) / total if total > 0 else power[..., 0] * float("nan"))
    return torch.stack(cols, dim=-1)


def relative_power_db(power: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``10·log10(power / reference)`` in dB (NaN where either is non-positive)."""
    ratio = power / reference
    return torch.where((power > 0) & (reference > 0), 10.0 * torch.log10(ratio.clamp_min(1e-300)), torch.nan)


def log_spectral_distance(
    power: torch.Tensor,
    reference: torch.Tensor,
    freq: torch.Tensor | None = None,
    bands: Mapping[str, tuple[float, float]] | Sequence[float] | None = None,
) -> torch.Tensor:
    """Log-spectral distance in dB: ``sqrt(mean over bins of (10·log10(P/Pref))²)``.

    Without ``freq`` the mean runs over all bins and the result has shape ``power.shape[:-1]``. With ``freq`` it is
    computed per band (``bands`` as :func:`resolve_bands`), shape ``power.shape[:-1] + (n_bands,)``. Bins where
    either spectrum is non-positive or NaN are skipped.
    """
    db = relative_power_db(power, reference)
    if freq is None:
        return _rms_ignore_nan(db)
    cols = [_rms_ignore_nan(db[..., band_mask(freq, lo, hi)]) for lo, hi in resolve_bands(bands).values()]
    return torch.stack(cols, dim=-1)


def _rms_ignore_nan(db: torch.Tensor) -> torch.Tensor:
    ok = ~torch.isnan(db)
    n = ok.sum(-1)
    sq = torch.where(ok, db, 0.0).square().sum(-1)
    return torch.where(n > 0, torch.sqrt(sq / n.clamp_min(1)), torch.nan)


class Cutoff(NamedTuple):
    """Result of :func:`cutoff_frequency` and :func:`first_departure`, each of the batch shape.

    freq: the cutoff in cycles/pixel. bound: ``0`` where the crossing was measured (interpolated between two bins);
    ``-1`` where the criterion already fails at the first bin (``freq`` is that bin's frequency, an **upper bound**:
    the true cutoff is at or below it); ``+1`` where it never fails (``freq`` is the last bin's, a **lower bound**).
    """

    freq: torch.Tensor
    bound: torch.Tensor


#: Meanings of :attr:`Cutoff.bound`, as CF ``flag_values`` / ``flag_meanings``.
CUTOFF_BOUND_FLAGS = {-1: "upper_bound_fails_at_first_bin", 0: "measured", 1: "lower_bound_never_fails",
                      2: "undefined_no_valid_bin"}


def first_departure(freq: torch.Tensor, values: torch.Tensor, lower: float = -math.inf,
                    upper: float = math.inf) -> Cutoff:
    """Lowest frequency where ``values`` leave the interval ``[lower, upper]``, linearly interpolated.

    ``values`` ``(..., n_bins)`` over ``freq`` ``(n_bins,)``; NaN bins are skipped. The crossing lies between the
    last bin inside and the first bin outside, where the straight line between them meets the limit that is
    crossed (``upper`` when the first bin outside is above it, else ``lower``). See :class:`Cutoff` for the bounds.
    """
    freq = freq.to(values.dtype)
    valid = ~torch.isnan(values)
    out = valid & ((values < lower) | (values > upper))
    n = freq.numel()
    idx = torch.arange(n, device=values.device).expand_as(values)
    any_out = out.any(-1)
    first = torch.where(any_out, torch.where(out, idx, n).min(-1).values, n - 1)
    prev = torch.where(valid & (idx < first[..., None]), idx, -1).max(-1).values  # last valid bin inside
    measured = any_out & (prev >= 0)
    prev_c = prev.clamp_min(0)
    d0 = values.gather(-1, prev_c[..., None]).squeeze(-1)
    d1 = values.gather(-1, first[..., None]).squeeze(-1)
    target = torch.where(d1 > upper, torch.as_tensor(upper, dtype=values.dtype),
                         torch.as_tensor(lower, dtype=values.dtype))
    t = ((target - d0) / (d1 - d0)).nan_to_num(0.0).clamp(0, 1)
    f = torch.where(measured, freq[prev_c] + t * (freq[first] - freq[prev_c]), freq[first])
    last_valid = torch.where(valid, idx, -1).max(-1).values.clamp_min(0)
    f = torch.where(any_out, f, freq[last_valid])
    bound = torch.where(measured, 0, torch.where(any_out, -1, 1)).to(torch.int8)
    # no valid bin at all (a channel with no power: every relative value NaN): no cutoff to speak of
    defined = valid.any(-1)
    f = torch.where(defined, f, torch.full_like(f, math.nan))
    bound = torch.where(defined, bound, torch.full_like(bound, 2))
    return Cutoff(f, bound)


def cutoff_frequency(freq: torch.Tensor, relative_db: torch.Tensor, threshold_db: float = 3.0) -> Cutoff:
    """The cutoff ``f_c``: lowest frequency where ``|relative power| > threshold_db`` (too little *or* too much).

    ``relative_db`` ``(..., n_bins)`` is ``10·log10(P_out/P_data)``; pass the non-DC bins only (the DC mode is the
    mean brightness, not a spatial frequency). Power 40 dB above the data is not "reproduced", so excess counts as
    a departure just like a shortfall. Returns a :class:`Cutoff` (value and bound flag); see
    :func:`first_departure` for the interpolation.
    """
    t = abs(float(threshold_db))
    return first_departure(freq, relative_db, -t, t)


def coherence_cutoff(freq: torch.Tensor, coherence: torch.Tensor, threshold: float = 0.5) -> Cutoff:
    """Lowest frequency where the coherence of an output with the clean image falls below ``threshold``.

    Above it the output no longer carries the clean signal (noise passed through or hallucinated). For the Wiener
    filter the coherence of a mode is ``P_d/(P_d+σ²)``, so its coherence cutoff is the SNR crossover ``f*(σ)``.
    """
    return first_departure(freq, coherence, lower=float(threshold))
