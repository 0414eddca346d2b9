"""Choosing a device: nothing in freqlab defaults to CUDA; ``"auto"`` picks CUDA only when it is there."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "autocast_context"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None → cuda if available else cpu; otherwise the named device, checked to exist."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return dev


def autocast_context(device: torch.device, enabled: bool):
    """bf16 autocast on accelerators when enabled; a no-op on CPU (reduced precision only on accelerators)."""
    use = bool(enabled) and device.type != "cpu"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use)
