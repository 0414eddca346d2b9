"""The two-sample comparison can say no, and says yes where it must: controls made from the embedded data, held-out
splits of other sources, the statistics on cases with known answers, the verdict over seeds, the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from freqlab.compare import controls, twosample
from freqlab.compare.features import band_names, feature_names, features
from freqlab.compare.study import compare
from freqlab.compare.verdict import band_verdicts, control_rows, run_pairs
from freqlab.spectral import radial_frequency


@pytest.fixture(scope="module")
def natural():
    """The embedded photographs against every control, 1,000 images a set (32×32 RGB)."""
    return compare("natural", controls=True, n_images=1000, progress=False, device="cpu")


def test_the_held_out_split_is_indistinguishable_in_every_band(natural):
    row = natural.sel(candidate="heldout")
    assert row.verdict.item() == "indistinguishable"
    assert not row.differs.values.any() and not int(row.fidelity_differs) and not int(row.diversity_differs)
    assert set(natural.band.values) == {"low", "mid", "high", "image"}


@pytest.mark.parametrize("name", ["gaussian", "deadleaves", "repeated", "lowpass"])
def test_every_negative_control_is_different_in_the_bands_a_reader_expects(natural, name):
    row = natural.sel(candidate=name)
    assert row.verdict.item() == "different"
    differ = {str(b) for b in natural.band.values if int(row.differs.sel(band=b))}
    differ |= {"diversity"} if int(row.diversity_differs) else set()
    assert set(controls.EXPECTED_DIFFERENT_BANDS[name]) <= differ, differ


def test_low_pass_data_keep_the_low_band(natural):
    """An ideal low-pass leaves the low band as the data's: the comparison must not call it different there."""
    row = natural.sel(candidate="lowpass")
    assert not int(row.differs.sel(band="low")) and int(row.differs.sel(band="mid")) and int(row.differs.sel(band="high"))
    assert control_rows(natural)["lowpass"]["as_required"] and control_rows(natural)["heldout"]["as_required"]


@pytest.mark.parametrize("source", ["deadleaves", "grf"])
def test_held_out_splits_of_other_sources_are_indistinguishable(source):
    ds = compare(source, ["control:heldout"], n_images=1000, progress=False, device="cpu")
    assert ds.verdict.item() == "indistinguishable", ds.to_dataframe()[["mmd2_p", "classifier_p"]]


# ----------------------------------------------------------------------------------------------------------------
# the statistics, on cases with known answers
# ----------------------------------------------------------------------------------------------------------------
def test_mmd_null_is_calibrated_and_a_shift_is_found():
    gen = torch.Generator().manual_seed(0)
    ps = [twosample.mmd_test(torch.randn(100, 5, generator=gen), torch.randn(100, 5, generator=gen),
                             permutations=99, generator=gen).p for _ in range(40)]
    assert 0.3 < np.mean(ps) < 0.7 and np.mean(np.array(ps) <= 0.05) < 0.15  # uniform-ish under the null
    shifted = twosample.mmd_test(torch.randn(200, 5, generator=gen), torch.randn(200, 5, generator=gen) + 0.5,
                                 permutations=99, generator=gen)
    assert shifted.p == pytest.approx(0.01) and shifted.mmd2 > shifted.null_mean + 5 * shifted.null_sd


def test_classifier_test_sees_what_it_can_learn_and_not_noise():
    gen = torch.Generator().manual_seed(1)
    same = twosample.classifier_test(torch.randn(400, 4, generator=gen), torch.randn(400, 4, generator=gen),
                                     generator=gen)
    assert same.p > 0.01 and abs(same.accuracy - 0.5) < 0.1
    x, y = torch.randn(400, 4, generator=gen), torch.randn(400, 4, generator=gen)
    y[:, 0] = y[:, 0].abs() * torch.sign(y[:, 1])  # same marginals, other dependence: a nonlinear difference
    x[:, 0] = x[:, 0].abs() * -torch.sign(x[:, 1])
    found = twosample.classifier_test(x, y, generator=gen)
    assert found.accuracy > 0.9 and found.p < 1e-10


def test_precision_and_recall_catch_a_collapsed_set():
    gen = torch.Generator().manual_seed(2)
    r1, r2 = torch.randn(300, 3, generator=gen), torch.randn(300, 3, generator=gen)
    collapsed = r2[:1].expand(300, -1).clone()
    fd = twosample.fidelity_diversity_test(r1, r2, collapsed)
    assert fd.precision == 1.0 and fd.recall < 0.05 and fd.recall_p < 1e-6 and fd.precision_p == 1.0
    fair = twosample.fidelity_diversity_test(r1, r2, torch.randn(300, 3, generator=gen))
    assert fair.recall_p > 0.01 and fair.precision_p > 0.01


def test_holm_adjusts_step_down():
    assert twosample.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert twosample.holm([]) == []


# ----------------------------------------------------------------------------------------------------------------
# the feature map and the controls
# ----------------------------------------------------------------------------------------------------------------
def test_features_are_finite_named_and_see_what_a_spectrum_cannot():
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn(64, 3, 32, 32, generator=gen)
    sparse = torch.zeros(64, 3, 32, 32)
    sparse[:, :, 16:, :] = 1.0  # an edge: the same power as some noise, not its statistics
    blank = torch.zeros(4, 3, 32, 32)
    for x in (noise, sparse, blank):
        out = features(x)
        assert list(out) == list(band_names())
        for band, f in out.items():
            assert f.shape == (len(x), len(feature_names(3, band))) and torch.isfinite(f).all()
    names = feature_names(3, "high")
    tails = names.index("tail_3rms")
    assert features(noise)["high"][:, tails].mean() == pytest.approx(0.0027, abs=0.002)  # Gaussian: 0.27 % beyond 3 rms
    kurt = names.index("log_kurtosis_c0")
    assert features(noise)["high"][:, kurt].mean() == pytest.approx(np.log(3), abs=0.05)


def test_phase_randomising_keeps_each_image_s_spectrum_and_channel_cross_spectra():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(6, 3, 16, 16, generator=gen).cumsum(-1)  # correlated structure
    x[:, 1] = x[:, 0] + 0.1 * x[:, 1]
    y = controls.phase_randomise(x, gen)
    fx, fy = torch.fft.rfft2(x.double()), torch.fft.rfft2(y.double())
    torch.testing.assert_close(fx.abs(), fy.abs(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(fx[:, 0] * fx[:, 1].conj(), fy[:, 0] * fy[:, 1].conj(), rtol=1e-4, atol=1e-3)
    assert not torch.allclose(x, y, atol=1e-2)  # and the images themselves changed


def test_low_pass_removes_every_mode_from_the_cutoff_on():
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    kept = torch.fft.rfft2(controls.lowpass(x, 0.125).double()).abs()
    f = radial_frequency(32, 32)
    assert kept[..., f >= 0.125].max() < 1e-5
    torch.testing.assert_close(kept[..., f < 0.125], torch.fft.rfft2(x.double()).abs()[..., f < 0.125])


def test_the_dead_leaves_control_takes_the_data_s_mean_spectrum():
    from freqlab.compare.study import CompareConfig, _as_source, _batches, _deadleaves_like

    cfg = CompareConfig(n_images=256)
    ref = _as_source("natural", cfg)
    maker = controls.ControlMaker("deadleaves", reference_batches=lambda: (x for _, x in _batches(ref, 0, 512, 256)),
                                  deadleaves=_deadleaves_like(ref, cfg))
    made = maker(ref.images(range(512, 768)), range(0, 256))
    data = ref.images(range(768, 1024))
    p_made, p_data = (torch.fft.rfft2(v.double() - v.double().mean((-2, -1), keepdim=True)).abs().square().mean(0)
                      for v in (made, data))
    ratio = (p_made.sum((1, 2)) / p_data.sum((1, 2)))  # total non-DC power per channel
    assert torch.allclose(ratio, torch.ones(3, dtype=torch.float64), atol=0.3)


# ----------------------------------------------------------------------------------------------------------------
# the verdict over seeds
# ----------------------------------------------------------------------------------------------------------------
def _seeds(starts, ends, differs, controls_mmd=5.0) -> xr.Dataset:
    names = [f"s{k}" for k in range(len(starts))] + [f"e{k}" for k in range(len(ends))] + ["gaussian"]
    mmd = np.array([[v] for v in list(starts) + list(ends)] + [[controls_mmd]], dtype=float)
    diff = np.array([[1] for _ in starts] + [[d] for d in differs] + [[1]], dtype=np.int8)
    runs = [""] * len(starts) + ["run"] * len(ends) + [""]
    start = [""] * len(starts) + [f"s{k}" for k in range(len(ends))] + [""]
    return xr.Dataset({"mmd2": (("candidate", "band"), mmd), "differs": (("candidate", "band"), diff)},
                      coords={"candidate": names, "band": ["high"], "run": ("candidate", runs),
                              "start": ("candidate", start)})


def test_moved_toward_the_data_needs_a_fall_beyond_the_seed_spread_and_below_the_controls():
    moved = _seeds([2.0] * 5, [1.0, 1.1, 0.9, 1.05, 0.95], [1] * 5)
    v = band_verdicts(moved, run_pairs(moved)["run"], resamples=2000, level=0.95)["high"]
    assert v.moved and not v.reaches and v.change == pytest.approx(-1.0)
    scattered = _seeds([2.0] * 5, [0.2, 3.5, 0.5, 3.0, 0.8], [1] * 5)  # a mean fall smaller than the scatter
    assert not band_verdicts(scattered, run_pairs(scattered)["run"], resamples=2000, level=0.95)["high"].moved
    above = _seeds([2.0] * 5, [1.0, 1.1, 0.9, 1.05, 0.95], [1] * 5, controls_mmd=0.5)  # a control lies closer
    assert not band_verdicts(above, run_pairs(above)["run"], resamples=2000, level=0.95)["high"].moved
    reached = _seeds([2.0] * 3, [0.0, 0.01, -0.01], [0, 0, 0])
    assert band_verdicts(reached, run_pairs(reached)["run"], resamples=2000, level=0.95)["high"].reaches
    one_seed_left = _seeds([2.0] * 3, [0.0, 0.01, -0.01], [0, 1, 0])
    assert not band_verdicts(one_seed_left, run_pairs(one_seed_left)["run"], resamples=2000,
                             level=0.95)["high"].reaches


# ----------------------------------------------------------------------------------------------------------------
# the command line and bad input
# ----------------------------------------------------------------------------------------------------------------
def test_json_on_stdout_has_the_documented_schema(tmp_path, capsys):
    from freqlab.cli import main

    data = (torch.rand(64, 16, 16, 3) * 255).to(torch.uint8).numpy()
    np.save(tmp_path / "a.npy", data)
    np.save(tmp_path / "b.npy", data[::-1].copy())
    assert main(["compare", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "control:repeated", "--json",
                 "--n-images", "20", "--kernel-images", "20", "--resolution", "16", "--permutations", "19",
                 "--quiet", "--out", str(tmp_path / "c.nc")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in doc["candidates"]] == ["b", "repeated"]
    for c in doc["candidates"]:
        assert c["verdict"] in ("indistinguishable", "different") and {"precision", "recall"} <= set(c)
        assert set(c["bands"]) == {"low", "mid", "high", "image"} and all(
            isinstance(b["differs"], bool) for b in c["bands"].values())
    assert (tmp_path / "c.nc").exists()


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown control 'blur'"):
        compare("white", ["control:blur"], n_images=16, kernel_images=16, progress=False)
    with pytest.raises(ValueError, match="cannot be compared with the reference's"):
        compare("white", [torch.zeros(16, 1, 32, 32)], n_images=16, kernel_images=16, progress=False)
    with pytest.raises(ValueError, match="nothing to compare"):
        compare("white", [], progress=False)
    with pytest.raises(ValueError, match="NaN"):
        compare("white", [torch.full((16, 3, 32, 32), float("nan"))], n_images=16, kernel_images=16, progress=False)
    np.save(tmp_path / "few.npy", np.zeros((20, 16, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="has 20 images"):
        compare(str(tmp_path / "few.npy"), controls=True, resolution=16, progress=False)


def test_the_standard_fid_only_with_the_library_and_its_cached_weights(tmp_path, monkeypatch):
    import sys
    import types

    from freqlab.compare import standard
    from freqlab.compare.study import TensorImages

    images = TensorImages("x", torch.zeros(8, 3, 16, 16))
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # not installed
    assert "not installed" in standard.standard_metrics(images, images, 8)
    calls = []
    fake = types.SimpleNamespace(calculate_metrics=lambda **kw: calls.append(kw) or {
        "frechet_inception_distance": 1.5, "kernel_inception_distance_mean": 0.01,
        "kernel_inception_distance_std": 0.002})
    monkeypatch.setitem(sys.modules, "torch_fidelity", fake)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert "not in the local cache" in standard.standard_metrics(images, images, 8)  # no weights: nothing downloaded
    assert not calls
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / standard.INCEPTION_WEIGHTS).write_bytes(b"")
    assert standard.standard_metrics(images, images, 8) == {"fid": 1.5, "kid": 0.01, "kid_std": 0.002}
    item = calls[0]["input1"][0]
    assert item.dtype == torch.uint8 and item.shape == (3, 16, 16) and int(item.max()) == 128  # 0 maps to mid-grey
