"""Finite data sources read from files: one array held once and converted per batch (:class:`ArraySource`), image
folders, CIFAR-10 python batches (read without running pickled code) and ``.npy``/``.npz`` arrays."""

from __future__ import annotations

import codecs
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from freqlab.data.base import DataSource, fit_to, to_channels
from freqlab.runtime.outputs import note

__all__ = ["FILE_OPTIONS", "IMAGE_SUFFIXES", "ArraySource", "image_files", "load_array", "load_cifar10", "load_folder",
           "read_image", "report_failures"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: The options of each file source (``make_source(name, **options)``) with their defaults.
FILE_OPTIONS = {"folder": {"tiles": False}, "cifar10": {}, "array": {"key": None, "layout": "auto", "value_range": None}}


class ArraySource(DataSource):
    """Images held once as ``(N, C0, H0, W0)``: uint8 (0..255) or float32 in [-1, 1].

    Each batch is converted to float, to ``C`` channels, centre-cropped to the aspect ratio and resized with
    antialiasing to the resolution (only when it differs).
    """

    def __init__(self, name, data: torch.Tensor, hw, channels, attrs):
        h0, w0 = data.shape[-2:]
        if h0 < hw[0] or w0 < hw[1]:
            raise ValueError(f"{name} images are {h0}x{w0}, smaller than the resolution {hw[0]}x{hw[1]}: upsampling "
                             "adds no high frequencies, so the spectra would be wrong; use larger images, or a "
                             f"resolution of at most {h0}x{w0} (sweep, finetune and layers take the model's: a model "
                             "trained at that size)")
        self.data, self.hw = data, hw
        super().__init__(name, (channels, *hw), int(data.shape[0]), attrs)

    def _images(self, idx):
        x = self.data[torch.as_tensor(idx)]
        x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()
        return fit_to(to_channels(x, self.shape[0]), self.hw).clamp(-1.0, 1.0)


#: Full scale of PIL's high-bit-depth modes: 16-bit grayscale PNG/TIFF open as ``I;16*`` (or ``I`` holding 16-bit
#: values). Pillow decodes 16-bit *RGB* PNGs to 8-bit RGB itself: their low byte is lost before freqlab sees them.
_FULL_SCALE = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}


def _tile(image: np.ndarray, hw) -> np.ndarray:
    """The non-overlapping ``hw`` tiles of ``image`` ``(H0, W0[, C])`` on a centred grid, ``(k, h, w[, C])``."""
    (h, w), (h0, w0) = hw, image.shape[:2]
    rows, cols = h0 // h, w0 // w
    top, left = (h0 - rows * h) // 2, (w0 - cols * w) // 2
    return np.stack([image[top + i * h: top + (i + 1) * h, left + j * w: left + (j + 1) * w]
                     for i in range(rows) for j in range(cols)])


def read_image(path: Path, hw, channels, tiles: bool = False) -> np.ndarray:
    """One image file fitted to ``hw`` (centre crop to its aspect, then downsampling): uint8 ``(H, W[, 3])``, or
    float32 in [0, 1] for 16-bit grayscale images (scaled by their bit depth, never clipped to 8 bits). With ``tiles``, its
    ``hw`` tiles at the file's own scale instead, ``(k, H, W[, 3])``: nothing resampled."""
    from PIL import Image, ImageOps

    h, w = hw
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.width < w or im.height < h:
            raise ValueError(f"{path}: image {im.width}x{im.height} is smaller than the resolution {w}x{h} (upsampling "
                             "adds no high frequencies; sweep, finetune and layers take the model's resolution)")
        if im.mode not in _FULL_SCALE and im.mode != "F":
            im = im.convert("L" if channels == 1 else "RGB")
            if tiles:
                return _tile(np.asarray(im), hw)
            return np.asarray(ImageOps.fit(im, (w, h), method=Image.Resampling.LANCZOS))
        values = np.asarray(im).astype(np.float64)
        if im.mode == "F" and not (values.min() >= 0.0 and values.max() <= 1.0):
            raise ValueError(f"float image with values in [{values.min():.4g}, {values.max():.4g}]; freqlab reads "
                             "float images in [0, 1]")
        full = 1.0 if im.mode == "F" else _FULL_SCALE[im.mode]
        if values.max() > full:
            raise ValueError(f"{im.mode} image with values up to {values.max():.0f}, above 16 bits")
        if tiles:
            fitted = _tile((values / full).astype(np.float32), hw)
        else:
            gray = Image.fromarray((values / full).astype(np.float32))  # mode "F"
            fitted = np.asarray(ImageOps.fit(gray, (w, h), method=Image.Resampling.LANCZOS), dtype=np.float32)
            fitted = fitted.clip(0.0, 1.0)  # Lanczos overshoots at edges, as it does (and is clipped) in 8 bits
        return fitted if channels == 1 else np.repeat(fitted[..., None], 3, axis=-1)


def report_failures(root: Path, files: list, failed: list, *, any_read: bool, what: str = "unreadable") -> None:
    """A folder's image files that could not be read (``failed``: ``(path, reason)`` pairs): an error when none
    was read, else one warning that names the first."""
    if not failed:
        return
    first = f"(first: {failed[0][0].name}: {failed[0][1]})"
    if not any_read:
        raise ValueError(f"none of the {len(files)} image files in {str(root)!r} could be read {first}")
    note(f"skipped {len(failed)} {what} image file(s) of {len(files)} in {str(root)!r} {first}")


def image_files(root: Path) -> list[Path]:
    """The image files under ``root`` (recursively, sorted by relative path); the other files there, not hidden,
    are counted in one line on stderr (nothing is skipped without a word)."""
    found = sorted(p for p in root.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(root).parts))
    files = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES]
    others = [p for p in found if p.suffix.lower() not in IMAGE_SUFFIXES]
    if others and files:
        kinds = sorted({p.suffix.lower() or "(none)" for p in others})
        note(f"{len(others)} file(s) in {str(root)!r} are not images ({', '.join(kinds[:5])}); read "
             f"{len(files)} image file(s) ({', '.join(IMAGE_SUFFIXES)})")
    return files


def load_folder(root: Path, hw, channels, tiles: bool = False) -> torch.Tensor:
    """Every image file under ``root`` (recursively, sorted by relative path) as ``(N, C, H, W)``: uint8, or float32
    in [-1, 1] when a file has more than 8 bits per sample (16-bit grayscale PNG or TIFF, scaled by its bit depth). With
    ``tiles``, every ``hw`` tile of every file at its own scale (images of any sizes, nothing resampled)."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist (or is not a directory)")
    files = image_files(root)
    if not files:
        raise ValueError(f"image folder {str(root)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    arrays, failed = [], []
    for f in files:
        try:
            read = read_image(f, hw, channels, tiles)
            arrays.extend(read if tiles else [read])
        except Exception as err:  # PIL raises many kinds for broken files; each one is reported below
            failed.append((f, err))
    report_failures(root, files, failed, any_read=bool(arrays))
    if any(a.dtype != np.uint8 for a in arrays):  # one 16-bit file: keep every image's precision, as float
        arrays = [a.astype(np.float32) * 2.0 - 1.0 if a.dtype != np.uint8 else a.astype(np.float32) / 127.5 - 1.0
                  for a in arrays]
    x = torch.from_numpy(np.stack(arrays))
    return x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: any other global (which could run code) is refused.

    Allowed: numpy's array reconstructors under their numpy 1 and 2 module names (``_reconstruct`` for protocols
    up to 4, ``_frombuffer`` for protocol 5), ``ndarray``, ``dtype``, and ``_codecs.encode``, which protocol-2
    pickles written by Python 3 use to store bytes.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
        ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
        ("numpy.core.numeric", "_frombuffer"): np.ndarray.__reduce_ex__(np.zeros(1), 5)[0],
        ("numpy._core.numeric", "_frombuffer"): np.ndarray.__reduce_ex__(np.zeros(1), 5)[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise ValueError(f"refusing to unpickle {module}.{name}: a CIFAR-10 batch holds only numpy arrays, so this "
                         "file is not a genuine batch (pickles can run code; do not load it)")


def load_cifar10(path: Path, split: str) -> torch.Tensor:
    """CIFAR-10 python batches as uint8 ``(N, 3, 32, 32)``."""
    if not path.is_dir():
        raise FileNotFoundError(f"CIFAR-10 directory {str(path)!r} does not exist")
    if (path / "cifar-10-batches-py").is_dir():
        path = path / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 directory {str(path)!r} lacks {', '.join(missing)}; expected the "
                                "python version ('cifar-10-batches-py': data_batch_1..5 and test_batch)")
    parts = []
    for n in names:
        with open(path / n, "rb") as fh:
            try:
                batch = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
            except ValueError:  # a refused global: its own message says why
                raise
            except Exception as err:  # noqa: BLE001 - a broken pickle raises many kinds
                raise ValueError(f"{str(path / n)!r} is not a CIFAR-10 batch (unreadable: {type(err).__name__}: "
                                 f"{err})") from None
        data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{str(path / n)!r} is not a CIFAR-10 batch: expected a dict with b'data' uint8 (N, 3072)")
        parts.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
    return torch.cat(parts)


def load_array(path: Path, key: str | None, layout: str, value_range) -> torch.Tensor:
    """``.npy``/``.npz`` images as uint8 or float32-in-[-1, 1] ``(N, C, H, W)``.

    Layout: rank 3 is ``(N, H, W)``; rank 4 is ``(N, H, W, C)`` when the last axis has 1, 3 or 4 entries, else
    ``(N, C, H, W)`` when axis 1 has (override with ``layout="NHWC"``/``"NCHW"``); a 4th (alpha) channel is dropped.
    Range (override with ``value_range=(lo, hi)``): uint8 is 0..255; other arrays by their values: within [0, 1]
    → [0, 1], within [-1, 1] → [-1, 1], within [0, 255] → 0..255, anything else is an error.
    """
    arr = _to_nchw(_read_numpy(path, key), layout, path)
    if arr.shape[0] == 0:
        raise ValueError(f"{str(path)!r} holds no images (shape {arr.shape})")
    if value_range is None and arr.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(arr))
    return _rescaled(arr, value_range, path)


def _read_numpy(path: Path, key: str | None) -> np.ndarray:
    """The array in a ``.npy`` file, or the member ``key`` of a ``.npz`` (default: its only array, else ``images``,
    ``x`` or ``arr_0``), read without unpickling; a file that cannot be read is a ValueError that names it."""
    if not path.is_file():
        raise FileNotFoundError(f"array file {str(path)!r} does not exist")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK\x03\x04"):
        raise ValueError(f"{str(path)!r} is not a NumPy .npy or .npz file (it starts with neither header); save "
                         "images with numpy.save or numpy.savez")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                keys = list(loaded.keys())
                if key is None:
                    key = keys[0] if len(keys) == 1 else next((k for k in ("images", "x", "arr_0") if k in keys),
                                                              None)
                if key not in keys:
                    raise KeyError(key)
                arr = loaded[key]
        else:
            arr = loaded
    except KeyError:
        raise ValueError(f"{str(path)!r} holds arrays {keys}; choose one with the option key=...") from None
    except ValueError as err:
        if "pickled" in str(err) or "Object arrays" in str(err):
            raise ValueError(f"{str(path)!r} holds Python objects, not numbers (an object array); freqlab reads "
                             "numeric arrays only and never unpickles") from None
        raise ValueError(f"cannot read {str(path)!r}: truncated or corrupt ({err})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"cannot read {str(path)!r}: truncated or corrupt ({type(err).__name__}: {err})") from None
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{str(path)!r}: member {key!r} is not a NumPy array (a zip of other files?); save images with "
                         "numpy.savez")
    return arr


def _to_nchw(arr: np.ndarray, layout: str, path: Path) -> np.ndarray:
    """Images ``(N, C, H, W)`` with C = 1 or 3 from ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` (``layout``
    ``"auto"``: the axis with 1, 3 or 4 entries, the last one first); an alpha channel is dropped."""
    if arr.ndim == 3:
        return arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"{str(path)!r} holds an array of shape {arr.shape}; images must be (N, H, W, C), "
                         "(N, C, H, W) or (N, H, W)")
    if layout == "auto":
        layout = "NHWC" if arr.shape[-1] in (1, 3, 4) else "NCHW" if arr.shape[1] in (1, 3, 4) else None
    if layout not in ("NHWC", "NCHW"):
        raise ValueError(f"cannot tell the channel axis of {str(path)!r} with shape {arr.shape}: pass "
                         "layout='NHWC' or 'NCHW' (channels must be 1, 3 or 4)")
    arr = arr.transpose(0, 3, 1, 2) if layout == "NHWC" else arr
    if arr.shape[1] not in (1, 3, 4):
        raise ValueError(f"{str(path)!r} with shape {arr.shape} has {arr.shape[1]} channels; expected 1, 3 or 4")
    return arr[:, :3]


def _rescaled(arr: np.ndarray, value_range, path: Path) -> torch.Tensor:
    """Numeric images as float32 in [-1, 1]: ``value_range`` ``(lo, hi)`` maps to [-1, 1] (clamped); None: the
    first of [0, 1], [-1, 1], [0, 255] that holds every value."""
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{str(path)!r} has dtype {arr.dtype}; expected uint8 or floating-point images")
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{str(path)!r} contains NaN or Inf values")
    if value_range is None:
        lo, hi = float(x.min()), float(x.max())
        ranges = [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)]
        value_range = next((r for r in ranges if r[0] <= lo and hi <= r[1]), None)
        if value_range is None:
            raise ValueError(f"{str(path)!r} has values in [{lo:g}, {hi:g}], which is none of [0, 1], [-1, 1], "
                             "[0, 255]; rescale it or pass value_range=(lo, hi)")
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (lo, hi) with hi > lo, got {value_range!r}")
    return (x - lo).mul_(2.0 / (hi - lo)).sub_(1.0).clamp_(-1.0, 1.0)
