import numpy as np
import pytest
import xarray as xr

from freqlab.cli import main
from freqlab.measure import data_spectra as dataspectra
from freqlab.plots import data as data_plots
from freqlab.runtime import results


def test_data_spectra_dataset_and_slopes():
    ds = dataspectra.data_spectra(("grf", "white"), n_images=128, batch_size=50, resolution=32, progress=False)
    assert ds.data_power.dims == ("source", "channel", "freq")
    assert ds.data_band_kurtosis.dims == ("source", "channel", "band")
    assert list(ds.source.values) == ["grf", "white"]
    assert float(ds.slope.sel(source="grf")) == pytest.approx(-2.0, abs=0.15)  # grf default exponent 2
    assert abs(float(ds.slope.sel(source="white"))) < 0.05
    assert (ds.data_power_sem > 0).all()
    # Gaussian sources: band-pass kurtosis 3 where a band holds many modes (the same code as the sweep's)
    assert abs(float(ds.data_band_kurtosis.sel(band="high").mean()) - 3.0) < 0.1
    assert "grf: slope" in dataspectra.summarize(ds)
    ax = data_plots.data_spectra_figure(ds)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


def test_spectra_command_writes_netcdf_and_figure(tmp_path, capsys):
    rc = main(["spectra", "--sources", "white,grf", "--n-images", "64", "--out", str(tmp_path)])
    assert rc == 0
    ds = results.load(tmp_path / "data_spectra.nc")
    assert isinstance(ds, xr.Dataset) and ds.sizes["source"] == 2
    assert (tmp_path / "data_spectra.png").stat().st_size > 10_000
    assert (tmp_path / "data_spectra.pdf").exists()
    assert "slope" in capsys.readouterr().out


def test_spectra_command_bad_input_is_one_line(tmp_path, capsys):
    assert main(["spectra", "--sources", "nosuchdata", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("freqlab spectra: error:") and "unknown data source" in err and "\n" not in err
    assert main(["spectra", "--window", "triangle", "--sources", "white", "--n-images", "8", "--out", str(tmp_path)]) == 2
    assert "unknown window" in capsys.readouterr().err


def test_two_folders_side_by_side_each_labelled_by_its_name(tmp_path, capsys):
    """Two image folders (real vs generated) in one file and figure; same-named folders get their own rows."""
    from PIL import Image

    from freqlab.cli import main
    from freqlab.data.sources import source_for_path

    rng = np.random.default_rng(0)
    for name, smooth in (("real", True), ("samples", False)):
        (tmp_path / name).mkdir()
        for i in range(6):
            noise = rng.standard_normal((40, 40))
            if smooth:  # a 1/f²-like field: its spectrum falls, white noise's does not
                noise = np.cumsum(np.cumsum(noise, 0), 1)
            img = ((noise - noise.min()) / np.ptp(noise) * 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / name / f"{i}.png")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "samples").mkdir()
    for i in range(6):
        (tmp_path / "other" / "samples" / f"{i}.png").write_bytes((tmp_path / "samples" / f"{i}.png").read_bytes())
    np.save(tmp_path / "arr.npy", rng.uniform(0, 1, (6, 16, 16)).astype(np.float32))
    assert source_for_path(tmp_path / "arr.npy", resolution=16).name == "arr"
    out = tmp_path / "out"
    assert main(["spectra", "--data-path", str(tmp_path / "real"), "--data-path", str(tmp_path / "samples"),
                 "--data-path", str(tmp_path / "other" / "samples"), "--grayscale", "--n-images", "6",
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "real: slope" in printed and "samples: slope" in printed and "samples-2: slope" in printed
    ds = results.load(out / "data_spectra.nc")
    assert list(ds.source.values) == ["real", "samples", "samples-2"]
    assert float(ds.slope.sel(source="real")) < -1.5 and abs(float(ds.slope.sel(source="samples"))) < 0.5
    assert (out / "data_spectra.png").exists()


def test_each_image_gets_its_own_slope_and_the_spread_is_reported():
    import numpy as np
    import torch

    from freqlab.data.files import ArraySource

    few = ArraySource("five", torch.rand(5, 3, 32, 32) * 2 - 1, (32, 32), 3, {})  # white noise, 5 images
    ds = dataspectra.data_spectra(["grf", "white", few], n_images=64, progress=False)
    slopes = ds.image_slope
    assert slopes.dims == ("source", "image") and slopes.sizes["image"] == 64
    grf, white = (np.nanmedian(slopes.sel(source=s).values) for s in ("grf", "white"))
    assert abs(grf + 2.0) < 0.1 and abs(white) < 0.1  # P ∝ f^-2 and flat, image by image too
    assert np.isfinite(slopes.sel(source="five").values[:5]).all()
    assert np.isnan(slopes.sel(source="five").values[5:]).all()  # padded past the source's images
    assert "one image at a time: median" in dataspectra.summarize(ds)
