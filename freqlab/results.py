"""Results on disk: xarray conventions, atomic netCDF save / load, and the fingerprint that guards resumes.

Conventions
-----------
* Dims: ``checkpoint`` (str names, with coords ``step`` and ``images_seen``, int64, -1 when unknown), ``sigma``
  (noise level, image units of [-1, 1] images), ``mode`` (``"denoise"``/``"generate"``), ``channel`` (int),
  ``freq`` (bin centres, cycles/pixel), ``band`` (names, with coords ``band_lo``/``band_hi`` in cycles/pixel);
  ``images_seen`` is a dim of fine-tuning logs.
* Every variable carries ``units`` and ``long_name``; the Dataset's attrs say what produced it. Attrs hold strings
  and numbers only (netCDF cannot store None, bools or nested containers; those go in as JSON strings).
* Files are netCDF-4 written with ``h5netcdf``, atomically: the Dataset is written to a temporary file in the
  same directory, flushed to disk, then renamed over the target (:func:`os.replace` is atomic on POSIX and
  Windows), so a crash leaves either the old file or the new one, never half of one.
* A results file carries a ``fingerprint`` attr: a canonical JSON string of everything that must agree for two
  runs to share a file (σ grid, data source and options, number of images, seed, bands, modes, ...).
  :func:`check_fingerprint` refuses to mix results that disagree, with a message that names what differs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr

__all__ = [
    "ENGINE",
    "save",
    "load",
    "clean_attrs",
    "make_fingerprint",
    "read_fingerprint",
    "fingerprint_differences",
    "check_fingerprint",
    "open_for_resume",
]

ENGINE = "h5netcdf"
FINGERPRINT_ATTR = "fingerprint"


# --------------------------------------------------------------------------------------------------------------
# attrs
# --------------------------------------------------------------------------------------------------------------
def _attr_value(value: Any) -> Any:
    """A value netCDF can store as an attribute: str, int, float, or a 1-D numeric array."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return np.asarray(value) if value else "[]"
    return json.dumps(value, sort_keys=True, default=str)


def clean_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` with every value made storable in netCDF (bool → int, None → "none", containers → JSON)."""
    return {str(k): _attr_value(v) for k, v in attrs.items()}


def _storable(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy(deep=False)
    ds.attrs = clean_attrs(ds.attrs)
    for name in ds.variables:
        var = ds.variables[name]
        var.attrs = clean_attrs(var.attrs)
        var.encoding = {}  # encodings read from another file (chunking, string types) must not leak into this one
    return ds


# --------------------------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------------------------
def save(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` as netCDF atomically (temporary file in the same directory, then rename).

    The parent directory is created. On any failure the temporary file is removed and an existing file at
    ``path`` is left as it was. Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        _storable(ds).to_netcdf(tmp, engine=ENGINE)
        with open(tmp, "rb+") as handle:  # make the bytes durable before the rename makes them visible
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def load(path: str | os.PathLike) -> xr.Dataset:
    """Read a results file written by :func:`save` into memory (the file is closed on return)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} does not exist")
    try:
        with xr.open_dataset(path, engine=ENGINE) as ds:
            loaded = ds.load()
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read results file {path} as netCDF ({err}); delete it or pass overwrite") from err
    for name in loaded.variables:
        loaded.variables[name].encoding = {}
    return loaded


# --------------------------------------------------------------------------------------------------------------
# fingerprints
# --------------------------------------------------------------------------------------------------------------
def _canonical(value: Any) -> Any:
    """Plain JSON types, with floats kept exact (Python's repr round-trips) and tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_canonical(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


def make_fingerprint(**fields: Any) -> str:
    """A canonical JSON string of ``fields`` (sorted keys), stored as the ``fingerprint`` attr."""
    return json.dumps(_canonical(fields), sort_keys=True)


def read_fingerprint(ds: xr.Dataset) -> dict[str, Any] | None:
    """The fingerprint fields of a results Dataset, or None if it has none."""
    raw = ds.attrs.get(FINGERPRINT_ATTR)
    if raw is None:
        return None
    try:
        return json.loads(str(raw))
    except json.JSONDecodeError:
        return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fingerprint_differences(stored: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Human-readable differences ``"sigmas: file [...] vs this run [...]"`` between two fingerprints."""
    diffs = []
    for key in sorted(set(stored) | set(expected)):
        a, b = stored.get(key, "<missing>"), expected.get(key, "<missing>")
        if not _same(a, b):
            diffs.append(f"{key}: file {_short(a)} vs this run {_short(b)}")
    return diffs


def check_fingerprint(ds: xr.Dataset, fingerprint: str, path: str | os.PathLike) -> None:
    """Raise ValueError if ``ds`` (read from ``path``) was written by a run with another fingerprint."""
    stored = read_fingerprint(ds)
    expected = json.loads(fingerprint)
    if stored is None:
        raise ValueError(
            f"results file {path} has no run fingerprint, so it cannot be resumed safely; "
            "pass overwrite=True (--overwrite) to replace it or choose another output path"
        )
    diffs = fingerprint_differences(stored, expected)
    if diffs:
        raise ValueError(
            f"results file {path} was written with different settings ({'; '.join(diffs)}); refusing to mix them: "
            "pass overwrite=True (--overwrite) to replace it, or choose another output path"
        )


def open_for_resume(path: str | os.PathLike | None, fingerprint: str, *, resume: bool = True,
                    overwrite: bool = False) -> xr.Dataset | None:
    """The results already in ``path`` that a run with ``fingerprint`` may continue, or None to start afresh.

    * no file, or ``overwrite``: None (the file is replaced at the first save);
    * a file and ``resume``: its Dataset, after :func:`check_fingerprint` (ValueError when settings differ);
    * a file, neither ``resume`` nor ``overwrite``: FileExistsError.
    """
    if path is None or overwrite:
        return None
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output path {path} is a directory; give a file name such as {path / 'sweep.nc'}")
    if not path.exists():
        return None
    if not resume:
        raise FileExistsError(f"results file {path} already exists; resume it or pass overwrite=True (--overwrite)")
    ds = load(path)
    check_fingerprint(ds, fingerprint, path)
    return ds
