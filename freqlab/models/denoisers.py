"""One denoiser interface, ``D(x_σ, σ) -> x̂0``, over every model family freqlab studies.

Conventions (docs/CONVENTIONS.md): images are ``(N, C, H, W)`` in [-1, 1]; noise is variance exploding,
``x_σ = x0 + σ·n`` with ``n ~ N(0, I)``; ``σ`` is a float or an ``(N,)`` tensor (a float is broadcast).

* :class:`EDMDenoiser`: EDM preconditioning around a diffusers ``UNet2DModel`` (freqlab's own models).
* :class:`DiffusersDenoiser`: a variance-preserving (DDPM-family) diffusers UNet and its scheduler.
* :class:`EDMNetworkDenoiser`: a network that already is an EDM denoiser ``net(x, σ) -> D(x)`` (EDM pickles).
* :class:`WienerDenoiser` and :class:`LinearMMSEDenoiser` (in :mod:`freqlab.models.linear`):
  the stationary Wiener filter and the full-covariance linear MMSE denoiser, the references.

Every denoiser validates its input the same way (:meth:`Denoiser.forward`), computes its outer maths in float32
(float64 when ``x`` is float64), and works under ``torch.inference_mode()`` and with gradients.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import torch

__all__ = [
    "Denoiser",
    "EDMDenoiser",
    "EDMNetworkDenoiser",
    "DiffusersDenoiser",
    "edm_preconditioning",
    "as_scheduler",
    "build_unet",
    "default_unet_config",
    "count_parameters",
    "describe_unet",
]


# --------------------------------------------------------------------------------------------------------------
# the interface
# --------------------------------------------------------------------------------------------------------------
class Denoiser(torch.nn.Module):
    """Base class: ``forward(x, sigma)`` validates its input, then calls :meth:`_denoise`.

    Attributes
    ----------
    sigma_min, sigma_max : float
        The noise range the model was trained for (a sweep's default range; ``σ_max`` is the D2O generator's σ).
    sigma_data : float
        Standard deviation of the data (0.5 for images in [-1, 1]).
    image_shape : tuple ``(C, H, W)``
        The image shape the model expects.
    size_multiple : int or None
        ``None``: inputs must have exactly ``image_shape``. An int ``m``: any ``H, W`` divisible by ``m`` is
        accepted (convolutional UNets take other sizes divisible by their downsampling factor; the Wiener
        filter takes any size). The channel count must always match.
    """

    def __init__(self, *, image_shape, sigma_min: float, sigma_max: float, sigma_data: float,
                 size_multiple: int | None = None):
        super().__init__()
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) with positive entries, got {tuple(image_shape)}")
        sigma_min, sigma_max, sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)
        if not (0.0 < sigma_min < sigma_max < math.inf):
            raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        if not (0.0 < sigma_data < math.inf):
            raise ValueError(f"sigma_data must be finite and > 0, got {sigma_data}")
        if size_multiple is not None and int(size_multiple) < 1:
            raise ValueError(f"size_multiple must be None or a positive int, got {size_multiple}")
        self.image_shape: tuple[int, int, int] = shape
        self.sigma_min, self.sigma_max, self.sigma_data = sigma_min, sigma_max, sigma_data
        self.size_multiple = None if size_multiple is None else int(size_multiple)

    @property
    def device(self) -> torch.device:
        """Device of the first parameter or buffer (CPU for a model that holds neither)."""
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Denoise ``x = x0 + σ·n`` in one step.

        Parameters
        ----------
        x : tensor ``(N, C, H, W)``
            Noisy images (variance-exploding convention).
        sigma : float or tensor ``(N,)`` (or a single value)
            Noise level per image; finite and > 0.

        Returns
        -------
        tensor ``(N, C, H, W)``: ``x̂0``, float32 (float64 when ``x`` is float64).
        """
        x = self._check_images(x)
        return self._denoise(x, self._check_sigma(sigma, x))

    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``x`` validated ``(N, C, H, W)``; ``sigma`` ``(N,)`` in the outer dtype on ``x.device``."""
        raise NotImplementedError

    def outer_dtype(self, x: torch.Tensor) -> torch.dtype:
        """The dtype of the preconditioning maths: float64 for float64 input, else float32."""
        return torch.float64 if x.dtype == torch.float64 else torch.float32

    def _check_images(self, x) -> torch.Tensor:
        c, h, w = self.image_shape
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            what = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a floating-point tensor of shape (N, {c}, H, W), got {what}")
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"x must have shape (N, {c}, H, W) for this model, got {tuple(x.shape)}")
        xh, xw = x.shape[-2:]
        if self.size_multiple is None:
            if (xh, xw) != (h, w):
                raise ValueError(f"this model expects {h}x{w} images, got {xh}x{xw}")
        elif xh % self.size_multiple or xw % self.size_multiple:
            raise ValueError(
                f"image size {xh}x{xw} is not divisible by {self.size_multiple}, the model's downsampling factor "
                f"(trained at {h}x{w})"
            )
        return x

    def _check_sigma(self, sigma, x: torch.Tensor) -> torch.Tensor:
        n, dtype = x.shape[0], self.outer_dtype(x)
        if isinstance(sigma, bool) or sigma is None:
            raise ValueError(f"sigma must be a float or a tensor of shape (N,), got {sigma!r}")
        if isinstance(sigma, (int, float)):
            value = float(sigma)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"sigma must be finite and > 0, got {value}")
            return torch.full((n,), value, dtype=dtype, device=x.device)
        s = torch.as_tensor(sigma)
        if not (s.is_floating_point() or s.dtype in (torch.int32, torch.int64)):
            raise ValueError(f"sigma must be a real number or tensor, got dtype {s.dtype}")
        if s.numel() == 1:
            s = s.reshape(1).expand(n)
        elif s.numel() == n and s.squeeze().ndim <= 1:
            s = s.reshape(n)
        else:
            raise ValueError(f"sigma must be a float or have shape ({n},) to match x, got shape {tuple(s.shape)}")
        s = s.to(device=x.device, dtype=dtype)
        bad = ~torch.isfinite(s.detach()) | (s.detach() <= 0)
        if bool(bad.any()):
            values = s.detach()[bad][:4].tolist()
            raise ValueError(f"sigma must be finite and > 0, got {values}")
        return s

    def extra_repr(self) -> str:
        return (f"image_shape={self.image_shape}, sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g}, "
                f"sigma_data={self.sigma_data:g}")


# --------------------------------------------------------------------------------------------------------------
# EDM preconditioning around a diffusers UNet2DModel
# --------------------------------------------------------------------------------------------------------------
def edm_preconditioning(sigma: torch.Tensor, sigma_data: float = 0.5):
    """EDM's preconditioning coefficients (Karras et al. 2022, Table 1), elementwise in ``sigma``.

    ``c_skip = σd²/(σ²+σd²)``, ``c_out = σ·σd/√(σ²+σd²)``, ``c_in = 1/√(σ²+σd²)``, ``c_noise = ln(σ)/4``,
    so that ``D(x, σ) = c_skip·x + c_out·F(c_in·x, c_noise)``. Returns the tuple ``(c_skip, c_out, c_in, c_noise)``.
    """
    sd2 = sigma_data**2
    s2 = sigma * sigma
    root = torch.sqrt(s2 + sd2)
    return sd2 / (s2 + sd2), sigma * sigma_data / root, 1.0 / root, torch.log(sigma) / 4.0


def _unet_image_shape(unet, image_shape=None) -> tuple[int, int, int]:
    if image_shape is not None:
        return tuple(int(s) for s in image_shape)
    config = getattr(unet, "config", None)
    size = None if config is None else config.get("sample_size")
    if size is None:
        raise ValueError("the network does not record its sample_size; pass image_shape=(C, H, W)")
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return int(config["in_channels"]), int(h), int(w)


def _unet_size_multiple(unet) -> int:
    """``2**(number of downsampling blocks)`` of a diffusers UNet (1 when it has none)."""
    blocks = getattr(unet, "down_blocks", [])
    return 2 ** sum(1 for b in blocks if getattr(b, "downsamplers", None) is not None)


def _network_output(out) -> torch.Tensor:
    return out.sample if hasattr(out, "sample") else (out[0] if isinstance(out, tuple) else out)


class EDMDenoiser(Denoiser):
    """``D(x, σ) = c_skip·x + c_out·F(c_in·x, c_noise)`` with ``F`` a diffusers ``UNet2DModel`` (see
    :func:`edm_preconditioning`).

    The UNet is called as ``unet(c_in·x, c_noise).sample`` with ``c_noise`` a float tensor ``(N,)``: its
    ``positional`` (sinusoidal) time embedding takes continuous values, and ``c_noise = ln(σ)/4`` lies in about
    ``[-1.6, 1.1]`` for ``σ ∈ [0.002, 80]`` (as in EDM's own DDPM++). ``fourier`` embeddings (which divide the output
    by the timestep) and ``learned`` (integer) embeddings are refused. The preconditioning runs in float32 whatever
    the UNet's dtype. Parameters live under ``unet.`` (the GAN freezing policies match on those names). Inputs may
    have any ``H, W`` divisible by the UNet's downsampling factor.
    """

    def __init__(self, unet, *, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5,
                 image_shape=None):
        shape = _unet_image_shape(unet, image_shape)
        super().__init__(image_shape=shape, sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data,
                         size_multiple=_unet_size_multiple(unet))
        config = getattr(unet, "config", {})
        embedding = config.get("time_embedding_type", "positional")
        if embedding != "positional":
            raise ValueError(f"EDMDenoiser needs a UNet with time_embedding_type='positional' (continuous c_noise), "
                             f"got {embedding!r}")
        out_channels = config.get("out_channels", shape[0])
        if out_channels != shape[0]:
            raise ValueError(f"the UNet must output as many channels as it takes ({shape[0]}), got {out_channels}")
        self.unet = unet

    def _denoise(self, x, sigma):
        dtype = self.outer_dtype(x)
        x = x.to(dtype)
        c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma.to(dtype), self.sigma_data)
        b = (-1, 1, 1, 1)
        net_dtype = next(self.unet.parameters()).dtype
        f = _network_output(self.unet((c_in.view(b) * x).to(net_dtype), c_noise.to(torch.float32)))
        return c_skip.view(b) * x + c_out.view(b) * f.to(dtype)


class EDMNetworkDenoiser(Denoiser):
    """Wraps a network that already is an EDM-style denoiser, ``net(x, sigma) -> D(x)`` with ``sigma`` ``(N,)``
    (e.g. the ``ema`` network of an EDM pickle). Parameters live under ``net.``.

    ``image_shape`` defaults to ``(net.img_channels, net.img_resolution, net.img_resolution)``; ``sigma_min``,
    ``sigma_max`` and ``sigma_data`` default to the net's attributes when they are finite and positive, else
    EDM's sampling range 0.002 to 80 and 0.5 (EDM's ``EDMPrecond`` stores ``sigma_min=0``, ``sigma_max=inf``).
    Class-conditional nets are called without labels (the net decides what that means).
    """

    def __init__(self, net: torch.nn.Module, *, image_shape=None, sigma_min=None, sigma_max=None, sigma_data=None):
        if image_shape is None:
            try:
                res = net.img_resolution
                h, w = (res, res) if isinstance(res, int) else tuple(res)
                image_shape = (int(net.img_channels), int(h), int(w))
            except AttributeError as err:
                raise ValueError("the network has no img_channels/img_resolution; pass image_shape=(C, H, W)") from err

        def attr(name, given, default):
            if given is not None:
                return float(given)
            value = getattr(net, name, None)
            try:
                value = float(value)
            except (TypeError, ValueError):
                return default
            return value if math.isfinite(value) and value > 0 else default

        super().__init__(image_shape=image_shape, sigma_min=attr("sigma_min", sigma_min, 0.002),
                         sigma_max=attr("sigma_max", sigma_max, 80.0), sigma_data=attr("sigma_data", sigma_data, 0.5))
        self.net = net
        self.source_pickle: tuple[str, str] | None = None  # (path, sha256) when loaded from an EDM pickle

    def _denoise(self, x, sigma):
        dtype = self.outer_dtype(x)
        return _network_output(self.net(x.to(dtype), sigma.to(dtype))).to(dtype)


# --------------------------------------------------------------------------------------------------------------
# diffusers variance-preserving models
# --------------------------------------------------------------------------------------------------------------
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def as_scheduler(scheduler_or_config):
    """A diffusers scheduler from a scheduler object or its config dict (``_class_name`` picks the class)."""
    if hasattr(scheduler_or_config, "alphas_cumprod"):
        return scheduler_or_config
    if not isinstance(scheduler_or_config, Mapping):
        raise ValueError("scheduler_or_config must be a diffusers scheduler (with alphas_cumprod) or its config dict, "
                         f"got {type(scheduler_or_config).__name__}")
    import diffusers

    name = scheduler_or_config.get("_class_name", "DDPMScheduler")
    cls = getattr(diffusers, str(name), None)
    if cls is None or not issubclass(cls, diffusers.SchedulerMixin):
        cls = diffusers.DDPMScheduler
    try:
        scheduler = cls.from_config(dict(scheduler_or_config))
    except (NotImplementedError, ValueError, TypeError, KeyError) as err:
        raise ValueError(f"cannot build the {cls.__name__} of this scheduler config ({type(err).__name__}: {err})") \
            from None
    if not hasattr(scheduler, "alphas_cumprod"):
        raise ValueError(f"scheduler {name} has no alphas_cumprod table; a DDPM-family (VP) scheduler is needed")
    return scheduler


class DiffusersDenoiser(Denoiser):
    """A variance-preserving diffusers UNet (DDPM/DDIM family) as a VE denoiser ``D(x_σ, σ) -> x̂0``.

    With the scheduler's ``ᾱ_t`` (``alphas_cumprod``), ``σ_t = √((1−ᾱ_t)/ᾱ_t)`` and the VP sample is
    ``x_vp = x_σ/√(σ²+1)``. The continuous timestep for ``σ`` interpolates ``t`` linearly in ``log σ`` over the
    table, so integer timesteps are reproduced exactly. The UNet output is converted to ``x̂0``:

    * ``epsilon``: ``x̂0 = x_σ − σ·ε̂``
    * ``v_prediction``: ``x̂0 = √ᾱ·x_vp − √(1−ᾱ)·v̂ = x_σ/(1+σ²) − σ/√(1+σ²)·v̂``
    * ``sample``: ``x̂0 = ``the output.

    This equals ``scheduler.step(output, t, x_vp).pred_original_sample`` (``clip_sample=False``) at integer ``t``.
    A UNet with learned variance (twice the input channels out) uses the first half of its output.

    Parameters
    ----------
    unet : diffusers.UNet2DModel
        ``positional`` time embedding (continuous ``t``); a ``learned`` embedding gets ``t`` rounded.
    scheduler_or_config : scheduler or dict
        A scheduler with ``alphas_cumprod`` and ``config.prediction_type``, or its config dict.
    clamp : bool
        ``σ`` outside ``[σ(t=0), σ(t=T−1)]`` raises ``ValueError``; with ``clamp=True`` it is clamped into the range
        with a warning instead.
    prediction_type : str, optional
        Overrides the scheduler's.
    """

    def __init__(self, unet, scheduler_or_config, *, clamp: bool = False, sigma_data: float = 0.5,
                 prediction_type: str | None = None, image_shape=None):
        scheduler = as_scheduler(scheduler_or_config)
        config = dict(getattr(scheduler, "config", {}))
        prediction = prediction_type or config.get("prediction_type", "epsilon")
        if prediction not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction!r}")
        alphas = torch.as_tensor(scheduler.alphas_cumprod).detach().to(torch.float64).cpu()
        sigmas = torch.sqrt((1.0 - alphas) / alphas)
        finite = torch.isfinite(sigmas) & (sigmas > 0)
        # zero-terminal-SNR schedules end at ᾱ = 0 (σ = ∞): keep the finite part of the table
        n_valid = int(finite.long().cumprod(0).sum())
        sigmas = sigmas[:n_valid]
        if n_valid < 2 or not bool((sigmas[1:] > sigmas[:-1]).all()):
            raise ValueError("the scheduler's alphas_cumprod must give at least two finite, increasing noise levels")
        shape = _unet_image_shape(unet, image_shape)
        super().__init__(image_shape=shape, sigma_min=float(sigmas[0]), sigma_max=float(sigmas[-1]),
                         sigma_data=sigma_data, size_multiple=_unet_size_multiple(unet))
        unet_config = getattr(unet, "config", {})
        embedding = unet_config.get("time_embedding_type", "positional")
        if embedding not in ("positional", "learned"):
            raise ValueError(f"time_embedding_type {embedding!r} is not a DDPM-family (VP) UNet; "
                             "use 'positional' or 'learned'")
        out_channels = unet_config.get("out_channels", shape[0])
        if out_channels not in (shape[0], 2 * shape[0]):
            raise ValueError(f"the UNet outputs {out_channels} channels for {shape[0]} input channels")
        self.unet = unet
        self.prediction_type = prediction
        self.clamp = bool(clamp)
        self.integer_timesteps = embedding == "learned"
        self.scheduler_config = config
        # kept off the module's buffers so that .to(dtype) never rounds the table
        self._log_sigmas = sigmas.log()
        self._tables: dict[torch.device, torch.Tensor] = {}

    def sigma_to_timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Continuous timestep ``(N,)`` float64: linear interpolation of ``t`` in ``log σ`` over the table."""
        table = self._tables.get(sigma.device)
        if table is None:
            with torch.inference_mode(False):  # a cache must not hold inference tensors
                table = self._tables[sigma.device] = self._log_sigmas.to(sigma.device).clone()
        ls = sigma.to(torch.float64).log()
        hi = torch.searchsorted(table, ls).clamp(1, table.numel() - 1)
        lo = hi - 1
        frac = (ls - table[lo]) / (table[hi] - table[lo])
        return lo.to(torch.float64) + frac.clamp(0.0, 1.0)

    def _check_range(self, sigma: torch.Tensor) -> torch.Tensor:
        lo, hi = self.sigma_min, self.sigma_max
        tol = 1e-5  # σ tables computed in float32 round by about this much
        out = (sigma < lo * (1 - tol)) | (sigma > hi * (1 + tol))
        if bool(out.any()):
            values = sigma[out][:4].tolist()
            if not self.clamp:
                raise ValueError(f"sigma {values} is outside the scheduler's range [{lo:.6g}, {hi:.6g}]; choose noise "
                                 "levels inside it (--sigmas on the command line), or load the model with "
                                 "load_denoiser(..., clamp=True) to clamp them")
            warnings.warn(f"sigma {values} clamped into the scheduler's range [{lo:.6g}, {hi:.6g}]", stacklevel=3)
        return sigma.clamp(lo, hi)

    def _denoise(self, x, sigma):
        dtype = self.outer_dtype(x)
        x = x.to(dtype)
        sigma = self._check_range(sigma)
        t = self.sigma_to_timestep(sigma.detach())
        t = t.round().long() if self.integer_timesteps else t.to(torch.float32)
        s = sigma.view(-1, 1, 1, 1)
        root = torch.sqrt(s * s + 1.0)
        x_vp = x / root
        net_dtype = next(self.unet.parameters()).dtype
        out = _network_output(self.unet(x_vp.to(net_dtype), t)).to(dtype)
        if out.shape[1] == 2 * x.shape[1]:  # learned variance: [prediction, variance]
            out = out[:, : x.shape[1]]
        if self.prediction_type == "epsilon":
            return x - s * out
        if self.prediction_type == "v_prediction":
            return x_vp / root - (s / root) * out
        return out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", prediction_type={self.prediction_type!r}"


# --------------------------------------------------------------------------------------------------------------
# a small UNet2DModel
# --------------------------------------------------------------------------------------------------------------
def _default_groups(channels) -> int:
    """The most GroupNorm groups (≤ 32) dividing every width with at least 4 channels per group (else 1)."""
    g = math.gcd(*channels)
    for groups in range(min(32, g), 0, -1):
        if g % groups == 0 and min(channels) // groups >= 4:
            return groups
    return 1


def default_unet_config(**overrides: Any) -> dict:
    """The config :func:`build_unet` uses: ``overrides`` on top of small defaults.

    Defaults: 32×32 RGB, ``block_out_channels=(32, 64, 64)``, one ResNet per level, attention only at the lowest
    resolution (the last down block, the first up block and the mid block), ``positional`` time embedding (the
    continuous ``c_noise`` of :class:`EDMDenoiser`). When ``block_out_channels`` is overridden, block types,
    ``norm_num_groups`` and ``attention_head_dim`` follow it unless given too.
    """
    channels = tuple(overrides.get("block_out_channels", (32, 64, 64)))
    n = len(channels)
    config = dict(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=channels, layers_per_block=1,
        down_block_types=("DownBlock2D",) * (n - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
        norm_num_groups=_default_groups(channels), attention_head_dim=min(8, channels[-1]), dropout=0.0,
        time_embedding_type="positional", flip_sin_to_cos=True, freq_shift=0,
    )
    if "in_channels" in overrides and "out_channels" not in overrides:
        config["out_channels"] = overrides["in_channels"]
    config.update(overrides)
    return config


def build_unet(**config: Any):
    """A ``diffusers.UNet2DModel`` from :func:`default_unet_config` (``config`` overrides the defaults).

    >>> unet = build_unet(sample_size=16, block_out_channels=(16, 32))
    >>> describe_unet(unet)                                    # doctest: +SKIP
    'UNet2DModel 16x16x3, channels (16, 32), 0.24 M parameters'
    """
    from diffusers import UNet2DModel

    return UNet2DModel(**default_unet_config(**config))


def count_parameters(module: torch.nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def describe_unet(unet) -> str:
    """One line: input shape, channel widths and parameter count of a ``UNet2DModel``."""
    c = unet.config
    size = c.sample_size
    hw = f"{size}x{size}" if isinstance(size, int) else ("x".join(map(str, size)) if size else "any size")
    return (f"UNet2DModel {hw}x{c.in_channels}, channels {tuple(c.block_out_channels)}, "
            f"{count_parameters(unet) / 1e6:.2f} M parameters")
