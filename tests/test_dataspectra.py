import pytest
import xarray as xr

from freqlab import dataspectra, plots, results
from freqlab.cli import main


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
    assert "grf: slope" in dataspectra.summary(ds)
    fig = plots.data_spectra_figure(ds)
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"


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
