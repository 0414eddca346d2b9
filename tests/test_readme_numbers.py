"""Every number README.md quotes about the demo's findings is recomputed here from the committed results
(`figures/results/`, `benchmarks/results/`): a README that drifts from the files it describes fails.

Each check finds the README's sentence by a pattern and compares the numbers in it with the files, at the
precision the README prints them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from freqlab.compare import verdict
from freqlab.compare.criterion import load_criterion
from freqlab.runtime import results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "figures" / "results"
README = (ROOT / "README.md").read_text()
BANDS = ("low", "mid", "high")


def _quoted(pattern: str) -> re.Match:
    """The README's match of ``pattern`` (whitespace-tolerant), which must exist."""
    match = re.search(pattern.replace(" ", r"\s+"), README)
    assert match, f"README.md no longer says {pattern!r}"
    return match


def _floats(text: str) -> list[float]:
    return [float(v.replace(",", "")) for v in re.findall(r"\d[\d,]*\.?\d*", text)]


@pytest.fixture(scope="module")
def sweep() -> xr.Dataset:
    return results.load(RESULTS / "sweep.nc")


@pytest.fixture(scope="module")
def compared() -> xr.Dataset:
    return results.load(RESULTS / "compare.nc")


def test_the_model_size(sweep):
    n = int(results.load(RESULTS / "weight_change.nc").attrs["n_parameters"])
    assert float(_quoted(r"a (\d\.\d\d) M-parameter UNet").group(1)) == round(n / 1e6, 2)


def test_what_the_sampler_reaches_and_one_step_does_not(sweep):
    lsd = sweep.sample_trajectory_lsd.isel(checkpoint=-1).mean("channel")
    many = _floats(_quoted(r"in every band \(([\d. /]+) dB, low / mid / high\)").group(1))
    one = _floats(_quoted(r"the one step in none \(([\d. /]+) dB\)").group(1))
    assert many == [round(float(lsd.isel(sampler_step=-1).sel(band=b)), 1) for b in BANDS]
    assert one == [round(float(lsd.isel(sampler_step=0).sel(band=b)), 1) for b in BANDS]
    assert max(many) <= 3 < min(one)  # "within 3 dB ... in every band", "in none"
    settled = _quoted(r"the (\w+) band settles first, then the (\w+), then the (\w+) band").groups()
    t = sweep.sample_trajectory_lsd.isel(checkpoint=-1).mean("channel")
    step = {}
    for b in BANDS:  # the first step from which the band stays within 3 dB to the end (as the report reads it)
        outside = np.flatnonzero(np.abs(t.sel(band=b).values) > 3)
        step[b] = int(outside[-1]) + 1 if outside.size else 0
    assert list(settled) == sorted(BANDS, key=lambda b: step[b])


def test_where_the_subject_beats_the_best_linear_denoiser(sweep):
    ratio = (sweep.mse.isel(checkpoint=-1) / sweep.linear_mse).mean("channel")
    sigma = sweep.sigma.values
    beats = ratio.values < 1
    n_low = int(np.argmin(beats)) if not beats.all() else beats.size  # the σ below the first where it loses
    lo, hi = _floats(_quoted(r"MSE (\d\.\d\d)–(\d\.\d\d)× its at the").group(0))[:2]
    count = {"five": 5, "four": 4, "six": 6, "three": 3}[_quoted(r"at the (\w+) σ from").group(1)]
    first, last = _floats(_quoted(r"σ from (\d\.\d+) to (\d\.\d+)\)").group(0))
    assert count == n_low and not beats[n_low:].any()
    assert (first, last) == (round(float(sigma[0]), 3), round(float(sigma[n_low - 1]), 3))
    assert (lo, hi) == (round(float(ratio[:n_low].min()), 2), round(float(ratio[:n_low].max()), 2))
    worst, at = _floats(_quoted(r"MSE up to (\d\.\d\d)× the linear denoiser's, at σ = ([\d.]+)").group(0))
    i = int(np.argmax(ratio.values))
    assert (worst, at) == (round(float(ratio[i]), 2), round(float(sigma[i]), 1))
    top, smax = _floats(_quoted(r"(\d\.\d\d)× at σ_max = (\d+)").group(0))
    assert (top, smax) == (round(float(ratio[-1]), 2), round(float(sigma[-1])))


def test_the_verdict_and_its_sample_sizes(compared):
    criterion = load_criterion()
    assert float(_quoted(r"Holm at α = ([\d.]+)").group(1)) == float(compared.attrs["alpha"]) == criterion.compare.alpha
    assert _floats(_quoted(r"Every fine-tune's ([\d,]+) one-step samples").group(1)) == [
        float(compared.attrs["n_images_per_set"])]
    pairs = verdict.run_pairs(compared)
    seeds = int(_quoted(r"on the demo's (\d+) seeds").group(1))
    assert all(len(p) == seeds for p in pairs.values()) and set(pairs) >= {"pretrained", "random",
                                                                          "random-unfrozen"}
    for run, run_pairs in pairs.items():  # "reaches the data in no band and does not move any band toward it"
        bands = verdict.band_verdicts(compared, run_pairs, resamples=criterion.bootstrap_resamples,
                                      level=criterion.level)
        assert not any(v.reaches or v.moved for v in bands.values()), run
    ends = [end for p in pairs.values() for _, end in p]
    recall = compared.recall.sel(candidate=ends, band="image").values
    lo, hi, data = _floats(_quoted(r"recall ([\d.]+)–([\d.]+) against the data's ([\d.]+)").group(0))
    assert (lo, hi) == (round(float(recall.min()), 2), round(float(recall.max()), 2))
    assert data == round(float(compared.recall_reference.sel(candidate=ends, band="image").mean()), 2)


def test_what_fine_tuning_moves():
    weights = results.load(RESULTS / "weight_change.nc")
    change, params = _floats(_quoted(r"puts ([\d.]+) % of its squared weight change on the ([\d.]+) %").group(0))
    assert change == round(100 * float(weights.frozen_share_of_change), 1)
    assert params == round(100 * float(weights.frozen_share_of_params), 1)
    assert int(_quoted(r"D2O-F \((\d+) % frozen").group(1)) == round(100 * float(weights.frozen_share_of_params))
    lost = results.load(RESULTS / "function_change.nc").lost_share
    undo = _floats(_quoted(r"loses (\d+)–(\d+) % of the outputs' change per band").group(0))
    keep = _floats(_quoted(r"keeping only it loses (\d+)–(\d+) %").group(0))
    for part, quoted in (("trainable", undo), ("frozen", keep)):
        share = 100 * lost.sel(part=part).values
        assert quoted == [round(float(share.min())), round(float(share.max()))], part


def test_the_calibration_and_fresh_seed_runs_quoted_exist_and_agree():
    bench = ROOT / "benchmarks" / "results"
    for first, last in re.findall(r"\((\d{3})–(\d{3})\)", README):
        assert (bench / f"verdict_seeds_{first}-{last}.md").exists(), (first, last)
    false_alarms, of = _floats(_quoted(r"held-out dead leaves drew (\d+) false alarms in (\d+)").group(0))
    v1 = (bench / "compare_calibration_v1_seeds1000-1019.md").read_text()
    assert re.search(rf"\| deadleaves \| {int(of)} \| {int(false_alarms)} \|", v1)
    since, comparisons = _floats(_quoted(r"(\d+) in (\d+) held-out comparisons since").group(0))
    v2 = (bench / "compare_calibration_v2_seeds2000-2019.md").read_text()
    rows = re.findall(r"\| (natural|deadleaves|grf) \| (\d+) \| (\d+) \|", v2)
    assert len(rows) == 3
    assert (since, comparisons) == (sum(int(r[2]) for r in rows), sum(int(r[1]) for r in rows))


def test_the_sigma_ablation_numbers_quoted_are_its_results_file():
    import csv

    with open(ROOT / "benchmarks" / "results" / "sigma_ablation.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["stage"] == "end"]
    high = {name: np.array([float(r["high"]) for r in rows if r["range"] == name]) for name in ("full", "above")}
    quoted = _quoted(r"on (\d) of (\d) seeds \(MMD² ([\d.]+) ± ([\d.]+) against ([\d.]+) ± ([\d.]+)\)").groups()
    closer, n = int(quoted[0]), int(quoted[1])
    assert (closer, n) == (int((high["above"] < high["full"]).sum()), len(high["full"]))
    assert [float(v) for v in quoted[2:]] == [round(float(f(high[name])), 3) for name in ("above", "full")
                                              for f in (np.mean, lambda x: np.std(x, ddof=1))]
    split = float(_quoted(r"only at σ ≥ ([\d.]+) \(never").group(1))
    table = (ROOT / "benchmarks" / "results" / "sigma_ablation.md").read_text()
    assert split == round(float(re.search(r"σ_split = σ\*\(f_c\) = ([\d.]+)", table).group(1)), 2)


def test_the_seed_spread_quoted_is_its_results_file():
    import json

    d = json.loads((ROOT / "benchmarks/results/demo_seeds.json").read_text())
    runs = list(d["per_seed"].values())
    n, claims = len(runs), ("claim_linear", "claim_sampler", "claim_one_step")
    text = _quoted(r"the three readings above hold on (\d) of (\d) seeds").groups()
    assert [int(v) for v in text] == [min(sum(r[k] for r in runs) for k in claims), n]
    assert int(_quoted(r"Over (\d) seeds of the demo's recipe").group(1)) == n
    ratio = np.array([r["mse_over_linear"] for r in runs])
    low = np.array(d["sigma"]) <= 0.07
    assert int(low.sum()) == 5 and _quoted(r"at exactly the five σ ≤ 0.07")
    at_most, at_least = _floats(_quoted(r"MSE at most ([\d.]+)× its there, at least ([\d.]+)× above").group(0))
    assert at_most == round(float(ratio[:, low].max()), 2) and at_least == round(float(ratio[:, ~low].min()), 2)
    lsd = {key: np.array([[r[key][b] for b in BANDS] for r in runs]) for key in ("sampler_lsd", "one_step_lsd")}
    assert float(_quoted(r"in every band \(at most ([\d.]+) dB\)").group(1)) == round(float(lsd["sampler_lsd"].max()), 1)
    assert float(_quoted(r"one step in none \(at least ([\d.]+) dB\)").group(1)) == round(float(lsd["one_step_lsd"].min()), 1)

    def sd_range(values) -> list[float]:
        sd = values.std(0, ddof=1)
        return [round(float(sd.min()), 1 if values is not ratio else 2), round(float(sd.max()), 1 if values is not ratio else 2)]

    assert _floats(_quoted(r"MSE ratios by ([\d.–]+),").group(1)) == sd_range(ratio)
    assert _floats(_quoted(r"the sampler's distances by ([\d.–]+) dB").group(1)) == sd_range(lsd["sampler_lsd"])
    assert _floats(_quoted(r"one step's by ([\d.–]+) dB").group(1)) == sd_range(lsd["one_step_lsd"])


def test_the_reference_run_numbers_quoted_are_its_results_files():
    import json

    from freqlab.training.monitor import find_collapse, interval_ratios

    bench = ROOT / "benchmarks/results"
    collapse = find_collapse(interval_ratios(bench / "reference_run_4000_constant_lr_loss_by_sigma.csv"))
    assert collapse is not None
    assert _floats(_quoted(r"collapsed at step ([\d,]+) of a 4,000-step run").group(1)) == [collapse.step]
    d = json.loads((bench / "reference_run.json").read_text())
    assert d["steps"] == 10 * 800 and d["collapse"] is None and d["finetune_images"] == 100_000
    beats, n = _floats(_quoted(r"beats the linear denoiser at (\d+) of the (\d+) σ").group(0))
    assert (beats, n) == (sum(r < 1 for r in d["mse_over_linear"]), len(d["sigma"]))
    assert round(sum(d["times_s"].values()) / 60) == _floats(_quoted(r"one seed, (\d+) min").group(1))[0]

    def span(values) -> list[float]:
        return [round(min(values), 2), round(max(values), 2)]

    text = _quoted(r"came much closer \(MMD² ([\d.–]+) per band against the demo's seed 0 at ([\d.–]+), recall "
                   r"([\d.]+)\)").groups()
    mmd = d["mmd2"]
    assert _floats(text[0]) == span([mmd["pretrained-end"][b] for b in BANDS])
    assert _floats(text[1]) == span([d["demo_mmd2_seed0"]["pretrained-end"][b] for b in BANDS])
    assert float(text[2]) == round(d["recall_image"]["pretrained-end"], 2)
    assert d["differs"]["pretrained-end"] == d["differs"]["random-end"] == [*BANDS, "image"]
    control = _quoted(r"random-init control came as close \(MMD² ([\d.–]+), recall ([\d.]+)\)").groups()
    assert _floats(control[0]) == span([mmd["random-end"][b] for b in BANDS])
    assert float(control[1]) == round(d["recall_image"]["random-end"], 2)
    from freqlab.report import MATCH_DB

    assert MATCH_DB == 3  # the README quotes the report's threshold
    lsd = d["finetune_lsd"]
    quoted = _quoted(r"within 3 dB of the data in every band after ([\d,]+) images, the control after ([\d,]+), "
                     r"and by 100,000")
    after = [_floats(v)[0] for v in quoted.groups()]

    def first_within(run) -> int:
        rows = zip(lsd[run]["images_seen"], *[lsd[run]["lsd"][b] for b in BANDS])
        return next(n for n, *v in rows if max(v) <= MATCH_DB)

    assert [round(first_within(r), -3) for r in ("pretrained", "random")] == after
    drift = _floats(_quoted(r"by 100,000 the pre-trained run's low band had drifted out to ([\d.]+) dB").group(1))
    assert drift == [round(lsd["pretrained"]["lsd"]["low"][-1], 1)] and drift[0] > MATCH_DB
    assert lsd["pretrained"]["images_seen"][-1] == 100_000


def test_the_head_start_over_fresh_seeds_quoted_is_its_results_file():
    import json

    d = json.loads((ROOT / "benchmarks/results/reference_finetune_seeds.json").read_text())
    runs = list(d["per_seed"].values())
    n, held = (int(v) for v in _quoted(r"after 25,000 images on (\d) fresh seeds the same held on (\d) of").groups())
    assert (n, held) == (len(runs), sum(r["holds"] for r in runs)) and d["images"] == 25_000
    text = _quoted(r"\(MMD² ([\d.–]+) per band against the controls' ([\d.–]+);").groups()
    for quoted, name in zip(text, ("pretrained", "random")):
        values = [r[name]["mmd2"][b] for r in runs for b in BANDS]
        assert _floats(quoted) == [round(min(values), 2), round(max(values), 2)]
