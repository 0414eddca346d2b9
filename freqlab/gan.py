"""One-step GAN fine-tuning of a pre-trained denoiser (D2O / D2O-F), minimal on purpose.

The generator is the denoiser applied once to pure noise at its largest noise level,

    G(z) = D_θ(σ_g·z, σ_g),   z ~ N(0, I),   σ_g = the model's sigma_max (80 for EDM),

so before fine-tuning it is exactly the ``generate`` mode of a sweep at σ_max. It is trained with nothing but a GAN
loss against a small from-scratch discriminator (no distillation, no teacher): non-saturating (default) or hinge,
lazy R1 on real images, Adam with β = (0, 0.99) inside lookahead-minmax (every 5 steps G and D move back halfway
to their slow weights, which damps the game's swings), an EMA of G. Freezing policies choose which parameters train
(``none`` = D2O, ``conv`` = D2O-F, or a regex). While it learns, the spectra and per-image band statistics of a
fixed batch of G's outputs are logged against the data to an xarray Dataset with dim ``images_seen``.

Under ``torchrun`` (or a process group the caller initialised) the loop trains with DistributedDataParallel: the
batch size is the *global* batch, each rank takes its contiguous slice of it (images and z by global index), so the
result equals the single-process run up to float rounding; losses are averaged over ranks; rank 0 alone measures
spectra, writes the files below and prints.

Layout of a run directory ``out_dir``::

    finetune.nc                       the log (see :func:`finetune` for its variables)
    samples/images_seen-0001024.png   a grid of the logged outputs at each log moment (samples/data.png: the data)
    checkpoints/finetune-0001024/     G in freqlab's checkpoint format (save_checkpoint), loadable by load_denoiser
    checkpoints/finetune-0001024-ema/ the EMA of G, same format
    state/images_seen-0001024/        resume state: weights.safetensors (G, EMA, D), optimizers.pt, state.json
    state/latest.json                 points at the newest complete resume state (written last, atomically)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

from freqlab import distributed, measure, results, spectral
from freqlab.outputs import holding, write_atomic
from freqlab.rng import per_sample_randn, sample_seed

__all__ = [
    "FinetuneConfig",
    "FinetuneRun",
    "FreezeReport",
    "Generator",
    "Discriminator",
    "HighPassView",
    "MinibatchStd",
    "EMA",
    "Lookahead",
    "CONV_POLICY_PATTERN",
    "LOSSES",
    "make_generator",
    "random_init",
    "freeze_policy",
    "parameter_breakdown",
    "layer_type",
    "discriminator_loss",
    "generator_loss",
    "r1_penalty",
    "SpectralMonitor",
    "save_grid",
    "finetune",
    "run_finetune",
]

LOSSES = ("ns", "hinge")
LOG_NAME = "finetune.nc"
#: 2: the metrics of freqlab.measure (per channel, DC-free band statistics, two-sided cutoff, Hann spectra)
LOG_FORMAT_VERSION = 2

# --------------------------------------------------------------------------------------------------------------
# generator
# --------------------------------------------------------------------------------------------------------------


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
    from freqlab.denoisers import Denoiser, EDMNetworkDenoiser

    if init_kind not in ("checkpoint", "random"):
        raise ValueError(f"init_kind must be 'checkpoint' or 'random', got {init_kind!r}")
    if isinstance(init, (str, os.PathLike)):
        from freqlab.checkpoints import load_denoiser

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


# --------------------------------------------------------------------------------------------------------------
# discriminator
# --------------------------------------------------------------------------------------------------------------


class HighPassView(nn.Module):
    """Images and their finest detail side by side: ``cat(x, gain·(x − box₃ₓ₃(x)))`` along channels.

    The second half is what a 3x3 box blur removes (reflect padding at the borders): edges, texture and grain. A
    discriminator that sees it amplified cannot ignore the high band, where a plain pixel discriminator lets a
    generator match the mean spectrum with Gaussian grain (the failure the kurtosis gap measures).
    """

    def __init__(self, gain: float = 4.0):
        super().__init__()
        self.gain = float(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
        return torch.cat([x, self.gain * (x - blur)], 1)


class MinibatchStd(nn.Module):
    """Append one feature map: the standard deviation of the features across a group of images (StyleGAN's
    minibatch-std), averaged over channels and positions, so the discriminator can see a batch that lacks variety.

    Groups are *contiguous* runs of ``group`` images (the largest divisor of the batch not above ``group``), so a
    batch split into contiguous slices (as the distributed loop does) forms the same groups when each slice is a
    multiple of ``group``.
    """

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = int(group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = max(1, min(self.group, n))
        while n % g:
            g -= 1
        std = (x.reshape(n // g, g, c, h, w).var(1, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))
        return torch.cat([x, std.repeat_interleave(g).reshape(n, 1, 1, 1).expand(n, 1, h, w)], 1)


class Discriminator(nn.Module):
    """A small from-scratch convolutional discriminator that adapts to the resolution and judges every scale.

    * **Input view**: the image and its high-pass detail side by side (:class:`HighPassView`, ``highpass_gain``;
      0 judges pixels only).
    * **Trunk**: a 3x3 conv lifts the input to ``channels``; then blocks of (3x3 conv, 4x4 stride-2 conv),
      LeakyReLU(0.2) after each, halve the resolution and double the channels (capped at ``max_channels``) as long
      as the smaller side stays at least ``min_size`` (32x32 ends at 4x4, 28x20 at 7x5). Odd and non-square sizes
      work (each halving rounds down).
    * **Logits**: with ``patch_logits`` a 1x1 conv after every block gives a map of local verdicts (receptive
      fields from ~10 pixels up), average-pooled to ``pool x pool``; after an optional :class:`MinibatchStd`
      (``minibatch_std`` = group size, 0: off) and a 3x3 conv, a linear head gives one global logit, repeated
      ``pool²`` times so that every scale weighs the same. The output is ``(N, K)`` logits per image (``(N,)``
      without patch logits); the losses average over all of them and R1 takes each image's mean logit.

    Why these choices (the search in ``benchmarks/gan_recipe_search.py``, results in benchmarks/README.md): with a
    pixel-only, global-logit discriminator short fine-tunes reached the data's mean high-band power with Gaussian
    grain and never made edges; the high-pass view is what made edges appear; with it and minibatch-std, per-scale
    verdicts ended closer to the data than one global logit (mean high-band ratio 1.3 against 1.9 over eight
    settings at 9,000 images; without minibatch-std the order was reversed, 1.45 against 1.23); minibatch-std lets
    it see a batch without variety (the collapse of the random-init control); 16 base channels make it cheaper,
    so more images fit a time budget (46–50 against 32–35 images/s in a short CPU fine-tune).

    Parameters
    ----------
    image_shape : ``(C, H, W)`` of the images it judges.
    spectral_norm : wrap every conv and the head in spectral normalisation (off by default; R1 is the regulariser).
    feature_network : the hook for a *projected* discriminator. Any module mapping images ``(N, C, H, W)`` to
        features ``(N, C', H', W')`` (e.g. the first stages of a feature network available locally); its parameters
        are frozen and the trunk is built on its output shape instead of the image's. Gradients still flow through
        it to the images (needed by G's loss and by R1). It replaces the high-pass view (pass
        ``highpass_gain=0``). ``None`` (default): judge pixels directly.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        channels: int = 16,
        max_channels: int = 256,
        min_size: int = 4,
        highpass_gain: float = 4.0,
        patch_logits: bool = True,
        minibatch_std: int = 4,
        pool: int = 4,
        spectral_norm: bool = False,
        feature_network: nn.Module | None = None,
    ):
        super().__init__()
        if highpass_gain < 0 or minibatch_std < 0:
            raise ValueError(f"highpass_gain and minibatch_std must be >= 0, got {highpass_gain}, {minibatch_std}")
        if feature_network is not None and highpass_gain:
            raise ValueError("a feature_network replaces the high-pass view: pass highpass_gain=0 with it")
        c, h, w = (int(s) for s in image_shape)
        self.view = HighPassView(highpass_gain) if highpass_gain else None
        self.features = feature_network
        if feature_network is not None:
            feature_network.requires_grad_(False)
            with torch.no_grad():
                c, h, w = feature_network(torch.zeros(1, *image_shape)).shape[1:]
        elif self.view is not None:
            c = 2 * c
        wrap = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.stem = nn.Sequential(wrap(nn.Conv2d(c, channels, 3, padding=1)), act())
        self.blocks, self.heads = nn.ModuleList(), nn.ModuleList()
        ch = channels
        while min(h, w) // 2 >= min_size:
            nxt = min(2 * ch, max_channels)
            self.blocks.append(nn.Sequential(wrap(nn.Conv2d(ch, ch, 3, padding=1)), act(),
                                             wrap(nn.Conv2d(ch, nxt, 4, stride=2, padding=1)), act()))
            if patch_logits:
                self.heads.append(wrap(nn.Conv2d(nxt, 1, 1)))
            ch, h, w = nxt, h // 2, w // 2
        self.mbstd = MinibatchStd(minibatch_std) if minibatch_std else None
        self.final = nn.Sequential(wrap(nn.Conv2d(ch + bool(minibatch_std), ch, 3, padding=1)), act())
        self.head = wrap(nn.Linear(ch * h * w, 1))
        self.pool = int(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` (``(N,)`` without patch logits) for images ``(N, C, H, W)``."""
        if self.features is not None:
            x = self.features(x)
        elif self.view is not None:
            x = self.view(x)
        x = self.stem(x)
        local = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if len(self.heads):
                local.append(F.adaptive_avg_pool2d(self.heads[i](x), self.pool).flatten(1))
        if self.mbstd is not None:
            x = self.mbstd(x)
        logit = self.head(self.final(x).flatten(1))
        if not local:
            return logit.squeeze(1)
        return torch.cat(local + [logit.expand(-1, self.pool * self.pool)], 1)


# --------------------------------------------------------------------------------------------------------------
# objective
# --------------------------------------------------------------------------------------------------------------


def _check_loss(kind: str) -> None:
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "ns") -> torch.Tensor:
    """Discriminator loss, averaged over the batch (and over the ``K`` logits per image of ``(N, K)`` logits).

    ``ns``: ``softplus(-D(x)) + softplus(D(G(z)))`` (= ``-log σ(D(x)) - log(1 - σ(D(G(z))))``).
    ``hinge``: ``relu(1 - D(x)) + relu(1 + D(G(z)))``.
    At zero logits: ``2·ln 2`` (ns) and ``2`` (hinge).
    """
    _check_loss(kind)
    if kind == "ns":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "ns") -> torch.Tensor:
    """Generator loss: ``softplus(-D(G(z)))`` (non-saturating, ``-log σ(D(G(z)))``) or ``-D(G(z))`` (hinge),
    averaged like :func:`discriminator_loss`."""
    _check_loss(kind)
    if kind == "ns":
        return F.softplus(-fake_logits).mean()
    return -fake_logits.mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor, gamma: float, gain: float = 1.0) -> torch.Tensor:
    """Lazy R1 penalty ``γ/2 · mean_i ‖∇_x D(x_i)‖² · gain`` on real images (Mescheder et al. 2018).

    ``real`` must have ``requires_grad=True`` and ``real_logits = D(real)``, ``(N,)`` or ``(N, K)``; with several
    logits per image, ``D(x_i)`` is image i's mean logit, so γ means the same whatever K. Applied every ``k``
    steps, ``gain = k`` keeps the penalty's average strength the same as applying it every step (StyleGAN2's lazy
    regularisation).
    The graph is kept (``create_graph``) so the penalty trains D.
    """
    per_image = real_logits.reshape(real_logits.shape[0], -1).mean(1)
    (grad,) = torch.autograd.grad(per_image.sum(), real, create_graph=True)
    return 0.5 * gamma * gain * grad.square().flatten(1).sum(1).mean()


class EMA:
    """Exponential moving average of a model's parameters, with a half-life counted in images.

    Per step of ``batch`` images the decay is ``β = 0.5 ** (batch / half_life)``, with the half-life ramped up as
    ``min(halflife, rampup · images_seen)`` so early averages do not drag in the initial weights for long
    (StyleGAN2-ADA's ``ema_rampup``). ``halflife = 0`` makes the EMA a copy of the model.
    """

    def __init__(self, model: nn.Module, halflife: float, rampup: float | None = 0.05):
        if halflife < 0:
            raise ValueError(f"EMA half-life must be >= 0 images, got {halflife}")
        self.halflife, self.rampup = float(halflife), rampup
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def beta(self, images_seen: int, batch: int) -> float:
        halflife = self.halflife
        if self.rampup is not None:
            halflife = min(halflife, self.rampup * images_seen)
        return 0.5 ** (batch / halflife) if halflife > 0 else 0.0

    @torch.no_grad()
    def update(self, model: nn.Module, images_seen: int, batch: int) -> None:
        beta = self.beta(images_seen, batch)
        for p_ema, p in zip(self.model.parameters(), model.parameters()):
            if p.requires_grad:  # frozen parameters never change, so their average is already right
                p_ema.lerp_(p.detach(), 1.0 - beta)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)


class Lookahead:
    """Lookahead-minmax (Chavdarova et al., ICLR 2021) over the trainable parameters of G and D together.

    The optimizers take ``k`` ordinary ("fast") steps; then the slow copy moves ``alpha`` of the way to the fast
    weights and the fast weights restart from it: ``slow ← slow + α·(fast − slow); fast ← slow``. The slow weights
    average over the ``k`` steps, which damps the rotations of the two-player game (the generator swinging between
    too smooth and too grainy) and keeps the part of the step that persists. ``k = 0`` turns it off. The optimizer
    state (Adam's moments) is left as it is. ``slow`` is part of the resume state. Measured effect in
    benchmarks/README.md ("GAN recipe").
    """

    def __init__(self, params: Sequence[torch.Tensor], k: int, alpha: float = 0.5):
        self.params, self.k, self.alpha = list(params), int(k), float(alpha)
        self.slow = [p.detach().clone() for p in self.params] if self.k else []

    @torch.no_grad()
    def step(self, step: int) -> None:
        """Call after optimizer step number ``step`` (counted from 1): syncs when ``step`` is a multiple of k."""
        if self.k and step % self.k == 0:
            for slow, fast in zip(self.slow, self.params):
                slow.lerp_(fast, self.alpha)
                fast.copy_(slow)


# --------------------------------------------------------------------------------------------------------------
# freezing policies
# --------------------------------------------------------------------------------------------------------------

#: Parameters the ``conv`` policy (D2O-F) freezes, as a regex over parameter names (``re.search``).
#:
#: * ``resnets.N.conv1`` / ``conv2``: the 3x3 convolutions inside residual blocks — the paper's frozen core.
#: * ``attentions.N.to_out`` (``proj_attn`` in old diffusers files): attention output projections.
#: * ``downsamplers.N.conv`` / ``upsamplers.N.conv``: frozen too. DESIGN.md lists neither as trainable; in the EDM
#:   UNets of the paper resampling happens *inside* residual blocks (``UNetBlock(down=True)``, whose convs the
#:   paper freezes, with parameter-free FIR resampling), and diffusers moves exactly that 3x3 spatial conv into a
#:   separate ``Downsample2D``/``Upsample2D``. Freezing it keeps ``conv`` closest to the paper's set of frozen
#:   spatial filters; pass a regex without it to train them.
#:
#: Trainable under ``conv``: normalisation layers (``norm1``, ``norm2``, ``group_norm``, ``conv_norm_out``),
#: time-embedding projections (``time_embedding.*``, ``time_emb_proj``), 1x1 shortcut convs (``conv_shortcut``),
#: attention ``to_q``/``to_k``/``to_v``, and the input/output convs (``conv_in``, ``conv_out``).
#: The D2O code's D2O-F rule (``--freeze=1``) for EDM networks: a parameter is frozen when its name (as EDM's
#: preconditioned network names it, e.g. ``model.enc.32x32_block0.conv0.weight``) contains one of the first words
#: and one of the second.
D2O_EDM_RULE: tuple[tuple[str, ...], tuple[str, ...]] = (("block", "up", "down", "in"), ("conv", "proj"))


def d2o_edm_frozen(name: str) -> bool:
    """Whether the D2O rule (:data:`D2O_EDM_RULE`) freezes the EDM network parameter ``name``."""
    places, layers = D2O_EDM_RULE
    return any(p in name for p in places) and any(layer in name for layer in layers)


CONV_POLICY_PATTERN = (
    r"(^|\.)resnets\.\d+\.conv[12]\."
    r"|(^|\.)attentions\.\d+\.(to_out|proj_attn)\b"
    r"|(^|\.)(downsamplers|upsamplers)\.\d+\.conv\."
)

#: Layer types of :func:`parameter_breakdown`, in a fixed order (checked in this order against the name).
LAYER_TYPES: tuple[tuple[str, str], ...] = (  # diffusers names, then EDM's (SongUNet / DhariwalUNet)
    ("resnet conv", r"(^|\.)resnets\.\d+\.conv[12]\.|_(block\d+|in\d+|down|up)\.conv[01]\."),
    ("shortcut conv", r"conv_shortcut|_(block\d+|in\d+|down|up)\.skip\."),
    ("resampler conv", r"(^|\.)(downsamplers|upsamplers)\.\d+\.|_aux_(down|up|residual)\."),
    ("attention out", r"(^|\.)(to_out|proj_attn|proj)\b"),
    ("attention q/k/v", r"(^|\.)(to_q|to_k|to_v|query|key|value|qkv)\b"),
    ("time embedding", r"time_emb|time_proj|(^|\.)class_embedding|(^|\.)map_\w+|\.affine\."),
    ("in/out conv", r"(^|\.)conv_(in|out)\.|_(conv|aux_conv)\."),
)
LAYER_TYPE_NAMES = tuple(t for t, _ in LAYER_TYPES) + ("normalisation", "other")


class FreezeReport(NamedTuple):
    """What a freezing policy did: counts are numbers of scalar parameters (not tensors)."""

    policy: str
    pattern: str
    n_total: int
    n_frozen: int
    frozen_names: tuple[str, ...]
    trainable_names: tuple[str, ...]

    @property
    def frozen_share(self) -> float:
        return self.n_frozen / self.n_total if self.n_total else 0.0

    def summary(self) -> str:
        return (f"freeze policy {self.policy!r}: {self.n_frozen:,} of {self.n_total:,} parameters frozen "
                f"({self.frozen_share:.1%}), {len(self.frozen_names)} of "
                f"{len(self.frozen_names) + len(self.trainable_names)} tensors")


def freeze_policy(model: nn.Module, policy: str = "conv") -> FreezeReport:
    """Freeze ``model``'s parameters in place by policy; returns a :class:`FreezeReport`.

    ``policy``: ``"none"`` (D2O: everything trains), ``"conv"`` (D2O-F: :data:`CONV_POLICY_PATTERN` on freqlab and
    diffusers UNets; on an EDM network the D2O code's own rule, :data:`D2O_EDM_RULE`), or any other
    string, taken as a regular expression searched in each parameter name (as ``model.named_parameters()`` gives
    them, e.g. ``unet.down_blocks.0.resnets.0.conv1.weight`` for freqlab's EDM models): matching parameters are
    frozen. Frozen parameters get ``requires_grad=False`` so they receive no gradient and, left out of the optimizer,
    no Adam state. Parameters that were already not trainable (e.g. fixed Fourier features) stay frozen.

    Raises ValueError when a pattern is not a valid regex, or freezes nothing or everything (a typo, most likely).
    """
    from freqlab.denoisers import EDMNetworkDenoiser

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError("the model has no trainable parameters to apply a freezing policy to")
    if policy == "none":
        pattern = ""
    elif policy == "conv" and isinstance(model, EDMNetworkDenoiser):  # D2O's own rule, on EDM's own names
        pattern = "D2O rule: name has one of {} and one of {}".format(*("/".join(w) for w in D2O_EDM_RULE))
        for n, p in model.net.named_parameters():
            if d2o_edm_frozen(n):
                p.requires_grad_(False)
    else:
        pattern = CONV_POLICY_PATTERN if policy == "conv" else policy
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise ValueError(f"freeze pattern {policy!r} is not a valid regular expression ({err})") from None
        hits = sum(bool(regex.search(n)) for n in names)
        example = names[min(len(names) - 1, 8)]
        if hits == 0:
            raise ValueError(f"freeze pattern {policy!r} matches no parameter name (names look like {example!r})")
        if hits == len(names):
            raise ValueError(f"freeze pattern {policy!r} matches every parameter, nothing would train; narrow it")
        for n, p in model.named_parameters():
            if regex.search(n):
                p.requires_grad_(False)
    frozen = tuple(n for n, p in model.named_parameters() if not p.requires_grad)
    trainable = tuple(n for n, p in model.named_parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    n_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return FreezeReport(policy, pattern, n_total, n_frozen, frozen, trainable)


def layer_type(name: str, module: nn.Module | None = None) -> str:
    """The layer type of parameter ``name`` (one of :data:`LAYER_TYPE_NAMES`), from its name and owning module."""
    if isinstance(module, (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm2d, nn.InstanceNorm2d)):
        return "normalisation"
    for kind, pattern in LAYER_TYPES:
        if re.search(pattern, name):
            return kind
    if re.search(r"norm", name.rsplit(".", 1)[0]):
        return "normalisation"
    return "other"


def parameter_breakdown(model: nn.Module) -> xr.Dataset:
    """Frozen and trainable parameter counts by layer type, for a bar chart of what a policy freezes.

    Returns a Dataset with dim ``layer_type`` (:data:`LAYER_TYPE_NAMES`, all listed even when empty) and int64
    variables ``n_frozen``, ``n_trainable`` (scalar parameters, from each parameter's ``requires_grad``).
    """
    frozen = dict.fromkeys(LAYER_TYPE_NAMES, 0)
    trainable = dict.fromkeys(LAYER_TYPE_NAMES, 0)
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            kind = layer_type(f"{mod_name}.{p_name}" if mod_name else p_name, module)
            (trainable if p.requires_grad else frozen)[kind] += p.numel()
    coords = {"layer_type": list(LAYER_TYPE_NAMES)}
    attrs = {"units": "parameters"}
    return xr.Dataset(
        {
            "n_frozen": ("layer_type", np.array(list(frozen.values()), dtype=np.int64), attrs),
            "n_trainable": ("layer_type", np.array(list(trainable.values()), dtype=np.int64), attrs),
        },
        coords=coords,
    )


# --------------------------------------------------------------------------------------------------------------
# spectral logging
# --------------------------------------------------------------------------------------------------------------


class SpectralMonitor:
    """Spectra and per-image band statistics of generated images against a fixed batch of data.

    The same measurement as the sweep (:mod:`freqlab.measure`: same window, bands, names and code), so a log row
    of fine-tuning is the same thing as a sweep cell at (σ_max, generate): the data side is computed once from
    ``reference`` ``(M, C, H, W)``; :meth:`measure` streams a batch of outputs ``(N, C, H, W)`` in chunks on the
    CPU, whatever the training device, and compares it with the data (:func:`freqlab.measure.compare`).
    """

    def __init__(self, reference: torch.Tensor, bands=None, *, chunk: int = 64, window=measure.WINDOW):
        self.an = measure.Analysis(tuple(reference.shape[1:]), bands, window, "cpu")
        self.bands = self.an.bands
        self.chunk = int(chunk)
        self.data = self._stats(reference, "data images")

    def _stats(self, images: torch.Tensor, what: str) -> measure.ImageStats:
        st = measure.ImageStats(self.an, images.shape[0])
        for start in range(0, images.shape[0], self.chunk):
            x = images[start: start + self.chunk].detach().to("cpu", torch.float32)
            st.update(self.an, x, slice(start, start + x.shape[0]), what=what)
        return st

    def measure(self, images: torch.Tensor) -> dict[str, tuple]:
        """``{name: (dims, values, attrs)}`` of ``images`` against the data (dims without images_seen)."""
        return measure.to_variables(measure.compare(self._stats(images, "generated images"), self.data, self.an))

    def reference_dataset(self) -> xr.Dataset:
        """The data side (``data_power``, ``data_band_*`` ...) with the shared coords ``channel``, ``freq``,
        ``band``."""
        return xr.Dataset(measure.to_variables(measure.data_variables(self.data)), coords=measure.coords(self.an))


#: attrs of the training scalars of a log row (the spectral variables take theirs from freqlab.measure.VARIABLES)
VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    "loss_d": {"units": "1", "long_name": "discriminator loss (mean since the previous row, R1 excluded)"},
    "loss_g": {"units": "1", "long_name": "generator loss (mean since the previous row)"},
    "r1_penalty": {"units": "1", "long_name": "lazy R1 penalty incl. its gain (mean over R1 steps since the previous row)"},
    "d_real": {"units": "1", "long_name": "mean discriminator logit on real images"},
    "d_fake": {"units": "1", "long_name": "mean discriminator logit on generated images"},
    "images_per_second": {"units": "s-1", "freqlab_units": "images/s",
                          "long_name": "training throughput since the previous row (no logging)"},
}


def save_grid(images: torch.Tensor, path: str | os.PathLike, *, nrow: int | None = None, pad: int = 1, scale: int = 1) -> Path:
    """Write images ``(N, C, H, W)`` in [-1, 1] (clamped) as one PNG grid, ``nrow`` per row (default √N).

    C = 1 gives a greyscale PNG, C = 3 RGB. ``scale`` enlarges each pixel (nearest neighbour) for viewing. The file
    is written to a temporary name and renamed, so a reader never sees half a PNG.
    """
    from PIL import Image

    x = images.detach().to("cpu", torch.float32).clamp(-1, 1)
    n, c, h, w = x.shape
    if c not in (1, 3):
        raise ValueError(f"a sample grid needs 1 or 3 channels, got {c}")
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = x[i]
    pixels = ((grid + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if scale > 1:
        pixels = pixels.repeat(scale, 0).repeat(scale, 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels[..., 0] if c == 1 else pixels)
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


# --------------------------------------------------------------------------------------------------------------
# the fine-tuning loop
# --------------------------------------------------------------------------------------------------------------


@dataclass
class FinetuneConfig:
    """Everything that determines the numbers of a fine-tuning run (device and I/O options are not here).

    Sizes are in images: ``n_images`` is the budget, ``log_every`` the spacing of log rows and sample grids,
    ``checkpoint_every`` that of exported checkpoints (``None``: at every log row; the resume state is always saved
    at every log row), ``ema`` the half-life of the generator's EMA (0: no averaging).
    """

    init: str = ""                      # provenance: the checkpoint path (set by finetune)
    init_kind: str = "checkpoint"       # "checkpoint" or "random" (same architecture, fresh weights: the control)
    data: str = "natural"               # a freqlab.data source name
    data_path: str | None = None        # for the "folder" and "array" sources
    freeze: str = "conv"                # "none" (D2O), "conv" (D2O-F) or a regex over parameter names
    loss: str = "ns"                    # "ns" (non-saturating) or "hinge"
    r1_gamma: float = 0.1               # R1 weight γ (0 turns R1 off)
    r1_every: int = 16                  # lazy R1: every k D steps, with gain k
    lr_g: float = 4e-4
    lr_d: float = 8e-4
    lr_decay: float = 0.0               # share of the budget, at its end, over which both lrs fall linearly to 0
    batch_size: int = 32
    n_images: int = 10_000
    log_every: int = 1_000
    checkpoint_every: int | None = None
    ema: float = 500.0
    n_eval: int = 64                    # fixed-z outputs logged at each row (spectra, band statistics, grid)
    n_data: int = 256                   # data images of the reference statistics
    bands: tuple[float, ...] | None = None  # band edges in cycles/pixel; None: low/mid/high of DEFAULT_BANDS
    # the default discriminator (see Discriminator): base channels, high-pass view gain (0: pixels only),
    # per-scale patch logits, minibatch-std group size (0: off)
    d_channels: int = 16
    d_max_channels: int = 256
    d_highpass: float = 4.0
    d_patch: bool = True
    d_mbstd: int = 4
    spectral_norm: bool = False
    lookahead: int = 5                  # lookahead-minmax: every k steps pull G and D back towards their slow
    lookahead_alpha: float = 0.5        # weights by 1 - alpha (0: off); see Lookahead
    seed: int = 0

    def __post_init__(self):
        _check_loss(self.loss)
        if self.init_kind not in ("checkpoint", "random"):
            raise ValueError(f"init_kind must be 'checkpoint' or 'random', got {self.init_kind!r}")
        for name in ("batch_size", "n_images", "log_every", "r1_every", "n_eval", "n_data", "d_channels"):
            if int(getattr(self, name)) < (2 if name in ("n_eval", "n_data") else 1):
                raise ValueError(f"{name} must be a positive integer (n_eval, n_data >= 2), got {getattr(self, name)}")
        for name in ("lr_g", "lr_d"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not (float(self.lookahead).is_integer() and self.lookahead >= 0 and 0 < self.lookahead_alpha <= 1):
            raise ValueError(f"lookahead must be a whole number of steps >= 0 (0: off) and lookahead_alpha in "
                             f"(0, 1], got {self.lookahead}, {self.lookahead_alpha}")
        self.lookahead = int(self.lookahead)
        if not 0 <= self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be a share of the budget in [0, 1], got {self.lr_decay}")
        if not (self.r1_gamma >= 0 and self.ema >= 0 and self.d_highpass >= 0 and self.d_mbstd >= 0):
            raise ValueError("r1_gamma, ema, d_highpass and d_mbstd must be >= 0")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 image or None, got {self.checkpoint_every}")
        if self.bands is not None:
            self.bands = tuple(float(b) for b in self.bands)
            spectral.resolve_bands(self.bands)

    # fields that may change when a run is resumed: its budget and how often it exports checkpoints
    RESUMABLE_CHANGES = ("n_images", "checkpoint_every")
    # fields added after runs were first saved, with the value that reproduces those runs (not today's default)
    ADDED_LATER = {"lr_decay": 0.0, "lookahead": 0, "lookahead_alpha": 0.5}

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


@dataclass
class FinetuneRun:
    """What :func:`finetune` returns: the log and the trained networks, on the run's device."""

    out_dir: Path
    log: xr.Dataset
    generator: Generator
    generator_ema: Generator
    discriminator: nn.Module
    freeze: FreezeReport
    images_seen: int


class _DataStream:
    """Training images by index, deterministic: unlimited sources are read in order (after the reference
    images), finite ones in a seeded permutation per epoch, so a resumed run sees the same images."""

    def __init__(self, source, seed: int, skip: int):
        self.source, self.seed, self.skip = source, seed, skip
        self._perm: tuple[int, torch.Tensor] | None = None

    def indices(self, start: int, n: int) -> list[int]:
        size = self.source.size
        if size is None:
            return [self.skip + i for i in range(start, start + n)]
        out = []
        for i in range(start, start + n):
            epoch, j = divmod(i, size)
            if self._perm is None or self._perm[0] != epoch:
                gen = torch.Generator().manual_seed(sample_seed(self.seed, "finetune-data-order", epoch))
                self._perm = (epoch, torch.randperm(size, generator=gen))
            out.append(int(self._perm[1][j]))
        return out

    def batch(self, start: int, n: int) -> torch.Tensor:
        return self.source.images(self.indices(start, n))


def finetune(
    init,
    out_dir: str | os.PathLike,
    *,
    data: str = FinetuneConfig.data,
    data_path: str | None = None,
    init_kind: str = FinetuneConfig.init_kind,
    freeze: str = FinetuneConfig.freeze,
    loss: str = FinetuneConfig.loss,
    r1_gamma: float = FinetuneConfig.r1_gamma,
    r1_every: int = FinetuneConfig.r1_every,
    lr_g: float = FinetuneConfig.lr_g,
    lr_d: float = FinetuneConfig.lr_d,
    lr_decay: float = FinetuneConfig.lr_decay,
    lookahead: int = FinetuneConfig.lookahead,
    lookahead_alpha: float = FinetuneConfig.lookahead_alpha,
    batch_size: int = FinetuneConfig.batch_size,
    n_images: int = FinetuneConfig.n_images,
    log_every: int = FinetuneConfig.log_every,
    checkpoint_every: int | None = FinetuneConfig.checkpoint_every,
    ema: float = FinetuneConfig.ema,
    n_eval: int = FinetuneConfig.n_eval,
    n_data: int = FinetuneConfig.n_data,
    bands: Sequence[float] | None = None,
    d_channels: int = FinetuneConfig.d_channels,
    d_highpass: float = FinetuneConfig.d_highpass,
    d_patch: bool = FinetuneConfig.d_patch,
    d_mbstd: int = FinetuneConfig.d_mbstd,
    seed: int = FinetuneConfig.seed,
    device="auto",
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    discriminator_factory: Callable[[tuple[int, int, int]], nn.Module] | None = None,
    trust_pickle: bool = False,
) -> FinetuneRun:
    """Fine-tune a denoiser into a one-step generator with a GAN loss; log spectra, samples and checkpoints.

    Parameters
    ----------
    init : a checkpoint path (anything :func:`freqlab.checkpoints.load_denoiser` accepts) or a ``Denoiser``.
    out_dir : the run directory (layout in the module docstring).
    init_kind : ``"checkpoint"`` (use its weights) or ``"random"`` (same architecture, fresh seeded weights).
    freeze : ``"none"`` (D2O), ``"conv"`` (D2O-F) or a regex over parameter names (:func:`freeze_policy`).
    resume : continue the run found in ``out_dir`` (its config must match, except ``n_images`` and
        ``checkpoint_every``); a run that already reached ``n_images`` returns at once. ``resume=False`` with a run
        there is an error unless ``overwrite``. With ``lr_decay`` > 0 the schedule follows the budget of the call,
        so extending a finished run raises the learning rates again.
    overwrite : delete a previous run's files in ``out_dir`` (log, samples, checkpoints, state) first.
    trust_pickle : allow an EDM network pickle as ``init`` (unpickling runs its code; only for files you trust).
        Its fine-tuned checkpoints hold the weights and name the source pickle (with its sha256) for the
        architecture: :func:`freqlab.checkpoints.load_denoiser` and ``freqlab sweep --trust-pickle`` load them.
    discriminator_factory : the hook for another discriminator (e.g. :class:`Discriminator` with a
        ``feature_network``, a projected discriminator): called with the image shape ``(C, H, W)`` under a seeded
        RNG, returns the module (logits ``(N,)`` or ``(N, K)`` for images ``(N, C, H, W)``). Default:
        :class:`Discriminator` built from ``d_channels``, ``d_highpass``, ``d_patch`` and ``d_mbstd``.
    Other arguments: the fields of :class:`FinetuneConfig`.

    Returns
    -------
    FinetuneRun. Its ``log`` (also ``out_dir/finetune.nc``) has dim ``images_seen`` (int, images the generator was
    trained on; the first row, 0, is the initial model, i.e. the denoiser's one-step output at σ_max), and:

    * per row: ``power``, ``power_sem`` (images_seen, channel, freq); ``relative_power_db`` (images_seen, freq);
      ``log_spectral_distance``, ``diversity_ratio``, ``wasserstein_log_band_power``, ``kurtosis``,
      ``kurtosis_gap`` (images_seen, band); ``log_band_power`` (images_seen, sample, band);
      ``log_spectral_distance_all``, ``cutoff_frequency``, ``loss_d``, ``loss_g``, ``r1_penalty``, ``d_real``,
      ``d_fake``, ``images_per_second`` (images_seen) — losses are means since the previous row, NaN in row 0;
    * once: ``data_power``, ``data_power_sem`` (channel, freq); ``data_log_band_power`` (data_sample, band);
      ``data_kurtosis`` (band); ``n_frozen``, ``n_trainable`` (layer_type);
    * attrs: ``frozen_share``, ``n_parameters``, ``n_frozen_parameters``, ``sigma_g``, ``logged_network``, and the
      config (``config_*``).

    Raises ValueError for a checkpoint that is not a denoiser, a freeze pattern that freezes nothing or everything,
    data that do not match the model's image shape, a batch size not divisible by the number of processes, and a
    non-finite loss (the run stops; the last good state and checkpoints stay on disk; the message says at which
    ``images_seen``).

    Under torchrun every rank calls this with the same arguments and trains G and D with DDP on its share of the
    global ``batch_size`` (see :func:`run_finetune`); only rank 0 writes ``out_dir`` and shows progress; every rank
    returns the same networks and rank 0's log.
    """
    config = FinetuneConfig(
        init=str(init) if isinstance(init, (str, os.PathLike)) else f"<{type(init).__name__} object>",
        init_kind=init_kind, data=data, data_path=data_path, freeze=freeze, loss=loss, r1_gamma=r1_gamma,
        r1_every=r1_every, lr_g=lr_g, lr_d=lr_d, lr_decay=lr_decay, lookahead=lookahead,
        lookahead_alpha=lookahead_alpha, batch_size=batch_size, n_images=n_images, log_every=log_every,
        checkpoint_every=checkpoint_every, ema=ema, n_eval=n_eval, n_data=n_data,
        bands=tuple(bands) if bands is not None else None, d_channels=d_channels, d_highpass=d_highpass,
        d_patch=d_patch, d_mbstd=d_mbstd, seed=seed,
    )
    return run_finetune(init, out_dir, config, device=device, resume=resume, overwrite=overwrite,
                        progress=progress, discriminator_factory=discriminator_factory, trust_pickle=trust_pickle)


@holding("out_dir")
def run_finetune(
    init,
    out_dir: str | os.PathLike,
    config: FinetuneConfig,
    *,
    device="auto",
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    discriminator_factory: Callable[[tuple[int, int, int]], nn.Module] | None = None,
    trust_pickle: bool = False,
) -> FinetuneRun:
    """:func:`finetune` with a ready :class:`FinetuneConfig` (the loop itself).

    Distributed (launched by torchrun, or inside a process group the caller initialised; see
    :mod:`freqlab.distributed`): ``config.batch_size`` is the global batch and must be divisible by the number of
    processes; rank ``r`` trains on images and z of global indices ``[s + r·b/W, s + (r+1)·b/W)`` of the step
    starting at ``s``, so DDP's gradient average is the gradient of the single-process mean loss. The logged losses
    are global means (all-reduced before the non-finite check, so all ranks stop together). Rank 0 clears the run
    for ``overwrite``, measures the spectra and writes the log, samples, checkpoints and resume state; every rank
    resumes from the same state files.
    """
    from tqdm.auto import tqdm

    from freqlab.data import make_source

    device = distributed.setup(device)
    main, n_ranks = distributed.is_main(), distributed.world_size()
    if config.batch_size % n_ranks:
        raise ValueError(f"batch_size {config.batch_size} (the global batch) is not divisible by the "
                         f"{n_ranks} processes; choose a multiple of {n_ranks}")
    local = config.batch_size // n_ranks  # images per rank and step
    progress = progress and main
    out = Path(out_dir)
    if overwrite and main:
        _remove_run(out)
    distributed.barrier()  # every rank reads the run directory only after rank 0 cleared it
    previous = _read_latest(out)
    if previous is not None and not resume:
        raise FileExistsError(f"{out} already holds a fine-tuning run; resume it (resume=True, the command line's "
                              f"default) or start over (--overwrite)")
    if previous is not None:
        _check_resumable(previous["config"], config, out)

    # -- networks -------------------------------------------------------------------------------------------
    gen = make_generator(init, init_kind=config.init_kind, seed=config.seed, device=device, trust_pickle=trust_pickle)
    gen.train()
    freeze = freeze_policy(gen.denoiser, config.freeze)
    if progress:
        print(freeze.summary(), file=sys.stderr)
    shape = gen.image_shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(sample_seed(config.seed, "discriminator-init", 0))
        factory = discriminator_factory or (lambda s: Discriminator(
            s, channels=config.d_channels, max_channels=config.d_max_channels, highpass_gain=config.d_highpass,
            patch_logits=config.d_patch, minibatch_std=config.d_mbstd, spectral_norm=config.spectral_norm))
        disc = factory(tuple(shape)).to(device)
    g_params = [p for p in gen.parameters() if p.requires_grad]
    d_params = [p for p in disc.parameters() if p.requires_grad]
    opt_g = torch.optim.Adam(g_params, lr=config.lr_g, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(d_params, lr=config.lr_d, betas=(0.0, 0.99))
    ema = EMA(gen, config.ema)
    lookahead = Lookahead(g_params + d_params, config.lookahead, config.lookahead_alpha)

    # -- data and the fixed evaluation batch (measured on rank 0 only) -----------------------------------------
    c, h, w = shape
    source = make_source(config.data, resolution=h if h == w else (h, w), grayscale=(c == 1), path=config.data_path)
    if tuple(source.shape) != tuple(shape):
        raise ValueError(f"data source {config.data!r} gives images of shape {tuple(source.shape)} but the model "
                         f"expects {tuple(shape)}")
    n_data = config.n_data if source.size is None else min(config.n_data, source.size)
    stream = _DataStream(source, config.seed, skip=n_data)
    if main:
        reference = source.images(range(n_data))
        monitor = SpectralMonitor(reference, config.bands)
        z_eval = per_sample_randn(config.seed, measure.GENERATE_STREAM, range(config.n_eval), shape, device=device)
        static = monitor.reference_dataset().merge(parameter_breakdown(gen.denoiser))
        static.attrs.update(_attrs(config, freeze, gen))
    rows: list[xr.Dataset] = []
    images_seen, step, next_log = 0, 0, 0
    if previous is not None:  # every rank resumes from the same files, so all hold the same state
        images_seen, step, next_log = _load_state(out, previous, gen, ema, disc, opt_g, opt_d, lookahead, device)
        rows, created = _load_rows(out / LOG_NAME, images_seen)
        if main:  # a resumed log keeps its creation date and history
            static.attrs.update(created)
    elif main:
        save_grid(reference[: config.n_eval], out / "samples" / "data.png")
    logged_at = int(rows[-1].images_seen[-1]) if rows else -1
    last_good = images_seen if previous is not None else None
    distributed.barrier()  # no rank reads the state any more when rank 0 starts replacing it
    # The modules that train: DDP averages the gradients of the trainable parameters (frozen ones are left out
    # by DDP and the optimizers alike); gen and disc stay the plain modules for the EMA, logging, export, state.
    g_train, d_train = _data_parallel(gen, device), _data_parallel(disc, device)

    # -- loop ------------------------------------------------------------------------------------------------
    sums = dict.fromkeys(("loss_d", "loss_g", "r1_penalty", "d_real", "d_fake", "n_steps", "n_r1", "images",
                          "seconds"), 0.0)
    bar = tqdm(total=config.n_images, initial=min(images_seen, config.n_images), unit="img", file=sys.stderr,
               disable=not progress, desc="finetune", dynamic_ncols=True)
    checkpoint_every = config.checkpoint_every or config.log_every
    try:
        while True:
            if (images_seen >= next_log or images_seen >= config.n_images) and logged_at != images_seen:
                next_log = (images_seen // config.log_every + 1) * config.log_every
                if main:
                    outputs = _generate(ema.model, z_eval, config.batch_size)
                    rows.append(_log_row(images_seen, monitor.measure(outputs), sums))
                    results.save(_assemble(rows, static), out / LOG_NAME)
                    save_grid(outputs, out / "samples" / f"images_seen-{images_seen:07d}.png")
                    crossed = images_seen // checkpoint_every > logged_at // checkpoint_every
                    if images_seen == 0 or images_seen >= config.n_images or crossed:
                        _export(out, gen, ema, images_seen, step, rows[-1])
                    _save_state(out, images_seen, step, next_log, config, freeze, gen, ema, disc, opt_g, opt_d,
                                lookahead)
                distributed.barrier()  # the state is complete on disk before any rank goes on
                last_good, logged_at = images_seen, images_seen
                sums = dict.fromkeys(sums, 0.0)
            if images_seen >= config.n_images:
                break
            t0 = time.perf_counter()
            b = config.batch_size
            scale = lr_scale(images_seen, config.n_images, config.lr_decay)
            for opt, lr in ((opt_g, config.lr_g), (opt_d, config.lr_d)):
                for group in opt.param_groups:
                    group["lr"] = lr * scale
            # this rank's contiguous slice of the global batch: images and z by global index, so the union over
            # ranks is the single-process batch and DDP's gradient average is the gradient of its mean loss
            first = images_seen + distributed.rank() * local
            real = stream.batch(first, local).to(device)
            z = per_sample_randn(config.seed, "finetune-z", range(first, first + local), shape, device=device)
            fake = g_train(z)

            # discriminator step (lazy R1 on the real images every r1_every steps, with gain r1_every)
            do_r1 = config.r1_gamma > 0 and step % config.r1_every == 0
            real.requires_grad_(do_r1)
            real_logits, fake_logits = d_train(real), d_train(fake.detach())
            loss_d = discriminator_loss(real_logits, fake_logits, config.loss)
            r1 = r1_penalty(real_logits, real, config.r1_gamma, config.r1_every) if do_r1 else loss_d.new_zeros(())
            # global means, so that every rank takes the same decision (one rank raising alone would hang the rest)
            scalars = _global_mean(loss_d=loss_d, r1_penalty=r1, d_real=real_logits.mean(), d_fake=fake_logits.mean())
            _check_finite(out, images_seen, step, last_good, loss_d=scalars["loss_d"], r1_penalty=scalars["r1_penalty"])
            opt_d.zero_grad(set_to_none=True)
            (loss_d + r1).backward()
            opt_d.step()

            # generator step against the updated discriminator (its parameters get no gradient here, so it runs
            # unwrapped: under DDP it would wait for gradients that never come)
            for p in d_params:
                p.requires_grad_(False)
            loss_g = generator_loss(disc(fake), config.loss)
            scalars.update(_global_mean(loss_g=loss_g))
            _check_finite(out, images_seen, step, last_good, loss_g=scalars["loss_g"])
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            for p in d_params:
                p.requires_grad_(True)

            images_seen += b
            step += 1
            lookahead.step(step)
            ema.update(gen, images_seen, b)
            dt = time.perf_counter() - t0
            for key, value in scalars.items():
                sums[key] += float(value)
            sums["n_r1"] += float(do_r1)
            sums["n_steps"] += 1
            sums["images"] += b
            sums["seconds"] += dt
            bar.update(min(images_seen, config.n_images) - bar.n)
            bar.set_postfix(loss_d=f"{float(scalars['loss_d']):.3f}", loss_g=f"{float(scalars['loss_g']):.3f}",
                            img_s=f"{b / dt:.0f}", refresh=False)
    finally:
        bar.close()
    log = _assemble(rows, static) if main else None
    if distributed.is_distributed():  # every rank returns rank 0's log (and waits for its last files)
        log = distributed.all_gather_objects(log)[0]
    return FinetuneRun(out, log, gen, ema.model, disc, freeze, images_seen)


def lr_scale(images_seen: int, n_images: int, decay: float) -> float:
    """The learning-rate factor at ``images_seen``: 1, then a linear fall to 0 over the last ``decay`` share of
    the budget ``n_images`` (``decay`` 0: constant)."""
    if decay <= 0:
        return 1.0
    return float(min(1.0, max(0.0, (n_images - images_seen) / (decay * n_images))))


def _data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel when several processes train, else ``module`` itself."""
    if not distributed.is_distributed():
        return module
    return nn.parallel.DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


def _global_mean(**values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Detached scalars averaged over ranks (one all-reduce); unchanged in one process.

    Every rank holds the same share of the global batch, so the mean of the ranks' batch means is the global mean.
    """
    values = {k: v.detach() for k, v in values.items()}
    if not distributed.is_distributed():
        return values
    stacked = distributed.all_reduce_sum(torch.stack(list(values.values()))) / distributed.world_size()
    return dict(zip(values, stacked))


@torch.no_grad()
def _generate(net: nn.Module, z: torch.Tensor, chunk: int) -> torch.Tensor:
    return torch.cat([net(z[i : i + chunk]) for i in range(0, z.shape[0], chunk)])


def _check_finite(out: Path, images_seen: int, step: int, last_good: int | None, **losses: torch.Tensor) -> None:
    for name, value in losses.items():
        if not bool(torch.isfinite(value)):
            kept = (f"the last good state (images_seen={last_good}) is kept in {out / 'state'}"
                    if last_good is not None else "nothing was saved")
            raise ValueError(f"fine-tuning stopped: {name} is {float(value.detach())} at images_seen={images_seen} "
                             f"(step {step}); {kept}; lower the learning rates or raise r1_gamma and start over")


def _log_row(images_seen: int, measured: dict, sums: dict) -> xr.Dataset:
    n, n_r1 = sums["n_steps"], sums["n_r1"]
    scalars = {
        "loss_d": sums["loss_d"] / n if n else math.nan,
        "loss_g": sums["loss_g"] / n if n else math.nan,
        "r1_penalty": sums["r1_penalty"] / n_r1 if n_r1 else math.nan,
        "d_real": sums["d_real"] / n if n else math.nan,
        "d_fake": sums["d_fake"] / n if n else math.nan,
        "images_per_second": sums["images"] / sums["seconds"] if sums["seconds"] else math.nan,
    }
    data = dict(measured)
    data.update({k: ((), np.float64(v), VARIABLE_ATTRS[k]) for k, v in scalars.items()})
    return xr.Dataset(data).expand_dims(images_seen=np.array([images_seen], dtype=np.int64))


def _assemble(rows: list[xr.Dataset], static: xr.Dataset) -> xr.Dataset:
    ds = xr.concat(rows, dim="images_seen").merge(static)
    ds["images_seen"].attrs.update({"units": "1", "long_name": "images the generator was trained on"})
    ds.attrs = dict(static.attrs)
    return ds


def _attrs(config: FinetuneConfig, freeze: FreezeReport, gen: Generator) -> dict:
    attrs = {
        "title": "freqlab GAN fine-tuning log (D2O / D2O-F)",
        "frozen_share": float(freeze.frozen_share),
        "n_parameters": int(freeze.n_total),
        "n_frozen_parameters": int(freeze.n_frozen),
        "freeze_pattern": freeze.pattern,
        "sigma_g": float(gen.sigma),
        "logged_network": "EMA of the generator (equal to G when ema = 0), fixed z: the z of a sweep's generate "
                          "mode with the same seed",
        "format_version": LOG_FORMAT_VERSION,
        "spectrum_normalisation": measure.NORMALISATION,
        "spectrum_window": measure.window_text(measure.WINDOW),
        "band_statistics": measure.BAND_STATISTICS,
        "cutoff_definition": measure.CUTOFF_DEFINITION,
        "wasserstein_images": "all",
        **results.provenance_attrs(config.init),
    }
    for key, value in config.to_dict().items():
        attrs[f"config_{key}"] = "none" if value is None else (json.dumps(value) if isinstance(value, list) else
                                                               int(value) if isinstance(value, bool) else value)
    return attrs


# --------------------------------------------------------------------------------------------------------------
# run directory: checkpoints, resume state, log
# --------------------------------------------------------------------------------------------------------------


def _export(out: Path, gen: Generator, ema: EMA, images_seen: int, step: int, row: xr.Dataset) -> None:
    """G and its EMA in freqlab's checkpoint format, for the models save_checkpoint knows: freqlab's EDM models and
    EDM networks loaded from a pickle (saved as weights beside the name of their source pickle)."""
    from freqlab.checkpoints import save_checkpoint
    from freqlab.denoisers import EDMDenoiser

    if not isinstance(gen.denoiser, EDMDenoiser) and getattr(gen.denoiser, "source_pickle", None) is None:
        if images_seen == 0:  # said once, not silently skipped
            print(f"freqlab finetune: no checkpoints/ for a {type(gen.denoiser).__name__} (exported: freqlab's EDM "
                  "models and EDM pickles); its trained weights are in state/ (resume state) only", file=sys.stderr)
        return
    loss = float(row["loss_g"].values.squeeze())
    loss = loss if math.isfinite(loss) else None  # the first row has no loss yet
    for net, suffix, is_ema in ((gen, "", False), (ema.model, "-ema", True)):
        meta = {"step": step, "images_seen": images_seen, "loss": loss, "ema": is_ema, "kind": "finetune",
                "sigma_g": gen.sigma}
        save_checkpoint(out / "checkpoints" / f"finetune-{images_seen:07d}{suffix}", net.denoiser, metadata=meta)


def _save_state(out: Path, images_seen, step, next_log, config, freeze, gen, ema, disc, opt_g, opt_d,
                lookahead: Lookahead) -> None:
    from safetensors.torch import save_file

    root = out / "state"
    final = root / f"images_seen-{images_seen:07d}"
    tmp = root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {}
    for prefix, module in (("generator.", gen), ("generator_ema.", ema.model), ("discriminator.", disc)):
        tensors.update({prefix + k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()})
    tensors.update({f"lookahead.{i}": v.to("cpu").contiguous() for i, v in enumerate(lookahead.slow)})
    # each file flushed and given the umask's permissions (safetensors alone writes 0600) before the folder is renamed
    write_atomic(tmp / "weights.safetensors", lambda f: save_file(tensors, str(f)))
    optimizers = {"generator": opt_g.state_dict(), "discriminator": opt_d.state_dict()}
    write_atomic(tmp / "optimizers.pt", lambda f: torch.save(optimizers, f))
    state = {"images_seen": images_seen, "step": step, "next_log": next_log, "config": config.to_dict(),
             "frozen_share": freeze.frozen_share, "n_frozen": freeze.n_frozen, "n_parameters": freeze.n_total}
    _write_text(tmp / "state.json", json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_text(root / "latest.json", json.dumps({"dir": final.name, **state}, indent=1))
    for old in root.glob("images_seen-*"):  # keep only the newest complete state
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def _read_latest(out: Path) -> dict | None:
    path = out / "state" / "latest.json"
    if not path.is_file():
        return None
    try:
        latest = json.loads(path.read_text())
        folder = out / "state" / str(latest["dir"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is unreadable ({type(err).__name__}: {err}); start over with --overwrite") from None
    if not (folder / "weights.safetensors").is_file():
        raise ValueError(f"the resume state named in {path} is missing; start over with --overwrite")
    return latest


def _check_resumable(saved: Mapping, config: FinetuneConfig, out: Path) -> None:
    now = config.to_dict()
    saved = {**FinetuneConfig.ADDED_LATER, **saved}  # a run saved before a field existed ran as if it had this value
    diff = [k for k in now if k not in FinetuneConfig.RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise ValueError(f"{out} holds a run with other settings ({detail}); use the same settings to resume, "
                         f"or --overwrite to start over")


def _load_state(out: Path, latest: dict, gen, ema, disc, opt_g, opt_d, lookahead: Lookahead,
                device) -> tuple[int, int, int]:
    from safetensors.torch import load_file

    folder = out / "state" / latest["dir"]
    try:
        tensors = load_file(folder / "weights.safetensors", device=str(device))
        for prefix, module in (("generator.", gen), ("generator_ema.", ema.model), ("discriminator.", disc)):
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        for i, slow in enumerate(lookahead.slow):
            slow.copy_(tensors[f"lookahead.{i}"])
        opts = torch.load(folder / "optimizers.pt", map_location=device, weights_only=True)
        opt_g.load_state_dict(opts["generator"])
        opt_d.load_state_dict(opts["discriminator"])
        return int(latest["images_seen"]), int(latest["step"]), int(latest["next_log"])
    except Exception as err:  # noqa: BLE001 - safetensors and torch raise many kinds for a truncated file
        raise ValueError(f"the resume state in {folder} (weights.safetensors, optimizers.pt) is unreadable "
                         f"(truncated or corrupt: {type(err).__name__}); start over with --overwrite") from None


def _load_rows(path: Path, images_seen: int) -> tuple[list[xr.Dataset], dict]:
    """The per-row part of an existing log, up to the resumed state (rows written after it are dropped), and the
    log's provenance attrs to keep (``date_created``, ``history``)."""
    if not path.is_file():
        return [], {}
    ds = results.load(path)
    version = ds.attrs.get("format_version", 1)
    if version != LOG_FORMAT_VERSION:
        raise ValueError(f"{path} was written with log format {version} (this freqlab writes {LOG_FORMAT_VERSION}: "
                         f"other metrics); start over with --overwrite")
    per_row = [k for k in ds.data_vars if "images_seen" in ds[k].dims]
    created = {k: ds.attrs[k] for k in ("date_created", "history") if k in ds.attrs}
    ds = ds[per_row]
    ds = ds.drop_vars([c for c in ds.coords if c != "images_seen"])  # coords come back from the static part
    ds.attrs = {}
    return [ds.sel(images_seen=[int(i)]) for i in ds.images_seen.values if int(i) <= images_seen], created


def _remove_run(out: Path) -> None:
    """Only what a fine-tuning run writes (a pre-training run in the same directory keeps its checkpoints)."""
    for path in (out / "state", out / "samples", *(out / "checkpoints").glob("finetune-*")):
        shutil.rmtree(path, ignore_errors=True)
    (out / LOG_NAME).unlink(missing_ok=True)
