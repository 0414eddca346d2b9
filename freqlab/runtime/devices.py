"""Choosing a device: nothing in freqlab defaults to CUDA; ``"auto"`` picks CUDA only when it is there."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "autocast_context"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None → cuda if available else cpu; otherwise the named device, checked to exist."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {str(device)!r}; use auto, cpu, cuda or cuda:N") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(dev.type, False):
        why = "torch sees no CUDA GPU" if dev.type == "cuda" else f"this torch build cannot use {dev.type!r} here"
        raise ValueError(f"device {str(device)!r} is not available ({why}); use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} is not available: torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return dev


def autocast_context(device: torch.device, enabled: bool):
    """bf16 autocast on accelerators when enabled; a no-op on CPU (reduced precision only on accelerators)."""
    use = bool(enabled) and device.type != "cpu"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use)
