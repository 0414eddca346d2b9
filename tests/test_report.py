"""The report's readings of the sweep: the σ_max reading, the sampler section, section numbers."""

import numpy as np
import xarray as xr

from freqlab import report


def _generate_row(rel_db_by_freq):
    freq = np.linspace(0, 0.5, 17)
    rel = np.array([rel_db_by_freq(f) for f in freq])[None, :].repeat(3, axis=0)
    ds = xr.Dataset({"relative_power_db": (("channel", "freq"), rel)},
                    coords={"channel": [0, 1, 2], "freq": freq, "band": ["low", "mid", "high"],
                            "band_lo": ("band", [0.0, 0.125, 0.25]), "band_hi": ("band", [0.125, 0.25, 0.5])})
    return ds, ds


def test_sigma_max_reading_tells_a_blurred_mean_from_grain():
    blurred = report._sigma_max_reading(*_generate_row(lambda f: -12.0))
    assert "what a faithful denoiser gives" in blurred
    grain = report._sigma_max_reading(*_generate_row(lambda f: 6.0 if f >= 0.25 else -12.0))
    assert "more power than the data in the high band" in grain and "faithful denoiser gives" not in grain
    assert report._sigma_max_reading(*_generate_row(lambda f: 0.0)) == ""  # close to the data: nothing to explain


def _sampled(trajectory_lsd) -> xr.Dataset:
    """A sweep with the sample mode: the LSD per band of the sampler's estimate at each step (step 0: one step)."""
    lsd = np.asarray(trajectory_lsd, dtype=float)[None, :, None, :]  # (ck, step, channel, band)
    return xr.Dataset(
        {"sample_trajectory_lsd": (("checkpoint", "sampler_step", "channel", "band"), lsd)},
        coords={"checkpoint": ["final"], "step": ("checkpoint", [800.0]), "sigma": [80.0],
                "mode": ["generate", "sample"], "channel": [0], "band": ["low", "mid", "high"],
                "sampler_sigma": ("sampler_step", [80.0, 5.0, 0.3])},
        attrs={"sample_mode": "EDM's deterministic heun sampler, 3 steps (5 model calls) from sigma_max*z",
               "sample_images": 16})


def test_sampler_section_names_the_bands_only_many_steps_reach_and_can_say_no():
    ds = _sampled([[12.0, 8.0, 9.0], [1.0, 5.0, 20.0], [1.0, 2.5, 2.9]])
    text = "\n".join(report.sampler_section(ds))
    assert "multi-step sample of 16 images" in text
    assert "| step 800 | 1.0 / 2.5 / 2.9 | 12.0 / 8.0 / 9.0 | low, mid, high | none | low, mid, high |" in text
    assert "low from t = 5 (step 1); mid from t = 0.3 (step 2); high from t = 0.3 (step 2)" in text
    assert "(coarse before fine" in text
    # a sampler no better than one step reaches nothing more; a band settled first at high f is not "coarse first"
    ds = _sampled([[12.0, 8.0, 9.0], [12.0, 8.0, 1.0], [12.0, 8.0, 1.0]])
    text = "\n".join(report.sampler_section(ds))
    assert "| 12.0 / 8.0 / 1.0 | 12.0 / 8.0 / 9.0 | high | none | high |" in text
    assert "low never; mid never; high from t = 5 (step 1)" in text and "leaves the order open" in text
    ds = _sampled([[1.0, 9.0, 1.0], [9.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # low leaves and comes back: settles last
    text = "\n".join(report.sampler_section(ds))
    assert "low from t = 0.3 (step 2); mid from t = 5 (step 1); high from t = 80 (step 0)" in text
    assert "(not coarse before fine)" in text


def test_no_sample_mode_no_sampler_section():
    ds = _sampled([[1, 1, 1]] * 3).drop_vars("sample_trajectory_lsd")
    assert report.sampler_section(ds) == []


def test_sections_are_numbered_as_they_appear():
    assert report._numbered(["## a", "x", "### sub", "## b"]) == ["## 1. a", "x", "### sub", "## 2. b"]

