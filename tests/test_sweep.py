"""The one-step spectral sweep: end to end against the analytic Wiener filter, determinism, resume, bad input."""

import math

import numpy as np
import pytest
import torch
import xarray as xr
from test_edm_finetune import edm_pickle  # noqa: F401 (a fixture: an EDM-shaped network pickled as EDM does)

from freqlab import spectral
from freqlab.data.sources import grf_power, make_source
from freqlab.measure import sigmas
from freqlab.models.denoisers import Denoiser
from freqlab.models.linear import WienerDenoiser
from freqlab.runtime import results
from freqlab.runtime.rng import per_sample_randn
from freqlab.sweep import study as sw
from freqlab.sweep.dataset import summarize


# --------------------------------------------------------------------------------------------------------------
# small models
# --------------------------------------------------------------------------------------------------------------
class TinyDenoiser(Denoiser):
    """A fixed random conv net with a σ-dependent skip: nonlinear, cheap, deterministic."""

    def __init__(self, shape=(1, 16, 16), seed=0):
        super().__init__(image_shape=shape, sigma_min=0.01, sigma_max=10.0, sigma_data=0.5, size_multiple=1)
        g = torch.Generator().manual_seed(seed)
        c = shape[0]
        self.conv1 = torch.nn.Conv2d(c, 4, 3, padding=1, padding_mode="circular")
        self.conv2 = torch.nn.Conv2d(4, c, 3, padding=1, padding_mode="circular")
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def _denoise(self, x, sigma):
        c_skip = (0.25 / (sigma**2 + 0.25)).view(-1, 1, 1, 1)
        return c_skip * x + (1 - c_skip) * self.conv2(torch.tanh(self.conv1(x)))


class Scale(Denoiser):
    """``D(x, σ) = a·x``: outputs whose spectra are easy to compute independently."""

    def __init__(self, a=0.5, shape=(1, 16, 16)):
        super().__init__(image_shape=shape, sigma_min=0.01, sigma_max=10.0, sigma_data=0.5, size_multiple=1)
        self.a = a

    def _denoise(self, x, sigma):
        return self.a * x


class Crash(Denoiser):
    """Raises when called: stands for a process killed during this checkpoint."""

    def __init__(self, shape=(1, 16, 16)):
        super().__init__(image_shape=shape, sigma_min=0.01, sigma_max=10.0, sigma_data=0.5, size_multiple=1)

    def _denoise(self, x, sigma):
        raise RuntimeError("simulated crash")


SMALL = dict(n_images=12, batch_size=5, seed=3, device="cpu", progress=False)
HANN = dict(window="hann", remove_mean=True)  # the sweep's default spectra: each image's mean removed, then Hann
SIGMAS = [0.05, 0.5, 4.0]


@pytest.fixture(scope="module")
def white16():
    return make_source("white", resolution=16, grayscale=True, split="test")


# --------------------------------------------------------------------------------------------------------------
# end to end: the Wiener filter on Gaussian random fields reproduces the analytic curves
# --------------------------------------------------------------------------------------------------------------
def _analytic(sigmas, h=32, w=32):
    """Analytic per-mode Wiener curves for the grf source, binned exactly like the sweep."""
    binning = spectral.radial_binning(h, w, dtype=torch.float64)
    m = binning.matrix[0::2] if binning.matrix.shape[0] == 2 * h * (w // 2 + 1) else binning.matrix
    p = grf_power(spectral.radial_frequency(h, w)).flatten()
    out = {}
    for s in sigmas:
        hk = p / (p + s * s)
        out[s] = {"output": (p * hk) @ m, "error": (s * s * hk) @ m, "transfer": ((p * hk) @ m) / (p @ m),
                  "generate": (hk * hk * s * s) @ m, "data": p @ m}
    return out


def test_wiener_on_gaussian_fields_matches_the_analytic_curves():
    src = make_source("grf", resolution=32, grayscale=True, split="test")
    f = torch.linspace(0.0, 0.75, 4001, dtype=torch.float64)  # P(0) = 0: the field has zero mean
    wiener = WienerDenoiser(f, grf_power(f), image_shape=(1, 32, 32))  # the exact filter of this field
    sigmas = [0.03, 0.3, 2.0]
    # no window: the periodic spectrum, for which the per-mode Wiener formulas are exact
    ds = sw.sweep({"wiener": wiener}, src, sigmas, n_images=256, batch_size=64, device="cpu", progress=False,
                  window=None)
    ref = _analytic(sigmas)
    nondc = ds.freq.values > 0
    for s in sigmas:
        d = ds.sel(checkpoint="wiener", sigma=s, channel=0)
        a = {k: v.numpy()[nondc] for k, v in ref[s].items()}

        def close(measured, sem, expected, k=5.0):
            measured, sem = measured.values[nondc], sem.values[nondc]
            assert np.all(np.abs(measured - expected) <= k * sem + 1e-12), (s, measured / expected)

        close(d.data_power, d.data_power_sem, a["data"])
        close(d.output_power.sel(mode="denoise"), d.output_power_sem.sel(mode="denoise"), a["output"])
        close(d.error_power, d.error_power_sem, a["error"])
        close(d.output_power.sel(mode="generate"), d.output_power_sem.sel(mode="generate"), a["generate"])
        np.testing.assert_allclose(d.transfer.values[nondc], a["transfer"], rtol=0.1, atol=0.01)
        # the reference curves the sweep computes from the sampled data agree with the analytic ones ...
        np.testing.assert_allclose(d.wiener_output_power.values[nondc], a["output"], rtol=0.1)
        np.testing.assert_allclose(d.wiener_error_power.values[nondc], a["error"], rtol=0.1)
        np.testing.assert_allclose(d.wiener_transfer.values[nondc], a["transfer"], rtol=0.1, atol=0.01)
        # ... and the measured filter is as good as the reference in every band and in MSE
        np.testing.assert_allclose(d.error_wiener_ratio.values, 1.0, rtol=0.05)
        assert abs(float(d.mse) - float(d.wiener_mse)) <= 4 * float(d.mse_sem) + 1e-4 * float(d.wiener_mse)
        # the Wiener output of a Gaussian field is a Gaussian field: band-pass kurtosis near 3 where a band holds
        # many modes (the low band and heavily filtered outputs are dominated by a few modes and sit below 3)
        kurt = d.band_kurtosis.sel(mode="denoise").values
        np.testing.assert_allclose(kurt[1:], 3.0, atol=0.15)
        if s == sigmas[0]:
            np.testing.assert_allclose(kurt, d.data_band_kurtosis.values, atol=0.05)
    # coherence of a linear filter of signal + independent noise is P/(P+σ²); the transfer of Wiener equals it
    d = ds.sel(checkpoint="wiener", channel=0)
    np.testing.assert_allclose(d.coherence.values[:, nondc], d.wiener_coherence.values[:, nondc], rtol=0.15,
                               atol=0.02)
    # SNR crossover: P(f*) = σ² with P = c²·f⁻² → f* = c/σ (where it falls inside the resolved band); the
    # Wiener filter's coherence per mode is P/(P+σ²), so its coherence cutoff (coherence < 0.5) is f* too
    c = math.sqrt(float(grf_power(torch.tensor([1.0]))[0]))
    for s in sigmas:
        expected = c / s
        got = float(ds.snr_crossover.sel(sigma=s, channel=0))
        cell = ds.sel(checkpoint="wiener", sigma=s, channel=0)
        coh, bound = float(cell.coherence_cutoff), int(cell.coherence_cutoff_bound)
        if ds.freq.values[1] < expected < 0.5:
            assert got == pytest.approx(expected, rel=0.06)
            assert bound == 0 and coh == pytest.approx(expected, rel=0.06), (s, coh, expected)
            assert float(cell.wiener_coherence_cutoff) == pytest.approx(expected, rel=0.06)
        elif expected >= 0.5:
            assert got == pytest.approx(ds.freq.values[-1])
            assert bound == 1 and coh == pytest.approx(ds.freq.values[-1])
        else:
            assert math.isnan(got)
            assert bound == -1 and coh == pytest.approx(ds.freq.values[1])
    assert {int(v) for v in ds.coherence_cutoff_bound.values.flat} == {-1, 0, 1}  # every case above was met


# --------------------------------------------------------------------------------------------------------------
# the fused per-batch analysis agrees with freqlab.spectral's public functions
# --------------------------------------------------------------------------------------------------------------
def test_fused_analysis_equals_spectral_functions(white16):
    a, n = 0.5, 12
    ds = sw.sweep({"scale": Scale(a)}, white16, [0.3, 2.0], **SMALL)
    x0 = white16.images(range(n)).double()
    noise = per_sample_randn(SMALL["seed"], "sweep/denoise", range(n), (1, 16, 16)).double()
    z = per_sample_randn(SMALL["seed"], "sweep/generate", range(n), (1, 16, 16)).double()
    data_stats = spectral.band_statistics(x0)
    for s in (0.3, 2.0):
        y = a * (x0 + s * noise)
        pyy, pxx, pyx = spectral.radial_spectra(y, x0, **HANN)
        perr = spectral.radial_power_spectrum(y - x0, **HANN).power
        d = ds.sel(checkpoint="scale", sigma=s, channel=0)
        np.testing.assert_allclose(d.output_power.sel(mode="denoise"), pyy.power.mean(0)[0], rtol=1e-5)
        np.testing.assert_allclose(d.cross_power, pyx.power.mean(0)[0], rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(d.error_power, perr.mean(0)[0], rtol=1e-5)
        np.testing.assert_allclose(d.data_power, pxx.power.mean(0)[0], rtol=1e-5)
        np.testing.assert_allclose(d.output_power_sem.sel(mode="denoise"), pyy.power.std(0)[0] / math.sqrt(n),
                                   rtol=1e-4)
        np.testing.assert_allclose(d.mse, ((y - x0) ** 2).mean().item(), rtol=1e-5)
        g = a * s * z
        np.testing.assert_allclose(d.output_power.sel(mode="generate"),
                                   spectral.radial_power_spectrum(g, **HANN).power.mean(0)[0], rtol=1e-5)
        for mode, out in (("denoise", y), ("generate", g)):
            st = spectral.band_statistics(out)
            lp, lp_ref = 10 * torch.log10(st.power), 10 * torch.log10(data_stats.power)
            e = d.sel(mode=mode)
            np.testing.assert_allclose(e.band_log_power, lp.mean(0)[0], rtol=1e-5)
            np.testing.assert_allclose(e.band_kurtosis, st.kurtosis.mean(0)[0], rtol=1e-4)
            np.testing.assert_allclose(e.diversity_ratio, spectral.diversity_ratio(lp, lp_ref)[0], rtol=1e-4)
            np.testing.assert_allclose(e.band_power_wasserstein, spectral.wasserstein_1d(lp, lp_ref)[0], rtol=1e-4)
            np.testing.assert_allclose(e.kurtosis_gap, spectral.kurtosis_gap(st.kurtosis, data_stats.kurtosis)[0],
                                       rtol=1e-4, atol=1e-6)
        rel = spectral.relative_power_db(pyy.power.mean(0), pxx.power.mean(0))[0]
        np.testing.assert_allclose(d.relative_power_db.sel(mode="denoise"), rel, rtol=1e-5)
    # the Wasserstein distance from the first few images only (bounded memory); the other statistics use all
    capped = sw.sweep({"scale": Scale(a)}, white16, [0.3, 2.0], wasserstein_images=5, **SMALL)
    g = a * 2.0 * z
    lp, lp_ref = (10 * torch.log10(spectral.band_statistics(v[:5]).power) for v in (g, x0))
    e = capped.sel(checkpoint="scale", sigma=2.0, mode="generate", channel=0)
    np.testing.assert_allclose(e.band_power_wasserstein, spectral.wasserstein_1d(lp, lp_ref)[0], rtol=1e-4)
    xr.testing.assert_allclose(capped.drop_vars("band_power_wasserstein").drop_attrs(),
                               ds.drop_vars("band_power_wasserstein").drop_attrs())
    assert capped.attrs["wasserstein_images"] == 5 and ds.attrs["wasserstein_images"] == n
    # a scale of 0.5 is -6 dB at every frequency: out already at the lowest non-DC bin, an upper bound
    assert np.allclose(ds.cutoff_freq.sel(mode="generate", sigma=0.3), ds.freq.values[1])
    assert np.all(ds.cutoff_freq_bound.sel(mode="generate", sigma=0.3) == -1)


# --------------------------------------------------------------------------------------------------------------
# determinism, batch size, resume
# --------------------------------------------------------------------------------------------------------------
def test_same_seed_same_numbers_and_batch_size_independent(white16):
    models = {"a": TinyDenoiser(seed=1), "b": TinyDenoiser(seed=2)}
    first = sw.sweep(models, white16, SIGMAS, **SMALL)
    again = sw.sweep(models, white16, SIGMAS, **SMALL)
    for ds in (first, again):  # provenance: when each was made
        del ds.attrs["date_created"], ds.attrs["history"]
    xr.testing.assert_identical(first, again)
    other_batch = sw.sweep(models, white16, SIGMAS, **{**SMALL, "batch_size": 12})
    xr.testing.assert_allclose(first, other_batch, rtol=1e-5, atol=1e-9)
    other_seed = sw.sweep(models, white16, SIGMAS, **{**SMALL, "seed": 4})
    assert not np.allclose(first.output_power.values, other_seed.output_power.values)
    # the same images and noise for every checkpoint: identical models give identical rows
    twins = sw.sweep({"x": TinyDenoiser(seed=1), "y": TinyDenoiser(seed=1)}, white16, SIGMAS, **SMALL)
    np.testing.assert_array_equal(twins.output_power.sel(checkpoint="x"), twins.output_power.sel(checkpoint="y"))


def test_resume_after_a_crash_equals_an_uninterrupted_run(white16, tmp_path):
    a, b = TinyDenoiser(seed=1), TinyDenoiser(seed=2)
    full = sw.sweep({"a": a, "b": b}, white16, SIGMAS, **SMALL)

    out = tmp_path / "crashed.nc"
    with pytest.raises(RuntimeError, match="simulated crash"):
        sw.sweep({"a": a, "b": Crash()}, white16, SIGMAS, out=out, **SMALL)
    saved = results.load(out)
    assert list(saved.checkpoint.values) == ["a"]  # the finished checkpoint survived the crash
    # the rerun skips "a" (same weights, so same fingerprint; a crashing forward proves it is never called)
    # and computes "b"
    a._denoise = Crash()._denoise
    resumed = sw.sweep({"a": a, "b": b}, white16, SIGMAS, out=out, **SMALL)
    xr.testing.assert_allclose(resumed, full, rtol=1e-12)
    on_disk = results.load(out)
    xr.testing.assert_allclose(on_disk, full, rtol=1e-12)
    when = ("date_created", "history")  # provenance: when each file was made
    assert {k: v for k, v in on_disk.attrs.items() if k not in when} == \
        {k: v for k, v in results.load(results.save(full, tmp_path / "full.nc")).attrs.items() if k not in when}
    # everything finished: a rerun loads and returns the file
    b._denoise = Crash()._denoise
    xr.testing.assert_allclose(sw.sweep({"a": a, "b": b}, white16, SIGMAS, out=out, **SMALL), full)


def test_a_checkpoint_with_the_same_name_but_other_weights_is_measured_again(white16, tmp_path, capsys):
    out = tmp_path / "r.nc"
    sw.sweep({"a": TinyDenoiser(seed=1), "b": TinyDenoiser(seed=2)}, white16, SIGMAS, out=out, **SMALL)
    resumed = sw.sweep({"a": TinyDenoiser(seed=5), "b": TinyDenoiser(seed=2)}, white16, SIGMAS, out=out, **SMALL)
    assert "1 checkpoint(s)" in capsys.readouterr().err  # said once, naming the checkpoint
    fresh = sw.sweep({"a": TinyDenoiser(seed=5), "b": TinyDenoiser(seed=2)}, white16, SIGMAS, **SMALL)
    xr.testing.assert_allclose(resumed.drop_attrs(), fresh.drop_attrs(), rtol=1e-12)
    assert not np.allclose(resumed.relative_power_db.sel(checkpoint="a"),
                           sw.sweep({"a": TinyDenoiser(seed=1)}, white16, SIGMAS, **SMALL).relative_power_db)


def test_refuses_to_mix_a_different_grid_or_data(white16, tmp_path):
    out = tmp_path / "r.nc"
    sw.sweep({"a": TinyDenoiser()}, white16, SIGMAS, out=out, **SMALL)
    with pytest.raises(ValueError, match=r"different settings \(sigmas: .*overwrite"):
        sw.sweep({"a": TinyDenoiser()}, white16, [0.1, 1.0], out=out, **SMALL)
    other_data = make_source("white", resolution=16, grayscale=True, split="train")
    with pytest.raises(ValueError, match=r"data\.settings\.split: file \"test\" vs this run \"train\""):
        sw.sweep({"a": TinyDenoiser()}, other_data, SIGMAS, out=out, **SMALL)
    with pytest.raises(ValueError, match="n_images"):
        sw.sweep({"a": TinyDenoiser()}, white16, SIGMAS, out=out, **{**SMALL, "n_images": 10})
    with pytest.raises(FileExistsError):
        sw.sweep({"a": TinyDenoiser()}, white16, SIGMAS, out=out, resume=False, **SMALL)
    ds = sw.sweep({"a": TinyDenoiser()}, white16, [0.1, 1.0], out=out, overwrite=True, **SMALL)
    assert results.load(out).sigma.values.tolist() == [0.1, 1.0] == ds.sigma.values.tolist()


# --------------------------------------------------------------------------------------------------------------
# defaults, bad input, summary
# --------------------------------------------------------------------------------------------------------------
def test_default_sigma_grid():
    grid = sigmas.default_sigmas(0.002, 80.0)
    assert len(grid) == sigmas.DEFAULT_N_SIGMAS and grid[0] == 0.002 and grid[-1] == 80.0
    assert np.allclose(np.diff(np.log(grid)), np.log(80 / 0.002) / (len(grid) - 1))
    ds = sw.sweep([TinyDenoiser()], make_source("white", resolution=16, grayscale=True), 4, modes="generate",
                  **SMALL)
    assert ds.sigma.values[0] == pytest.approx(0.01) and ds.sigma.values[-1] == 10.0 and ds.sizes["sigma"] == 4
    assert list(ds.checkpoint.values) == ["model0"] and list(ds.mode.values) == ["generate"]
    assert "error_power" not in ds and "output_power" in ds


@pytest.mark.parametrize("sigmas, match", [([0.1, -1.0], "positive and finite, got -1.0$"), ([0.1, float("nan")], "finite"),
                                           ([], "empty"), ([0.1, 0.1], "distinct"), (["a"], "numbers")])
def test_bad_sigmas(white16, sigmas, match):
    with pytest.raises(ValueError, match=match):
        sw.sweep([TinyDenoiser()], white16, sigmas, **SMALL)


def test_bad_inputs(white16, tmp_path):
    rgb = make_source("white", resolution=16, split="test")
    with pytest.raises(ValueError, match="1 channel"):
        sw.sweep([TinyDenoiser()], rgb, SIGMAS, **SMALL)
    exact = Scale()
    exact.size_multiple = None
    with pytest.raises(ValueError, match="made for 16x16$"):  # no size but its own: no opt-in offered
        sw.sweep([exact], make_source("white", resolution=8, grayscale=True), SIGMAS, **SMALL)
    white8 = make_source("white", resolution=8, grayscale=True)
    with pytest.raises(ValueError, match=r"made for 16x16; pass any_resolution=True \(--any-resolution\)"):
        sw.sweep([Scale()], white8, SIGMAS, **SMALL)  # runs at any size, but only when asked
    assert sw.sweep([Scale()], white8, SIGMAS, any_resolution=True, **SMALL).attrs["image_shape"] == "1,8,8"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sw.sweep(tmp_path / "nope", white16, SIGMAS, **SMALL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        sw.sweep(tmp_path / "empty", white16, SIGMAS, **SMALL)
    with pytest.raises(ValueError, match="modes"):
        sw.sweep([TinyDenoiser()], white16, SIGMAS, modes=("nonsense",), **SMALL)
    with pytest.raises(ValueError, match="n_images"):
        sw.sweep([TinyDenoiser()], white16, SIGMAS, **{**SMALL, "n_images": 1})
    with pytest.raises(ValueError, match=r"checkpoint 'nan' at σ=0.05 \(denoise mode\): outputs contain NaN"):
        sw.sweep({"nan": Scale(float("nan"))}, white16, SIGMAS, **SMALL)
    arr = tmp_path / "x.npy"
    np.save(arr, np.zeros((5, 16, 16, 1), dtype=np.float32))
    small = make_source("array", resolution=16, grayscale=True, path=str(arr))
    with pytest.raises(ValueError, match="fewer than n_images"):
        sw.sweep([TinyDenoiser()], small, SIGMAS, **SMALL)


def test_sigma_outside_a_diffusers_schedule_is_a_clear_error(white16):
    from diffusers import DDPMScheduler

    from freqlab.models.denoisers import DiffusersDenoiser, build_unet

    unet = build_unet(sample_size=16, in_channels=1, block_out_channels=(8, 16), norm_num_groups=4)
    model = DiffusersDenoiser(unet, DDPMScheduler(num_train_timesteps=100))
    with pytest.raises(ValueError, match=r"checkpoint 'ddpm'.*outside the scheduler's range"):
        sw.sweep({"ddpm": model}, white16, [0.5, 1000.0], **SMALL)


def test_summary_and_spectra_off(white16):
    ds = sw.sweep({"early": TinyDenoiser(seed=1), "late": TinyDenoiser(seed=2)}, white16, SIGMAS, **SMALL)
    text = summarize(ds)
    assert "2 checkpoint(s)" in text and "early" in text and "late" in text and "cycles/px" in text
    assert "\n" not in text
    off = sw.sweep({"early": TinyDenoiser(seed=1)}, white16, SIGMAS, spectra=False, **SMALL)
    assert not off.data_vars and off.sizes["sigma"] == 3
    assert summarize(off) == "The sweep holds no results."
    for name, var in ds.data_vars.items():
        assert var.attrs["units"] and var.attrs["long_name"], name


# --------------------------------------------------------------------------------------------------------------
# checkpoint directories and the command line
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(make_tiny_run):
    """A tiny pre-training run: two freqlab checkpoints (16x16 grayscale EDM UNets), written out of order."""
    return make_tiny_run([(40, 2), (0, 1)])


CLI_ARGS = ["--data", "white", "--n-images", "6", "--batch-size", "4", "--device", "cpu", "--no-progress"]


def test_run_directory_sweeps_every_checkpoint_in_training_order(run_dir, tmp_path):
    ds = sw.sweep(run_dir, "white", [0.1, 20.0], n_images=6, batch_size=4, device="cpu", progress=False,
                  out=tmp_path / "s.nc")
    assert list(ds.checkpoint.values) == ["step-000000", "step-000040"]
    assert ds.step.values.tolist() == [0, 40] and ds.images_seen.values.tolist() == [0, 320]
    assert ds.attrs["data_source"] == "white" and ds.attrs["image_shape"] == "1,16,16"
    # a list of paths gives the same numbers as the run directory (same images and noise for each checkpoint)
    paths = [run_dir / "checkpoints" / "step-000040", run_dir / "checkpoints" / "step-000000"]
    listed = sw.sweep(paths, "white", [0.1, 20.0], n_images=6, batch_size=4, device="cpu", progress=False)
    assert list(listed.checkpoint.values) == ["step-000040", "step-000000"]
    xr.testing.assert_allclose(listed.sel(checkpoint=["step-000000", "step-000040"]).drop_attrs(),
                               ds.drop_attrs(), rtol=1e-6)
    with pytest.raises(ValueError, match="no checkpoints found"):
        (tmp_path / "junk").mkdir()
        (tmp_path / "junk" / "notes.txt").write_text("hello")
        sw.sweep(tmp_path / "junk", "white", [0.1], n_images=6, device="cpu", progress=False)


def test_cli_writes_results_prints_summary_and_refuses_another_grid(run_dir, tmp_path, capsys):
    from freqlab.cli import main

    out = tmp_path / "sweep.nc"
    assert main(["sweep", str(run_dir), "--sigmas", "0.1,1,20", "--out", str(out), *CLI_ARGS]) == 0
    captured = capsys.readouterr()
    assert "2 checkpoint(s)" in captured.out and "cutoff" in captured.out
    ds = results.load(out)
    assert ds.sizes["checkpoint"] == 2 and ds.sigma.values.tolist() == [0.1, 1.0, 20.0]
    # the same command again resumes: nothing left to do, same file
    assert main(["sweep", str(run_dir), "--sigmas", "0.1,1,20", "--out", str(out), *CLI_ARGS]) == 0
    xr.testing.assert_identical(results.load(out), ds)
    capsys.readouterr()
    assert main(["sweep", str(run_dir), "--sigmas", "0.1,2", "--out", str(out), *CLI_ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("freqlab sweep: error:") and "sigmas" in err and "--overwrite" in err
    assert len(err.splitlines()) == 1
    assert main(["sweep", str(run_dir), "--sigmas", "0.1,-2", "--out", str(out), *CLI_ARGS]) == 2
    assert "positive and finite" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing"), "--out", str(out), *CLI_ARGS]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["sweep", str(run_dir), "--n-sigmas", "2", "--modes", "generate", "--out", str(out),
                 "--overwrite", *CLI_ARGS]) == 0
    ds = results.load(out)
    assert ds.sizes["sigma"] == 2 and ds.sigma.values[-1] == 20.0 and list(ds.mode.values) == ["generate"]


# --------------------------------------------------------------------------------------------------------------
# the best linear denoiser as a second reference
# --------------------------------------------------------------------------------------------------------------
def test_linear_reference_is_the_linear_mmse_denoiser_on_the_same_inputs():
    from freqlab.models.linear import LinearMMSEDenoiser

    n, n_fit = 16, 600
    train = make_source("natural", resolution=8, split="train")  # 3×8×8 = 192 values per image
    fitted = LinearMMSEDenoiser.from_source(train, n_fit)  # by default on the training split, as a model learns
    ds = sw.sweep({"lin": fitted}, "natural", [0.1, 1.0, 10.0], n_images=n, batch_size=8, seed=2, device="cpu",
                  progress=False, data_options={"resolution": 8}, linear_reference=n_fit)
    # the sweep's reference is that denoiser, fed exactly the models' noisy inputs (of the test split)
    np.testing.assert_allclose(ds.linear_mse.values, ds.mse.sel(checkpoint="lin").values, rtol=1e-5)
    assert "images 0 to 599 of the train split" in ds.attrs["linear_reference"]
    assert "images 0 to 599 of the train split" in ds.attrs["wiener_reference"]  # the same images, the same pass
    held_out = LinearMMSEDenoiser.from_source(make_source("natural", resolution=8, split="test"), n_fit, start=n)
    other = sw.sweep({"lin": held_out}, "natural", [0.1, 1.0, 10.0], n_images=n, batch_size=8, seed=2,
                     device="cpu", progress=False, data_options={"resolution": 8}, linear_reference=n_fit,
                     reference_split=None)  # the other choice: images after the swept ones, same split
    np.testing.assert_allclose(other.linear_mse.values, other.mse.sel(checkpoint="lin").values, rtol=1e-5)
    assert "images 16 to 615 of the measured source" in other.attrs["linear_reference"]
    # colour channels are correlated: the full-covariance estimator beats the per-channel stationary filter at low
    # σ; at σ = 10 both are close to the data variance about its mean
    ratio = (ds.linear_mse / ds.wiener_mse).mean("channel").values
    assert ratio[0] < 0.95 and ratio[-1] == pytest.approx(1.0, abs=0.1)


def test_linear_reference_defaults_and_errors(white16, tmp_path):
    ds = sw.sweep({"t": TinyDenoiser()}, "white", SIGMAS, data_options={"resolution": 16, "grayscale": True},
                  modes=("denoise",), **SMALL)
    assert "linear_mse" in ds and "images 0 to 2047 of the train split" in ds.attrs["linear_reference"]  # 8·256
    assert ds.attrs["references_fitted_on"] == "images 0 to 2047 of the train split"  # what the report quotes
    # white noise is stationary and uncorrelated: the best linear and the stationary filter agree
    np.testing.assert_allclose(ds.linear_mse.values, ds.wiener_mse.values, rtol=0.25)
    off = sw.sweep({"t": TinyDenoiser()}, white16, SIGMAS, linear_reference=0, **SMALL)
    assert "linear_mse" not in off and off.attrs["linear_reference"] == "none"
    # a finite source with too few images left after the swept ones: skipped by default, an error when asked for
    np.save(tmp_path / "few.npy", np.random.default_rng(0).uniform(-1, 1, (40, 1, 16, 16)).astype(np.float32))
    few = make_source("array", path=str(tmp_path / "few.npy"), resolution=16, grayscale=True)
    assert "linear_mse" not in sw.sweep({"t": TinyDenoiser()}, few, SIGMAS, **SMALL)
    with pytest.raises(ValueError, match="leave 28, fewer than linear_reference=100"):
        sw.sweep({"t": TinyDenoiser()}, few, SIGMAS, linear_reference=100, **SMALL)
    # a source that holds only the swept images: the Wiener reference takes their own spectrum, and says so
    np.save(tmp_path / "only.npy", np.random.default_rng(1).uniform(-1, 1, (12, 1, 16, 16)).astype(np.float32))
    only = make_source("array", path=str(tmp_path / "only.npy"), resolution=16, grayscale=True)
    own = sw.sweep({"t": TinyDenoiser()}, only, SIGMAS, **{**SMALL, "n_images": 12})
    assert "the measured images 0 to 11 (the source holds no others)" in own.attrs["wiener_reference"]
    assert own.attrs["references_split"] == "measured" and np.isfinite(own.wiener_mse.values).all()
    assert own.attrs["references_fitted_on"] == "the measured images 0 to 11"


# --------------------------------------------------------------------------------------------------------------
# the sample mode: EDM's N-step sampler from the generate mode's z
# --------------------------------------------------------------------------------------------------------------
def test_sample_mode_on_gaussian_fields_reaches_the_data_spectrum():
    """With the exact denoiser of a Gaussian field the probability-flow ODE gives output power σ_max²·P/(P+σ_max²)
    per mode (≈ P); the one-step output at σ_max has σ_max²·P²/(P+σ_max²)² instead (far below at high f)."""
    src = make_source("grf", resolution=32, grayscale=True, split="test")
    f = torch.linspace(0.0, 0.75, 4001, dtype=torch.float64)
    wiener = WienerDenoiser(f, grf_power(f), image_shape=(1, 32, 32), sigma_min=0.002, sigma_max=80.0)
    sigmas = [0.3, 80.0]
    ds = sw.sweep({"wiener": wiener}, src, sigmas, modes=("generate", "sample"), n_images=128, batch_size=64,
                  device="cpu", progress=False, window=None, sample_steps=18)
    nondc = ds.freq.values > 0
    p = _analytic([80.0])[80.0]["data"].numpy()[nondc]
    d = ds.sel(checkpoint="wiener", channel=0, sigma=80.0)
    sample_db = d.sample_relative_power_db.values[nondc]
    # measured over 128 images (±0.4 dB per bin at 2 sem) plus Heun's 18-step error (≤ 0.5 dB, test_sampler)
    assert np.all(np.abs(sample_db) < 1.5), sample_db
    assert float(d.sample_lsd.max()) < 1.0
    assert float(d.lsd.sel(mode="generate").sel(band="high")) > 20  # the one-step output is far off there
    # the sample mode, measured at σ_max only, has variables of its own: no σ × mode cube of NaN
    assert ds.mode.values.tolist() == ["generate"]
    sampled = [v for v in ds.data_vars if v.startswith("sample_") and not v.startswith("sample_trajectory")]
    assert "sample_cutoff_freq" in sampled and "sample_band_kurtosis" in sampled
    for name in sampled:
        assert "sigma" not in ds[name].dims and "mode" not in ds[name].dims, name
        assert ds[name].attrs["long_name"].startswith("N-step sample from σ_max·z (σ_max = 80)"), name
    assert all(np.isfinite(ds[v]).all() for v in sampled + ["relative_power_db", "lsd", "cutoff_freq"])
    # the trajectory: x̂0 gains the low band before the high band, and ends where the sample is
    traj = ds.sample_trajectory_db.sel(checkpoint="wiener", channel=0)
    assert traj.sizes["sampler_step"] == 18 and float(ds.sampler_sigma[0]) == 80.0
    first_within = {b: int(np.argmax(np.abs(traj.sel(band=b).values) < 3.0)) for b in ("low", "high")}
    assert first_within["low"] < first_within["high"]
    assert abs(float(traj.sel(band="high").isel(sampler_step=-1))) < 1.5
    # the trajectory's LSD: its first step is the one-step output, its last the sample (the same images here)
    lsd = ds.sample_trajectory_lsd.sel(checkpoint="wiener", channel=0)
    np.testing.assert_allclose(lsd.isel(sampler_step=-1).values, d.sample_lsd.values, rtol=1e-6)
    np.testing.assert_allclose(lsd.isel(sampler_step=0).values, d.lsd.sel(mode="generate").values, rtol=1e-6)
    assert p.shape == sample_db.shape


def test_sample_mode_pairs_with_generate_and_leaves_the_other_modes_unchanged(white16):
    from freqlab.models import sampler

    model = TinyDenoiser()
    both = sw.sweep([model], white16, SIGMAS, **SMALL)
    three = sw.sweep([model], white16, SIGMAS, modes=("denoise", "generate", "sample"), sample_steps=3,
                     sampler="euler", sample_images=7, **SMALL)
    for name in ("output_power", "relative_power_db", "band_log_power", "mse", "cutoff_freq"):
        xr.testing.assert_equal(both[name], three[name])
    assert three.mode.values.tolist() == ["denoise", "generate"] and "sample_output_power" in three
    # the sample mode starts from the generate mode's z: the same samples as the sampler run by hand
    z = per_sample_randn(SMALL["seed"], "sweep/generate", range(7), (1, 16, 16))
    steps = sampler.edm_sigma_steps(3, model.sigma_min, SIGMAS[-1])
    with torch.no_grad():
        by_hand = sampler.sample(model, SIGMAS[-1] * z, steps, sampler="euler")
    from freqlab.measure.core import Analysis

    an = Analysis((1, 16, 16))
    np.testing.assert_allclose(three.sample_output_power.isel(checkpoint=0).values,
                               an.radial(an.fft(by_hand)).double().mean(0).numpy(), rtol=1e-5)
    assert three.attrs["sample_mode"].startswith("EDM's deterministic euler sampler, 3 steps")
    assert "sample_mode" not in both.attrs
    with pytest.raises(ValueError, match="unknown sampler"):
        sw.sweep([model], white16, SIGMAS, modes=("sample",), sampler="dpm", **SMALL)
    alone = sw.sweep([model], white16, SIGMAS, modes=("sample",), sample_steps=3, **SMALL)
    assert "mode" not in alone.coords and "cutoff_freq" not in alone and "sample_cutoff_freq" in alone
    assert summarize(alone).startswith("Swept 1 checkpoint(s) with the sample mode only.")



def test_sweep_settings_are_defined_once():
    """The command line's options are the config's fields with the config's defaults; sweep() takes the config
    whole or builds it from keywords, and names an unknown keyword."""
    import dataclasses

    from freqlab.cli import build_parser
    from freqlab.measure.conventions import WINDOW
    from freqlab.sweep.config import SweepConfig

    defaults = SweepConfig()
    args = build_parser().parse_args(["sweep", "RUN"])
    offered = [f.name for f in dataclasses.fields(SweepConfig) if f.metadata.get("cli", True)]
    assert len(offered) > 10
    for name in offered:
        assert getattr(args, name) == getattr(defaults, name), name
    assert defaults.window == WINDOW
    parsed = build_parser().parse_args(["sweep", "RUN", "--modes", "all", "--bands", "0,0.2,0.5", "--window", "none",
                                        "--sample-images", "4", "--linear-reference", "0"])
    assert parsed.modes == ("denoise", "generate", "sample") and parsed.bands == (0.0, 0.2, 0.5)
    assert parsed.window is None and parsed.sample_images == 4 and parsed.linear_reference == 0
    with pytest.raises(ValueError, match="unknown sweep setting.*n_imgs.*n_images"):
        sw.sweep("RUN", n_imgs=4)
    with pytest.raises(ValueError, match="n_images must be a whole number of at least"):
        sw.sweep("RUN", config=SweepConfig(n_images=8), n_images=1)


def test_sample_mode_runs_on_a_diffusers_vp_model_and_an_edm_network(white16, edm_pickle):  # noqa: F811
    """The sampler takes every denoiser freqlab loads: a DDPM-family model through the σ adapter (its σ range is the
    schedule's) and an EDM network pickle."""
    from diffusers import DDPMScheduler

    from freqlab.checkpoints.store import load_denoiser
    from freqlab.models.denoisers import DiffusersDenoiser, build_unet

    unet = build_unet(sample_size=16, in_channels=1, block_out_channels=(8, 16), norm_num_groups=4)
    vp = DiffusersDenoiser(unet, DDPMScheduler(num_train_timesteps=100))
    edm = load_denoiser(edm_pickle, trust_pickle=True)
    for name, model, data in (("ddpm", vp, white16), ("edm", edm, "white")):
        ds = sw.sweep({name: model}, data, 3, modes=("generate", "sample"), sample_steps=3, **SMALL)
        assert float(ds.sampler_sigma[0]) == pytest.approx(model.sigma_max)
        assert float(ds.sampler_sigma[-1]) == pytest.approx(model.sigma_min)
        # finite wherever the band has bins (an 8x8 image has no non-DC bin in the low band: NaN in both)
        first = ds.sample_trajectory_lsd.isel(checkpoint=0, sampler_step=0).values
        one_step = ds.lsd.sel(mode="generate").isel(checkpoint=0, sigma=-1).values
        assert (np.isfinite(first) == np.isfinite(one_step)).all() and np.isfinite(one_step[..., 1:]).all()
        np.testing.assert_allclose(first, one_step, rtol=1e-4)  # the sampler's first estimate is the one step
        assert np.isfinite(ds.sample_output_power.values).all()


def test_the_windowed_wiener_reference_is_in_the_windowed_measurements_convention():
    """With the default Hann window the exact Wiener filter's measured output, error and cross spectra must sit on
    the reference curves drawn beside them (not on the periodic ones, up to 1.4x off at large σ)."""
    src = make_source("grf", resolution=32, grayscale=True, split="test")
    f = torch.linspace(0.0, 0.75, 4001, dtype=torch.float64)
    wiener = WienerDenoiser(f, grf_power(f), image_shape=(1, 32, 32))
    sigmas = [0.03, 0.3, 2.0]
    ds = sw.sweep({"wiener": wiener}, src, sigmas, n_images=512, batch_size=128, device="cpu", progress=False,
                  modes=("denoise",))
    assert ds.attrs["spectrum_window"].startswith("hann")
    nondc = ds.freq.values > 0
    for s in sigmas:
        d = ds.sel(checkpoint="wiener", sigma=s, channel=0, mode="denoise")
        for measured, sem, ref in ((d.output_power, d.output_power_sem, d.wiener_output_power),
                                   (d.error_power, d.error_power_sem, d.wiener_error_power)):
            m, e, r = measured.values[nondc], sem.values[nondc], ref.values[nondc]
            assert np.all(np.abs(m - r) <= 5 * e + 0.03 * r), (s, (m / r).round(3))
        np.testing.assert_allclose(d.transfer.values[nondc], d.wiener_transfer.values[nondc], rtol=0.08, atol=0.01)
    unwindowed = _analytic(sigmas)[2.0]["output"].numpy()[nondc]  # the periodic curve is not what Hann measures
    assert np.max(np.abs(ds.sel(checkpoint="wiener", sigma=2.0, channel=0).wiener_output_power.values[nondc]
                         / unwindowed - 1)) > 0.1


def test_a_channel_with_no_power_has_undefined_cutoffs_and_ratios(tmp_path):
    """A constant channel has no power to compare: its cutoff is NaN flagged 'undefined' (2), not an invented
    bound, and the summary says 'undefined' where it would print nan or inf."""
    x = np.random.default_rng(0).uniform(-1, 1, (24, 16, 16, 3)).astype(np.float32)
    x[..., 2] = 0.3
    np.save(tmp_path / "x.npy", x)
    src = make_source("array", path=str(tmp_path / "x.npy"), resolution=16)
    ds = sw.sweep({"t": TinyDenoiser(shape=(3, 16, 16))}, src, [0.1, 1.0], n_images=8, batch_size=8, device="cpu",
                  progress=False, linear_reference=0)
    blue = ds.sel(channel=2)
    assert np.isnan(blue.cutoff_freq.values).all() and (blue.cutoff_freq_bound.values == 2).all()
    assert (ds.sel(channel=0).cutoff_freq_bound.values != 2).all()
    text = summarize(ds)
    assert "nan" not in text.lower() and "inf" not in text.lower()
    from freqlab.measure import core as measure

    value, flag = measure.channel_cutoff(ds.cutoff_freq.isel(checkpoint=0, sigma=0).sel(mode="denoise"),
                                         ds.cutoff_freq_bound.isel(checkpoint=0, sigma=0).sel(mode="denoise"))
    assert np.isfinite(float(value)) and int(flag) != 2  # the other channels still give one
