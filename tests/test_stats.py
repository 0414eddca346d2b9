import pytest
import torch
import xarray as xr

from freqlab import spectral
from freqlab.measure.accumulators import CrossSpectrumAccumulator, SpectrumAccumulator


def test_streaming_equals_single_pass_and_merge():
    x = torch.rand(50, 3, 7, dtype=torch.float64)
    one = SpectrumAccumulator().update(x)
    batched = SpectrumAccumulator()
    for chunk in x.split(8):
        batched.update(chunk)
    a, b = SpectrumAccumulator().update(x[:13]), SpectrumAccumulator().update(x[13:])
    merged = a.merge(b)
    for acc in (batched, merged):
        assert acc.count == 50
        assert torch.allclose(acc.mean, x.mean(0))
        assert torch.allclose(acc.var, x.var(0))
        assert torch.allclose(acc.sem, x.std(0) / 50**0.5)
    assert torch.allclose(one.mean, merged.mean)
    empty = SpectrumAccumulator()
    assert torch.allclose(empty.merge(one).mean, one.mean)


def test_confidence_interval_covers_true_mean():
    torch.manual_seed(1)
    hits = 0
    for _ in range(200):
        acc = SpectrumAccumulator().update(torch.randn(40, 1))
        lo, hi = acc.ci(0.9)
        hits += int(lo <= 0 <= hi)
    assert 160 <= hits <= 196  # about 90% coverage


def test_state_dict_round_trip_and_errors():
    acc = SpectrumAccumulator().update(torch.rand(5, 4))
    clone = SpectrumAccumulator().load_state_dict(acc.state_dict())
    assert clone.count == 5 and torch.equal(clone.sum, acc.sum)
    with pytest.raises(ValueError, match="does not match"):
        acc.update(torch.rand(3, 5))
    with pytest.raises(ValueError, match="NaN or Inf"):
        acc.update(torch.tensor([[float("nan")] * 4]))
    with pytest.raises(ValueError, match="at least 2"):
        SpectrumAccumulator().update(torch.rand(1, 4)).var


def test_xarray_round_trip(tmp_path):
    x = torch.randn(64, 3, 16, 16)
    acc = SpectrumAccumulator()
    spec = spectral.radial_power_spectrum(x)
    acc.update(spec.power)
    ds = acc.to_dataset(spec.freq)
    assert ds["mean"].dims == ("channel", "freq") and ds.freq.attrs["units"] == "cycles/pixel"
    path = tmp_path / "acc.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    back = SpectrumAccumulator.from_dataset(xr.load_dataset(path, engine="h5netcdf"))
    assert back.count == 64
    assert torch.allclose(back.mean, acc.mean) and torch.allclose(back.var, acc.var)
    da = acc.to_dataarray(spec.freq, name="data_power")
    assert da.name == "data_power" and da.shape == (3, spec.freq.numel())


def test_cross_accumulator_wiener_like():
    x0 = torch.randn(128, 32, 32, dtype=torch.float64)
    noise = torch.randn_like(x0)
    out = 0.8 * (x0 + 0.5 * noise)  # a flat "filter" on white data: transfer 0.8, coherence 1/(1+0.25)
    acc = CrossSpectrumAccumulator()
    for a, b in zip(out.split(32), x0.split(32)):
        acc.update_images(a, b)
    assert acc.count == 128
    assert torch.allclose(acc.transfer[1:], torch.full((16,), 0.8, dtype=torch.float64), atol=0.05)
    assert torch.allclose(acc.coherence[1:], torch.full((16,), 0.8, dtype=torch.float64), atol=0.06)
    clone = CrossSpectrumAccumulator().load_state_dict(acc.state_dict())
    assert torch.allclose(clone.coherence, acc.coherence)
