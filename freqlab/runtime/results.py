"""Results on disk: xarray conventions, atomic netCDF save / load, and the fingerprint that guards resumes.

Conventions
-----------
* Dims: ``checkpoint`` (str names, with coords ``step`` and ``images_seen``: float64, NaN when unknown), ``sigma``
  (noise level, image units of [-1, 1] images), ``mode`` (``"denoise"``/``"generate"``), ``channel`` (int),
  ``freq`` (bin centres, cycles/pixel), ``band`` (names, with coords ``band_lo``/``band_hi`` in cycles/pixel);
  ``images_seen`` is a dim of fine-tuning logs.
* Missing values: a float variable or auxiliary coordinate (such as ``step`` and ``images_seen``) holds NaN where
  a value is unknown, and is written with ``_FillValue = NaN`` (xarray's default, set explicitly by :func:`save`),
  so NaN round-trips through :func:`save` / :func:`load`. Integers have no fill value: do not use -1 for unknown.
  Dimension coordinates (``sigma``, ``freq``, ...) carry no ``_FillValue``: CF allows no missing values in them.
* Every variable carries ``units`` and ``long_name``; the Dataset's attrs say what produced it. Attrs hold strings
  and numbers only (netCDF cannot store None, bools or nested containers; those go in as JSON strings).
  :func:`save` adds the CF global attrs ``Conventions`` (``"CF-1.8"``) and ``freqlab_version`` where the Dataset
  lacks them (it never overwrites an attr the caller set, ``date_created`` included);
  :func:`provenance_attrs` gives the full set a lab can share (``Conventions``, ``freqlab_version``,
  ``date_created``, ``history``, ``source_paths``).
* Files are netCDF-4 written with ``h5netcdf``, atomically (:func:`write_atomic`): the Dataset is written to a
  temporary file in the same directory, flushed to disk, given the permissions a new file gets under the umask
  (``0o666 & ~umask``, e.g. 0644), then renamed over the target (:func:`os.replace` is atomic on POSIX and
  Windows), so a crash leaves either the old file or the new one, never half of one.
* A results file carries a ``fingerprint`` attr: a canonical JSON string of everything that must agree for two
  runs to share a file (σ grid, data source and options, number of images, seed, bands, modes, ...).
  :func:`check_fingerprint` refuses to mix results that disagree, with a message that names what differs.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr

from freqlab.runtime.outputs import write_atomic

__all__ = [
    "ENGINE",
    "CONVENTIONS",
    "save",
    "load",
    "freqlab_version",
    "provenance_attrs",
    "clean_attrs",
    "make_fingerprint",
    "read_fingerprint",
    "fingerprint_differences",
    "check_fingerprint",
    "open_for_resume",
]

ENGINE = "h5netcdf"
CONVENTIONS = "CF-1.8"
FINGERPRINT_ATTR = "fingerprint"


# --------------------------------------------------------------------------------------------------------------
# provenance (CF / ACDD global attrs)
# --------------------------------------------------------------------------------------------------------------
def freqlab_version() -> str:
    """The installed freqlab's version (package metadata, else ``freqlab.__version__``, else ``"unknown"``)."""
    try:
        return importlib.metadata.version("freqlab")
    except importlib.metadata.PackageNotFoundError:
        import freqlab

        return str(getattr(freqlab, "__version__", None) or "unknown")


def _source_path(source: Any) -> str | None:
    """The absolute, resolved path of ``source``: any :class:`os.PathLike`, or a str naming an existing file or
    directory (other strings, such as data set names, are not paths); None for everything else."""
    try:
        if isinstance(source, os.PathLike):
            path = Path(source).expanduser()
        elif isinstance(source, str) and source and Path(source).expanduser().exists():
            path = Path(source).expanduser()
        else:
            return None
        return str(path.resolve())
    except (TypeError, OSError, RuntimeError):  # a bytes PathLike, an unreadable path, a symlink loop
        return None


def provenance_attrs(*sources: Any) -> dict[str, str]:
    """Global attrs that say what made a file, for a lab to share (CF-1.8 / ACDD names).

    ``Conventions`` (``"CF-1.8"``), ``freqlab_version``, ``date_created`` (ISO 8601 UTC to the second, e.g.
    ``"2025-01-31T12:00:00Z"``), ``history`` (one line, ``"<date_created> freqlab <version>"``) and
    ``source_paths``: the absolute, resolved paths of ``sources`` that are paths (``os.PathLike``, or strings
    naming an existing file or directory), in order without repeats, joined by ``", "`` (``""`` if none). Other
    sources (models, data set names, None, ...) are skipped.
    """
    version = freqlab_version()
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    paths = list(dict.fromkeys(p for p in map(_source_path, sources) if p is not None))
    return {
        "Conventions": CONVENTIONS,
        "freqlab_version": version,
        "date_created": created,
        "history": f"{created} freqlab {version}: {invocation()}",
        "source_paths": ", ".join(paths),
    }


def invocation() -> str:
    """The command that is running: ``freqlab sweep RUN --out x.nc`` from the command line (or ``python -m
    freqlab``), else ``python API (<script>)``."""
    import shlex

    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if name == "freqlab" or (name == "__main__.py" and Path(sys.argv[0]).parent.name == "freqlab"):
        return " ".join(["freqlab", *map(shlex.quote, sys.argv[1:])])[:500]
    return f"python API ({name or 'interactive'})"


# --------------------------------------------------------------------------------------------------------------
# labels: every variable and coordinate says what it is and in which unit
# --------------------------------------------------------------------------------------------------------------
#: Long names and units of the coordinates results files share (a producer's own attrs win). Units as a reader
#: writes them; string coordinates have the empty unit.
COORDINATES: dict[str, tuple[str, str]] = {
    "checkpoint": ("checkpoint: its folder's name, or the name the user gave it", ""),
    "sigma": ("noise level σ of x_σ = x0 + σ·n ([-1, 1] images); pick one with .sel(sigma=s, method='nearest')",
              "1"),
    "mode": ("one-step mode: denoise (input x0 + σ·n) or generate (σ·z)",
             ""),
    "channel": ("image channel", "1"),
    "freq": ("radial frequency, bin centre (cycles per pixel)", "cycles/pixel"),
    "band": ("frequency band", ""),
    "band_lo": ("lower band edge (cycles per pixel)", "cycles/pixel"),
    "band_hi": ("upper band edge (cycles per pixel)", "cycles/pixel"),
    "step": ("training step of the checkpoint (NaN: unknown); .sel(step=800) picks it", "1"),
    "images_seen": ("training images seen (NaN: unknown)", "1"),
    "checkpoint_path": ("the checkpoint's path, relative to the results file when it lies under its folder", ""),
    "checkpoint_fingerprint": ("content fingerprint of the weights measured (freqlab.checkpoints.identity)", ""),
    "sampler_step": ("step i of the N-step sampler", "1"),
    "sampler_sigma": ("noise level t_i of the sampler's step", "1"),
    "source": ("data source", ""),
    "layer": ("UNet block, in forward order", ""),
    "layer_type": ("layer type (freqlab.finetune.freezing.layer_type)", ""),
    "parameter": ("parameter tensor name", ""),
    "candidate": ("compared image set", ""),
    "sample": ("fixed-z output image", "1"),
    "data_sample": ("data image of the reference statistics", "1"),
    "image": ("image", "1"),
    "run": ("the fine-tune an end belongs to (empty: not an end)", ""),
    "seed": ("the fine-tune's seed (-1: not an end)", "1"),
    "start": ("the candidate the run started from (empty: not an end)", ""),
}
#: Coordinates along another dimension that ``sel`` may use (an index is set on them when a file is read).
SELECTABLE = ("step",)


#: Units as a reader writes them (``units``, what xarray's plots show) → their UDUNITS-parseable form
#: (``units_udunits``: images in [-1, 1] are dimensionless, and dB and cycles/pixel are ratios).
UDUNITS = {"image units² per mode": "1", "dB": "1", "cycles/pixel": "1", "1": "1", "image units²": "1",
           "images/s": "s-1", "feature units²": "1", "1/mode": "1", "s": "s", "images": "1", "%": "percent",
           "parameters": "1", "weight units": "1", "pixels": "1", "image units": "1"}


def label(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with a ``long_name`` and ``units`` on every variable and coordinate (known coordinates from
    :data:`COORDINATES`; otherwise the name in words, and ``"1"``, or ``""`` for strings), the UDUNITS form of
    known units in ``units_udunits`` (:data:`UDUNITS`), and an index on the :data:`SELECTABLE` coordinates so that
    ``ds.sel(step=800)`` works. Attrs already there are kept."""
    ds = ds.copy(deep=False)
    for name in ds.variables:
        var = ds.variables[name]
        long_name, units = COORDINATES.get(str(name), (str(name).replace("_", " "), None))
        if units is None:
            units = "" if var.dtype.kind in "OSU" else "1"
        attrs = dict(var.attrs)
        attrs.setdefault("long_name", long_name)
        attrs.setdefault("units", units)
        if attrs["units"] in UDUNITS:
            attrs.setdefault("units_udunits", UDUNITS[attrs["units"]])
        var.attrs = attrs
    for name in SELECTABLE:
        if name in ds.coords and name not in ds.dims and ds[name].ndim == 1 and name not in ds.xindexes:
            try:
                ds = ds.set_xindex(name)
            except (ValueError, TypeError):  # repeated values cannot index: the coordinate stays as it is
                pass
    return ds


def _relative_sources(attrs: dict, path: Path) -> dict:
    """``source_paths`` relative to the results file's folder (portable with it), the absolute ones in
    ``source_paths_absolute``."""
    text = attrs.get("source_paths")
    if not isinstance(text, str) or not text or "source_paths_absolute" in attrs:
        return attrs
    absolute = [p for p in text.split(", ") if p]
    folder = path.resolve().parent
    relative = [os.path.relpath(p, folder) for p in absolute]
    return {**attrs, "source_paths": ", ".join(relative), "source_paths_absolute": text}


def _relative_checkpoints(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """``checkpoint_path`` relative to the results file's folder where a checkpoint lies under it."""
    if "checkpoint_path" not in ds.coords:
        return ds
    folder = path.resolve().parent

    def portable(p: str) -> str:
        if not p or not os.path.isabs(p):
            return p
        try:
            return os.path.relpath(p, folder) if os.path.commonpath([folder, p]) == str(folder) else p
        except ValueError:  # another drive
            return p

    values = np.array([portable(str(p)) for p in ds.checkpoint_path.values], dtype=object)
    return ds.assign_coords(checkpoint_path=(ds.checkpoint_path.dims, values, ds.checkpoint_path.attrs))


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
    """A shallow copy of ``ds`` ready for netCDF: storable attrs, ``Conventions`` and ``freqlab_version`` added
    where missing, and a fresh encoding per variable: float variables and auxiliary coordinates get
    ``_FillValue = NaN`` (NaN means unknown), dimension coordinates none (CF forbids missing values in them).
    A ``_FillValue`` the caller put in a variable's attrs is used instead (NaN is written as it)."""
    ds = ds.copy(deep=False)
    ds.attrs = clean_attrs({"Conventions": CONVENTIONS, "freqlab_version": freqlab_version(), **ds.attrs})
    for name in ds.variables:
        var = ds.variables[name]
        attrs = clean_attrs(var.attrs)
        fill = attrs.pop("_FillValue", None)
        var.attrs = attrs
        var.encoding = {}  # encodings read from another file (chunking, string types) must not leak into this one
        if fill is not None:
            var.encoding["_FillValue"] = fill
        elif np.issubdtype(var.dtype, np.floating):
            var.encoding["_FillValue"] = None if name in ds.dims else np.nan
    return ds


# --------------------------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------------------------
def save(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` as netCDF atomically (:func:`write_atomic`: a temporary file in the same
    directory, flushed, given the umask's permissions, then renamed over ``path``).

    The parent directory is created. On any failure the temporary file is removed and an existing file at
    ``path`` is left as it was. ``Conventions`` and ``freqlab_version`` attrs are added if ``ds`` lacks them (the
    file only; ``ds`` is not changed). Returns the path written.
    """
    labelled = label(ds)
    labelled = labelled.drop_indexes([n for n in SELECTABLE if n in labelled.xindexes and n not in labelled.dims])
    storable = _storable(_relative_checkpoints(labelled, Path(path)))
    storable.attrs = clean_attrs(_relative_sources(dict(storable.attrs), Path(path)))
    return write_atomic(path, lambda tmp: storable.to_netcdf(tmp, engine=ENGINE))


def load(path: str | os.PathLike) -> xr.Dataset:
    """Read a results file written by :func:`save` into memory (the file is closed on return)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} does not exist")
    try:
        with xr.open_dataset(path, engine=ENGINE) as ds:
            loaded = ds.load()
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read results file {path} as netCDF: truncated, or not a results file ({err})") \
            from None
    for name in loaded.variables:
        loaded.variables[name].encoding = {}
    return label(loaded)


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


def fingerprint_differences(stored: Mapping[str, Any], expected: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences ``"sigmas: file [...] vs this run [...]"`` between two fingerprints; within a
    mapping both have, the keys that differ (``"references.images_digest: ..."``)."""
    diffs = []
    for key in sorted(set(stored) | set(expected)):
        a, b = stored.get(key, "<missing>"), expected.get(key, "<missing>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs.extend(fingerprint_differences(a, b, f"{prefix}{key}."))
        elif not _same(a, b):
            diffs.append(f"{prefix}{key}: file {_short(a)} vs this run {_short(b)}")
    return diffs


class SettingsDiffer(ValueError):
    """A results file was written with other settings (or by a version that recorded none): it is not resumed."""


def check_fingerprint(ds: xr.Dataset, fingerprint: str, path: str | os.PathLike) -> None:
    """Raise :class:`SettingsDiffer` (a ValueError) if ``ds`` (read from ``path``) was written by a run with another
    fingerprint."""
    stored = read_fingerprint(ds)
    expected = json.loads(fingerprint)
    if stored is None:
        raise SettingsDiffer(
            f"results file {path} has no run fingerprint, so it cannot be resumed safely; "
            "pass overwrite=True (--overwrite) to replace it or choose another output path"
        )
    diffs = fingerprint_differences(stored, expected)
    if diffs:
        raise SettingsDiffer(
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
    try:
        ds = load(path)
    except ValueError as err:
        raise ValueError(f"{err}; delete it, or pass overwrite=True (--overwrite) to replace it") from None
    check_fingerprint(ds, fingerprint, path)
    return ds
