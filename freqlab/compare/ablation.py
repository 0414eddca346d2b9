"""The σ-ablation's results and its criterion: pure functions of ``sigma_ablation.nc``.

``benchmarks/sigma_ablation.py`` pre-trains the same network on all σ (``full``), only σ ≥ σ_split (``above``) and
only σ ≤ σ_split (``below``), fine-tunes each with D2O-F and compares the samples with held-out data band by band
(:mod:`freqlab.compare.study`). It writes one Dataset, dims ``seed``, ``range``, ``stage`` (``end``: the D2O-F
generator; ``start``: the pre-trained one step it started from) and ``band``, which this module reads: the
criterion fixed before the runs (:func:`decide`, :func:`verdict`), and the lines the report and the figure print.

The criterion, per arm: ``above`` (never trained at the σ that govern the high band) is further from the data than
``full`` in the high band, and ``below`` in the low band; "further" on at least k of n seeds (k = n for n ≤ 4, else
⌈0.8·n⌉), paired by seed, with a mean difference of MMD² larger than the seed-to-seed SD of ``full``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

__all__ = ["ABLATION_FILE", "RANGES", "ARMS", "Arm", "decide", "verdict", "to_dataset", "range_text", "section"]

ABLATION_FILE = "sigma_ablation.nc"
RANGES = ("full", "above", "below")
ARMS = (("high", "above"), ("low", "below"))  # the band each restricted range should fail to produce


@dataclass
class Arm:
    band: str
    range: str
    n: int  # seeds
    k: int  # seeds needed
    seeds_further: int
    mean_difference: float
    sd_full: float
    differences: list[float]
    outcome: str  # "as predicted", "opposite" or "no clear effect"


def decide(ds: xr.Dataset, band: str, other: str) -> Arm:
    """One arm of the criterion: is ``other`` further from the data than ``full`` in ``band`` (module doc)?"""
    full = ds.mmd2.sel(range="full", stage="end", band=band).values.astype(float)
    cut = ds.mmd2.sel(range=other, stage="end", band=band).values.astype(float)
    diff, n = cut - full, full.size
    k = n if n <= 4 else math.ceil(0.8 * n)
    sd = float(full.std(ddof=1)) if n > 1 else float("nan")
    mean = float(diff.mean())
    if int((diff > 0).sum()) >= k and mean > sd:
        outcome = "as predicted"
    elif int((diff < 0).sum()) >= k and -mean > sd:
        outcome = "opposite"
    else:
        outcome = "no clear effect"
    return Arm(band, other, n, k, int((diff > 0).sum()), mean, sd, diff.tolist(), outcome)


def verdict(ds: xr.Dataset) -> tuple[list[Arm], str]:
    """Both arms and the verdict in words: PASS when both came out as predicted."""
    arms = [decide(ds, band, other) for band, other in ARMS]
    if all(a.outcome == "as predicted" for a in arms):
        return arms, "PASS: both arms as predicted"
    return arms, "FAIL: " + "; ".join(f"{a.band} arm {a.outcome}" for a in arms)


def to_dataset(rows: list[dict], bands, attrs: dict, mmd2_reference: dict) -> xr.Dataset:
    """The Dataset of the ablation from one row per (seed, range, stage) with ``mmd2`` per band (keys = bands),
    ``lsd_db_<band>``, ``recall_image`` and ``loss_over_baseline``."""
    seeds = sorted({int(r["seed"]) for r in rows})
    stages = [s for s in ("end", "start") if any(r["stage"] == s for r in rows)]
    shape = (len(seeds), len(RANGES), len(stages))
    mmd2, lsd = np.full(shape + (len(bands),), np.nan), np.full(shape + (len(bands),), np.nan)
    recall, loss = np.full(shape, np.nan), np.full(shape[:2], np.nan)
    for r in rows:
        i, j, s = seeds.index(int(r["seed"])), RANGES.index(r["range"]), stages.index(r["stage"])
        mmd2[i, j, s] = [float(r[b]) for b in bands]
        lsd[i, j, s] = [float(r[f"lsd_db_{b}"]) for b in bands]
        recall[i, j, s] = float(r["recall_image"])
        loss[i, j] = float(r["loss_over_baseline"])
    dims = ("seed", "range", "stage")
    return xr.Dataset(
        {"mmd2": (dims + ("band",), mmd2, {"long_name": "MMD² of the samples and held-out data (freqlab compare)",
                                           "units": "1"}),
         "lsd_db": (dims + ("band",), lsd, {"long_name": "log-spectral distance of the samples' mean spectrum to "
                                                         "the data's", "units": "dB"}),
         "recall_image": (dims, recall, {"long_name": "recall on the whole image (diversity)", "units": "1"}),
         "loss_over_baseline": (("seed", "range"), loss, {"long_name": "pre-training loss over the skip-only "
                                                          "baseline, last logged block", "units": "1"}),
         "mmd2_reference": (("band",), np.array([float(mmd2_reference[b]) for b in bands]),
                            {"long_name": "MMD² of two samples of the data", "units": "1"})},
        coords={"seed": ("seed", np.array(seeds), {"long_name": "seed of pre-training and fine-tuning", "units": "1"}),
                "range": ("range", np.array(RANGES, dtype=object), {"long_name": "pre-training σ range"}),
                "stage": ("stage", np.array(stages, dtype=object),
                          {"long_name": "end: the D2O-F generator; start: the pre-trained one step it started from"}),
                "band": ("band", np.array(list(bands), dtype=object), {"long_name": "frequency band"})},
        attrs={"title": "freqlab σ-ablation: D2O-F from models pre-trained on part of the σ range", **attrs})


def _mean_sd(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if v.size > 1 else f"{v.mean():.3f}"


def range_text(ds: xr.Dataset, name: str) -> str:
    split = float(ds.attrs["sigma_split"])
    return {"full": "all σ", "above": f"σ ≥ {split:.3g}", "below": f"σ ≤ {split:.3g}"}[name]


def _everywhere(ds: xr.Dataset, arm: Arm) -> str:
    """For an arm as predicted: whether its range is further from the data in every band, not only its own."""
    if arm.outcome != "as predicted":
        return ""
    end = ds.mmd2.sel(stage="end").mean("seed")
    if all(float(end.sel(range=arm.range, band=b)) > float(end.sel(range="full", band=b)) for b in ds.band.values):
        return (f" But `{arm.range}` is further from the data in every band on average, so this arm does not single "
                f"out the {arm.band} band.")
    return ""


def section(ds: xr.Dataset) -> list[str]:
    """The report's lines: the prediction, each arm with its seeds, the verdict, and MMD² per band and range."""
    arms, text = verdict(ds)
    bands = [str(b) for b in ds.band.values]
    lines = ["## The σ-ablation: can D2O-F make a band whose σ pre-training never saw?", "",
             f"From `benchmarks/sigma_ablation.py` (not run by the demo; {ABLATION_FILE}): the demo's network "
             f"pre-trained for {int(ds.attrs['steps'])} steps on all σ, only σ ≥ σ_split or only σ ≤ σ_split "
             f"(σ_split = {float(ds.attrs['sigma_split']):.4g}, fixed from the data before any run), then D2O-F; "
             f"{ds.sizes['seed']} seeds. The prediction, written before the runs: a model never trained at the σ "
             "that govern a band cannot be fine-tuned into producing it, so `above` ends further from the data "
             "than `full` in the high band, and `below` in the low band (MMD², paired by seed).", "",
             f"**Verdict: {text}.**", ""]
    for a in arms:
        lines.append(f"- {a.band} band, `{a.range}` against `full`: further from the data on {a.seeds_further} of "
                     f"{a.n} seeds (needed {a.k}); mean difference {a.mean_difference:+.3f} against the seed-to-seed "
                     f"SD {a.sd_full:.3f}: {a.outcome} (per seed "
                     + ", ".join(f"{d:+.3f}" for d in a.differences) + ")." + _everywhere(ds, a))
    lines += ["", "MMD² of the D2O-F samples to held-out data, mean ± SD over seeds (the data against itself: "
              + ", ".join(f"{b} {float(ds.mmd2_reference.sel(band=b)):.2g}" for b in bands) + "):", "",
              "| pre-training σ | " + " | ".join(bands) + " |", "|---|" + "---|" * len(bands)]
    for name in RANGES:
        end = ds.mmd2.sel(range=name, stage="end")
        lines.append(f"| {name} ({range_text(ds, name)}) | "
                     + " | ".join(_mean_sd(end.sel(band=b).values) for b in bands) + " |")
    return lines + ["", "Every generator stays far from the data here (whole-image recall at most "
                    f"{float(ds.recall_image.sel(stage='end').max()):.3f}), so this ranks degrees of failure on one "
                    "small model; `figures/sigma_ablation.png` shows every seed.", ""]
