"""Per-layer feature spectra (freqlab.inside.layer_spectra): the blocks found, the hook's spectrum against an analytic
answer and against radial_power_spectrum, the mapping of coarse grids onto image frequencies, the inputs (the
sweep's), no hook left behind, the command and the figure."""

import matplotlib
import numpy as np
import pytest
import torch
from test_edm_finetune import edm_pickle  # noqa: F401 (a fixture: the EDM-shaped network, pickled as EDM does)

from freqlab.checkpoints import store as checkpoints
from freqlab.cli import main
from freqlab.data.sources import make_source
from freqlab.inside import layer_spectra
from freqlab.measure import core as measure
from freqlab.models import unet_blocks
from freqlab.models.denoisers import Denoiser
from freqlab.plots import layers as layer_plots
from freqlab.runtime.rng import per_sample_randn
from freqlab.spectral import radial_power_spectrum

SHAPE = (3, 16, 16)


class Probe(Denoiser):
    """A denoiser made of EDM-style ``enc``/``dec`` blocks, run one after the other; records its inputs."""

    def __init__(self, enc, dec=None, shape=SHAPE):
        super().__init__(image_shape=shape, sigma_min=0.01, sigma_max=20.0, sigma_data=0.5)
        self.enc = torch.nn.ModuleDict(enc)
        self.dec = torch.nn.ModuleDict(dec or {})
        self.inputs = []

    def _denoise(self, x, sigma):
        self.inputs.append(x.clone())
        h = x
        for block in [*self.enc.values(), *self.dec.values()]:
            h = block(h)
        return h


def box_blur(channels=3):
    """A fixed 3x3 averaging conv per channel (a low-pass)."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1 / 9)
    return conv


def white_probe():
    return Probe({"16x16_id": torch.nn.Identity(), "16x16_box": box_blur(), "8x8_pool": torch.nn.AvgPool2d(2)},
                 {"16x16_up": torch.nn.Upsample(scale_factor=2)})


def run(model, **kw):
    kw = {"n_images": 64, "batch_size": 32, "device": "cpu", "progress": False, "sigmas": [1.0], **kw}
    return layer_spectra.layer_spectra(model, **kw)


# ------------------------------------------------------------------------------------------------------ blocks
def test_diffusers_blocks_in_forward_order_with_their_resolutions(make_tiny_run):
    d = checkpoints.load_denoiser(make_tiny_run([(0, 0)]) / "checkpoints" / "step-000000")
    assert list(unet_blocks.unet_blocks(d))[:3] == ["conv_in", "down_blocks.0.resnets.0",
                                                     "down_blocks.0.downsamplers.0"]
    infos, skipped = unet_blocks.describe_blocks(d)
    assert skipped == []
    got = [(i.name, i.stage, i.height, i.channels) for i in infos]
    assert got == [("conv_in", "in", 16, 8), ("down_blocks.0.resnets.0", "down", 16, 8),
                   ("down_blocks.0.downsamplers.0", "down", 8, 8), ("down_blocks.1.resnets.0", "down", 8, 16),
                   ("mid_block", "mid", 8, 16), ("up_blocks.0.resnets.0", "up", 8, 16),
                   ("up_blocks.0.resnets.1", "up", 8, 16), ("up_blocks.0.upsamplers.0", "up", 16, 16),
                   ("up_blocks.1.resnets.0", "up", 16, 8), ("up_blocks.1.resnets.1", "up", 16, 8),
                   ("conv_out", "out", 16, 1)]


@pytest.fixture(scope="module")
def edm_network(edm_pickle):  # noqa: F811 (the imported fixture)
    """The EDM-shaped network of test_edm_finetune, pickled as EDM does and loaded through load_denoiser."""
    return checkpoints.load_denoiser(edm_pickle, trust_pickle=True)


def test_edm_network_blocks_and_a_measurement(edm_network):
    infos, _ = unet_blocks.describe_blocks(edm_network)
    assert [(i.name, i.stage, i.height, i.width, i.channels) for i in infos] == [
        ("enc.8x8_conv", "enc", 8, 8, 8), ("enc.8x8_block0", "enc", 8, 8, 8), ("dec.8x8_block0", "dec", 8, 8, 8),
        ("dec.8x8_block1", "dec", 8, 8, 8), ("dec.8x8_aux_norm", "dec", 8, 8, 8), ("dec.8x8_aux_conv", "dec", 8, 8, 3)]
    ds = run(edm_network, n_images=4, sigmas=[0.5, 80.0], random_init=True)
    assert list(ds.checkpoint.values) == ["model0", "random-init"]
    assert bool(ds.layer_power.notnull().all()) and list(ds.layer_stage.values[:2]) == ["enc", "enc"]


def test_unknown_architectures_and_bad_input_are_one_line_errors():
    with pytest.raises(ValueError, match="supported: EDMDenoiser"):
        unet_blocks.unet_blocks(torch.nn.Linear(2, 2))
    flat = Probe({"vector": torch.nn.Flatten()})
    with pytest.raises(ValueError, match="no hookable blocks"):
        run(flat, n_images=2)
    with pytest.raises(ValueError, match="mode must be one of"):
        run(white_probe(), mode="sideways")
    with pytest.raises(ValueError, match="n_images must be a whole number of at least 2"):
        run(white_probe(), n_images=1)


# ------------------------------------------------------------------------------------------------ the spectrum
def test_white_noise_through_an_identity_is_flat_and_a_blur_keeps_less_high_band():
    ds = run(white_probe(), n_images=128)
    ident = ds.layer_power.sel(layer="enc.16x16_id").isel(checkpoint=0, sigma=0)
    modes = int(ds.layer_modes.sel(layer="enc.16x16_id"))
    share = ident.values[1:] * modes  # 1 where a mode holds exactly its equal share of the layer's power
    assert np.all(np.abs(share[1:] - 1) < 0.1), share  # bin 1 is lowered a few % by removing the mean first
    assert abs(share[0] - 1) < 0.2, share
    counts, freq = ds.freq_count.values, ds.freq.values
    white_high = counts[freq >= 0.25].sum() / counts[1:].sum()
    high = ds.band_share.sel(band="high").isel(checkpoint=0, sigma=0)
    assert abs(float(high.sel(layer="enc.16x16_id")) - white_high) < 0.03
    assert float(high.sel(layer="enc.16x16_box")) < 0.5 * white_high  # the low-pass
    assert np.allclose(ds.band_share.isel(checkpoint=0, sigma=0).sum("band"), 1.0)  # NaN bands skipped


def test_the_hook_spectrum_is_radial_power_spectrum_of_the_sweeps_generate_input():
    model = white_probe()
    ds = run(model, n_images=8, batch_size=3, sigmas=[0.5, 2.0], seed=7)
    z = per_sample_randn(7, measure.GENERATE_STREAM, range(8), SHAPE)
    seen = torch.cat(model.inputs[1:])  # the first call is the one-image probe of describe_blocks
    expected = torch.cat([s * z[i: i + 3] for i in range(0, 8, 3) for s in (0.5, 2.0)])
    torch.testing.assert_close(seen, expected, rtol=0, atol=0)
    spec = radial_power_spectrum(2.0 * z.double(), window="hann", remove_mean=True)
    p = spec.power.mean((0, 1)).numpy()
    p = p / (spec.counts.numpy()[1:] * p[1:]).sum()
    np.testing.assert_allclose(ds.layer_power.sel(layer="enc.16x16_id", sigma=2.0).isel(checkpoint=0), p, rtol=1e-4)


def test_denoise_mode_feeds_the_sweeps_images_and_noise():
    model = white_probe()
    run(model, data="white", mode="denoise", n_images=4, batch_size=4, sigmas=[0.3], seed=3)
    x0 = make_source("white", resolution=(16, 16), grayscale=False, split="test").images(range(4))
    n = per_sample_randn(3, "sweep/denoise", range(4), SHAPE)
    torch.testing.assert_close(model.inputs[-1], x0 + 0.3 * n)


def test_a_half_resolution_layer_is_nan_above_its_nyquist_and_has_no_high_band():
    ds = run(white_probe(), n_images=16)
    pool = ds.sel(layer="enc.8x8_pool").isel(checkpoint=0, sigma=0)
    above = ds.freq.values > 0.25
    assert bool(pool.layer_power[above].isnull().all()) and bool(pool.layer_power[~above].notnull().all())
    assert np.isnan(float(pool.band_share.sel(band="high")))
    assert abs(float(pool.band_share.sel(band=["low", "mid"]).sum()) - 1) < 1e-9
    assert int(pool.layer_resolution) == 8 and float(pool.layer_scale) == 0.5
    np.testing.assert_allclose(pool.freq_layer[~above], 2 * ds.freq.values[~above])
    full = ds.sel(layer="dec.16x16_up").isel(checkpoint=0, sigma=0)
    assert float(full.band_share.sel(band="high")) >= 0 and bool(full.layer_power.notnull().all())


def test_no_hook_or_activation_is_left_behind_even_on_failure():
    model = white_probe()
    run(model, n_images=4)
    assert all(not m._forward_hooks for m in model.modules())

    class FailsOnBatches(torch.nn.Module):
        def forward(self, x):
            if x.shape[0] > 1:
                raise ValueError("boom")
            return x

    broken = Probe({"16x16_id": torch.nn.Identity(), "16x16_fail": FailsOnBatches()})
    with pytest.raises(ValueError, match="boom"):
        run(broken, n_images=4)
    assert all(not m._forward_hooks for m in broken.modules())


# ------------------------------------------------------------------------------------------ command and figure
def test_command_writes_the_file_the_figure_and_a_summary(make_tiny_run, tmp_path, capsys):
    run_dir = make_tiny_run([(0, 0), (10, 1)])
    out = tmp_path / "layers"
    assert main(["layers", str(run_dir), "--n-images", "4", "--n-sigmas", "2", "--out", str(out), "--quiet",
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert {p.name for p in out.iterdir()} >= {"layer_spectra.nc", "layer_spectra.png", "layer_spectra.pdf"}
    assert "high band" in captured.out and "step-000010:" in captured.out and "(16x16)" in captured.out
    assert "wrote" in captured.err
    assert main(["layers", str(run_dir), "--n-images", "1", "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_images" in err[0]
    with pytest.raises(SystemExit) as exit_info:
        main(["layers", str(run_dir), "--mode", "sideways"])
    assert exit_info.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_figure_for_one_and_two_checkpoints():
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = run({"a": white_probe(), "b": white_probe()}, n_images=4, sigmas=[0.1, 1.0, 5.0, 10.0, 20.0])
    for axes in (layer_plots.layer_spectra_figure(ds), layer_plots.layer_spectra_figure(ds, "b"),
                layer_plots.layer_spectra_figure(ds.isel(checkpoint=[0]), relative_to_white=False)):
        assert all(isinstance(ax, plt.Axes) for ax in axes.flat)
        plt.close(axes.flat[0].figure)
    assert layer_plots.pick_sigmas(ds)[-1] == 20.0 and len(layer_plots.pick_sigmas(ds)) == 4
    with pytest.raises(ValueError, match="not in the file"):
        layer_plots.layer_spectra_figure(ds, "c")
