"""Content fingerprints end to end: a sweep records the weights it measured (after loading) and every image it read,
so a resumed file never mixes numbers of other weights or other images with its own."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import xarray as xr

from freqlab.data.digest import DigestAsRead, batch_digest, digest_images
from freqlab.runtime import results
from freqlab.sweep import study

SETTINGS = dict(n_images=8, sigmas=[0.1, 1.0], device="cpu", progress=False)


def _pretrain(run, seed: int, overwrite: bool = False) -> None:
    from freqlab.pretrain import loop as pretrain

    pretrain.pretrain(pretrain.make_config("tiny", steps=2, n_checkpoints=2, seed=seed), run, overwrite=overwrite,
                      device="cpu", progress=False)


def _numbers(ds: xr.Dataset) -> xr.Dataset:
    """The measured variables (what must agree between a resumed and a fresh sweep)."""
    return ds[[v for v in ds.data_vars if "checkpoint" in ds[v].dims]].drop_vars(
        [c for c in ("checkpoint_path",) if c in ds.coords])


def test_a_run_retrained_while_it_is_swept_is_measured_again_on_resume(tmp_path, monkeypatch, capsys):
    run, out = tmp_path / "run", tmp_path / "sweep.nc"
    _pretrain(run, seed=0)
    measure = study.sweep_checkpoint
    measured: list[str] = []

    def retrain_after_the_first_load(entry, model, *args, **kwargs):
        if not measured:  # the first checkpoint is loaded (seed 0); the run is retrained under the sweep's feet
            _pretrain(run, seed=2, overwrite=True)
        measured.append(entry.name)
        return measure(entry, model, *args, **kwargs)

    monkeypatch.setattr(study, "sweep_checkpoint", retrain_after_the_first_load)
    mixed = study.sweep(run, out=out, **SETTINGS)
    monkeypatch.undo()
    fresh = study.sweep(run, out=tmp_path / "fresh.nc", **SETTINGS)
    first = str(mixed.checkpoint.values[0])
    # the file says what it measured: the first checkpoint's fingerprint is the old weights', not the files' now
    assert mixed.checkpoint_fingerprint.values[0] != fresh.checkpoint_fingerprint.values[0]
    assert (mixed.checkpoint_fingerprint.values[1:] == fresh.checkpoint_fingerprint.values[1:]).all()
    assert not np.allclose(mixed.mse.sel(checkpoint=first), fresh.mse.sel(checkpoint=first))  # the test has power
    capsys.readouterr()
    resumed = study.sweep(run, out=out, **SETTINGS)
    assert f"other content ({first})" in capsys.readouterr().err
    xr.testing.assert_allclose(_numbers(resumed), _numbers(fresh))
    xr.testing.assert_allclose(_numbers(results.load(out)), _numbers(fresh))


def test_weights_swapped_in_with_their_file_times_restored_are_measured_again(tmp_path, make_tiny_run, capsys):
    run, other = make_tiny_run([(0, 0), (10, 1)]), make_tiny_run([(0, 0), (10, 7)])
    out = tmp_path / "sweep.nc"
    study.sweep(run, out=out, **SETTINGS)
    target = run / "checkpoints" / "step-000010"
    for file in (other / "checkpoints" / "step-000010").iterdir():  # same names and sizes; times put back
        info = (target / file.name).stat()
        assert info.st_size == file.stat().st_size
        shutil.copyfile(file, target / file.name)
        os.utime(target / file.name, ns=(info.st_atime_ns, info.st_mtime_ns))
    capsys.readouterr()
    resumed = study.sweep(run, out=out, **SETTINGS)
    assert "other content (step-000010)" in capsys.readouterr().err
    fresh = study.sweep(run, out=tmp_path / "fresh.nc", **SETTINGS)
    xr.testing.assert_allclose(_numbers(resumed), _numbers(fresh))


def test_a_resumed_sweep_checks_every_image_not_only_the_first(tmp_path, make_tiny_run):
    run = make_tiny_run([(0, 0), (10, 1)])
    images = np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 1)).astype(np.float32)
    np.savez(tmp_path / "images.npz", images=images)
    out = tmp_path / "sweep.nc"
    data = dict(data="array", data_options={"path": str(tmp_path / "images.npz")})
    study.sweep(run / "checkpoints" / "step-000000", out=out, **data, **SETTINGS)
    images[5] = 1 - images[5]  # image 5 of 8: past any probe of the first few
    np.savez(tmp_path / "images.npz", images=images)
    before = out.read_bytes()
    with pytest.raises(results.SettingsDiffer, match="measured_images_digest: file"):
        study.sweep(run, out=out, **data, **SETTINGS)
    assert out.read_bytes() == before


class _Images:
    """A data source over a tensor the test can change while a sweep reads it."""

    name, size = "changing", 16

    def __init__(self):
        self.x = torch.rand(self.size, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
        self.shape = tuple(self.x.shape[1:])

    def images(self, indices):
        return self.x[list(indices)].clone()


def test_images_that_change_while_a_sweep_reads_them_stop_it_before_anything_is_saved(tmp_path, make_tiny_run,
                                                                                       monkeypatch):
    run, out, source = make_tiny_run([(0, 0), (10, 1)]), tmp_path / "sweep.nc", _Images()
    measure = study.sweep_checkpoint

    def change_the_images(*args, **kwargs):
        source.x[3] += 0.5  # a measured image (the first 8), after the digest was taken
        return measure(*args, **kwargs)

    monkeypatch.setattr(study, "sweep_checkpoint", change_the_images)
    with pytest.raises(ValueError, match="data images 0 to 7 changed while this run read them"):
        study.sweep(run, source, out=out, **SETTINGS)
    assert not out.exists()


def test_a_resumed_sweep_whose_references_were_fitted_on_other_images_is_refused(tmp_path, make_tiny_run):
    run, out, source = make_tiny_run([(0, 0), (10, 1)]), tmp_path / "sweep.nc", _Images()
    study.sweep(run / "checkpoints" / "step-000000", source, out=out, **SETTINGS)
    source.x[12] *= -1  # a held-out image the references are fitted on (images 8 to 15), not a measured one
    before = out.read_bytes()
    with pytest.raises(results.SettingsDiffer, match="references fitted on other images"):
        study.sweep(run, source, out=out, **SETTINGS)
    assert out.read_bytes() == before


def test_the_image_digest_sees_every_bit_and_ignores_dtype():
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert batch_digest(x) == batch_digest(x.double())
    y = x.clone()
    y[5, 2, 7, 7] = torch.nextafter(y[5, 2, 7, 7], torch.tensor(2.0))  # one pixel, one float32 step
    assert batch_digest(x) != batch_digest(y)

    class Source:
        def images(self, indices):
            return x[list(indices)]

    digest = digest_images(Source(), 0, 6, 4)
    assert len(digest.batches) == 2 and digest.total != digest_images(Source(), 0, 6, 3).total
    digest.check(4, x[4:6], "data images")
    with pytest.raises(ValueError, match="data images 4 to 5 changed"):
        digest.check(4, y[4:6], "data images")
    with pytest.raises(ValueError, match="not a batch"):
        digest.check(2, x[2:4], "data images")
    read = DigestAsRead(0, 4)  # the same digest, taken as another pass reads the batches
    read.add(0, x[:4])
    read.add(4, x[4:])
    assert read.digest() == digest
    with pytest.raises(ValueError, match="out of order"):
        read.add(0, x[:4])
