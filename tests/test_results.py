"""Results files: round trip, atomic writes, file modes, CF attrs, fill values, fingerprints that refuse to mix runs."""

import json
import os
import re
import stat
import sys
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from freqlab.runtime import outputs, results


def _dataset(scale: float = 1.0) -> xr.Dataset:
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {
            "output_power": (("checkpoint", "sigma", "freq"), scale * rng.random((2, 3, 5)),
                             {"units": "image units²", "long_name": "power"}),
            "cutoff_freq": (("checkpoint", "sigma"), rng.random((2, 3)), {"units": "cycles/pixel"}),
        },
        coords={
            "checkpoint": ("checkpoint", np.array(["step-0", "step-100"], dtype=object)),
            "step": ("checkpoint", np.array([0, 100], dtype=np.int64)),
            "sigma": ("sigma", [0.1, 1.0, 80.0]),
            "freq": ("freq", np.linspace(0, 0.5, 5), {"units": "cycles/pixel"}),
        },
        attrs={"title": "test", "n_images": 8, "flag": True, "nothing": None, "nested": {"a": [1, 2]}},
    )
    return ds


def test_round_trip_keeps_values_coords_and_attrs(tmp_path):
    ds = _dataset()
    path = results.save(ds, tmp_path / "sub" / "r.nc")
    back = results.load(path)
    # what was given, labelled: every variable and coordinate with a long name and units, and step selectable
    xr.testing.assert_identical(back.drop_attrs(deep=False), results.label(ds).drop_attrs(deep=False))
    assert all(v.attrs.get("long_name") and "units" in v.attrs for v in back.variables.values())
    assert int(back.sel(step=100).step) == 100 and str(back.sel(step=100).checkpoint.values) == "step-100"
    assert back.output_power.attrs["units"] == "image units²"
    assert back.attrs["n_images"] == 8
    assert back.attrs["flag"] == 1  # netCDF has no bool: stored as int
    assert back.attrs["nothing"] == "none"
    assert json.loads(back.attrs["nested"]) == {"a": [1, 2]}
    assert list(back.checkpoint.values) == ["step-0", "step-100"]
    # the file is closed: it can be replaced right away (fails on Windows or leaks handles otherwise)
    results.save(back, path)
    os.replace(path, tmp_path / "moved.nc")


def test_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "r.nc"
    results.save(_dataset(1.0), path)
    before = path.read_bytes()

    def crash(self, target, *args, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        results.save(_dataset(2.0), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.nc"]  # no temporary file left behind
    xr.testing.assert_allclose(results.load(path), _dataset(1.0))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        results.load(tmp_path / "missing.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(ValueError, match="cannot read results file"):
        results.load(bad)


def test_fingerprint_differences_are_named(tmp_path):
    fp = results.make_fingerprint(sigmas=[0.1, 1.0], data={"name": "grf"}, n_images=8, seed=0)
    ds = _dataset()
    ds.attrs["fingerprint"] = fp
    path = results.save(ds, tmp_path / "r.nc")
    # same settings: resumes
    assert results.open_for_resume(path, fp) is not None
    other = results.make_fingerprint(sigmas=[0.1, 2.0], data={"name": "grf"}, n_images=8, seed=0)
    with pytest.raises(ValueError, match=r"sigmas: file \[0.1, 1.0\] vs this run \[0.1, 2.0\].*overwrite"):
        results.open_for_resume(path, other)
    assert results.open_for_resume(path, other, overwrite=True) is None
    with pytest.raises(FileExistsError, match="already exists"):
        results.open_for_resume(path, fp, resume=False)
    assert results.open_for_resume(tmp_path / "new.nc", other) is None
    with pytest.raises(ValueError, match="is a directory"):
        results.open_for_resume(tmp_path, fp)


def test_file_without_fingerprint_is_not_resumed(tmp_path):
    path = results.save(_dataset(), tmp_path / "r.nc")
    with pytest.raises(ValueError, match="no run fingerprint"):
        results.open_for_resume(path, results.make_fingerprint(seed=0))


def test_fingerprint_is_canonical():
    a = results.make_fingerprint(b=1, a=(0.1, 2), c={"y": 1, "x": np.float64(0.5)})
    b = results.make_fingerprint(c={"x": 0.5, "y": 1}, a=[0.1, 2], b=1)
    assert a == b
    assert results.fingerprint_differences(json.loads(a), json.loads(b)) == []


# --------------------------------------------------------------------------------------------------------------
# atomic writes: file modes follow the umask, failures leave no trace
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture
def umask():
    """Set the process umask for one test (``umask(0o022)``), restoring the old one afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_get_the_mode_the_umask_gives(tmp_path, umask, mask, mode):
    umask(mask)
    assert outputs._umask() == mask
    path = results.save(_dataset(), tmp_path / "r.nc")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    results.save(_dataset(2.0), path)  # replacing a file: the new one gets the umask's mode too
    assert stat.S_IMODE(path.stat().st_mode) == mode
    text = outputs.write_atomic(tmp_path / "t.txt", lambda tmp: tmp.write_text("x"))
    assert stat.S_IMODE(text.stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc", "t.txt"]


def test_write_atomic_writer_gets_a_hidden_temp_beside_the_target(tmp_path):
    seen = []

    def writer(tmp):
        seen.append(tmp)
        assert isinstance(tmp, Path) and tmp.parent == tmp_path / "new" and tmp.name.startswith(".out.bin.")
        assert tmp.exists() and tmp.stat().st_size == 0
        tmp.unlink()  # a writer may replace the file rather than write into it
        tmp.write_bytes(b"data")

    assert outputs.write_atomic(tmp_path / "new" / "out.bin", writer) == tmp_path / "new" / "out.bin"
    assert (tmp_path / "new" / "out.bin").read_bytes() == b"data" and not seen[0].exists()
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["out.bin"]


def test_write_atomic_failure_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt  # BaseException too: an interrupted write cleans up

    with pytest.raises(KeyboardInterrupt):
        outputs.write_atomic(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]

    def deletes(tmp):  # the temp gone before fsync: the error surfaces, nothing is left behind
        tmp.unlink()

    with pytest.raises(FileNotFoundError):
        outputs.write_atomic(target, deletes)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


# --------------------------------------------------------------------------------------------------------------
# CF attrs and provenance
# --------------------------------------------------------------------------------------------------------------
def test_freqlab_version_comes_from_the_installed_package(monkeypatch):
    import importlib.metadata

    import freqlab

    assert results.freqlab_version() == importlib.metadata.version("freqlab") == freqlab.__version__

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert results.freqlab_version() == freqlab.__version__
    monkeypatch.delattr(freqlab, "__version__")
    assert results.freqlab_version() == "unknown"


def test_provenance_attrs(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "data.npz").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    attrs = results.provenance_attrs(Path("run") / ".." / "run", "data.npz", "grf", None, 3, object(),
                                     tmp_path / "missing.ckpt", Path("run"))
    after = datetime.now(timezone.utc)
    assert set(attrs) == {"Conventions", "freqlab_version", "date_created", "history", "source_paths"}
    assert attrs["Conventions"] == "CF-1.8" and attrs["freqlab_version"] == results.freqlab_version()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", attrs["date_created"])
    created = datetime.strptime(attrs["date_created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert before <= created <= after
    assert attrs["history"].startswith(f"{attrs['date_created']} freqlab {attrs['freqlab_version']}: python API")
    assert "\n" not in attrs["history"]
    # paths resolved and absolute, repeats dropped; a name that is no file ("grf") and non-paths are skipped;
    # a PathLike counts even if it does not exist (yet)
    root = tmp_path.resolve()
    assert attrs["source_paths"].split(", ") == [str(root / "run"), str(root / "data.npz"),
                                                 str(root / "missing.ckpt")]
    assert results.provenance_attrs()["source_paths"] == ""
    # all storable: a Dataset carrying them round-trips
    ds = _dataset().assign_attrs(attrs)
    back = results.load(results.save(ds, tmp_path / "r.nc")).attrs
    assert back["source_paths_absolute"] == attrs["source_paths"]  # and relative to the file, so it travels with it
    assert back["source_paths"].split(", ") == ["run", "data.npz", "missing.ckpt"]


def test_save_adds_conventions_and_version_but_keeps_what_the_caller_set(tmp_path):
    ds = _dataset()
    back = results.load(results.save(ds, tmp_path / "a.nc"))
    assert back.attrs["Conventions"] == "CF-1.8" and back.attrs["freqlab_version"] == results.freqlab_version()
    assert "Conventions" not in ds.attrs  # the caller's Dataset is not changed
    assert "date_created" not in back.attrs  # save adds no date: saving the same Dataset twice gives the same attrs
    ds.attrs.update(Conventions="CF-1.8, ACDD-1.3", freqlab_version="0.0.1", date_created="2020-01-02T03:04:05Z")
    back = results.load(results.save(ds, tmp_path / "b.nc"))
    assert back.attrs["Conventions"] == "CF-1.8, ACDD-1.3" and back.attrs["freqlab_version"] == "0.0.1"
    assert back.attrs["date_created"] == "2020-01-02T03:04:05Z"
    # a resumed file saved again keeps its creation date
    again = results.load(results.save(back, tmp_path / "b.nc"))
    assert again.attrs["date_created"] == "2020-01-02T03:04:05Z"


# --------------------------------------------------------------------------------------------------------------
# fill values: float coords with NaN for unknown
# --------------------------------------------------------------------------------------------------------------
def test_float_coords_with_nan_for_unknown_round_trip_with_a_fill_value(tmp_path):
    ds = _dataset().assign_coords(step=("checkpoint", [np.nan, 100.0]),
                                  images_seen=("checkpoint", np.array([6400.0, np.nan])))
    ds["output_power"][0, 0, 0] = np.nan
    path = results.save(ds, tmp_path / "r.nc")
    back = results.load(path)
    xr.testing.assert_identical(back.drop_attrs(deep=False), results.label(ds).drop_attrs(deep=False))
    assert back.step.dtype == np.float64 and np.isnan(back.step.values[0]) and back.step.values[1] == 100.0
    assert np.isnan(back.images_seen.values[1]) and back.images_seen.values[0] == 6400.0
    assert np.isnan(back.output_power.values[0, 0, 0])
    with h5py.File(path, "r") as f:
        for name in ("step", "images_seen", "output_power", "cutoff_freq"):
            assert np.isnan(f[name].attrs["_FillValue"]), name
            assert np.isnan(f[name][...]).any() == (name != "cutoff_freq"), name  # NaN stored as the fill value
        for name in ("sigma", "freq"):  # CF: coordinate variables have no missing values, so no _FillValue
            assert "_FillValue" not in f[name].attrs, name
        assert "_FillValue" not in f["checkpoint"].attrs
    # loaded encodings are dropped, so a loaded Dataset saves the same way again
    again = results.load(results.save(back, tmp_path / "again.nc"))
    xr.testing.assert_identical(again, back)


def test_caller_fill_value_attr_is_respected(tmp_path):
    ds = _dataset()
    ds["cutoff_freq"].attrs["_FillValue"] = -999.0
    ds["cutoff_freq"][0, 0] = np.nan
    path = results.save(ds, tmp_path / "r.nc")
    with h5py.File(path, "r") as f:
        assert f["cutoff_freq"].attrs["_FillValue"] == -999.0
        assert f["cutoff_freq"][0, 0] == -999.0
    assert np.isnan(results.load(path).cutoff_freq.values[0, 0])
    assert ds["cutoff_freq"].attrs["_FillValue"] == -999.0  # the caller's Dataset is not changed


def test_every_committed_results_file_labels_itself():
    """Opened with plain xarray (not freqlab's loader), every variable and coordinate of every committed results
    file has a long name and units a reader understands, and xarray's plots put the unit on the axis."""
    import cf_units  # in the dev extras (make test installs them)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from freqlab.measure import core as measure

    files = sorted((Path(__file__).resolve().parents[1] / "figures" / "results").rglob("*.nc"))
    assert len(files) >= 5
    for path in files:
        with xr.open_dataset(path, engine=results.ENGINE) as ds:
            for name, var in ds.variables.items():
                assert var.attrs.get("long_name") and "units" in var.attrs, f"{path.name}: {name}"
                if var.attrs["units"]:  # a number's unit, also in the form UDUNITS parses
                    cf_units.Unit(var.attrs["units_udunits"])
                if name in measure.VARIABLES:  # the unit a reader writes, not a UDUNITS "1" for dB
                    assert var.attrs["units"] == measure.VARIABLES[name][1], f"{path.name}: {name}"
            assert "freqlab" in ds.attrs["history"] and not ds.attrs["source_paths"].startswith("/")
            if "lsd" in ds:
                line = ds.lsd.isel({d: 0 for d in ds.lsd.dims if d != "band"}).plot()
                assert "[dB]" in line[0].axes.get_ylabel()
                plt.close("all")
