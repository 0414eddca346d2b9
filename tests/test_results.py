"""Results files: round trip, atomic writes, fingerprints that refuse to mix runs."""

import json
import os

import numpy as np
import pytest
import xarray as xr

from freqlab import results


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
    xr.testing.assert_identical(back.drop_attrs(deep=False), ds.drop_attrs(deep=False))
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
