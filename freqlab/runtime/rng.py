"""Per-sample random numbers, so results do not depend on batch size.

Each image ``i`` of a run draws from its own generator seeded with ``hash(seed, stream, i)``: splitting the same
images into batches of 7 or 64, or across processes, gives the same noise for each image. The numbers are drawn on
the CPU and then moved to the requested device, so a GPU run uses the same noise as a CPU run (CUDA generators
would give other numbers for the same seed).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch

__all__ = ["sample_seed", "per_sample_randn", "per_sample_rand"]


def sample_seed(seed: int, stream: str, index: int) -> int:
    """A 63-bit seed for sample ``index`` of the named ``stream`` (e.g. "noise", "crops") of run ``seed``."""
    digest = hashlib.blake2b(f"{int(seed)}/{stream}/{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _draw(fn, seed: int, stream: str, indices: Sequence[int], shape, device, dtype) -> torch.Tensor:
    out = torch.empty((len(indices), *shape), dtype=dtype)
    gen = torch.Generator()
    for row, i in enumerate(indices):
        gen.manual_seed(sample_seed(seed, stream, int(i)))
        out[row] = fn(tuple(shape), generator=gen, dtype=dtype)
    return out.to(device)


def per_sample_randn(seed: int, stream: str, indices: Sequence[int], shape, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal tensor ``(len(indices), *shape)``; row ``r`` depends only on ``(seed, stream, indices[r])``."""
    return _draw(torch.randn, seed, stream, indices, shape, torch.device(device or "cpu"), dtype)


def per_sample_rand(seed: int, stream: str, indices: Sequence[int], shape, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Uniform [0, 1) tensor ``(len(indices), *shape)``; row ``r`` depends only on ``(seed, stream, indices[r])``."""
    return _draw(torch.rand, seed, stream, indices, shape, torch.device(device or "cpu"), dtype)
