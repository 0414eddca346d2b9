"""The native mode of the data spectra: whole images of different sizes, each measured at its own size, on one
frequency axis (``freqlab spectra --native``, ``source_for_path(path, native=True)``)."""

import numpy as np
import pytest
import torch

from freqlab.cli import main
from freqlab.data.files import ArraySource
from freqlab.data.native import NativeImages
from freqlab.data.sources import source_for_path
from freqlab.measure import data_spectra as dataspectra
from freqlab.plots import data as data_plots
from freqlab.runtime import results

SIZES = ((48, 48), (64, 96), (40, 120))  # square, wide, very wide: the common axis is 1/48 (the smallest long side)


def _png16(path, values01: np.ndarray) -> None:
    """A 16-bit grayscale PNG of values in [0, 1] (read back as float, not clipped to 8 bits)."""
    from PIL import Image

    Image.fromarray(np.round(values01 * 65535).astype(np.uint16)).save(path)


def _grf(h: int, w: int, rng: np.random.Generator, exponent: float = 2.0) -> np.ndarray:
    """A periodic Gaussian random field of ``h × w`` pixels with ``P ∝ |f|^-exponent`` per mode, unit std."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fy**2 + fx**2)
    amplitude = np.where(f > 0, f, np.inf) ** (-exponent / 2)
    x = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((h, w))) * amplitude, s=(h, w))
    return x / x.std()


def _level(ds, source) -> float:
    """Mean power of a source's non-DC bins (channel mean)."""
    return float(ds.data_power.sel(source=source).mean("channel")[1:].mean())


def test_white_noise_of_three_sizes_is_flat_at_the_single_size_level(tmp_path):
    """Images of 48x48, 64x96 and 40x120 in one folder (16-bit PNG): the level of the normalisation (the variance),
    as a single-size run measures it; a normalisation that ignored the image size would put the sizes apart."""
    rng = np.random.default_rng(0)
    std01 = 0.1  # in [0, 1]: std 0.2 in [-1, 1], variance 0.04, clipped nowhere (5 std from the edges)
    for sizes, folder in ((SIZES, "mixed"), (((64, 96),), "wide")):
        (tmp_path / folder).mkdir()
        for i in range(12):
            h, w = sizes[i % len(sizes)]
            _png16(tmp_path / folder / f"{i:02d}.png", 0.5 + std01 * rng.standard_normal((h, w)))
    mixed, wide = (source_for_path(tmp_path / f, native=True, grayscale=True) for f in ("mixed", "wide"))
    assert sorted(set(mixed.sizes)) == sorted(SIZES) and mixed.channels == 1
    ds = dataspectra.data_spectra([mixed, wide], n_images=12, progress=False)
    single = dataspectra.data_spectra(
        [ArraySource("one", torch.randn(12, 1, 48, 48) * 2 * std01, (48, 48), 1, {})], n_images=12, progress=False)
    assert _level(single, "one") == pytest.approx(4 * std01**2, rel=0.05)
    for source in ("mixed", "wide"):
        assert _level(ds, source) == pytest.approx(_level(single, "one"), rel=0.05)
        assert abs(float(ds.slope.sel(source=source))) < 0.1  # flat (12 images: about ±0.05 by chance)
    assert ds.attrs["axis_size"] == 48 and ds.freq.size == 25 and float(ds.freq[1]) == pytest.approx(1 / 48)
    assert "64x96 (4)" in ds.attrs["image_sizes"] and "wide: 64x96 (12)" in ds.attrs["image_sizes"]
    assert "height" not in ds.attrs  # the images had no one height
    # each image weighs the same: the sizes alone, averaged, give the same level
    for hw in SIZES:
        one = NativeImages.from_tensors("x", [torch.randn(1, *hw) * 0.2 for _ in range(8)])
        assert _level(dataspectra.data_spectra([one], n_images=8, progress=False), "x") == pytest.approx(0.04, rel=0.06)


def test_fields_with_a_power_law_keep_their_slope_at_every_size():
    """Gaussian random fields with P ∝ f^-2 at three sizes: slope -2 for the mean spectrum and image by image."""
    rng = np.random.default_rng(1)
    fields = [torch.from_numpy(0.25 * _grf(h, w, rng)).float()[None] for h, w in SIZES * 4]
    ds = dataspectra.data_spectra([NativeImages.from_tensors("grf", fields)], n_images=64, progress=False)
    assert float(ds.slope.sel(source="grf")) == pytest.approx(-2.0, abs=0.15)
    each = ds.image_slope.sel(source="grf").values
    assert np.isfinite(each).sum() == 12 and np.nanmedian(each) == pytest.approx(-2.0, abs=0.15)
    assert ds.attrs["fit_fmin"] == pytest.approx(2 / 48)
    steeper = [torch.from_numpy(0.25 * _grf(h, w, rng, 3.0)).float()[None] for h, w in SIZES * 4]
    ds3 = dataspectra.data_spectra([NativeImages.from_tensors("grf3", steeper)], n_images=64, progress=False)
    assert float(ds3.slope.sel(source="grf3")) == pytest.approx(-3.0, abs=0.2)  # the measurement follows the law


def test_one_size_measured_natively_is_the_fixed_size_measurement():
    """The common axis of one size is that size's own bins: the native and the fixed-size runs agree number for
    number (the scatter binning of the native mode against the bin matrix of the sweep's)."""
    kw = dict(n_images=24, batch_size=10, resolution=50, progress=False)  # 50: 2/50 is not a float32 number
    fixed = dataspectra.data_spectra(("grf", "natural"), **kw)
    native = dataspectra.data_spectra(("grf", "natural"), native=True, **kw)
    for name in ("data_power", "data_power_sem", "data_band_log_power", "data_band_kurtosis", "slope", "image_slope"):
        np.testing.assert_allclose(native[name].values, fixed[name].values, rtol=1e-5, atol=1e-12, err_msg=name)
    assert (native.freq_count.values == fixed.freq_count.values).all()
    assert (native.freq.values == fixed.freq.values).all()


def test_images_are_read_one_shape_at_a_time_in_batches():
    images = [torch.zeros(1, *hw) + torch.randn(1, *hw) for hw in SIZES * 5]  # 15 images, interleaved sizes
    src = NativeImages.from_tensors("x", images)
    calls = []
    read = src.images
    src.images = lambda idx: calls.append(list(idx)) or read(idx)
    ds = dataspectra.data_spectra([src], n_images=15, batch_size=2, progress=False)
    assert all(len({images[i].shape for i in c}) == 1 and len(c) <= 2 for c in calls)
    assert len(calls) == 9 and sorted(i for c in calls for i in c) == list(range(15))
    assert np.isfinite(ds.image_slope.values).all()  # every image's slope, in image order


def test_an_array_is_measured_at_its_own_size(tmp_path):
    np.save(tmp_path / "arr.npy", np.random.default_rng(0).uniform(0, 1, (6, 20, 28)).astype(np.float32))
    src = source_for_path(tmp_path / "arr.npy", native=True, grayscale=True, resolution=16)
    assert src.name == "arr" and src.shape == (1, 20, 28)  # not resized to the resolution


def test_two_folders_of_mixed_sizes_from_the_command_line(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(2)
    for name, smooth in (("real", True), ("samples", False)):
        (tmp_path / name).mkdir()
        for i, (h, w) in enumerate(SIZES * 2 + ((72, 56),) * smooth):
            x = _grf(h, w, rng) if smooth else rng.standard_normal((h, w))
            Image.fromarray(np.clip(128 + 30 * x, 0, 255).astype(np.uint8)).save(tmp_path / name / f"{i}.png")
    out = tmp_path / "out"
    assert main(["spectra", "--data-path", str(tmp_path / "real"), "--data-path", str(tmp_path / "samples"),
                 "--native", "--grayscale", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "real: slope" in printed and "samples: slope" in printed and "own sizes" in printed
    ds = results.load(out / "data_spectra.nc")
    assert list(ds.source.values) == ["real", "samples"] and list(ds.n_images.values) == [7, 6]
    assert float(ds.slope.sel(source="real")) < -1.5 and abs(float(ds.slope.sel(source="samples"))) < 0.3
    assert ds.attrs["axis_size"] == 48 and "real: " in ds.attrs["image_sizes"] and "72x56 (1)" in ds.attrs["image_sizes"]
    assert ds.attrs["image_size"] == "own sizes 48×48 to 64×96 px (4 sizes)"  # the smallest and largest by area
    assert (out / "data_spectra.png").stat().st_size > 10_000
    assert "own sizes" in data_plots.data_spectra_figure(ds).get_title()


@pytest.mark.parametrize("argv, says", [
    (["--native", "--tiles"], "--native and --tiles exclude each other"),
    (["--native"], "holds no image files"),
])
def test_bad_native_input_is_one_line(argv, says, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["spectra", "--data-path", str(tmp_path / "empty"), *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("freqlab spectra: error:") and says in err and "\n" not in err
    with pytest.raises(ValueError, match="exclude each other"):
        source_for_path(tmp_path, native=True, tiles=True)


def _noise_images(sizes, seed: int = 0) -> NativeImages:
    g = torch.Generator().manual_seed(seed)
    return NativeImages.from_tensors("noise", [0.2 * torch.randn(1, h, w, generator=g) for h, w in sizes])


def test_a_few_small_images_are_named_and_too_small_ones_refused():
    with pytest.warns(UserWarning, match=r"1 of 5 images .* sets the common axis .* 1/16"):
        ds = dataspectra.data_spectra([_noise_images([(64, 64)] * 4 + [(16, 16)])], n_images=5, progress=False)
    assert ds.attrs["axis_size"] == 16
    with pytest.raises(ValueError, match=r"longer side of 8 px sets the common frequency axis .* fewer than 3 bins"):
        dataspectra.data_spectra([_noise_images([(64, 64)] * 3 + [(8, 8)])], n_images=4, progress=False)


def test_bin_0_holds_the_dc_mode_alone_whatever_the_image_size():
    from freqlab.measure.native import OnAxis, common_axis

    for shape in ((1, 16, 16), (1, 64, 64), (1, 40, 120)):  # a 64x64 image has non-DC modes below 1/32 on a 1/16 axis
        an = OnAxis(shape, common_axis(16))
        assert int((an.index == 0).sum()) == 1 and int(an.counts[0]) == 1
