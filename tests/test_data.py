"""Tests of freqlab.data.sources: determinism, shapes, ranges, spectra of the procedural sources, and the file loaders."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from freqlab.data import sources as data
from freqlab.data.base import DataIndexError
from freqlab.data.sources import DATA_SOURCES, NATURAL_PHOTOS, grf_power, grf_radial_power, make_source
from freqlab.spectral import radial_frequency, radial_power_spectrum, spectral_slope

PROCEDURAL = ("natural", "deadleaves", "grf", "white")


def luma(x: torch.Tensor) -> torch.Tensor:
    return (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)


# --------------------------------------------------------------------------------------------------------------
# the factory
# --------------------------------------------------------------------------------------------------------------
def test_registry_names():
    assert DATA_SOURCES == ("natural", "deadleaves", "grf", "white", "folder", "cifar10", "array")


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        make_source("imagenet")
    for name in DATA_SOURCES:
        assert name in str(err.value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="grf", exponnent=2.0), "exponnent"),
        (dict(name="white", split="validation"), "split"),
        (dict(name="white", resolution=0), "resolution"),
        (dict(name="white", resolution=(32, 32, 3)), "resolution"),
        (dict(name="natural", path="/tmp"), "path"),
        (dict(name="folder"), "path"),
        (dict(name="deadleaves", rmin=5.0, rmax=2.0), "rmin"),
        (dict(name="deadleaves", color="red"), "color"),
        (dict(name="natural", resolution=4096), "resolution"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_source(kwargs.pop("name"), **kwargs)


# --------------------------------------------------------------------------------------------------------------
# procedural sources: determinism, batching, shapes, ranges
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PROCEDURAL)
def test_deterministic_and_independent_of_batching(name):
    src = make_source(name, resolution=16, seed=3)
    whole = src.images(range(10))
    parts = torch.cat([src.images([0, 1, 2, 3, 4]), src.images([5, 6, 7, 8, 9])])
    assert torch.equal(whole, parts)
    assert torch.equal(whole, make_source(name, resolution=16, seed=3).sample(10))  # a fresh source, same seed
    assert torch.equal(whole[7:], src.sample(3, start=7))
    assert torch.equal(src.images([9, 2])[0], whole[9])  # order of request does not matter
    assert not torch.equal(whole, make_source(name, resolution=16, seed=4).sample(10))
    assert not torch.equal(whole, make_source(name, resolution=16, seed=3, split="test").sample(10))
    assert not torch.equal(whole[0], whole[1])


@pytest.mark.parametrize("name", PROCEDURAL)
@pytest.mark.parametrize("resolution, grayscale", [(16, False), ((12, 20), False), ((20, 12), True)])
def test_shapes_and_dtype(name, resolution, grayscale):
    src = make_source(name, resolution=resolution, grayscale=grayscale)
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    c = 1 if grayscale else 3
    x = src.sample(5)
    assert src.shape == (c, h, w) and src.size is None and src.name == name
    assert x.shape == (5, c, h, w) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert bool(torch.isfinite(x).all())
    assert src.images([]).shape == (0, c, h, w)
    with pytest.raises(IndexError):
        src.images([-1])


@pytest.mark.parametrize("name", ["natural", "deadleaves"])
def test_bounded_sources_stay_in_range(name):
    x = make_source(name).sample(32)
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert x.std() > 0.2  # they use the range, not a sliver of it


def test_white_noise_std_and_flat_spectrum():
    x = make_source("white", std=0.3).sample(64)
    assert abs(float(x.std()) - 0.3) < 0.01
    spec = radial_power_spectrum(x)
    power = spec.power.mean((0, 1))[1:]
    assert torch.allclose(power, torch.full_like(power, 0.09), rtol=0.1)


# --------------------------------------------------------------------------------------------------------------
# natural photographs
# --------------------------------------------------------------------------------------------------------------
def test_natural_split_is_by_photograph():
    assert set(NATURAL_PHOTOS["train"]).isdisjoint(NATURAL_PHOTOS["test"])
    assert len(NATURAL_PHOTOS["test"]) >= 2 and len(NATURAL_PHOTOS["train"]) >= 5


def _photos_containing(crops: torch.Tensor) -> list[set[str]]:
    """For each crop ``(M, 1, h, w)``, the names of the (grayscale) photographs that contain it exactly."""
    found = [set() for _ in crops]
    for name in NATURAL_PHOTOS["train"] + NATURAL_PHOTOS["test"]:
        photo = luma(data._photo(name)[None].float() / 127.5 - 1)
        # squared distance at every offset, sum(p²) - 2·sum(p·k) + sum(k²), in float32 to find candidates fast ...
        ssd = (F.conv2d(photo.square(), torch.ones_like(crops[:1])) - 2 * F.conv2d(photo, crops)
               + crops.square().sum((1, 2, 3))[None, :, None, None])[0]
        for m, y, x in torch.nonzero(ssd < 1e-2).tolist()[:1000]:  # ... then check the candidates exactly
            patch = photo[0, :, y:y + crops.shape[2], x:x + crops.shape[3]]
            if float((patch - crops[m]).abs().max()) < 1e-5:
                found[m].add(name)
    return found


def test_natural_crops_come_only_from_their_split():
    # max_crop tiny: every crop is taken at scale 1, so it is an exact piece of one photograph
    crops, splits = [], []
    for split in ("train", "test"):
        x = make_source("natural", resolution=8, grayscale=True, split=split, max_crop=0.001, flip=False,
                        seed=1).sample(6)
        x = x[x.std(dim=(1, 2, 3)) > 0.02]  # a flat patch (sky, black background) could be anywhere
        assert len(x) >= 3
        crops.append(x)
        splits += [split] * len(x)
    for split, found in zip(splits, _photos_containing(torch.cat(crops))):
        assert found and found <= set(NATURAL_PHOTOS[split]), (split, found)


def test_natural_grayscale_is_luma_of_rgb():
    rgb = make_source("natural", seed=5).sample(16)
    gray = make_source("natural", seed=5, grayscale=True).sample(16)
    assert torch.allclose(gray, luma(rgb), atol=1e-5)


def test_natural_uses_several_photographs_and_scales():
    x = make_source("natural", seed=2, max_crop=1.0).sample(64)
    # a mixture of photographs and scales: per-crop contrast varies widely
    std = x.std(dim=(1, 2, 3))
    assert float(std.max() / std.min()) > 3


# --------------------------------------------------------------------------------------------------------------
# spectra of the procedural sources
# --------------------------------------------------------------------------------------------------------------
def _slope(x: torch.Tensor, fmin: float = 1 / 32, fmax: float = 0.5) -> float:
    spec = radial_power_spectrum(x)
    return float(spectral_slope(spec.freq, spec.power.mean((0, 1)), fmin, fmax).slope)


def test_deadleaves_spectrum_is_natural_like():
    # the scale-invariant model (radii ∝ r⁻³) gives about f⁻²; sub-pixel discs at rmin = 1 px flatten the top
    # octave a little: the measured slope over [1/32, 1/2] is -1.87 ± 0.02 across seeds (256 images each)
    x = make_source("deadleaves", grayscale=True).sample(128)
    assert -2.2 < _slope(x) < -1.6
    # larger smallest discs remove fine detail: the spectrum must get steeper (the options are wired)
    steeper = make_source("deadleaves", grayscale=True, rmin=4.0).sample(64)
    assert _slope(steeper) < _slope(x) - 0.2


def test_deadleaves_are_piecewise_constant_discs():
    x = make_source("deadleaves", resolution=32, color="gray").sample(8)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])  # one gray level per leaf
    for img in x[:, 0]:
        assert len(torch.unique(img)) < 0.6 * img.numel()  # occluding leaves, not per-pixel noise


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0])
def test_grf_spectrum_follows_the_exponent(exponent):
    x = make_source("grf", exponent=exponent, grayscale=True).sample(512)
    spec = radial_power_spectrum(x.double())
    power = spec.power.mean((0, 1))
    # the lowest bins average f^-exponent over a wide relative range, which bends the fit: start at 2 cycles/image
    assert abs(float(spectral_slope(spec.freq, power, 2 / 32, 0.5).slope) + exponent) < 0.15
    # and the binned power matches the exact expectation within sampling error (≈ counts/2 independent modes)
    freq, expected = grf_radial_power(exponent)
    assert torch.allclose(freq.float(), spec.freq.float())
    tol = 6 * torch.sqrt(2 / (spec.counts[1:].double() * x.shape[0]))
    assert bool(((power[1:] / expected[1:] - 1).abs() < tol).all())


def test_grf_normalisation_and_range():
    h, w = 24, 40
    p = grf_power(radial_frequency(h, w), 2.0, std=0.25, resolution=(h, w))
    weights = torch.full((h, w // 2 + 1), 2.0, dtype=torch.float64)  # half plane → full plane
    weights[:, 0] = weights[:, -1] = 1.0
    assert abs(float((p * weights).sum() / (h * w)) - 0.25**2) < 1e-12  # pixel variance by Parseval
    assert float(grf_power(0.0)) == 0.0
    x = make_source("grf", resolution=(h, w)).sample(256)
    assert abs(float(x.std()) - 0.25) < 0.01
    assert torch.allclose(x.mean((2, 3)), torch.zeros(256, 3), atol=1e-5)  # DC mode is zero
    assert float((x.abs() > 1).float().mean()) < 1e-3  # unclipped, but 4σ excursions are rare


# --------------------------------------------------------------------------------------------------------------
# folder
# --------------------------------------------------------------------------------------------------------------
def _write_folder(root):
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 40), (255, 0, 0)).save(root / "a_red.png")
    Image.new("RGB", (64, 32), (0, 255, 0)).save(root / "b_green.jpg", quality=100)
    Image.new("L", (40, 60), 0).save(root / "sub" / "c_black.png")
    (root / "notes.txt").write_text("not an image")


def test_folder_loads_sorted_recursive_and_resized(tmp_path):
    _write_folder(tmp_path)
    src = make_source("folder", path=str(tmp_path), resolution=(8, 12))
    assert src.size == 3 and src.shape == (3, 8, 12)
    x = src.sample(3)
    assert x.shape == (3, 3, 8, 12) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(x[0].mean((1, 2)), torch.tensor([1.0, -1.0, -1.0]), atol=1e-6)  # a_red.png
    assert torch.allclose(x[1].mean((1, 2)), torch.tensor([-1.0, 1.0, -1.0]), atol=0.05)  # b_green.jpg (JPEG)
    assert torch.allclose(x[2], torch.full_like(x[2], -1.0))  # sub/c_black.png, gray replicated to RGB
    gray = make_source("folder", path=tmp_path, grayscale=True).sample(3)
    assert gray.shape == (3, 1, 32, 32)
    assert abs(float(gray[0].mean()) - (0.299 * 255 / 127.5 - 1)) < 0.01
    with pytest.raises(IndexError, match="3 images"):
        src.images([3])
    with pytest.raises(ValueError, match="only 3 images"):
        src.sample(4)


def test_folder_says_in_one_line_each_what_it_skipped(tmp_path, capsys):
    _write_folder(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    (tmp_path / "notes.txt").write_text("not an image")
    src = make_source("folder", path=tmp_path)
    assert src.size == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "1 file(s)" in err[0] and ".txt" in err[0]  # not an image: counted
    assert "skipped 1 unreadable image file(s) of 4" in err[1] and "broken.png" in err[1]  # one line, no warning


def test_tiff_files_are_read_16_bit_included(tmp_path):
    from PIL import Image

    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)  # 16-bit values beyond 8 bits
    Image.fromarray(ramp).save(tmp_path / "a.tif")
    Image.fromarray(np.full((64, 64, 3), 200, dtype=np.uint8)).save(tmp_path / "b.tiff")
    src = make_source("folder", path=tmp_path, grayscale=True)
    assert src.size == 2
    x = src.images([0, 1])
    assert x.shape == (2, 1, 32, 32) and float(x[0].max()) > 0.8 and float(x[0].min()) < -0.8


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        make_source("folder", path=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="empty"):
        make_source("folder", path=tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="could be read"):
        make_source("folder", path=tmp_path / "bad")


# --------------------------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------------------------
def _cifar_batch(n: int, offset: int) -> dict:
    rng = np.random.default_rng(offset)
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    images[0] = 0
    images[0, 0] = 255  # the first image of every batch is pure red
    images[0, 1, :, :16] = 255  # ... with a green left half (checks row-major H, W order)
    return {b"batch_label": b"fake", b"labels": list(range(n)), b"data": images.reshape(n, 3072),
            b"filenames": [b"img%d.png" % (offset + i) for i in range(n)]}


def _write_cifar(root, protocol=2):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i in range(1, 6):
        with open(d / f"data_batch_{i}", "wb") as fh:
            pickle.dump(_cifar_batch(4, 10 * i), fh, protocol=protocol)
    with open(d / "test_batch", "wb") as fh:
        pickle.dump(_cifar_batch(3, 99), fh, protocol=protocol)
    return d


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_reads_the_python_batches(tmp_path, protocol):
    d = _write_cifar(tmp_path, protocol)
    train = make_source("cifar10", path=tmp_path)  # the parent of cifar-10-batches-py is accepted
    test = make_source("cifar10", path=d, split="test")
    assert train.size == 20 and test.size == 3 and train.shape == (3, 32, 32)
    x = train.images([0, 1, 4])
    expected = torch.from_numpy(_cifar_batch(4, 10)[b"data"][1].reshape(3, 32, 32)).float() / 127.5 - 1
    assert torch.allclose(x[1], expected)
    for img in (x[0], x[2]):  # red everywhere, green on the left half
        assert torch.all(img[0] == 1) and torch.all(img[2] == -1)
        assert torch.all(img[1, :, :16] == 1) and torch.all(img[1, :, 16:] == -1)
    small = make_source("cifar10", path=d, split="test", resolution=16, grayscale=True)
    assert small.sample(3).shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match="3 images"):
        test.sample(5)


def test_cifar10_missing_batches(tmp_path):
    d = _write_cifar(tmp_path)
    os.remove(d / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        make_source("cifar10", path=d)
    assert make_source("cifar10", path=d, split="test").size == 3
    with pytest.raises(FileNotFoundError, match="nothing"):
        make_source("cifar10", path=tmp_path / "nothing")


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):  # on load, a naive unpickler would call os.mkdir(target)
        return (os.mkdir, (self.target,))


def test_cifar10_refuses_a_malicious_pickle(tmp_path):
    d = _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with open(d / "test_batch", "wb") as fh:
        pickle.dump({b"data": _Exploit(str(marker))}, fh, protocol=2)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        make_source("cifar10", path=d, split="test")
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------------------------
def _reference(n=5, h=8, w=6):
    """uint8 (N, H, W, 3) with distinct channels, and the float image in [-1, 1] as (N, 3, H, W)."""
    arr = np.random.default_rng(0).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
    return arr, torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.mark.parametrize("layout", ["uint8 NHWC", "uint8 NCHW", "float01 NHWC", "float11 NCHW", "float255 NHWC",
                                    "npz images", "npz single"])
def test_array_layouts_and_ranges(tmp_path, layout):
    arr, expected = _reference()
    kind, order = layout.split()
    x = arr.transpose(0, 3, 1, 2) if order == "NCHW" else arr
    x = {"uint8": x, "float01": x / 255.0, "float11": x / 127.5 - 1, "float255": x.astype(np.float32)}.get(kind, x)
    if kind == "npz":
        path = tmp_path / "a.npz"
        if order == "images":
            np.savez(path, labels=np.arange(5), images=x)
        else:
            np.savez(path, whatever=x)
    else:
        path = tmp_path / "a.npy"
        np.save(path, x)
    src = make_source("array", path=str(path), resolution=(8, 6))
    assert src.size == 5 and src.shape == (3, 8, 6)
    assert torch.allclose(src.sample(5), expected, atol=1e-5)


def test_array_grayscale_resize_and_key(tmp_path):
    arr, expected = _reference()
    np.save(tmp_path / "g.npy", arr[..., 0])  # (N, H, W)
    gray = make_source("array", path=tmp_path / "g.npy", resolution=(8, 6), grayscale=True).sample(5)
    assert torch.allclose(gray[:, 0], expected[:, 0], atol=1e-6)
    rgb = make_source("array", path=tmp_path / "g.npy", resolution=(8, 6)).sample(5)
    assert torch.equal(rgb[:, 0], rgb[:, 2])
    np.save(tmp_path / "flat.npy", np.full((2, 16, 16, 3), 255, np.uint8))
    assert torch.allclose(make_source("array", path=tmp_path / "flat.npy", resolution=4).sample(2),
                          torch.ones(2, 3, 4, 4))
    np.savez(tmp_path / "two.npz", a=arr, b=arr[:2])
    with pytest.raises(ValueError, match="key"):
        make_source("array", path=tmp_path / "two.npz")
    assert make_source("array", path=tmp_path / "two.npz", key="b", resolution=(8, 6)).size == 2


@pytest.mark.parametrize("shape", [(5, 8), (2, 3, 8, 8, 3), (5, 8, 8, 7)])
def test_array_wrong_shape(tmp_path, shape):
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match=r"bad\.npy") as err:
        make_source("array", path=path)
    assert str(shape[-1]) in str(err.value)


def test_array_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        make_source("array", path=tmp_path / "missing.npy")
    np.save(tmp_path / "big.npy", np.linspace(0, 1000, 2 * 8 * 8 * 3).reshape(2, 8, 8, 3))
    with pytest.raises(ValueError, match="value_range"):
        make_source("array", path=tmp_path / "big.npy")
    scaled = make_source("array", path=tmp_path / "big.npy", value_range=(0, 1000), resolution=8).sample(2)
    assert float(scaled.min()) == -1 and float(scaled.max()) == 1
    np.save(tmp_path / "nan.npy", np.full((2, 8, 8), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        make_source("array", path=tmp_path / "nan.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        make_source("array", path=tmp_path / "obj.npy")
    with pytest.raises(DataIndexError):
        make_source("array", path=tmp_path / "big.npy", value_range=(0, 1000), resolution=8).images([0, 2])


def test_folder_tiles_keep_pixels_as_they_are_for_any_sizes(tmp_path):
    rng = np.random.default_rng(3)
    big = rng.integers(0, 256, (40, 40), dtype=np.uint8)  # 5 x 5 tiles of 8x8
    odd = rng.integers(0, 256, (20, 36), dtype=np.uint8)  # 2 x 4 tiles, centred: 2 rows top, 2 columns left left out
    Image.fromarray(big).save(tmp_path / "a_big.png")
    Image.fromarray(odd).save(tmp_path / "b_odd.png")
    src = make_source("folder", path=tmp_path, resolution=8, grayscale=True, tiles=True)
    assert src.size == 25 + 8
    x = src.images(range(src.size))
    expected_first = torch.from_numpy(big[:8, :8].astype(np.float32)) / 127.5 - 1
    assert torch.allclose(x[0, 0], expected_first)  # nothing resampled
    assert torch.allclose(x[25, 0], torch.from_numpy(odd[2:10, 2:10].astype(np.float32)) / 127.5 - 1)
    with pytest.raises(ValueError, match="must be a bool"):
        make_source("folder", path=tmp_path, resolution=8, tiles="maybe")
