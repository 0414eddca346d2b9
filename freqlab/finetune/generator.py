"""The one-step generator of D2O: a pre-trained denoiser used once from pure noise, or its random-init control."""

from __future__ import annotations

import copy
import os

import torch
from torch import nn

from freqlab.data.base import DataSource
from freqlab.runtime.rng import per_sample_randn, sample_seed

__all__ = ["Generator", "make_generator", "random_init"]


class Generator(nn.Module):
    """``G(z) = D(σ_g·z, σ_g)``: a denoiser used once, from pure noise at ``σ_g`` (default its ``sigma_max``).

    ``z`` is ``(N, C, H, W)`` standard normal; the output is ``(N, C, H, W)``, nominally in [-1, 1] (not clamped:
    the discriminator sees what the network makes). Parameters are the denoiser's, prefixed ``denoiser.``.
    """

    def __init__(self, denoiser: nn.Module, sigma: float | None = None):
        super().__init__()
        self.denoiser = denoiser
        self.sigma = float(denoiser.sigma_max if sigma is None else sigma)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.denoiser.image_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        sigma = torch.full((z.shape[0],), self.sigma, device=z.device, dtype=z.dtype)
        return self.denoiser(self.sigma * z, sigma)


def random_init(denoiser: nn.Module, seed: int = 0) -> nn.Module:
    """The same architecture as ``denoiser`` with fresh, seeded weights (the control of the D2O experiment).

    For freqlab's EDM models (and any wrapper holding a diffusers model under ``unet``) the UNet is rebuilt from its
    config exactly as a new model would be (``from_config``), so the initialisation is diffusers' own; other
    modules are deep-copied and every sub-module's ``reset_parameters()`` is called. Weights are drawn on the CPU
    from a generator seeded with ``seed``, so the result does not depend on the device or on global RNG state.
    """
    device = next(denoiser.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(sample_seed(seed, "random-init", 0))
        fresh = copy.deepcopy(denoiser).cpu()
        unet = getattr(fresh, "unet", None)
        if unet is not None and hasattr(unet, "config") and hasattr(type(unet), "from_config"):
            fresh.unet = type(unet).from_config(unet.config)
        else:
            # parameters held directly by a module without reset_parameters (e.g. EDM's own Conv2d) would keep
            # their trained values: refused rather than passed off as a random init
            kept = [f"{name}.{p_name}".lstrip(".") for name, module in fresh.named_modules()
                    for p_name, _ in module.named_parameters(recurse=False)
                    if module is fresh or not hasattr(module, "reset_parameters")]
            if kept:
                raise ValueError(f"cannot re-initialise this network: {len(kept)} parameter tensor(s) (first: "
                                 f"{kept[0]}) belong to layers with no reset_parameters(), so a 'random' init would "
                                 "keep trained weights")
            for module in fresh.modules():
                if module is not fresh and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    return fresh.to(device)


def make_generator(init, *, init_kind: str = "checkpoint", seed: int = 0, device=None,
                   trust_pickle: bool = False) -> Generator:
    """A :class:`Generator` from a checkpoint path (anything ``load_denoiser`` accepts) or a ``Denoiser``.

    ``init_kind="random"`` keeps only the architecture and noise levels and draws fresh weights (:func:`random_init`).
    ``trust_pickle`` allows EDM pickles (and fine-tunes saved against one), as :func:`load_denoiser`. An EDM
    network is made trainable first: EDM saves its snapshots with ``requires_grad_(False)``.
    """
    from freqlab.models.denoisers import Denoiser, EDMNetworkDenoiser

    if init_kind not in ("checkpoint", "random"):
        raise ValueError(f"init_kind must be 'checkpoint' or 'random', got {init_kind!r}")
    if isinstance(init, (str, os.PathLike)):
        from freqlab.checkpoints.store import load_denoiser

        denoiser = load_denoiser(init, device=device, trust_pickle=trust_pickle)
    else:
        denoiser = init
    if not isinstance(denoiser, Denoiser):
        raise ValueError(f"{init!r} is not a denoiser (got {type(denoiser).__name__}); pass a freqlab, diffusers or EDM checkpoint")
    denoiser = copy.deepcopy(denoiser)  # never train the caller's model in place
    if isinstance(denoiser, EDMNetworkDenoiser):
        denoiser.requires_grad_(True)
    if device is not None:
        denoiser = denoiser.to(device)
    if init_kind == "random":
        denoiser = random_init(denoiser, seed)
    return Generator(denoiser.float())


class GeneratedImages(DataSource):
    """``n`` one-step samples ``G(z)`` of a generator checkpoint whose images are ``shape`` (C, H, W), read like
    any data source (``images(indices)``) and made on demand: the checkpoint is loaded at the first read and
    dropped after the last image is read. ``z`` of image ``i`` depends only on ``(seed, i)``, so every generator
    compared sees the same noise. Not clipped."""

    def __init__(self, name: str, checkpoint, n: int, shape, *, seed: int, device="cpu", trust_pickle: bool = False):
        self.checkpoint, self.seed, self.device, self.trust_pickle = checkpoint, int(seed), device, trust_pickle
        self._generator: Generator | None = None
        super().__init__(name, tuple(shape), int(n), {"checkpoint": str(checkpoint)})

    def _load(self) -> Generator:
        if self._generator is None:
            from freqlab.checkpoints.store import load_denoiser

            denoiser = load_denoiser(self.checkpoint, device=self.device, trust_pickle=self.trust_pickle)
            self._generator = Generator(denoiser.float()).eval()
        return self._generator

    @torch.no_grad()
    def _images(self, idx):
        gen = self._load()
        if tuple(gen.image_shape) != self.shape:
            raise ValueError(f"{self.checkpoint} makes images of shape {tuple(gen.image_shape)}, not {self.shape}")
        z = per_sample_randn(self.seed, "generate/z", idx, gen.image_shape, device=self.device)
        out = gen(z).float().cpu()
        if max(idx) == self.size - 1:  # the last image: the network is not needed any more
            self._generator = None
        return out
