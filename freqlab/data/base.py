"""The data-source interface every source of freqlab.data.sources implements, and the conversions they share."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["DataIndexError", "DataSource", "fit_to", "to_channels"]

SPLITS = ("train", "test")
_LUMA = (0.299, 0.587, 0.114)


class DataIndexError(IndexError, ValueError):
    """An index outside a finite source (an IndexError, and a ValueError so the CLI reports it in one line)."""


class DataSource:
    """A deterministic, index-addressable set of images.

    Attributes
    ----------
    name : str            the :func:`make_source` name, e.g. ``"natural"``
    shape : (C, H, W)     C is 1 (grayscale) or 3
    size : int or None    number of images; None for unlimited procedural sources
    attrs : dict          settings as strings and numbers, ready for an xarray ``attrs``
    """

    def __init__(self, name: str, shape: tuple[int, int, int], size: int | None, attrs: dict):
        self.name, self.shape, self.size = name, tuple(int(s) for s in shape), size
        self.attrs = {"source": name, "channels": self.shape[0], "height": self.shape[1], "width": self.shape[2],
                      **{k: v if isinstance(v, (int, float, str)) else str(v) for k, v in attrs.items()}}

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        """Images ``indices`` as a ``(len(indices), C, H, W)`` float32 CPU tensor in [-1, 1].

        Raises :class:`DataIndexError` for a negative index or, for finite sources, one ``>= size``.
        """
        idx = [int(i) for i in (indices.tolist() if hasattr(indices, "tolist") else indices)]
        bad = [i for i in idx if i < 0 or (self.size is not None and i >= self.size)]
        if bad:
            limit = "non-negative" if self.size is None else f"in 0..{self.size - 1} ({self.size} images)"
            raise DataIndexError(f"index {bad[0]} is out of range for data source {self.name!r}: "
                                 f"indices must be {limit}")
        if not idx:
            return torch.empty((0, *self.shape), dtype=torch.float32)
        return self._images(idx).to(torch.float32).contiguous()

    def sample(self, n: int, start: int = 0) -> torch.Tensor:
        """``images(range(start, start + n))``; raises ValueError if a finite source has fewer images."""
        if int(n) < 0 or int(start) < 0:
            raise ValueError(f"n and start must be non-negative, got n={n}, start={start}")
        if self.size is not None and start + n > self.size:
            raise ValueError(f"cannot take {n} images from index {start}: data source {self.name!r} has only "
                             f"{self.size} images")
        return self.images(range(int(start), int(start) + int(n)))

    def _images(self, idx: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, shape={self.shape}, size={self.size})"


def to_channels(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(N, C0, H, W)`` → ``(N, c, H, W)``: replicate gray to RGB, or RGB to luma."""
    if x.shape[1] == c:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, c, -1, -1)
    luma = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * luma).sum(1, keepdim=True)


def fit_to(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Centre-crop float ``(N, C, H0, W0)`` to the aspect ratio of ``hw``, then resize with antialiasing."""
    h, w = hw
    h0, w0 = x.shape[-2:]
    if (h0, w0) == (h, w):
        return x
    if h0 * w > w0 * h:  # too tall
        ch = max(1, round(w0 * h / w))
        x = x[..., (h0 - ch) // 2:(h0 - ch) // 2 + ch, :]
    elif h0 * w < w0 * h:  # too wide
        cw = max(1, round(h0 * w / h))
        x = x[..., (w0 - cw) // 2:(w0 - cw) // 2 + cw]
    # bilinear with antialias is a triangle filter on downsampling (no ringing, stays inside the input range)
    return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
