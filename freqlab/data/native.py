"""Images of different sizes, each kept at its own size: the sources of the native mode of the data spectra
(``freqlab spectra --native``, :func:`freqlab.data.sources.source_for_path` with ``native=True``).

A :class:`NativeImages` knows every image's size before reading any pixel (a folder is scanned through the file
headers), so the spectra can group images by shape and read one batch of one shape at a time: memory holds one
batch, never the whole folder at full size. Nothing is cropped or resampled; a folder's images keep their own
scale, and pixels are read exactly as :func:`freqlab.data.files.load_folder` reads them (8-bit files as 0..255,
16-bit grayscale and float images by their bit depth), mapped to [-1, 1].
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from freqlab.data.base import DataSource, to_channels
from freqlab.data.files import (
    FILE_OPTIONS,
    IMAGE_SUFFIXES,
    ArraySource,
    image_files,
    load_array,
    load_cifar10,
    read_image,
    report_failures,
)

__all__ = ["NativeImages", "native_source", "shape_groups", "sizes_text"]

#: EXIF orientations that swap width and height (``ImageOps.exif_transpose`` turns them upright).
_TRANSPOSED = (5, 6, 7, 8)
#: Images smaller than this on a side are skipped: the spectra need at least 4×4 pixels.
MIN_SIDE = 4


class NativeImages:
    """A finite set of images of any sizes, each read at its own size.

    Attributes: ``name`` (the label), ``channels`` (1 or 3), ``size`` (number of images), ``sizes`` (``(H, W)`` of
    each image), ``attrs`` (settings for file attributes). :meth:`images` reads images that share one size.
    """

    def __init__(self, name: str, sizes: Sequence[tuple[int, int]], channels: int,
                 read: Callable[[int], torch.Tensor], attrs: dict | None = None):
        if not sizes:
            raise ValueError(f"{name}: no images")
        self.name, self.channels, self.size = name, int(channels), len(sizes)
        self.sizes = [(int(h), int(w)) for h, w in sizes]
        self._read = read
        self.attrs = {"source": name, "channels": self.channels, **(attrs or {})}

    @classmethod
    def from_tensors(cls, name: str, images: Sequence[torch.Tensor]) -> "NativeImages":
        """Images ``(C, H, W)`` in [-1, 1] of any sizes (one channel count), held in memory."""
        images = [torch.as_tensor(x) for x in images]
        if any(x.ndim != 3 for x in images) or len({x.shape[0] for x in images}) > 1:
            raise ValueError(f"{name}: images must be (C, H, W) tensors with one channel count")
        return cls(name, [tuple(x.shape[-2:]) for x in images], images[0].shape[0] if images else 1,
                   lambda i: images[i].float(), {"images": "in memory"})

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        """Images ``indices``, all of one size, as a ``(len, C, H, W)`` float32 CPU tensor in [-1, 1]."""
        idx = [int(i) for i in indices]
        if {self.sizes[i] for i in idx} != {self.sizes[idx[0]]}:
            raise ValueError(f"{self.name}: images read together must share one size")
        x = torch.stack([self._read(i) for i in idx]).to(torch.float32)
        return to_channels(x, self.channels).contiguous()

    def __repr__(self) -> str:
        return f"NativeImages(name={self.name!r}, size={self.size}, sizes={sizes_text(self.sizes, 3)})"


def shape_groups(src: NativeImages | DataSource, n: int) -> list[tuple[tuple[int, int], list[int]]]:
    """The first ``n`` images of ``src`` grouped by size: ``[((H, W), indices), ...]``, sizes in order of first
    appearance, indices increasing; a fixed-size :class:`DataSource` is one group."""
    if isinstance(src, DataSource):
        return [(tuple(src.shape[1:]), list(range(n)))]
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(n):
        groups.setdefault(src.sizes[i], []).append(i)
    return list(groups.items())


def sizes_text(sizes: Sequence[tuple[int, int]], most: int = 12) -> str:
    """``"48x48 (3), 64x96 (2)"``: the sizes, commonest first, with their counts (at most ``most`` listed)."""
    common = Counter(sizes).most_common()
    text = ", ".join(f"{h}x{w} ({k})" for (h, w), k in common[:most])
    return text + (f" and {len(common) - most} more sizes" if len(common) > most else "")


# --------------------------------------------------------------------------------------------------------------
# folders and arrays
# --------------------------------------------------------------------------------------------------------------
def _header_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image file as it stands upright (EXIF orientation applied), from its header only."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        if im.getexif().get(0x0112, 1) in _TRANSPOSED:
            h, w = w, h
    return h, w


def _read_whole(path: Path, hw: tuple[int, int], channels: int) -> torch.Tensor:
    """One image file at its own size ``hw`` as ``(C, H, W)`` float32 in [-1, 1] (one tile the size of the image:
    nothing cropped or resampled)."""
    try:
        a = read_image(path, hw, channels, tiles=True)[0]
    except Exception as err:  # PIL raises many kinds for a file broken past its header
        raise ValueError(f"cannot read image {str(path)!r}: {err}") from None
    if a.shape[:2] != hw:
        raise ValueError(f"image {str(path)!r} reads as {a.shape[0]}x{a.shape[1]}, its header said {hw[0]}x{hw[1]}")
    x = torch.from_numpy(a.astype(np.float32))
    x = x / 127.5 - 1.0 if a.dtype == np.uint8 else x * 2.0 - 1.0
    return x[None] if x.ndim == 2 else x.permute(2, 0, 1)


def native_folder(root: Path, channels: int) -> NativeImages:
    """Every image file under ``root`` (recursively, sorted by relative path) at its own size; files whose header
    cannot be read, or smaller than 4×4, are skipped with a warning (as :func:`freqlab.data.files.load_folder`)."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist (or is not a directory)")
    files = image_files(root)
    if not files:
        raise ValueError(f"image folder {str(root)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    kept, sizes, failed = [], [], []
    for f in files:
        try:
            hw = _header_size(f)
        except Exception as err:  # noqa: BLE001 - PIL raises many kinds for broken files; reported below
            failed.append((f, err))
            continue
        if min(hw) < MIN_SIDE:
            failed.append((f, f"{hw[0]}x{hw[1]} pixels, smaller than {MIN_SIDE}x{MIN_SIDE}"))
            continue
        kept.append(f)
        sizes.append(hw)
    report_failures(root, files, failed, any_read=bool(kept), what="unreadable or too small")
    return NativeImages("folder", sizes, channels, lambda i: _read_whole(kept[i], sizes[i], channels),
                        {"path": str(root), "native": "each image at its own size"})


def native_source(kind: str, path: Path, *, grayscale: bool = False, split: str = "train",
                  **options) -> NativeImages | DataSource:
    """The native source of a path found by :func:`freqlab.data.sources.source_for_path`: a folder's images each at its
    own size; an array or CIFAR-10 folder (one size) at that size, nothing resampled. ``options``: array only
    (``key``, ``layout``, ``value_range``); a generated source's ``resolution`` and ``seed`` are not used."""
    for unused in ("resolution", "seed"):
        options.pop(unused, None)
    channels = 1 if grayscale else 3
    if kind != "array" and options:
        raise ValueError(f"unknown option(s) {', '.join(sorted(options))} for native {kind} data")
    if kind == "folder":
        return native_folder(path, channels)
    if kind == "cifar10":
        data, attrs = load_cifar10(path, split), {"path": str(path), "split": split}
    else:
        defaults = FILE_OPTIONS["array"]
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)} for data source 'array'; accepted: "
                             f"{', '.join(defaults)}")
        data, attrs = load_array(path, **{**defaults, **options}), {"path": str(path)}
    h, w = data.shape[-2:]
    return ArraySource(kind, data, (h, w), channels, {**attrs, "native": "at its own size"})
