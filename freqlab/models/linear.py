"""The linear references: the stationary Wiener filter (the best *shift-invariant* linear denoiser for data of a
known power spectrum; exact MMSE for Gaussian random fields) and the full-covariance linear MMSE denoiser (the best
linear denoiser for data of a known mean and covariance; small images only). Both follow the
:class:`freqlab.models.denoisers.Denoiser` interface."""

from __future__ import annotations

import torch

from freqlab.models.denoisers import Denoiser
from freqlab.spectral import radial_frequency

__all__ = ["LINEAR_MAX_DIM", "LinearMMSEDenoiser", "WienerDenoiser"]


# --------------------------------------------------------------------------------------------------------------
# the Wiener filter
# --------------------------------------------------------------------------------------------------------------
def _interp_loglog(f: torch.Tensor, freq: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
    """Interpolate ``power (..., B)`` given at ascending ``freq (B,) > 0`` to ``f (M,) > 0`` linearly in log-log.

    Below the table: constant. Above: the power law fitted (least squares in log-log) to the last four points,
    so the corner modes beyond a table that stops at Nyquist follow the spectrum's slope.
    """
    lx, ly, lf = freq.log(), power.log(), f.log()
    idx = torch.searchsorted(lx, lf).clamp(1, lx.numel() - 1) if lx.numel() > 1 else None
    if idx is None:
        return ly[..., :1].expand(*ly.shape[:-1], f.numel()).exp()
    lo = idx - 1
    w = ((lf - lx[lo]) / (lx[idx] - lx[lo])).clamp(0.0, 1.0)
    out = ly[..., lo] * (1 - w) + ly[..., idx] * w
    tail = lx[-4:]
    tx = tail - tail.mean()
    slope = ((ly[..., -4:] - ly[..., -4:].mean(-1, keepdim=True)) * tx).sum(-1, keepdim=True) / tx.square().sum()
    above = lf > lx[-1]
    out = torch.where(above, ly[..., -1:] + slope * (lf - lx[-1]), out)
    return out.exp()


class WienerDenoiser(Denoiser):
    """The stationary Wiener filter: the best shift-invariant linear denoiser for data of power spectrum ``P_d``.

    Per Fourier mode ``k`` of the fluctuation about the data mean ``μ``:
    ``x̂0 = μ + IDFT[H(k)·DFT(x_σ − μ)]`` with ``H = P_d/(P_d+σ²)``. ``P_d(k)`` uses freqlab.spectral's
    normalisation, ``P(k) = |DFT(x)(k)|²/(H·W)``, so that white noise of variance ``σ²`` has ``P = σ²`` and the
    filter needs no size factor. Expected output power ``P_d²/(P_d+σ²)``, error power ``P_d·σ²/(P_d+σ²)``.
    For Gaussian random fields of spectrum ``P_d`` it is the exact MMSE denoiser.

    ``P_d`` is given as a radial function (``freq`` in cycles/pixel, e.g. from
    :func:`freqlab.spectral.radial_power_spectrum`) and interpolated in log-log to each mode's ``|f|`` (see
    ``_interp_loglog``), so the filter applies to any image size. **DC**: the image mean is treated as one more
    mode of ``x − μ``: its power is the table's ``f = 0`` entry when there is one (the default spectral bins put
    the DC mode alone in bin 0; for data with per-channel mean ``μ`` it is ``H·W·Var(image mean)``), otherwise the
    power at the lowest tabulated frequency.

    Parameters
    ----------
    freq : ``(B,)`` ascending, cycles/pixel, ≥ 0
    power : ``(B,)`` (shared by every channel) or ``(C, B)``; > 0 at positive frequencies; NaN bins are ignored
    image_shape : ``(C, H, W)``
        The nominal image shape (any ``H, W`` is accepted).
    mean : float or ``(C,)``
        Data mean ``μ`` per channel.
    """

    def __init__(self, freq, power, *, image_shape, mean=0.0, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 sigma_data: float = 0.5):
        super().__init__(image_shape=image_shape, sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data,
                         size_multiple=1)
        c = self.image_shape[0]
        freq = torch.as_tensor(freq, dtype=torch.float64).detach().cpu().flatten()
        power = torch.as_tensor(power, dtype=torch.float64).detach().cpu()
        power = power.reshape(1, -1) if power.ndim == 1 else power
        if power.ndim != 2 or power.shape[-1] != freq.numel() or power.shape[0] not in (1, c):
            raise ValueError(f"power must have shape ({freq.numel()},) or ({c}, {freq.numel()}) to match freq and "
                             f"the {c} channels, got {tuple(power.shape)}")
        keep = torch.isfinite(power).all(0) & torch.isfinite(freq)
        freq, power = freq[keep], power[:, keep]
        pos = freq > 0
        if int(pos.sum()) < 1 or not bool((freq[1:] > freq[:-1]).all()) or bool((freq < 0).any()):
            raise ValueError("freq must be ascending, ≥ 0, with at least one positive frequency (cycles/pixel)")
        if not bool((power[:, pos] > 0).all()) or bool((power < 0).any()):
            raise ValueError("power must be > 0 at every positive frequency (and ≥ 0 at f = 0)")
        dc = power[:, ~pos][:, :1] if bool((~pos).any()) else power[:, pos][:, :1]
        mean_t = torch.as_tensor(mean, dtype=torch.float64).detach().cpu().flatten()
        if mean_t.numel() not in (1, c) or not bool(torch.isfinite(mean_t).all()):
            raise ValueError(f"mean must be a finite float or have {c} entries, got {mean_t.tolist()}")
        self.register_buffer("freq", freq[pos])
        self.register_buffer("power", power[:, pos])
        self.register_buffer("dc_power", dc.reshape(-1))
        self.register_buffer("mean", mean_t.expand(c).clone())
        self._mode_cache: dict[tuple, torch.Tensor] = {}

    @classmethod
    def from_images(cls, x: torch.Tensor, *, per_channel: bool = True, **kwargs) -> "WienerDenoiser":
        """Fit ``μ`` and ``P_d`` from clean images ``x`` ``(N, C, H, W)``.

        ``μ`` is the per-channel mean; ``P_d`` the mean over images of the radial spectrum of ``x − μ`` (every
        mode binned, corners included, DC alone in bin 0), per channel or averaged over channels;
        ``sigma_data`` defaults to the standard deviation of ``x``. Other keywords go to the constructor.
        """
        from freqlab.spectral import radial_power_spectrum

        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] < 1:
            raise ValueError(f"x must be a tensor of clean images (N, C, H, W), got {getattr(x, 'shape', type(x))}")
        x = x.detach().to(torch.float64)
        mean = x.mean(dim=(0, 2, 3))
        spec = radial_power_spectrum(x - mean.view(1, -1, 1, 1), include_corners=True)
        power = spec.power.mean(0)
        if not per_channel:
            power, mean = power.mean(0), mean.mean().expand(x.shape[1])
        kwargs.setdefault("sigma_data", float(x.std()))
        return cls(spec.freq, power, image_shape=tuple(x.shape[1:]), mean=mean, **kwargs)

    def mode_power(self, h: int, w: int, *, device=None, dtype=torch.float64) -> torch.Tensor:
        """``P_d`` per ``rfft2`` mode, shape ``(C or 1, h, w//2+1)``."""
        key = (h, w, str(torch.device(device or "cpu")), dtype)
        cached = self._mode_cache.get(key)
        if cached is None:
            # the cache is reused with gradients, so it must not be created as an inference tensor
            with torch.inference_mode(False), torch.no_grad():
                f = radial_frequency(h, w).flatten()
                freq, power = self.freq.double().cpu(), self.power.double().cpu()
                out = torch.empty(power.shape[0], f.numel(), dtype=torch.float64)
                nonzero = f > 0
                out[:, nonzero] = _interp_loglog(f[nonzero], freq, power)
                out[:, ~nonzero] = self.dc_power.double().cpu().view(-1, 1)
                cached = out.view(-1, h, w // 2 + 1).to(device=device, dtype=dtype)
            self._mode_cache[key] = cached
        return cached

    def transfer(self, sigma: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """``H = P_d/(P_d+σ²)`` per mode, ``(N, C or 1, h, w//2+1)`` for ``sigma`` ``(N,)``."""
        p = self.mode_power(h, w, device=sigma.device, dtype=sigma.dtype)
        s2 = (sigma * sigma).view(-1, 1, 1, 1)
        return p / (p + s2)

    def _apply(self, fn, *args, **kwargs):
        self._mode_cache = {}
        return super()._apply(fn, *args, **kwargs)

    def _denoise(self, x, sigma):
        dtype = self.outer_dtype(x)
        h, w = x.shape[-2:]
        mean = self.mean.to(device=x.device, dtype=dtype).view(1, -1, 1, 1)
        spectrum = torch.fft.rfft2(x.to(dtype) - mean)
        return torch.fft.irfft2(self.transfer(sigma, h, w) * spectrum, s=(h, w)) + mean


# --------------------------------------------------------------------------------------------------------------
# the full-covariance linear MMSE denoiser
# --------------------------------------------------------------------------------------------------------------
LINEAR_MAX_DIM = 4096


def _check_linear_dim(image_shape, max_dim: int) -> int:
    """``D = C·H·W``; a ValueError when it exceeds ``max_dim``."""
    c, h, w = (int(s) for s in image_shape)
    d = c * h * w
    if d > int(max_dim):
        raise ValueError(f"the full-covariance linear reference is limited to images of at most {int(max_dim)} values "
                         f"(C·H·W); got {c}×{h}×{w} = {d}")
    return d


class _MomentSums:
    """Streaming float64 sums for a per-pixel mean and an unbiased (``ddof=1``) covariance of flattened images.

    Sums are taken about a shift ``c`` (the first batch's mean), which removes most of the cancellation of the
    naive ``Σxxᵀ − N·μμᵀ``.
    """

    def __init__(self, dim: int, device):
        self.dim, self.device, self.n = dim, torch.device(device), 0
        self.shift: torch.Tensor | None = None
        self.s1 = torch.zeros(dim, dtype=torch.float64, device=self.device)
        self.s2 = torch.zeros(dim, dim, dtype=torch.float64, device=self.device)

    def add(self, x: torch.Tensor) -> None:
        y = x.detach().to(device=self.device, dtype=torch.float64).reshape(x.shape[0], -1)
        if y.shape[1] != self.dim:
            raise ValueError(f"expected images of {self.dim} values each, got a batch of shape {tuple(x.shape)}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError("the images contain NaN or infinite values")
        if y.shape[0] == 0:
            return
        if self.shift is None:
            self.shift = y.mean(0)
        y = y - self.shift
        self.n += y.shape[0]
        self.s1 += y.sum(0)
        self.s2.addmm_(y.T, y)

    def finish(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``(mean (D,), covariance (D, D), std)``; ``std`` is the standard deviation of every value about the
        global mean, as ``x.std()`` (the default ``sigma_data``)."""
        n = self.n
        if n < 2:
            raise ValueError(f"need at least 2 images to estimate a covariance, got {n}")
        m = self.s1 / n                                   # mean of x − c
        cov = (self.s2 - n * torch.outer(m, m)) / (n - 1)
        cov = 0.5 * (cov + cov.T)
        mean = m + self.shift
        # every value about the global mean: per-pixel spread plus the spread of the per-pixel means
        scatter = (n - 1) * cov.diagonal().sum() + n * (mean - mean.mean()).square().sum()
        std = float(torch.sqrt(scatter.clamp_min(0) / (n * self.dim - 1)))
        return mean, cov, std


class LinearMMSEDenoiser(Denoiser):
    """The best linear (affine) denoiser: the linear MMSE estimator of data of mean ``μ`` and covariance ``Σ``.

    ``x̂0 = μ + Σ(Σ + σ²I)⁻¹(x_σ − μ) = μ + U·diag(λ/(λ+σ²))·Uᵀ(x_σ − μ)`` on flattened images (``D = C·H·W``
    values), with the eigendecomposition ``Σ = U·diag(λ)·Uᵀ`` computed once. For Gaussian data of that mean and
    covariance it is the exact MMSE denoiser, with per-pixel error :meth:`expected_mse`
    ``= mean over D of λσ²/(λ+σ²)``. Unlike :class:`WienerDenoiser` (the best *shift-invariant* linear filter, exact
    for stationary data), it uses the full covariance, so it also captures non-stationary statistics (position-
    dependent variance, a mean image, correlations that depend on position, cross-channel structure): its MSE is at
    most the Wiener filter's, equal when ``Σ`` is circulant (stationary on the torus).

    Exact and cheap for small images only: the eigenvectors take ``D²`` float64 values (72 MiB for 32×32×3 =
    3072), so ``D`` is limited to ``max_dim`` (4096 by default). Inputs must have exactly ``image_shape``.

    **Fit it on held-out images.** With ``n`` fit images the sample covariance has rank at most ``n − 1``; with
    ``n ≤ D`` it is rank-deficient and the estimator projects every input onto the affine span of the fit images,
    so it overfits the fit set: on those very images its MSE is optimistic, on other images it loses everything
    outside that span (and :meth:`expected_mse` is optimistic too). Fit it on images other than those it is
    evaluated on, with at least ``2·D`` fit images (more is better: the excess MSE from estimating ``Σ`` shrinks
    roughly like ``D/n``).

    The buffers (``mean`` ``(D,)``, ``eigenvectors`` ``(D, D)``, ``eigenvalues`` ``(D,)``, eigenvalues ascending
    and tiny negative ones clamped to 0) stay float64 under ``.to(dtype)`` (only the device follows); the maths
    runs in float64 and the output has the interface's dtype (float32, float64 for float64 input).

    Parameters
    ----------
    mean : ``(D,)`` or ``(C, H, W)``
        Data mean, per value (a mean image, not per channel).
    eigenvectors : ``(D, D)``
        Orthonormal eigenvectors of ``Σ`` as columns.
    eigenvalues : ``(D,)``
        Eigenvalues of ``Σ`` (≥ 0 up to rounding; negative ones are clamped to 0).
    image_shape : ``(C, H, W)``
    max_dim : int
        Largest ``C·H·W`` accepted.

    Build it with :meth:`from_images`, :meth:`from_source` (streaming batches from a
    :class:`freqlab.data.sources.DataSource`) or :meth:`from_covariance` (known ``μ`` and ``Σ``).
    """

    def __init__(self, mean, eigenvectors, eigenvalues, *, image_shape, sigma_min: float = 0.002,
                 sigma_max: float = 80.0, sigma_data: float = 0.5, max_dim: int = LINEAR_MAX_DIM):
        super().__init__(image_shape=image_shape, sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data)
        d = _check_linear_dim(self.image_shape, max_dim)
        self.max_dim = int(max_dim)
        mean = torch.as_tensor(mean).detach().to(torch.float64)
        vecs = torch.as_tensor(eigenvectors).detach().to(device=mean.device, dtype=torch.float64)
        vals = torch.as_tensor(eigenvalues).detach().to(device=mean.device, dtype=torch.float64)
        if mean.numel() != d or vecs.shape != (d, d) or vals.shape != (d,):
            raise ValueError(f"for image_shape {self.image_shape} (D = {d}) need mean with {d} values, eigenvectors "
                             f"({d}, {d}) and eigenvalues ({d},); got {tuple(mean.shape)}, {tuple(vecs.shape)}, "
                             f"{tuple(vals.shape)}")
        if not all(bool(torch.isfinite(t).all()) for t in (mean, vecs, vals)):
            raise ValueError("mean, eigenvectors and eigenvalues must be finite")
        self.register_buffer("mean", mean.reshape(d).clone())
        self.register_buffer("eigenvectors", vecs.contiguous().clone())
        self.register_buffer("eigenvalues", vals.clamp_min(0.0))
        self.n_fit: int | None = None  # number of images fitted, when built by from_images / from_source

    # ---------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_covariance(cls, mean, covariance, *, image_shape, **kwargs) -> "LinearMMSEDenoiser":
        """From a known mean ``(D,)`` (or a float, broadcast) and covariance ``(D, D)`` (symmetrised, then
        diagonalised in float64). Other keywords go to the constructor."""
        d = _check_linear_dim(image_shape, kwargs.get("max_dim", LINEAR_MAX_DIM))
        cov = torch.as_tensor(covariance).detach().to(torch.float64)
        if cov.shape != (d, d) or not bool(torch.isfinite(cov).all()):
            raise ValueError(f"covariance must be a finite ({d}, {d}) matrix for image_shape {tuple(image_shape)}, "
                             f"got shape {tuple(cov.shape)}")
        mean = torch.as_tensor(mean, dtype=torch.float64).to(cov.device)
        mean = mean.expand(d) if mean.numel() == 1 else mean
        vals, vecs = torch.linalg.eigh(0.5 * (cov + cov.T))
        return cls(mean, vecs, vals, image_shape=image_shape, **kwargs)

    @classmethod
    def _from_sums(cls, sums: _MomentSums, image_shape, kwargs) -> "LinearMMSEDenoiser":
        mean, cov, std = sums.finish()
        kwargs.setdefault("sigma_data", std)
        out = cls.from_covariance(mean, cov, image_shape=image_shape, **kwargs)
        out.n_fit = sums.n
        return out

    @classmethod
    def from_images(cls, x: torch.Tensor, *, batch_size: int = 1024, **kwargs) -> "LinearMMSEDenoiser":
        """Fit ``μ`` (the mean image, ``(D,)``) and the unbiased sample covariance (``ddof=1``) of clean images
        ``x`` ``(N, C, H, W)``, ``N ≥ 2``, with float64 sums over batches of ``batch_size`` images on ``x``'s
        device. ``sigma_data`` defaults to ``x.std()``. Other keywords go to the constructor. Fit on images other
        than those you evaluate on (see the class notes).
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"x must be a tensor of clean images (N, C, H, W), got {getattr(x, 'shape', type(x))}")
        shape = tuple(int(s) for s in x.shape[1:])
        d = _check_linear_dim(shape, kwargs.get("max_dim", LINEAR_MAX_DIM))
        if x.shape[0] < 2:
            raise ValueError(f"need at least 2 images to estimate a covariance, got {x.shape[0]}")
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size}")
        sums = _MomentSums(d, x.device)
        for start in range(0, x.shape[0], batch_size):
            sums.add(x[start:start + batch_size])
        return cls._from_sums(sums, shape, kwargs)

    @classmethod
    def from_source(cls, source, n_images: int, *, batch_size: int = 256, start: int = 0, device=None,
                    each_batch=None, **kwargs) -> "LinearMMSEDenoiser":
        """Fit from ``n_images`` images ``start, …, start + n_images − 1`` of a :class:`freqlab.data.sources.DataSource`,
        read ``batch_size`` at a time with ``source.images(indices)`` and summed in float64 on ``device`` (CPU by
        default; the eigendecomposition runs there too and the denoiser lives there). ``D = C·H·W`` is checked
        before any image is read. Choose ``start`` (or another split of the source) so that the fit images are
        not the ones evaluated on; at least ``2·D`` images are recommended. ``each_batch(batch)`` is called with
        every batch read (to take other statistics of the same images in the same pass). Other keywords as
        :meth:`from_images`.
        """
        shape = tuple(int(s) for s in source.shape)
        d = _check_linear_dim(shape, kwargs.get("max_dim", LINEAR_MAX_DIM))
        n_images, start, batch_size = int(n_images), int(start), int(batch_size)
        if n_images < 2:
            raise ValueError(f"need at least 2 images to estimate a covariance, got n_images={n_images}")
        if start < 0 or batch_size < 1:
            raise ValueError(f"start must be ≥ 0 and batch_size ≥ 1, got start={start}, batch_size={batch_size}")
        sums = _MomentSums(d, device if device is not None else "cpu")
        for lo in range(start, start + n_images, batch_size):
            batch = source.images(list(range(lo, min(lo + batch_size, start + n_images))))
            if tuple(batch.shape[1:]) != shape:
                raise ValueError(f"the source returned images of shape {tuple(batch.shape[1:])}, expected {shape}")
            sums.add(batch)
            if each_batch is not None:
                each_batch(batch)
        return cls._from_sums(sums, shape, kwargs)

    # ---------------------------------------------------------------------------------------------- the estimator
    @property
    def dim(self) -> int:
        """``D = C·H·W``."""
        return self.mean.numel()

    def covariance(self) -> torch.Tensor:
        """``Σ = U·diag(λ)·Uᵀ`` ``(D, D)`` float64 (with the clamped eigenvalues)."""
        return (self.eigenvectors * self.eigenvalues) @ self.eigenvectors.T

    def expected_mse(self, sigma) -> torch.Tensor:
        """Per-pixel MSE of the estimator for Gaussian data of the fitted ``μ`` and ``Σ``:
        ``mean over D of λσ²/(λ+σ²)``. ``sigma``: float or tensor of any shape; the result has its shape
        (a 0-d tensor for a float), float64, on the denoiser's device."""
        s2 = torch.as_tensor(sigma, dtype=torch.float64, device=self.eigenvalues.device).square()
        lam = self.eigenvalues
        return (lam * s2.unsqueeze(-1) / (lam + s2.unsqueeze(-1))).mean(-1)

    def _apply(self, fn, *args, **kwargs):
        # keep the float64 buffers float64: a dtype conversion moves them to the new device only
        def keep_float64(t):
            out = fn(t)
            if t.dtype == torch.float64 and out.dtype != torch.float64:
                out = t.to(device=out.device)
            return out

        return super()._apply(keep_float64, *args, **kwargs)

    def _denoise(self, x, sigma):
        n = x.shape[0]
        u = self.eigenvectors.to(x.device)
        lam = self.eigenvalues.to(x.device)
        mean = self.mean.to(x.device)
        s2 = sigma.to(torch.float64).square().view(n, 1)
        coeff = (x.to(torch.float64).reshape(n, -1) - mean) @ u      # (N, D) in the eigenbasis
        out = (coeff * (lam / (lam + s2))) @ u.T + mean
        return out.reshape(x.shape).to(self.outer_dtype(x))

    def extra_repr(self) -> str:
        fitted = "" if self.n_fit is None else f", n_fit={self.n_fit}"
        return super().extra_repr() + f", dim={self.dim}{fitted}"
