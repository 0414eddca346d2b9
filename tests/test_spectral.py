import math

import numpy as np
import pytest
import torch

from freqlab import spectral as S


def grf(n, h, w, exponent, seed=0):
    """Gaussian random fields with per-mode power P(f) = f^-exponent (P(0) = 0), in the RAPS normalisation."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, h, w, generator=g, dtype=torch.float64)
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :]
    f = torch.sqrt(fy**2 + fx**2)
    amp = torch.where(f > 0, f.clamp_min(1e-12) ** (-exponent / 2), 0.0)
    return torch.fft.ifft2(torch.fft.fft2(noise) * amp).real


@pytest.mark.parametrize("shape", [(64, 3, 32, 32), (64, 1, 24, 40), (32, 17, 33)])
def test_white_noise_is_flat_at_its_variance(shape):
    s = 0.7
    x = torch.randn(*shape) * s
    spec = S.radial_power_spectrum(x)
    mean = spec.power.reshape(-1, spec.power.shape[-1]).mean(0)
    # every bin within a few standard errors of s²; the DC bin has 1 mode per image, so it is noisier
    n_images = x[..., 0, 0].numel()
    tol = 5 * s**2 / torch.sqrt(n_images * spec.counts.double()).float()
    assert torch.all((mean - s**2).abs() < tol), (mean, tol)
    assert spec.power.shape == x.shape[:-2] + (spec.freq.numel(),)


def test_white_noise_per_channel_variance():
    x = torch.randn(256, 3, 32, 32) * torch.tensor([0.1, 0.5, 1.0])[:, None, None]
    p = S.radial_power_spectrum(x).power.mean(0)[:, 1:].mean(-1)
    assert torch.allclose(p, torch.tensor([0.01, 0.25, 1.0]), rtol=0.03)


@pytest.mark.parametrize("hw", [(32, 32), (24, 40), (31, 17)])
def test_parseval_with_all_modes(hw):
    x = torch.randn(5, 2, *hw, dtype=torch.float64)
    spec = S.radial_power_spectrum(x, include_corners=True)
    total = (spec.counts * spec.power).sum(-1)
    assert torch.allclose(total, hw[0] * hw[1] * x.square().mean((-2, -1)))
    assert int(spec.counts.sum()) == hw[0] * hw[1]


def test_default_bins_exclude_corners_and_centre_on_modes():
    spec = S.radial_power_spectrum(torch.randn(2, 32, 32))
    assert spec.freq[0] == 0 and spec.counts[0] == 1  # DC alone in its bin
    assert torch.allclose(spec.freq, torch.arange(17) / 32)
    assert int(spec.counts.sum()) < 32 * 32  # corners beyond Nyquist left out


@pytest.mark.parametrize("h,w,ky,kx", [(32, 32, 0, 5), (32, 32, 3, 4), (24, 48, 0, 12), (48, 24, 8, 0), (40, 64, 10, 0)])
def test_cosine_peak_in_right_bin(h, w, ky, kx):
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    x = torch.cos(2 * math.pi * (ky * yy / h + kx * xx / w))
    spec = S.radial_power_spectrum(x)
    f0 = math.hypot(ky / h, kx / w)
    peak = int(spec.power.argmax())
    assert abs(float(spec.freq[peak]) - f0) <= 0.5 / max(h, w) + 1e-12
    # all the power sits in that bin: amplitude 1 cosine has mean square 1/2
    assert float((spec.counts * spec.power).sum()) == pytest.approx(h * w * 0.5, rel=1e-9)


@pytest.mark.parametrize("exponent", [1.5, 2.5])
def test_grf_slope_recovered_with_window(exponent):
    x = grf(64, 64, 64, exponent)
    spec = S.radial_power_spectrum(x, window="hann", remove_mean=True)
    fit = S.spectral_slope(spec.freq, spec.power.mean(0), 0.03, 0.35)
    assert fit.ci_low - 0.1 < -exponent < fit.ci_high + 0.1
    assert abs(float(fit.slope) + exponent) < 0.15


def test_windows_normalised_and_kaiser_beta():
    x = torch.randn(128, 32, 32)
    for window in ("hann", "kaiser", ("kaiser", 4.0), "hamming", "blackman"):
        p = S.radial_power_spectrum(x, window=window).power.mean(0)[2:-2].mean()
        assert float(p) == pytest.approx(1.0, rel=0.05), window
    a = S.make_window(("kaiser", 2.0), 8, 8)
    b = S.make_window(("kaiser", 12.0), 8, 8)
    assert not torch.allclose(a, b)


def test_batch_invariance_and_leading_dims():
    x = torch.randn(10, 3, 16, 16)
    whole = S.radial_power_spectrum(x, window="hann").power
    parts = torch.cat([S.radial_power_spectrum(x[:3], window="hann").power, S.radial_power_spectrum(x[3:], window="hann").power])
    assert torch.allclose(whole, parts, atol=1e-6)
    single = S.radial_power_spectrum(x[4, 1]).power
    assert torch.allclose(S.radial_power_spectrum(x).power[4, 1], single, atol=1e-6)


def test_device_meta_and_dtypes():
    x = torch.randn(4, 16, 16)
    assert S.radial_power_spectrum(x).power.dtype == torch.float32
    assert S.radial_power_spectrum(x, accumulate_dtype=torch.float64).power.dtype == torch.float64
    assert S.radial_power_spectrum(x.double()).power.dtype == torch.float64
    half = S.radial_power_spectrum(x.bfloat16()).power
    assert half.dtype == torch.float32
    assert torch.allclose(half, S.radial_power_spectrum(x.bfloat16().float()).power)
    if torch.cuda.is_available():  # pragma: no cover - CI has no GPU
        gpu = S.radial_power_spectrum(x.cuda()).power.cpu()
        assert torch.allclose(gpu, S.radial_power_spectrum(x).power, rtol=1e-4, atol=1e-6)


def test_gradients_flow():
    x = torch.randn(2, 16, 16, requires_grad=True)
    S.radial_power_spectrum(x, window="hann").power[..., 3:].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # Parseval: d/dx of Σ counts·power = 2·H·W·x/(H·W)·... check against the analytic gradient
    y = torch.randn(16, 16, dtype=torch.float64, requires_grad=True)
    spec = S.radial_power_spectrum(y, include_corners=True)
    (spec.counts * spec.power).sum().backward()
    assert torch.allclose(y.grad, 2 * y.detach())


def test_log_and_custom_bins():
    x = torch.randn(16, 64, 64)
    log = S.radial_power_spectrum(x, bins="log", n_bins=10)
    assert 5 <= log.freq.numel() <= 10 and torch.all(log.freq[1:] > log.freq[:-1])
    in_disc = int(S.radial_power_spectrum(x[:1]).counts.sum())  # every mode with |f| <= 0.5
    assert torch.all(log.counts > 0) and int(log.counts.sum()) == in_disc - 1  # all but DC
    assert torch.allclose(log.power.mean(0)[log.counts >= 8], torch.tensor(1.0), rtol=0.3)
    edges = [0.0, 0.1, 0.25, 0.5]
    spec = S.radial_power_spectrum(x, bins=edges)
    assert torch.allclose(spec.freq, torch.tensor([0.05, 0.175, 0.375]))
    lin = S.radial_power_spectrum(x, bins=8)
    assert lin.freq.numel() == 8


def test_cross_spectrum_gives_transfer_and_coherence():
    x0 = torch.randn(256, 32, 32, dtype=torch.float64)
    out = 0.5 * x0
    pxx, pyy, pxy = S.radial_spectra(out, x0)
    transfer = pxy.power.mean(0) / pyy.power.mean(0)
    assert torch.allclose(transfer, torch.full_like(transfer, 0.5))
    coherence = pxy.power.mean(0) ** 2 / (pxx.power.mean(0) * pyy.power.mean(0))
    assert torch.allclose(coherence, torch.ones_like(coherence))
    assert torch.allclose(S.radial_cross_spectrum(x0, x0).power, S.radial_power_spectrum(x0).power)
    noisy = x0 + torch.randn_like(x0)  # independent noise of equal power: coherence 1/2
    pxx, pyy, pxy = S.radial_spectra(noisy, x0)
    coh = (pxy.power.mean(0) ** 2 / (pxx.power.mean(0) * pyy.power.mean(0)))[1:]
    assert torch.allclose(coh, torch.full_like(coh, 0.5), atol=0.1)


def test_power_spectrum_2d_centred_and_consistent():
    h, w = 16, 24
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    x = torch.cos(2 * math.pi * 3 * xx / w)
    fy, fx, p = S.power_spectrum_2d(x)
    iy, ix = divmod(int(p.argmax()), w)
    assert fy[iy] == 0 and abs(abs(float(fx[ix])) - 3 / w) < 1e-12
    assert p.sum() == pytest.approx(h * w * 0.5)


def test_band_metrics():
    freq = torch.arange(17) / 32
    ref = torch.ones(17)
    out = torch.where(freq < 0.2, 1.0, 0.1)
    db = S.relative_power_db(out, ref)
    assert float(db[-1]) == pytest.approx(-10.0)
    # 0 dB up to bin 6 (0.1875), -10 dB from bin 7 (0.21875): |d| reaches 3 dB 3/10 of the way from bin 6 to 7
    fc = S.cutoff_frequency(freq, db)
    assert float(fc.freq) == pytest.approx(6 / 32 + 0.3 / 32, abs=1e-7) and int(fc.bound) == 0
    lsd = S.log_spectral_distance(out, ref, freq)
    assert float(lsd[0]) == pytest.approx(0.0) and float(lsd[2]) == pytest.approx(10.0)
    bp = S.band_power(freq, out, bands={"all": (0, 0.5)})
    assert bp.shape == (1,)
    assert S.band_power(freq, torch.stack([out, ref]), counts=torch.ones(17, dtype=torch.long)).shape == (2, 3)
    assert S.resolve_bands([0, 0.1, 0.5]) == {"b0": (0.0, 0.1), "b1": (0.1, 0.5)}


@pytest.mark.parametrize("values,expected,bound", [
    ([0.0, 1.0, 5.0, 0.0], 0.25, 0),      # excess: |d| crosses +3 half-way from 1 dB to 5 dB
    ([0.0, -1.0, -5.0, 0.0], 0.25, 0),    # shortfall, the same crossing
    ([0.0, 2.0, -10.0, 0.0], 0.2 + 0.1 * 5 / 12, 0),  # from +2 down through -3: 5/12 of the way
    ([40.0, 40.0, 40.0, 40.0], 0.1, -1),  # 40 dB above the data everywhere: out at the first bin, an upper bound
    ([4.0, 1.0, 5.0, 0.0], 0.1, -1),
    ([0.0, 1.0, 2.0, -2.9], 0.4, 1),      # never out: a lower bound at the top bin
    ([0.0, float("nan"), 6.0, 0.0], 0.1 + 0.2 * 0.5, 0),  # a NaN bin is skipped: interpolate 0.1 -> 0.3
])
def test_cutoff_is_two_sided_and_says_when_it_is_a_bound(values, expected, bound):
    fc = S.cutoff_frequency(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64), torch.tensor(values, dtype=torch.float64))
    assert float(fc.freq) == pytest.approx(expected, abs=1e-12)
    assert int(fc.bound) == bound


def test_cutoff_batched_and_coherence_cutoff():
    freq = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    db = torch.tensor([[0.0, 1.0, 5.0, 0.0], [9.0, 9.0, 9.0, 9.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    fc = S.cutoff_frequency(freq, db)
    assert fc.freq.tolist() == pytest.approx([0.25, 0.1, 0.4]) and fc.bound.tolist() == [0, -1, 1]
    coh = torch.tensor([1.0, 0.9, 0.3, 0.1], dtype=torch.float64)  # 0.5 is 2/3 of the way from 0.9 to 0.3
    cc = S.coherence_cutoff(freq, coh)
    assert float(cc.freq) == pytest.approx(0.2 + 0.1 * 2 / 3) and int(cc.bound) == 0
    assert int(S.coherence_cutoff(freq, coh + 1.0).bound) == 1  # high coherence everywhere: never below


def test_slope_fit_exact_power_law_and_batch():
    freq = torch.linspace(0.01, 0.5, 40)
    power = torch.stack([3 * freq**-2.0, 0.5 * freq**-1.0])
    fit = S.spectral_slope(freq, power)
    assert torch.allclose(fit.slope, torch.tensor([-2.0, -1.0], dtype=torch.float64), atol=1e-6)
    assert torch.all(fit.stderr < 1e-6)


def test_band_statistics_gaussian_noise_and_sparse_images():
    x = torch.randn(200, 1, 32, 32)
    st = S.band_statistics(x)
    assert st.names == ("low", "mid", "high")
    assert torch.allclose(st.power.mean((0, 1)), torch.ones(3, dtype=torch.float64), rtol=0.05)
    assert torch.allclose(st.kurtosis.mean((0, 1)), torch.full((3,), 3.0), atol=0.3)
    assert torch.allclose(st.kurtosis[..., 1:].mean((0, 1)), torch.full((2,), 3.0), atol=0.1)
    sparse = torch.zeros(50, 32, 32)
    sparse[:, 16, 16] = 1.0  # a single impulse: heavy-tailed band-pass responses
    assert torch.all(S.band_statistics(sparse).kurtosis > 10)
    # diversity: identical outputs have zero spread; Wasserstein of a shift equals the shift
    same = torch.ones(20, 3)
    assert torch.all(S.diversity_ratio(same, torch.randn(20, 3)) == 0)
    a = torch.randn(100)
    assert float(S.wasserstein_1d(a + 0.5, a)) == pytest.approx(0.5)
    assert float(S.kurtosis_gap(torch.full((4,), 3.0), torch.full((4,), 5.0))) == pytest.approx(-2.0)


def _bandpass_dc_free(x, mask):
    return torch.fft.irfft2(torch.fft.rfft2(x) * mask, s=x.shape[-2:])


@pytest.mark.parametrize("source", ["white", "natural"])
def test_band_statistics_ignore_brightness(source):
    """Adding a constant (brightness) changes no band power, kurtosis or spread: the DC mode is in no band."""
    from freqlab.data.sources import make_source

    x = make_source(source, resolution=32, split="test").images(list(range(24))).double()
    base = S.band_statistics(x)
    for c in (0.1, 0.3, -0.7):
        moved = S.band_statistics(x + c)
        torch.testing.assert_close(moved.power, base.power, rtol=1e-9, atol=0)
        torch.testing.assert_close(moved.kurtosis, base.kurtosis, rtol=1e-9, atol=0)
        lp, lp0 = (10 * torch.log10(v.power) for v in (moved, base))
        torch.testing.assert_close(S.diversity_ratio(lp, lp0), torch.ones_like(lp[0]), rtol=1e-9, atol=0)
    # the old definition (DC in the low band, moments about 0) fails this: its low-band kurtosis falls with the mean
    m = S.band_masks(32, 32, dtype=torch.float64)[0] | (S.radial_frequency(32, 32) == 0)
    old = [float(_bandpass_dc_free(x + c, m).pow(4).mean() / _bandpass_dc_free(x + c, m).pow(2).mean() ** 2)
           for c in (0.0, 0.3)]
    assert abs(old[1] - old[0]) > 0.1


def test_band_kurtosis_equals_scipy_and_survives_extreme_scales():
    from scipy.stats import kurtosis

    x = torch.randn(6, 2, 20, 24, dtype=torch.float64) + 0.4
    st = S.band_statistics(x)
    masks = S.band_masks(20, 24, dtype=torch.float64)
    for i in range(3):
        b = _bandpass_dc_free(x, masks[i]).numpy().reshape(6, 2, -1)
        np.testing.assert_allclose(st.kurtosis[..., i].numpy(), kurtosis(b, axis=-1, fisher=False), rtol=1e-6)
    x32 = x.float()
    ref = S.band_statistics(x32)
    for scale in (1e-11, 1e-30, 1e30):
        st = S.band_statistics(x32 * scale)
        assert torch.isfinite(st.power).all() and torch.isfinite(st.kurtosis).all(), scale
        torch.testing.assert_close(st.kurtosis, ref.kurtosis, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(st.power / scale**2, ref.power, rtol=1e-4, atol=0)


@pytest.mark.parametrize("n,m", [(64, 256), (7, 5), (1, 30), (100, 100)])
def test_wasserstein_exact_for_any_sample_sizes(n, m):
    from scipy.stats import wasserstein_distance

    g = torch.Generator().manual_seed(n * 1000 + m)
    a = torch.randn(n, 3, 2, generator=g, dtype=torch.float64)
    b = torch.randn(m, 3, 2, generator=g, dtype=torch.float64) * 1.5 + 0.3
    w = S.wasserstein_1d(a, b)
    ref = np.array([[wasserstein_distance(a[:, i, j], b[:, i, j]) for j in range(2)] for i in range(3)])
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-6, atol=1e-12)


def test_bandpass_splits_image():
    x = torch.randn(3, 32, 32, dtype=torch.float64)
    bands = S.resolve_bands(None)
    total = sum(S.bandpass(x, lo, hi) for lo, hi in bands.values())
    assert torch.allclose(total, S.bandpass(x, 0.0, 0.5))
    assert torch.allclose(S.bandpass(x, 0.0, 1.0), x)  # corners included only when asked for
    assert not torch.allclose(total, x)


@pytest.mark.parametrize(
    "x,match",
    [
        (torch.full((2, 8, 8), float("nan")), "NaN or Inf"),
        (torch.ones(2, 8, 8).index_fill_(1, torch.tensor([3]), float("inf")), "NaN or Inf"),
        (torch.ones(2, 8, 8, dtype=torch.int64), "floating-point"),
        (torch.ones(8), "two spatial"),
        (torch.ones(2, 3, 3), "at least 4x4"),
    ],
)
def test_bad_input_raises(x, match):
    with pytest.raises(ValueError, match=match):
        S.radial_power_spectrum(x)


def test_bad_options_raise():
    x = torch.randn(2, 8, 8)
    with pytest.raises(ValueError, match="strictly increasing"):
        S.radial_power_spectrum(x, bins=[0.0, 0.3, 0.2])
    with pytest.raises(ValueError, match="unknown window"):
        S.radial_power_spectrum(x, window="gaussian-ish")
    with pytest.raises(ValueError, match="unknown bins"):
        S.radial_power_spectrum(x, bins="quadratic")
    with pytest.raises(ValueError, match="same shape"):
        S.radial_spectra(x, torch.randn(2, 8, 9))
    with pytest.raises(ValueError, match="at least 3 bins"):
        S.spectral_slope(torch.tensor([0.1, 0.2]), torch.tensor([1.0, 2.0]))
