"""One step of the GAN game of D2O / D2O-F: a discriminator step (with lazy R1), then a generator step.

A pure step over its inputs, like EDM's ten-line loss: the networks and optimizers come in a :class:`GanNets`, the
batch of real images and of latents ``z`` as tensors; it returns the step's scalars. The loop around it (data,
lookahead, EMA, logging, checkpoints, resume) is :mod:`freqlab.finetune.loop`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from freqlab.finetune.config import FinetuneConfig
from freqlab.finetune.losses import discriminator_loss, generator_loss, r1_penalty
from freqlab.runtime import distributed

__all__ = ["GanNets", "gan_step", "global_mean"]


@dataclass
class GanNets:
    """What one GAN step updates: G as trained (DDP-wrapped under torchrun), D plain (for G's step) and as trained,
    their optimizers and D's trainable parameters."""

    g_train: nn.Module
    disc: nn.Module
    d_train: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    d_params: list


def gan_step(nets: GanNets, real: torch.Tensor, z: torch.Tensor, config: FinetuneConfig, *, r1_now: bool,
             check: Callable[..., None] = lambda **losses: None) -> dict[str, torch.Tensor]:
    """One step of the game on a batch: a discriminator step (with lazy R1 on ``real`` when ``r1_now``, gain
    ``r1_every``), then a generator step against the updated discriminator. Returns the global means (over ranks)
    of ``loss_d``, ``r1_penalty``, ``d_real``, ``d_fake`` and ``loss_g``; ``check(**losses)`` sees each loss before
    its backward pass (the non-finite check)."""
    fake = nets.g_train(z)
    real.requires_grad_(r1_now)
    real_logits, fake_logits = nets.d_train(real), nets.d_train(fake.detach())
    loss_d = discriminator_loss(real_logits, fake_logits, config.loss)
    r1 = r1_penalty(real_logits, real, config.r1_gamma, config.r1_every) if r1_now else loss_d.new_zeros(())
    # global means, so that every rank takes the same decision (one rank raising alone would hang the rest)
    scalars = global_mean(loss_d=loss_d, r1_penalty=r1, d_real=real_logits.mean(), d_fake=fake_logits.mean())
    check(loss_d=scalars["loss_d"], r1_penalty=scalars["r1_penalty"])
    nets.opt_d.zero_grad(set_to_none=True)
    (loss_d + r1).backward()
    nets.opt_d.step()

    # the generator step runs D unwrapped: D's parameters get no gradient here, and under DDP it would wait for
    # gradients that never come
    for p in nets.d_params:
        p.requires_grad_(False)
    loss_g = generator_loss(nets.disc(fake), config.loss)
    scalars.update(global_mean(loss_g=loss_g))
    check(loss_g=scalars["loss_g"])
    nets.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    nets.opt_g.step()
    for p in nets.d_params:
        p.requires_grad_(True)
    return scalars


def global_mean(**values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Detached scalars averaged over ranks (one all-reduce); unchanged in one process.

    Every rank holds the same share of the global batch, so the mean of the ranks' batch means is the global mean.
    """
    values = {k: v.detach() for k, v in values.items()}
    if not distributed.is_distributed():
        return values
    stacked = distributed.all_reduce_sum(torch.stack(list(values.values()))) / distributed.world_size()
    return dict(zip(values, stacked))
