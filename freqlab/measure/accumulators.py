"""Streaming accumulators for spectra: mean, variance, standard error and cross-spectra over many batches.

State is kept as plain sums (count, Σx, Σx²) in float64, so two accumulators merge by addition: accumulating A
and B separately and merging equals accumulating A+B in one pass, and a distributed run all-reduces the sums.
Memory is that of one spectrum, whatever the number of images.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import xarray as xr

from freqlab import spectral

__all__ = ["SpectrumAccumulator", "CrossSpectrumAccumulator", "default_dims"]

FREQ_ATTRS = {"units": "cycles/pixel", "units_udunits": "1", "long_name": "radial frequency (bin centre)"}


def default_dims(ndim: int) -> tuple[str, ...]:
    """Dims for a per-sample spectrum of ``ndim`` dims: ``("freq",)``, ``("channel", "freq")``, ..."""
    names = ("channel", "freq") if ndim == 2 else ("freq",) if ndim == 1 else tuple(f"dim_{i}" for i in range(ndim - 1)) + ("freq",)
    return names


class SpectrumAccumulator:
    """Mean, variance and standard error of spectra over samples, accumulated batch by batch.

    ``update(power)`` takes a batch ``(N, *shape)`` (e.g. ``(N, C, n_bins)`` from
    :func:`freqlab.spectral.radial_power_spectrum`) and reduces over the first dim. Statistics have ``shape``.

    Examples
    --------
    >>> acc = SpectrumAccumulator()
    >>> for batch in batches:
    ...     acc.update(radial_power_spectrum(batch).power)
    >>> acc.mean, acc.sem      # (C, n_bins) each
    """

    def __init__(self, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64):
        self.device = torch.device(device) if device is not None else None
        self.dtype = dtype
        self.count = 0
        self.sum: torch.Tensor | None = None
        self.sumsq: torch.Tensor | None = None

    # -- accumulation ----------------------------------------------------------------------------------------
    def update(self, values: torch.Tensor) -> "SpectrumAccumulator":
        """Add a batch ``(N, *shape)``; NaN or Inf values are an error (they would poison every mean)."""
        if values.ndim < 1 or values.shape[0] == 0:
            raise ValueError(f"update needs a non-empty batch (N, ...), got shape {tuple(values.shape)}")
        values = values.detach()
        if self.device is None:
            self.device = values.device
        v = values.to(device=self.device, dtype=self.dtype)
        if not bool(torch.isfinite(v).all()):
            raise ValueError("spectrum batch contains NaN or Inf (a non-finite model output, or an empty bin?)")
        s, ss = v.sum(0), v.square().sum(0)
        if self.sum is None:
            self.sum, self.sumsq = s, ss
        else:
            if s.shape != self.sum.shape:
                raise ValueError(f"batch shape {tuple(s.shape)} does not match accumulated shape {tuple(self.sum.shape)}")
            self.sum += s
            self.sumsq += ss
        self.count += int(values.shape[0])
        return self

    def merge(self, other: "SpectrumAccumulator") -> "SpectrumAccumulator":
        """Add another accumulator's samples to this one (in place); returns self."""
        if other.count == 0:
            return self
        if self.count == 0:
            self.load_state_dict(other.state_dict())
            return self
        if other.sum.shape != self.sum.shape:
            raise ValueError(f"cannot merge accumulators of shapes {tuple(self.sum.shape)} and {tuple(other.sum.shape)}")
        self.sum += other.sum.to(self.sum)
        self.sumsq += other.sumsq.to(self.sumsq)
        self.count += other.count
        return self

    # -- statistics ------------------------------------------------------------------------------------------
    def _need(self, n: int) -> None:
        if self.count < n:
            raise ValueError(f"this statistic needs at least {n} sample(s), the accumulator has {self.count}")

    @property
    def mean(self) -> torch.Tensor:
        self._need(1)
        return self.sum / self.count

    @property
    def var(self) -> torch.Tensor:
        """Unbiased sample variance (``ddof=1``)."""
        self._need(2)
        m = self.mean
        return ((self.sumsq - self.count * m.square()) / (self.count - 1)).clamp_min(0.0)

    @property
    def std(self) -> torch.Tensor:
        return self.var.sqrt()

    @property
    def sem(self) -> torch.Tensor:
        """Standard error of the mean, ``std / sqrt(count)``."""
        return (self.var / self.count).sqrt()

    def ci(self, level: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
        """Normal-approximation confidence interval of the mean, ``mean ± z·sem``."""
        if not 0 < level < 1:
            raise ValueError(f"confidence level must be in (0, 1), got {level}")
        z = math.sqrt(2.0) * torch.special.erfinv(torch.tensor(level, dtype=torch.float64)).item()
        m, e = self.mean, self.sem
        return m - z * e, m + z * e

    # -- state -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        self._need(1)
        return {"count": torch.tensor(self.count, dtype=torch.int64), "sum": self.sum.clone(), "sumsq": self.sumsq.clone()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> "SpectrumAccumulator":
        self.count = int(state["count"])
        dev = self.device if self.device is not None else state["sum"].device
        self.device = torch.device(dev)
        self.sum = state["sum"].to(device=self.device, dtype=self.dtype).clone()
        self.sumsq = state["sumsq"].to(device=self.device, dtype=self.dtype).clone()
        return self

    # -- xarray ----------------------------------------------------------------------------------------------
    def to_dataset(
        self,
        freq: torch.Tensor | Sequence[float],
        *,
        dims: Sequence[str] | None = None,
        coords: Mapping[str, object] | None = None,
        units: str = "power (image units²)",
        prefix: str = "",
    ) -> xr.Dataset:
        """``{prefix}mean``, ``{prefix}sem`` and ``{prefix}var`` as DataArrays plus ``{prefix}count``.

        ``dims`` name the per-sample axes (default: ``("freq",)`` or ``("channel", "freq")``); the last is ``freq``
        with the given bin centres as coordinate in cycles/pixel.
        """
        self._need(1)
        dims = tuple(dims) if dims is not None else default_dims(self.sum.ndim)
        if len(dims) != self.sum.ndim:
            raise ValueError(f"dims {dims} do not match the spectrum's {self.sum.ndim} dimension(s)")
        all_coords = {"freq": ("freq", _numpy(freq), FREQ_ATTRS)}
        all_coords.update(coords or {})
        attrs = {"units": units}
        data = {
            f"{prefix}mean": (dims, _numpy(self.mean), attrs),
            f"{prefix}var": (dims, _numpy(self.var) if self.count > 1 else _numpy(self.mean) * math.nan, attrs),
            f"{prefix}sem": (dims, _numpy(self.sem) if self.count > 1 else _numpy(self.mean) * math.nan, attrs),
        }
        ds = xr.Dataset(data, coords=all_coords)
        ds[f"{prefix}count"] = xr.DataArray(self.count, attrs={"long_name": "number of samples"})
        return ds

    def to_dataarray(self, freq, *, dims=None, coords=None, units: str = "power (image units²)", name: str = "power") -> xr.DataArray:
        """The mean as a DataArray named ``name`` (use :meth:`to_dataset` for sem and count too)."""
        return self.to_dataset(freq, dims=dims, coords=coords, units=units)["mean"].rename(name)

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, prefix: str = "", **kwargs) -> "SpectrumAccumulator":
        """Rebuild an accumulator from :meth:`to_dataset` output (mean, var and count)."""
        n = int(ds[f"{prefix}count"])
        mean = torch.as_tensor(ds[f"{prefix}mean"].values, dtype=torch.float64)
        var = torch.as_tensor(ds[f"{prefix}var"].values, dtype=torch.float64)
        var = torch.nan_to_num(var, nan=0.0) if n < 2 else var
        acc = cls(**kwargs)
        return acc.load_state_dict({"count": torch.tensor(n), "sum": mean * n, "sumsq": var * (n - 1) + n * mean.square()})


class CrossSpectrumAccumulator:
    """Power of an output ``x``, of a reference ``y`` and their cross-spectrum, accumulated over images.

    From the means: transfer function ``H = <Pxy>/<Pyy>`` and coherence ``γ² = <Pxy>²/(<Pxx>·<Pyy>)`` per bin.
    For a Wiener filter with ``x = H·(y + noise)`` these are ``H`` and ``P_d/(P_d+σ²)``.
    """

    def __init__(self, *, device=None, dtype: torch.dtype = torch.float64):
        self.xx = SpectrumAccumulator(device=device, dtype=dtype)
        self.yy = SpectrumAccumulator(device=device, dtype=dtype)
        self.xy = SpectrumAccumulator(device=device, dtype=dtype)

    @property
    def count(self) -> int:
        return self.xx.count

    def update(self, pxx: torch.Tensor, pyy: torch.Tensor, pxy: torch.Tensor) -> "CrossSpectrumAccumulator":
        """Add per-image binned spectra, each ``(N, *shape)`` (see :func:`freqlab.spectral.radial_spectra`)."""
        self.xx.update(pxx)
        self.yy.update(pyy)
        self.xy.update(pxy)
        return self

    def update_images(self, x: torch.Tensor, y: torch.Tensor, **spectral_options) -> torch.Tensor:
        """Compute and add the spectra of image batches ``x`` (output) and ``y`` (reference); returns freq."""
        sxx, syy, sxy = spectral.radial_spectra(x, y, **spectral_options)
        self.update(sxx.power, syy.power, sxy.power)
        return sxx.freq

    def merge(self, other: "CrossSpectrumAccumulator") -> "CrossSpectrumAccumulator":
        self.xx.merge(other.xx)
        self.yy.merge(other.yy)
        self.xy.merge(other.xy)
        return self

    @property
    def transfer(self) -> torch.Tensor:
        return self.xy.mean / self.yy.mean

    @property
    def coherence(self) -> torch.Tensor:
        return self.xy.mean.square() / (self.xx.mean * self.yy.mean)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{k}.{n}": v for k in ("xx", "yy", "xy") for n, v in getattr(self, k).state_dict().items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> "CrossSpectrumAccumulator":
        for k in ("xx", "yy", "xy"):
            getattr(self, k).load_state_dict({n: state[f"{k}.{n}"] for n in ("count", "sum", "sumsq")})
        return self


def _numpy(t) -> "object":
    if isinstance(t, torch.Tensor):
        return t.detach().to("cpu", torch.float64).numpy()
    import numpy as np

    return np.asarray(t, dtype=float)
