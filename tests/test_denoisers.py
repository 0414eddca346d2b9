"""Tests of freqlab.models.denoisers: the interface, EDM preconditioning, the diffusers VP adapter, the Wiener filter, the
full-covariance linear MMSE denoiser."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from freqlab.models.denoisers import (
    DiffusersDenoiser,
    EDMDenoiser,
    EDMNetworkDenoiser,
    build_unet,
    count_parameters,
    default_unet_config,
    describe_unet,
    edm_preconditioning,
)
from freqlab.models.linear import LinearMMSEDenoiser, WienerDenoiser
from freqlab.spectral import radial_binning, radial_frequency, radial_power_spectrum


def tiny_unet(seed: int = 0, channels: int = 3, size: int = 8, **overrides) -> UNet2DModel:
    torch.manual_seed(seed)
    config = dict(sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=(4, 8),
                  layers_per_block=1, norm_num_groups=2, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                  up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4)
    config.update(overrides)
    return UNet2DModel(**config).eval()


class SpyNet(torch.nn.Module):
    """Records what the denoiser feeds the network and returns a constant output."""

    def __init__(self, value: float = 0.0):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))
        self.value = value
        self.calls = []

    def forward(self, x, t):
        self.calls.append((x.detach().clone(), t.detach().clone()))
        return torch.full_like(x, self.value) * self.scale


# --------------------------------------------------------------------------------------------------------------
# EDM preconditioning
# --------------------------------------------------------------------------------------------------------------
def test_edm_coefficients_exact_values():
    c_skip, c_out, c_in, c_noise = edm_preconditioning(torch.tensor([1.0, 0.5], dtype=torch.float64), 0.5)
    assert torch.allclose(c_skip, torch.tensor([0.25 / 1.25, 0.5], dtype=torch.float64))
    assert torch.allclose(c_out, torch.tensor([0.5 / math.sqrt(1.25), 0.25 / math.sqrt(0.5)], dtype=torch.float64))
    assert torch.allclose(c_in, torch.tensor([1 / math.sqrt(1.25), 1 / math.sqrt(0.5)], dtype=torch.float64))
    assert torch.allclose(c_noise, torch.tensor([0.0, math.log(0.5) / 4], dtype=torch.float64))


def test_edm_denoiser_applies_the_formulas():
    spy = SpyNet(value=1.0)
    den = EDMDenoiser(spy, image_shape=(3, 8, 8), sigma_data=0.5)
    x = torch.randn(3, 3, 8, 8)
    sigma = torch.tensor([0.01, 1.0, 80.0])
    out = den(x, sigma)
    s = sigma.view(-1, 1, 1, 1)
    c_skip, c_out = 0.25 / (s**2 + 0.25), s * 0.5 / torch.sqrt(s**2 + 0.25)
    torch.testing.assert_close(out, c_skip * x + c_out * 1.0)
    fed_x, fed_t = spy.calls[-1]
    torch.testing.assert_close(fed_x, x / torch.sqrt(s**2 + 0.25))
    torch.testing.assert_close(fed_t, torch.log(sigma) / 4)


def test_edm_zero_network_gives_c_skip_times_x():
    unet = tiny_unet()
    torch.nn.init.zeros_(unet.conv_out.weight)
    torch.nn.init.zeros_(unet.conv_out.bias)
    den = EDMDenoiser(unet)
    x = torch.randn(2, 3, 8, 8)
    for sigma in (0.002, 0.5, 80.0):
        assert torch.equal(den(x, sigma), (0.25 / (sigma**2 + 0.25)) * x)


def test_edm_parameters_live_under_unet_and_defaults():
    den = EDMDenoiser(tiny_unet())
    names = [n for n, _ in den.named_parameters()]
    assert names and all(n.startswith("unet.") for n in names)
    assert "unet.down_blocks.0.resnets.0.conv1.weight" in names
    assert (den.sigma_min, den.sigma_max, den.sigma_data) == (0.002, 80.0, 0.5)
    assert den.image_shape == (3, 8, 8) and den.device == torch.device("cpu")
    assert count_parameters(den) == count_parameters(den.unet) > 0


def test_edm_refuses_non_positional_time_embedding():
    with pytest.raises(ValueError, match="positional"):
        EDMDenoiser(tiny_unet(time_embedding_type="fourier", block_out_channels=(8, 8)))


def test_build_unet_defaults_and_overrides():
    config = default_unet_config()
    assert config["block_out_channels"] == (32, 64, 64) and config["sample_size"] == 32
    assert config["down_block_types"][-1] == "AttnDownBlock2D" and config["up_block_types"][0] == "AttnUpBlock2D"
    assert sum("Attn" in b for b in config["down_block_types"]) == 1
    unet = build_unet(sample_size=16, block_out_channels=(4, 8))
    assert unet.config.norm_num_groups == 1 and unet.config.sample_size == 16
    assert "16x16x3" in describe_unet(unet) and "M parameters" in describe_unet(unet)
    den = EDMDenoiser(build_unet(sample_size=8, block_out_channels=(4, 8), in_channels=1))
    assert den.image_shape == (1, 8, 8) and den(torch.randn(2, 1, 8, 8), 1.0).shape == (2, 1, 8, 8)


# --------------------------------------------------------------------------------------------------------------
# the interface: sigma broadcasting, validation, inference mode, gradients
# --------------------------------------------------------------------------------------------------------------
def test_sigma_broadcasting():
    den = EDMDenoiser(tiny_unet())
    x = torch.randn(3, 3, 8, 8)
    ref = den(x, 0.7)
    torch.testing.assert_close(den(x, torch.tensor(0.7)), ref)
    torch.testing.assert_close(den(x, torch.full((3,), 0.7)), ref)
    torch.testing.assert_close(den(x, torch.full((3, 1, 1, 1), 0.7)), ref)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    batched = den(x, sigma)
    for i in range(3):
        torch.testing.assert_close(batched[i : i + 1], den(x[i : i + 1], float(sigma[i])), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sigma, match", [(float("nan"), "nan"), (0.0, "0.0"), (-1.0, "-1.0"),
                                          (torch.tensor([1.0, float("inf")]), "inf"),
                                          (torch.tensor([1.0, 2.0, 3.0]), "shape")])
def test_bad_sigma_is_a_value_error_naming_it(sigma, match):
    den = EDMDenoiser(tiny_unet())
    with pytest.raises(ValueError, match=match):
        den(torch.randn(2, 3, 8, 8), sigma)


def test_bad_images_are_value_errors():
    den = EDMDenoiser(tiny_unet())  # one downsampler: any size divisible by 2
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(2, 1, 8, 8\)"):
        den(torch.randn(2, 1, 8, 8), 1.0)
    with pytest.raises(ValueError, match="9x9 is not divisible by 2"):
        den(torch.randn(2, 3, 9, 9), 1.0)
    with pytest.raises(ValueError, match="shape"):
        den(torch.randn(3, 8, 8), 1.0)
    with pytest.raises(ValueError, match="floating-point"):
        den(torch.zeros(2, 3, 8, 8, dtype=torch.long), 1.0)
    assert den(torch.randn(1, 3, 16, 12), 1.0).shape == (1, 3, 16, 12)
    exact = EDMNetworkDenoiser(SpyNet(), image_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="expects 8x8 images, got 16x16"):
        exact(torch.randn(1, 3, 16, 16), 1.0)


def test_inference_mode_and_gradients():
    den = EDMDenoiser(tiny_unet())
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        out = den(x, 2.0)
    assert not out.requires_grad
    x.requires_grad_(True)
    den(x, torch.tensor([0.5, 5.0])).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert den.unet.conv_in.weight.grad.abs().sum() > 0
    assert den.unet.down_blocks[0].resnets[0].conv1.weight.grad.abs().sum() > 0


def test_float64_input_keeps_float64_outer_maths():
    den = EDMDenoiser(tiny_unet())
    out = den(torch.randn(1, 3, 8, 8, dtype=torch.float64), 1.0)
    assert out.dtype == torch.float64
    assert den(torch.randn(1, 3, 8, 8), 1.0).dtype == torch.float32


def test_edm_network_denoiser_reads_attributes():
    net = SpyNet()
    net.img_resolution, net.img_channels = 8, 1
    net.sigma_min, net.sigma_max, net.sigma_data = 0.0, float("inf"), 0.25
    den = EDMNetworkDenoiser(net)
    assert den.image_shape == (1, 8, 8)
    assert (den.sigma_min, den.sigma_max, den.sigma_data) == (0.002, 80.0, 0.25)
    den(torch.randn(2, 1, 8, 8), 3.0)
    torch.testing.assert_close(net.calls[-1][1], torch.full((2,), 3.0))


# --------------------------------------------------------------------------------------------------------------
# diffusers adapter: agreement with DDPMScheduler.step(...).pred_original_sample
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("beta_schedule", ["linear", "squaredcos_cap_v2"])
def test_diffusers_adapter_agrees_with_ddpm_scheduler(prediction_type, beta_schedule):
    unet = tiny_unet(seed=1)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule=beta_schedule, clip_sample=False,
                              prediction_type=prediction_type)
    den = DiffusersDenoiser(unet, scheduler)
    alphas = scheduler.alphas_cumprod.double()
    torch.manual_seed(2)
    for t in (0, 1, 10, 250, 500, 998, 999):
        x_vp = torch.randn(2, 3, 8, 8)
        sigma = math.sqrt((1 - alphas[t]) / alphas[t])
        x_sigma = x_vp * math.sqrt(1 + sigma**2)
        with torch.no_grad():
            output = unet(x_vp, t).sample
            expected = scheduler.step(output, t, x_vp).pred_original_sample
            got = den(x_sigma, sigma)
        scale = 1.0 + expected.abs().max().item()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-6 * scale, msg=f"t={t}")


def test_diffusers_adapter_range_timesteps_and_clamp():
    scheduler = DDIMScheduler(num_train_timesteps=100, clip_sample=False)
    den = DiffusersDenoiser(tiny_unet(), dict(scheduler.config))  # a config dict works too
    sig = torch.sqrt((1 - scheduler.alphas_cumprod.double()) / scheduler.alphas_cumprod.double())
    assert den.sigma_min == pytest.approx(float(sig[0])) and den.sigma_max == pytest.approx(float(sig[-1]))
    t = den.sigma_to_timestep(torch.cat([sig[[0, 7, 99]], torch.sqrt(sig[10] * sig[11]).view(1)]))
    torch.testing.assert_close(t[:3], torch.tensor([0.0, 7.0, 99.0], dtype=torch.float64))
    assert 10.0 < float(t[3]) < 11.0
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="outside the scheduler's range.*clamp=True"):
        den(x, float(sig[-1]) * 2)
    with pytest.raises(ValueError, match="outside"):
        den(x, float(sig[0]) / 2)
    clamped = DiffusersDenoiser(den.unet, scheduler, clamp=True)
    with pytest.warns(UserWarning, match="clamped"):
        out = clamped(x, float(sig[-1]) * 2)
    torch.testing.assert_close(out, den(x, float(sig[-1])))


def test_diffusers_adapter_learned_variance_and_bad_prediction_type():
    unet = tiny_unet(out_channels=6)
    scheduler = DDPMScheduler(num_train_timesteps=50, clip_sample=False, variance_type="learned_range")
    den = DiffusersDenoiser(unet, scheduler)
    x_vp, t = torch.randn(1, 3, 8, 8), 20
    a = scheduler.alphas_cumprod[t].double()
    sigma = math.sqrt((1 - a) / a)
    with torch.no_grad():
        expected = scheduler.step(unet(x_vp, t).sample, t, x_vp).pred_original_sample
        torch.testing.assert_close(den(x_vp * math.sqrt(1 + sigma**2), sigma), expected, rtol=2e-4, atol=1e-5)
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusersDenoiser(tiny_unet(), scheduler, prediction_type="score")


# --------------------------------------------------------------------------------------------------------------
# Wiener filter on Gaussian random fields
# --------------------------------------------------------------------------------------------------------------
SIZE, SLOPE = 32, -2.0


def power_law(f: torch.Tensor, slope: float = SLOPE, variance: float = 0.25) -> torch.Tensor:
    """Per-mode power ``A·|f|^slope`` (DC at the lowest frequency) scaled to the given pixel variance."""
    fr = radial_frequency(SIZE, SIZE).flatten()
    norm = variance / (fr.clamp_min(1 / SIZE) ** slope * _halfplane_weights()).sum() * SIZE * SIZE
    return norm * f.clamp_min(1 / SIZE) ** slope


def _halfplane_weights() -> torch.Tensor:
    w = torch.full((SIZE, SIZE // 2 + 1), 2.0, dtype=torch.float64)
    w[:, 0] = w[:, -1] = 1.0
    return w.flatten()


def gaussian_random_field(n: int, seed: int, slope: float = SLOPE) -> torch.Tensor:
    """``(n, 1, SIZE, SIZE)`` float64 with per-mode power ``P(k) = E|DFT(x)(k)|²/(H·W) = power_law(|f|)``."""
    g = torch.Generator().manual_seed(seed)
    white = torch.randn(n, 1, SIZE, SIZE, generator=g, dtype=torch.float64)
    amplitude = power_law(radial_frequency(SIZE, SIZE), slope).sqrt()
    return torch.fft.irfft2(torch.fft.rfft2(white) * amplitude, s=(SIZE, SIZE))


def wiener_for(slope: float, scale: float = 1.0) -> WienerDenoiser:
    freq = torch.linspace(0.0, 0.75, 301, dtype=torch.float64)
    return WienerDenoiser(freq, scale * power_law(freq, slope), image_shape=(1, SIZE, SIZE))


def gaussian_blur(x: torch.Tensor, width: float) -> torch.Tensor:
    f2 = radial_frequency(SIZE, SIZE) ** 2
    return torch.fft.irfft2(torch.fft.rfft2(x) * torch.exp(-2 * math.pi**2 * width**2 * f2), s=(SIZE, SIZE))


def bin_modes(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over full-plane modes per default radial bin of per-mode values given on the rfft half plane."""
    edges = radial_binning(SIZE, SIZE, dtype=torch.float64).edges
    f, w = radial_frequency(SIZE, SIZE).flatten(), _halfplane_weights()
    index = torch.bucketize(f, edges, right=True) - 1
    keep = (f <= 0.5) & (index >= 0) & (index < edges.numel() - 1)
    sums = torch.zeros(edges.numel() - 1, dtype=torch.float64).index_add_(0, index[keep], (w * values)[keep])
    counts = torch.zeros_like(sums).index_add_(0, index[keep], w[keep])
    return sums / counts, counts


@pytest.fixture(scope="module")
def grf_batch():
    x0 = gaussian_random_field(96, seed=0)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return x0, noise


@pytest.mark.parametrize("sigma", [0.1, 0.5, 2.0])
def test_wiener_beats_other_denoisers_on_grf(grf_batch, sigma):
    x0, noise = grf_batch
    x = x0 + sigma * noise
    wiener = wiener_for(SLOPE)

    def mse(y):
        return float((y - x0).square().mean())

    best = mse(wiener(x, sigma))
    p = power_law(radial_frequency(SIZE, SIZE)).flatten()
    expected = float((p * sigma**2 / (p + sigma**2) * _halfplane_weights()).sum() / SIZE**2)
    assert best == pytest.approx(expected, rel=0.05)  # Parseval: the MSE is the mean error power over modes
    var = float(x0.var())
    others = {
        "identity": mse(x),
        "scaled identity": mse(var / (var + sigma**2) * x),
        "misspecified slope": mse(wiener_for(-1.0)(x, sigma)),
        "misspecified amplitude": mse(wiener_for(SLOPE, scale=4.0)(x, sigma)),
        **{f"blur {w}": mse(gaussian_blur(x, w)) for w in (0.5, 1.0, 2.0)},
    }
    for name, value in others.items():
        assert best < 0.99 * value, name


def test_wiener_output_and_error_spectra_match_the_formulas(grf_batch):
    x0, noise = grf_batch
    sigma = 0.3
    out = wiener_for(SLOPE)(x0 + sigma * noise, sigma)
    p = power_law(radial_frequency(SIZE, SIZE)).flatten()
    expect_out, counts = bin_modes(p**2 / (p + sigma**2))
    expect_err, _ = bin_modes(p * sigma**2 / (p + sigma**2))
    n = x0.shape[0]
    tol = 5 * torch.sqrt(2.0 / (n * counts))  # a bin's mean of exponentially distributed mode powers
    for y, expected in ((out, expect_out), (out - x0, expect_err)):
        measured = radial_power_spectrum(y).power.mean(dim=(0, 1))
        assert bool(((measured / expected - 1).abs() < tol).all()), (measured / expected - 1, tol)


def test_wiener_from_images_fits_the_spectrum_and_the_mean(grf_batch):
    x0, noise = grf_batch
    train = gaussian_random_field(256, seed=5) + 0.3
    fitted = WienerDenoiser.from_images(train)
    assert float(fitted.mean[0]) == pytest.approx(0.3, abs=0.02)
    assert fitted.sigma_data == pytest.approx(float(train.std()))
    sigma = 0.5
    x = x0 + 0.3 + sigma * noise
    oracle = WienerDenoiser(torch.linspace(0, 0.75, 301, dtype=torch.float64),
                            power_law(torch.linspace(0, 0.75, 301, dtype=torch.float64)),
                            image_shape=(1, SIZE, SIZE), mean=0.3)
    mse_fit = float((fitted(x, sigma) - x0 - 0.3).square().mean())
    mse_oracle = float((oracle(x, sigma) - x0 - 0.3).square().mean())
    assert mse_fit == pytest.approx(mse_oracle, rel=0.02)
    centred = WienerDenoiser.from_images(train - 0.3, per_channel=False)
    assert float((centred(x - 0.3, sigma) - x0).square().mean()) == pytest.approx(mse_oracle, rel=0.02)


def test_wiener_any_size_channels_inference_mode_and_gradients():
    wiener = wiener_for(SLOPE)
    with torch.inference_mode():
        assert wiener(torch.randn(2, 1, 16, 24), 0.5).shape == (2, 1, 16, 24)
    x = torch.randn(2, 1, 16, 24, requires_grad=True)  # the cache made under inference mode must not break this
    wiener(x, torch.tensor([0.5, 1.0])).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        wiener(torch.randn(1, 3, 16, 16), 0.5)
    per_channel = WienerDenoiser([0.0, 0.25, 0.5], [[1.0, 1.0, 1.0], [1.0, 0.5, 0.25]], image_shape=(2, 8, 8))
    y = per_channel(torch.randn(1, 2, 8, 8), 1.0)
    assert y.shape == (1, 2, 8, 8) and y.dtype == torch.float32
    with pytest.raises(ValueError, match="power must have shape"):
        WienerDenoiser([0.0, 0.5], [[1.0, 1.0]] * 3, image_shape=(2, 8, 8))
    with pytest.raises(ValueError, match="> 0"):
        WienerDenoiser([0.0, 0.5], [1.0, 0.0], image_shape=(1, 8, 8))


# --------------------------------------------------------------------------------------------------------------
# the full-covariance linear MMSE denoiser
# --------------------------------------------------------------------------------------------------------------
LIN_SHAPE = (1, 6, 6)
LIN_D = 36


def nonstationary_gaussian():
    """Mean image and covariance ``(D,)``, ``(D, D)`` float64 of a strongly non-stationary Gaussian on 1×6×6: a
    random, strong, position-dependent correlation (six factors plus 5% independent noise), per-pixel standard
    deviations from 0.05 to 0.6 and a random mean image."""
    g = torch.Generator().manual_seed(10)
    a = torch.randn(LIN_D, 6, generator=g, dtype=torch.float64)
    corr = a @ a.T / 6 + 0.05 * torch.eye(LIN_D, dtype=torch.float64)
    corr = corr / torch.outer(corr.diagonal().sqrt(), corr.diagonal().sqrt())
    scale = torch.linspace(0.05, 0.6, LIN_D, dtype=torch.float64)
    mean = 0.2 * torch.randn(LIN_D, generator=g, dtype=torch.float64)
    return mean, scale[:, None] * corr * scale[None, :]


def gaussian_samples(mean, cov, n: int, seed: int, shape=LIN_SHAPE) -> torch.Tensor:
    z = torch.randn(n, mean.numel(), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (mean + z @ torch.linalg.cholesky(cov).T).reshape(n, *shape)


def closed_form(mean, cov, x, sigma) -> torch.Tensor:
    """``μ + Σ(Σ + σ²I)⁻¹(x − μ)`` per image with ``torch.linalg.solve`` (float64)."""
    d = mean.numel()
    eye = torch.eye(d, dtype=torch.float64)
    out = [mean + cov @ torch.linalg.solve(cov + float(s) ** 2 * eye, xi.reshape(d) - mean) for xi, s in zip(x, sigma)]
    return torch.stack(out).reshape(x.shape)


class ListSource:
    """A minimal DataSource: ``shape`` and ``images(indices)`` (float32), recording the indices asked for."""

    def __init__(self, data: torch.Tensor):
        self.data, self.shape, self.calls = data, tuple(data.shape[1:]), []

    def images(self, indices):
        self.calls.append(list(indices))
        return self.data[torch.as_tensor(indices, dtype=torch.long)].to(torch.float32)


@pytest.fixture(scope="module")
def nonstationary():
    mean, cov = nonstationary_gaussian()
    train = gaussian_samples(mean, cov, 20000, seed=11)
    test = gaussian_samples(mean, cov, 4000, seed=12)
    noise = torch.randn(test.shape, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    return mean, cov, train, test, noise


@pytest.mark.parametrize("sigma", [0.1, 0.3, 1.0])
def test_linear_mmse_matches_its_expected_mse_and_beats_wiener_on_nonstationary_data(nonstationary, sigma):
    mean, cov, train, test, noise = nonstationary
    linear = LinearMMSEDenoiser.from_images(train, batch_size=3000)  # 7 batches, the last one short
    wiener = WienerDenoiser.from_images(train)
    oracle = LinearMMSEDenoiser.from_covariance(mean, cov, image_shape=LIN_SHAPE)
    x = test + sigma * noise

    def mse(denoiser):
        return float((denoiser(x, sigma) - test).square().mean())

    fitted, expected = mse(linear), float(linear.expected_mse(sigma))
    # the MMSE of the true Gaussian, tr(Σ − Σ(Σ+σ²I)⁻¹Σ)/D, computed without the class
    mmse = float((cov - cov @ torch.linalg.solve(cov + sigma**2 * torch.eye(LIN_D, dtype=torch.float64), cov))
                 .diagonal().mean())
    assert float(oracle.expected_mse(sigma)) == pytest.approx(mmse, rel=1e-9)
    # fresh samples: the empirical MSE matches the Gaussian-model value of the fitted and of the true covariance
    assert fitted == pytest.approx(expected, rel=0.03)
    assert fitted == pytest.approx(mmse, rel=0.03)
    assert fitted == pytest.approx(mse(oracle), rel=0.01)  # 20000 fit images: close to the oracle
    # the shift-invariant Wiener filter cannot follow the position-dependent statistics, nor can per-pixel
    # shrinkage (the best diagonal filter) use the correlations
    assert fitted < 0.85 * mse(wiener), (fitted, mse(wiener))
    var = cov.diagonal().reshape(LIN_SHAPE)
    diagonal = float((var / (var + sigma**2) * (x - mean.reshape(LIN_SHAPE)) + mean.reshape(LIN_SHAPE) - test)
                     .square().mean())
    assert fitted < 0.85 * diagonal, (fitted, diagonal)
    assert fitted < 0.85 * float((x - test).square().mean())


@pytest.mark.parametrize("name, resolution, grayscale", [("white", 4, False), ("grf", 8, True)])
def test_linear_mmse_equals_wiener_on_stationary_data(name, resolution, grayscale):
    from freqlab.data.sources import make_source

    source = make_source(name, resolution=resolution, grayscale=grayscale)
    linear = LinearMMSEDenoiser.from_source(source, 8000, batch_size=1000)
    wiener = WienerDenoiser.from_images(source.sample(8000))
    test = make_source(name, resolution=resolution, grayscale=grayscale, split="test").sample(2000).double()
    noise = torch.randn(test.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for sigma in (0.05, 0.2, 1.0):
        x = test + sigma * noise
        lin = float((linear(x, sigma) - test).square().mean())
        wie = float((wiener(x, sigma) - test).square().mean())
        assert lin == pytest.approx(wie, rel=0.02), (sigma, lin, wie)
        assert lin == pytest.approx(float(linear.expected_mse(sigma)), rel=0.03)
        if name == "white":  # per-pixel variance 0.25: the MMSE is 0.25σ²/(0.25+σ²)
            assert lin == pytest.approx(0.25 * sigma**2 / (0.25 + sigma**2), rel=0.03)
            assert float(linear.expected_mse(sigma)) == pytest.approx(0.25 * sigma**2 / (0.25 + sigma**2), rel=0.03)


def test_linear_mmse_equals_the_closed_form():
    mean, cov = nonstationary_gaussian()
    x = gaussian_samples(mean, cov, 5, seed=1) + 0.3 * torch.randn(5, *LIN_SHAPE, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.1, 0.3, 1.0, 5.0], dtype=torch.float64)
    known = LinearMMSEDenoiser.from_covariance(mean, cov, image_shape=LIN_SHAPE)
    out = known(x, sigma)
    assert out.dtype == torch.float64
    assert torch.allclose(out, closed_form(mean, cov, x, sigma), rtol=0, atol=1e-8)
    # a fitted, rank-deficient one (10 images, D = 36) too: the closed form with its own μ and Σ
    fit = gaussian_samples(mean, cov, 10, seed=2)
    small = LinearMMSEDenoiser.from_images(fit)
    assert small.n_fit == 10
    # rank n − 1 = 9: the other eigenvalues are rounding noise about 0, clamped to ≥ 0
    assert bool((small.eigenvalues >= 0).all()) and int((small.eigenvalues > 1e-10).sum()) == 9
    flat = fit.reshape(10, -1)
    assert torch.allclose(small.mean, flat.mean(0), rtol=0, atol=1e-12)
    assert torch.allclose(small.covariance(), torch.cov(flat.T), rtol=0, atol=1e-10)
    assert torch.allclose(small(x, sigma), closed_form(flat.mean(0), torch.cov(flat.T), x, sigma), rtol=0, atol=1e-8)


def test_linear_mmse_fit_streams_batches_unbiased():
    mean, cov = nonstationary_gaussian()
    data = gaussian_samples(mean, cov, 50, seed=3) + 0.5  # an offset mean, to exercise the shifted sums
    flat = data.reshape(50, -1)
    streamed = LinearMMSEDenoiser.from_images(data, batch_size=7)
    assert torch.allclose(streamed.mean, flat.mean(0), rtol=0, atol=1e-12)  # a mean image, not per channel
    assert torch.allclose(streamed.covariance(), torch.cov(flat.T, correction=1), rtol=0, atol=1e-10)
    assert streamed.sigma_data == pytest.approx(float(data.std()), rel=1e-10)
    source = ListSource(data)
    from_source = LinearMMSEDenoiser.from_source(source, 40, batch_size=16, start=10, sigma_data=0.5)
    assert source.calls == [list(range(10, 26)), list(range(26, 42)), list(range(42, 50))]
    held = data[10:].to(torch.float32).double().reshape(40, -1)
    assert from_source.n_fit == 40 and from_source.sigma_data == 0.5
    assert torch.allclose(from_source.mean, held.mean(0), rtol=0, atol=1e-12)
    assert torch.allclose(from_source.covariance(), torch.cov(held.T), rtol=0, atol=1e-10)


def test_linear_mmse_limits_in_sigma():
    mean, cov = nonstationary_gaussian()
    known = LinearMMSEDenoiser.from_covariance(mean, cov, image_shape=LIN_SHAPE)
    x = gaussian_samples(mean, cov, 4, seed=4) + 0.1 * torch.randn(4, *LIN_SHAPE, dtype=torch.float64)
    assert torch.allclose(known(x, 1e-6), x, rtol=0, atol=1e-7)  # σ → 0: the identity (Σ has full rank)
    assert torch.allclose(known(x, 1e6), mean.reshape(1, *LIN_SHAPE).expand_as(x), rtol=0, atol=1e-9)  # σ → ∞: μ
    assert float(known.expected_mse(1e-6)) < 1e-11
    assert float(known.expected_mse(1e6)) == pytest.approx(float(cov.diagonal().mean()), rel=1e-9)
    # expected_mse keeps sigma's shape and is increasing in σ
    curve = known.expected_mse(torch.tensor([0.1, 0.3, 1.0]))
    assert curve.shape == (3,) and known.expected_mse(0.3).shape == () and bool((curve.diff() > 0).all())
    diagonal = LinearMMSEDenoiser.from_covariance(0.0, torch.diag(torch.linspace(0.0, 1.0, LIN_D, dtype=torch.float64)),
                                                  image_shape=LIN_SHAPE)
    lam = torch.linspace(0.0, 1.0, LIN_D, dtype=torch.float64)
    assert float(diagonal.expected_mse(0.5)) == pytest.approx(float((lam * 0.25 / (lam + 0.25)).mean()), rel=1e-12)


def test_linear_mmse_dtypes_devices_state_and_gradients():
    mean, cov = nonstationary_gaussian()
    known = LinearMMSEDenoiser.from_covariance(mean, cov, image_shape=LIN_SHAPE)
    x64 = torch.randn(3, *LIN_SHAPE, dtype=torch.float64)
    y32 = known(x64.float(), 0.3)
    assert y32.dtype == torch.float32 and y32.shape == x64.shape
    assert torch.allclose(y32.double(), known(x64, 0.3), atol=1e-6)
    known.to(torch.float32)  # the buffers stay float64: only the device would follow
    assert known.eigenvectors.dtype == known.mean.dtype == known.eigenvalues.dtype == torch.float64
    assert known.device == torch.device("cpu")
    copy = LinearMMSEDenoiser(torch.zeros(LIN_D), torch.eye(LIN_D), torch.ones(LIN_D), image_shape=LIN_SHAPE)
    copy.load_state_dict(known.state_dict())
    assert torch.equal(copy(x64, 0.3), known(x64, 0.3))
    with torch.inference_mode():
        assert known(x64.float(), torch.tensor([0.1, 0.2, 0.3])).shape == x64.shape
    x = x64.float().requires_grad_(True)
    known(x, 0.5).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="6x6"):
        known(torch.randn(1, 1, 8, 8), 0.5)


def test_linear_mmse_clear_errors():
    big = ListSource(torch.zeros(3, 3, 64, 64))
    message = r"at most 4096 values \(C·H·W\); got 3×64×64 = 12288"
    with pytest.raises(ValueError, match=message):
        LinearMMSEDenoiser.from_source(big, 100)
    assert big.calls == []  # refused before reading any image
    with pytest.raises(ValueError, match=r"at most 4096 values \(C·H·W\); got 3×40×40 = 4800"):
        LinearMMSEDenoiser.from_images(torch.zeros(2, 3, 40, 40))
    with pytest.raises(ValueError, match=r"at most 16 values \(C·H·W\); got 1×6×6 = 36"):
        LinearMMSEDenoiser(torch.zeros(LIN_D), torch.eye(LIN_D), torch.ones(LIN_D), image_shape=LIN_SHAPE, max_dim=16)
    assert LinearMMSEDenoiser.from_images(torch.randn(2, *LIN_SHAPE), max_dim=LIN_D).dim == LIN_D  # D = max_dim: fine
    with pytest.raises(ValueError, match="at least 2 images"):
        LinearMMSEDenoiser.from_images(torch.randn(1, *LIN_SHAPE))
    with pytest.raises(ValueError, match="at least 2 images"):
        LinearMMSEDenoiser.from_source(ListSource(torch.randn(5, *LIN_SHAPE)), 1)
    with pytest.raises(ValueError, match="eigenvectors"):
        LinearMMSEDenoiser(torch.zeros(LIN_D), torch.eye(LIN_D - 1), torch.ones(LIN_D), image_shape=LIN_SHAPE)
