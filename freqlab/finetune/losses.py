"""GAN losses of the fine-tuning: non-saturating or hinge, and lazy R1 on real images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from freqlab.finetune.config import LOSSES

__all__ = [ "discriminator_loss", "generator_loss", "r1_penalty"]


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
