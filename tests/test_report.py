"""The report's verdicts on fine-tuning seeds: the criterion can say no, and reads right for any outcome."""

import numpy as np
import pytest
import xarray as xr

from freqlab import report


def _log(seed: int, start, end) -> xr.Dataset:
    """A fine-tuning log with two rows whose channel-mean LSD per band is ``start`` then ``end``."""
    lsd = np.stack([start, end]).astype(float)[:, None, :].repeat(3, axis=1)  # (images_seen, channel, band)
    return xr.Dataset({"lsd": (("images_seen", "channel", "band"), lsd)},
                      coords={"images_seen": [0, 1000], "channel": [0, 1, 2], "band": ["low", "mid", "high"]},
                      attrs={"config_seed": seed})


def test_the_spectrum_verdict_wants_the_high_band_halved_and_no_band_lost():
    seeds = {"pretrained": [_log_with_kurtosis(0, [16, 16, 10], [4, 3.5, 4], (3.2, 5, 8)),    # all within 0.5x
                            _log_with_kurtosis(1, [16, 16, 10], [9, 3, 4], (3.2, 5, 8)),      # low 0.56x: still yes
                            _log_with_kurtosis(2, [16, 16, 10], [4, 3, 6], (3.2, 5, 8)),      # high 0.6x: no
                            _log_with_kurtosis(3, [16, 16, 10], [17, 3, 4], (3.2, 5, 8))]}    # low worse than start
    table = report.effect_table(seeds)["pretrained"]
    assert [r["spectrum"] for r in table] == [True, True, False, False]
    assert [r["every_band"] for r in table] == [True, False, False, False]
    assert [r["effect"] for r in table] == [True, True, False, False]
    np.testing.assert_allclose(table[1]["ratio"], [9 / 16, 3 / 16, 4 / 10])
    # "no band lost" is against the run's own start: a control whose mid band went from 5 to 7 dB lost it, although
    # 7 dB is well under the pre-trained yardstick's 16
    traded = _log_with_kurtosis(4, [16, 5, 6], [8, 7, 2], (3.2, 5, 8))
    row = report.effect_table({"pretrained": [seeds["pretrained"][0]], "random": [traded]})["random"][0]
    assert (row["ratio"] <= 1).all() and not row["spectrum"] and not row["effect"]
    text = "\n".join(report.seeds_section(seeds))
    assert "**pretrained**: the effect on **2 of 4** seed(s) (spectrum on 2, structure on 4 of 4). High band's end / " \
           "yardstick: median 0.40. Every band at most 0.5× the yardstick: 1 of 4 (worst band's end / yardstick: " \
           "median 0.58" in text


def test_power_alone_never_decides():
    # a control that matched every band's power, in logs without band statistics: undecided, not a yes
    seeds = {"pretrained": [_log(0, [16, 16, 10], [4, 3, 4])], "random": [_log(0, [16, 6, 6], [6, 5, 3])]}
    table = report.effect_table(seeds)
    assert table["random"][0]["spectrum"] and table["random"][0]["effect"] is None
    text = "\n".join(report.seeds_section(seeds))
    assert "**random**: the effect on **0 of 1** seed(s), **1 undecided** (spectrum on 1, structure on 0 of 0; " \
           "undecided on 1" in text
    assert "ended at most 0.5× the yardstick on 1 of 1 pretrained seed(s), 1 of 1 random seed(s)" in text
    # without band statistics a spectrum that already says no is a no, not undecided
    lost = report.effect_table({"random": [_log(0, [16, 6, 6], [6, 9, 3])]})["random"][0]
    assert lost["structure"] is None and lost["effect"] is False


def test_the_high_band_sentence_reads_right_for_any_outcome():
    seeds = {"pretrained": [_log_with_kurtosis(0, [16, 16, 10], [4, 3, 4], (3.2, 5, 8))],
             "random": [_log_with_kurtosis(0, [16, 6, 6], [12, 5, 6], (3.2, 3.1, 8))]}  # high band 0.6x: no match
    text = "\n".join(report.seeds_section(seeds))
    assert "does not tell the runs apart" not in text
    assert "The high band's distance ended at most 0.5× the yardstick on 1 of 1 pretrained seed(s), 0 of 1 " \
           "random" in text
    seeds["random"] = [_log_with_kurtosis(0, [16, 6, 6], [12, 5, 3], (3.2, 3.1, 8))]  # now it matches, with noise
    assert "does not tell the runs apart" in "\n".join(report.seeds_section(seeds))


def test_without_a_pretrained_run_each_run_is_its_own_yardstick_and_bad_numbers_say_no():
    table = report.effect_table({"random": [_log_with_kurtosis(0, [16, 6, 8], [12, 5, 3], (3.2, 6, 8))]})
    np.testing.assert_allclose(table["random"][0]["ratio"], [12 / 16, 5 / 6, 3 / 8])
    assert table["random"][0]["effect"]
    for start, end in (([16, 6, 0], [12, 5, 0]), ([16, 6, 8], [12, np.nan, 3])):  # a zero start, a NaN distance
        row = report.effect_table({"random": [_log_with_kurtosis(0, start, end, (3.2, 6, 8))]})["random"][0]
        assert not row["spectrum"] and row["effect"] is False


def test_no_logs_no_section():
    assert report.seeds_section({}) == []


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


def _log_with_kurtosis(seed: int, start, end, kurtosis) -> xr.Dataset:
    """``_log`` plus per-image band kurtosis: the high band's goes from ``kurtosis[0]`` to ``kurtosis[1]``, the
    data's is ``kurtosis[2]``."""
    log = _log(seed, start, end)
    k = np.full((2, 3, 3), 3.0)
    k[:, :, -1] = np.array(kurtosis[:2])[:, None]
    log["band_kurtosis"] = (("images_seen", "channel", "band"), k)
    log["data_band_kurtosis"] = (("channel", "band"), np.array([[3.2, 4.7, kurtosis[2]]] * 3))
    return log


def test_structure_lines_tell_coloured_noise_from_structure():
    # the control matches the spectrum as well as D2O-F but its high band stays Gaussian (kurtosis 3)
    seeds = {"pretrained": [_log_with_kurtosis(0, [16, 16, 10], [4, 3, 4], (3.2, 4.6, 8.0)),
                            _log_with_kurtosis(1, [16, 16, 10], [4, 3, 4], (3.2, 4.2, 8.0))],
             "random": [_log_with_kurtosis(0, [16, 6, 6], [4, 3, 3], (3.2, 3.1, 8.0)),
                        _log_with_kurtosis(1, [16, 6, 6], [4, 3, 3], (3.2, 3.2, 8.0))]}
    table = report.effect_table(seeds)
    assert all(r["spectrum"] for rows in table.values() for r in rows)  # the spectral criterion cannot say no here
    assert [r["effect"] for r in table["pretrained"]] == [True, True]
    assert [r["effect"] for r in table["random"]] == [False, False]  # the structure criterion does
    text = "\n".join(report.seeds_section(seeds))
    assert "| pretrained | 0 |" in text and "| 3.20 → 4.60 | 4 % → 32 % | yes | yes |" in text
    assert "| random | 1 |" in text and "| 3.20 → 3.20 | 4 % → 4 % | no | no |" in text
    assert "**pretrained**: the effect on **2 of 2** seed(s) (spectrum on 2, structure on 2 of 2)" in text
    assert "**random**: the effect on **0 of 2** seed(s) (spectrum on 2, structure on 0 of 2)" in text
    assert "**pretrained**: high-band kurtosis 3.20 → 4.40 (medians); of the way to the data's: 4 % → 28 % " \
           "(medians; end range 24 % to 32 % over 2 of 2 seed(s))" in text
    assert "**random**: high-band kurtosis 3.20 → 3.15 (medians); of the way to the data's: 4 % → 3 % " in text


def test_structure_share_reads_right_for_overshoot_gaussian_data_and_nan():
    assert report.structure_share(3.0, 8.0) == 0.0 and report.structure_share(8.0, 8.0) == 1.0
    assert report.structure_share(14.0, 8.0) == pytest.approx(-0.2)  # overshot: 6 from the data, Gaussian noise is 5
    assert np.isnan(report.structure_share(4.0, 3.02))  # Gaussian data: kurtosis cannot tell structure
    assert np.isnan(report.structure_share(np.nan, 8.0))

    def line(kurtosis):
        seeds = {"pretrained": [_log_with_kurtosis(0, [16, 16, 10], [4, 3, 4], kurtosis)]}
        return report.effect_table(seeds)["pretrained"][0], "\n".join(report.seeds_section(seeds)).splitlines()[-1]

    row, text = line((3.0, 14.0, 8.0))
    assert row["structure"] is False and "-20 %" in text
    row, text = line((3.5, 3.6, 3.01))
    assert row["structure"] is None and row["effect"] is None and "not measurable" in text
    row, text = line((3.2, np.nan, 8.0))  # a broken output's kurtosis does not count as structure
    assert row["structure"] is False and not row["effect"] and "not measurable" in text


def test_the_structure_verdict_needs_the_stated_share_of_the_way():
    share = report.STRUCTURE_SHARE
    below = _log_with_kurtosis(0, [16, 16, 10], [4, 3, 4], (3.2, 3.0 + 0.8 * share * 5.0, 8.0))
    above = _log_with_kurtosis(1, [16, 16, 10], [4, 3, 4], (3.2, 3.0 + 1.2 * share * 5.0, 8.0))
    overshoot = _log_with_kurtosis(2, [16, 16, 10], [4, 3, 4], (3.2, 8.0 + 0.95 * 5.0, 8.0))  # 5 % of the way
    table = report.effect_table({"pretrained": [below, above, overshoot]})
    assert [r["structure"] for r in table["pretrained"]] == [False, True, False]
    assert [r["effect"] for r in table["pretrained"]] == [False, True, False]
    np.testing.assert_allclose([r["share"][1] for r in table["pretrained"]], [0.8 * share, 1.2 * share, 0.05])
    spectrum_fails = _log_with_kurtosis(3, [16, 16, 10], [4, 3, 6], (3.2, 7.9, 8.0))  # structure alone is not enough
    row = report.effect_table({"pretrained": [spectrum_fails]})["pretrained"][0]
    assert row["structure"] and not row["spectrum"] and not row["effect"]
    started_structured = _log_with_kurtosis(4, [16, 16, 10], [4, 3, 4], (6.0, 4.0, 8.0))  # less than at the start
    row = report.effect_table({"pretrained": [started_structured]})["pretrained"][0]
    assert row["structure"] and row["effect"]  # judged by where it ends, not by where it started


def test_no_band_statistics_no_structure_lines():
    seeds = {"pretrained": [_log(0, [16, 16, 10], [4, 3, 4])]}
    row = report.effect_table(seeds)["pretrained"][0]
    assert row["structure"] is None and row["effect"] is None  # undecided, and the text says why
    text = "\n".join(report.seeds_section(seeds))
    assert "Power is not structure" not in text and "| – |" in text
    assert "undecided on 1: the structure could not be measured (no band statistics" in text
