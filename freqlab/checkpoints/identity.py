"""What was measured: a short content fingerprint of a checkpoint on disk or of a model in memory.

A results file stores one per checkpoint (``checkpoint_fingerprint`` in a sweep), so a resumed run can tell a
checkpoint it already measured from another one that has the same name (a run retrained with ``--overwrite``,
another run with the same step names): the first is skipped, the second measured again. Never the old numbers.

* On disk: every file of the checkpoint (a freqlab checkpoint directory, a diffusers folder, an EDM pickle) by
  relative name, size and modification time, plus the checkpoint's resolved path. Cheap (no file is read), and
  changed by any rewrite of the weights or the config.
* In memory: the bytes of every tensor of the module's ``state_dict`` with their names and dtypes, plus its class
  and σ range.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

__all__ = ["path_fingerprint", "module_fingerprint"]

_SIZE = 8  # bytes of digest: 16 hex characters


def path_fingerprint(path: str | os.PathLike) -> str:
    """``"files:<hex>"``: the resolved path, and name, size and mtime (ns) of every non-hidden file under it."""
    path = Path(path).expanduser().resolve()
    digest = hashlib.blake2b(str(path).encode(), digest_size=_SIZE)
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                              p.relative_to(path).parts))
    for file in files:
        info = file.stat()
        name = file.name if file == path else file.relative_to(path).as_posix()
        digest.update(f"\0{name}\0{info.st_size}\0{info.st_mtime_ns}".encode())
    return "files:" + digest.hexdigest()


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
