"""What was measured: a short content fingerprint of a model's weights, as loaded.

A results file stores one per checkpoint (``checkpoint_fingerprint`` in a sweep), taken from the very model that
was measured (after loading, from the same tensors), so a resumed run can tell a checkpoint it already measured
from another one that has the same name (a run retrained with ``--overwrite`` even while a sweep read it, weights
swapped in with their file times restored, another run with the same step names): the first is skipped, the
second measured again. Never the old numbers. It covers the bytes of every tensor of the module's ``state_dict``
with their names, shapes and dtypes, plus its class and σ range; a move or a copy of the files does not change it.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["module_fingerprint"]

_SIZE = 8  # bytes of digest: 16 hex characters


def module_fingerprint(module: torch.nn.Module) -> str:
    """``"weights:<hex>"``: class, σ range and the bytes of every state_dict tensor (names and dtypes included)."""
    digest = hashlib.blake2b(type(module).__qualname__.encode(), digest_size=_SIZE)
    for attr in ("sigma_min", "sigma_max", "sigma_data"):
        digest.update(f"\0{attr}={getattr(module, attr, None)!r}".encode())
    for name, tensor in module.state_dict().items():
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"\0{name}\0{data.dtype}\0{tuple(data.shape)}\0".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return "weights:" + digest.hexdigest()
