"""Weight averaging of the fine-tuning: an EMA of the generator and lookahead-minmax over G and D."""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

__all__ = ["EMA", "Lookahead", "ema_beta", "ema_lerp"]


def ema_beta(images_seen: int, batch: int, halflife: float, rampup: float | None = 0.05,
             decay: float | None = None) -> float:
    """The decay β of one EMA step of ``batch`` images: ``0.5 ** (batch / half-life)``, the half-life (in images)
    ramped up as ``min(halflife, rampup · images_seen)`` (StyleGAN2-ADA's ``ema_rampup``; ``None``: no ramp), 0
    for a half-life of 0 (the average is a copy). A fixed per-step ``decay`` overrides all of it."""
    if decay is not None:
        return float(decay)
    if rampup is not None:
        halflife = min(halflife, rampup * images_seen)
    return 0.5 ** (batch / halflife) if halflife > 0 else 0.0


@torch.no_grad()
def ema_lerp(averages: Sequence[torch.Tensor], values: Sequence[torch.Tensor], beta: float) -> None:
    """``average ← β·average + (1 − β)·value`` in place, tensor by tensor."""
    for average, value in zip(averages, values):
        average.lerp_(value.detach(), 1.0 - beta)


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
        return ema_beta(images_seen, batch, self.halflife, self.rampup)

    @torch.no_grad()
    def update(self, model: nn.Module, images_seen: int, batch: int) -> None:
        # frozen parameters never change, so their average is already right
        pairs = [(p_ema, p) for p_ema, p in zip(self.model.parameters(), model.parameters()) if p.requires_grad]
        ema_lerp([a for a, _ in pairs], [p for _, p in pairs], self.beta(images_seen, batch))
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
