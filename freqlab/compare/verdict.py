"""The demo's verdict on fine-tuning, from comparisons over seeds (:mod:`freqlab.compare.study`) and the committed
criterion (:mod:`freqlab.compare.criterion`): per run and band, does the run **reach** the data (the comparison
calls the band indistinguishable on every seed) and did it **move toward** the data (the band's MMD² fell from the
run's start to its end by more than the seeds scatter, with a bootstrap interval below 0, and ended below every
negative control)? Pure functions of a comparison Dataset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from freqlab.compare.controls import CONTROLS, POSITIVE
from freqlab.compare.study import differing

__all__ = ["BandVerdict", "bootstrap_mean", "band_verdicts", "control_rows", "run_pairs", "verdict_section"]


@dataclass
class BandVerdict:
    end: float                    # mean end MMD² over seeds
    end_ci: tuple[float, float]   # bootstrap interval of that mean
    start: float                  # mean start MMD²
    change: float                 # mean (end − start)
    change_ci: tuple[float, float]
    spread: float                 # seed-to-seed standard deviation of the end MMD²
    indistinguishable: int        # seeds whose comparison calls the band indistinguishable
    seeds: int
    below_controls: bool          # the mean end MMD² below every negative control's
    reaches: bool
    moved: bool


def bootstrap_mean(values, resamples: int, level: float, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeds resampled with replacement)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def _negative_controls(ds: xr.Dataset) -> list[str]:
    return [c for c in CONTROLS if c != POSITIVE and c in ds.candidate.values]


def band_verdicts(ds: xr.Dataset, pairs: list[tuple[str, str]], *, resamples: int, level: float
                  ) -> dict[str, BandVerdict]:
    """``{band: BandVerdict}`` of one run type whose seeds are the ``(start, end)`` candidate pairs of ``ds``."""
    starts, ends = [p[0] for p in pairs], [p[1] for p in pairs]
    controls = _negative_controls(ds)
    out = {}
    for band in [str(b) for b in ds.band.values]:
        end = ds.mmd2.sel(candidate=ends, band=band).values.astype(float)
        start = ds.mmd2.sel(candidate=starts, band=band).values.astype(float)
        change = end - start
        change_ci = bootstrap_mean(change, resamples, level)
        spread = float(np.std(end, ddof=1)) if end.size > 1 else float("nan")
        floor = min((float(ds.mmd2.sel(candidate=c, band=band)) for c in controls), default=float("inf"))
        indist = int((ds.differs.sel(candidate=ends, band=band).values == 0).sum())
        below = bool(end.mean() < floor)
        moved = bool(change.mean() < 0 and change_ci[1] < 0 and abs(change.mean()) > spread and below)
        out[band] = BandVerdict(float(end.mean()), bootstrap_mean(end, resamples, level), float(start.mean()),
                                float(change.mean()), change_ci, spread, indist, len(ends), below,
                                indist == len(ends), moved)
    return out


def control_rows(ds: xr.Dataset) -> dict[str, dict]:
    """Per control in ``ds``: its verdict, the bands that differ, and whether that is what a control must give
    (the held-out split indistinguishable, every other control different)."""
    rows = {}
    for name in [c for c in CONTROLS if c in ds.candidate.values]:
        row = ds.sel(candidate=name)
        differ = differing(row)
        verdict = str(row.verdict.item())
        rows[name] = {"verdict": verdict, "differs": differ,
                      "as_required": verdict == ("indistinguishable" if name == POSITIVE else "different")}
    return rows


# --------------------------------------------------------------------------------------------------------------
# the report's section (a comparison Dataset whose candidates carry the coords run, seed and start)
# --------------------------------------------------------------------------------------------------------------
def run_pairs(ds: xr.Dataset) -> dict[str, list[tuple[str, str]]]:
    """``{run: [(start, end) candidate names, one per seed]}`` from the coords ``run`` and ``start`` that the demo
    gives the end candidates of its fine-tunes."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name, run, start in zip(ds.candidate.values, ds.run.values, ds.start.values):
        if str(run) and str(start):
            out.setdefault(str(run), []).append((str(start), str(name)))
    return out


def _interval(ci: tuple[float, float]) -> str:
    return f"[{ci[0]:.3g}, {ci[1]:.3g}]"


def verdict_section(ds: xr.Dataset, criterion, labels: dict[str, str] | None = None) -> list[str]:
    """The report's verdict: the controls, then per run and band whether it reaches and moved toward the data."""
    labels = labels or {}
    bands = [str(b) for b in ds.band.values]
    cfg = criterion.compare
    lines = ["", "## The verdict: does fine-tuning bring the one-step samples to the data, band by band?", "",
             f"Criterion: `freqlab/compare/criterion.json`, sha256 `{criterion.sha256}`, fixed before the seeds "
             f"that test it. Each generator's {int(ds.attrs['n_images_per_set'])} one-step samples (the same z for "
             f"every generator) against held-out data, {ds.attrs.get('reference', '')}: per band ({', '.join(bands)}"
             "; each image band-passed, DC excluded, and the whole image) the MMD² of a fixed feature map with its "
             "permutation null and a classifier test, and on the whole image precision and recall beside what a "
             f"second sample of the data scores; Holm over a candidate's tests at α = {cfg.alpha:g}. "
             "*Indistinguishable* means at this sample size, not equal."
             + ("" if int(ds.attrs["n_images_per_set"]) == cfg.n_images else
                f" **This run compared {int(ds.attrs['n_images_per_set'])} images a set, not the criterion's "
                f"{cfg.n_images}: a smoke test, not the criterion's verdict.**"), "",
             "**Controls first** (the comparison must call the held-out split indistinguishable and every trivial "
             "generator different):", "", "| control | verdict | differs in | as required |", "|---|---|---|---|"]
    for name, row in control_rows(ds).items():
        lines.append(f"| {name} | {row['verdict']} | {', '.join(row['differs']) or '–'} | "
                     f"{'yes' if row['as_required'] else '**no**'} |")
    controls = _negative_controls(ds)
    lines += ["", "MMD² to the data per band (the data against itself: "
              + ", ".join(f"{b} {float(ds.mmd2_reference.sel(band=b)):.2g}" for b in bands) + "):", "",
              "| band | " + " | ".join(controls) + " |", "|---" * (len(controls) + 1) + "|"]
    for band in bands:
        lines.append(f"| {band} | " + " | ".join(f"{float(ds.mmd2.sel(candidate=c, band=band)):.3g}"
                                                 for c in controls) + " |")
    pairs = run_pairs(ds)
    lines += ["", f"**The runs** (mean over seeds, {int(criterion.level * 100)} % bootstrap intervals over seeds). "
              "*Moved toward the data*: the band's MMD² fell from the run's start to its end by more than the seeds "
              "scatter (the interval of the change below 0, its size above the seed-to-seed spread of the end) and "
              "ended below every negative control's. *Reaches the data*: indistinguishable on every seed.", "",
              "| run | band | MMD² start → end [interval] | change [interval] | seed spread | indistinguishable | "
              "moved toward | reaches |", "|---|---|---|---|---|---|---|---|"]
    verdicts = {}
    for run, run_pairs_ in pairs.items():
        verdicts[run] = band_verdicts(ds, run_pairs_, resamples=criterion.bootstrap_resamples, level=criterion.level)
        for band, v in verdicts[run].items():
            lines.append(f"| {labels.get(run, run)} | {band} | {v.start:.3g} → {v.end:.3g} {_interval(v.end_ci)} | "
                         f"{v.change:+.3g} {_interval(v.change_ci)} | {v.spread:.2g} | {v.indistinguishable} of "
                         f"{v.seeds} | {'yes' if v.moved else 'no'} | {'yes' if v.reaches else 'no'} |")
    lines += ["", "Fidelity and diversity of the whole image (precision, recall; the data's own: "
              f"{float(ds.precision_reference.sel(band='image').mean()):.2f}, "
              f"{float(ds.recall_reference.sel(band='image').mean()):.2f}):", ""]
    for run, run_pairs_ in pairs.items():
        ends = [e for _, e in run_pairs_]
        p, r = (ds[v].sel(candidate=ends, band="image").values for v in ("precision", "recall"))
        lines.append(f"- {labels.get(run, run)}: precision {p.mean():.2f} (seeds {p.min():.2f}–{p.max():.2f}), recall "
                     f"{r.mean():.2f} ({r.min():.2f}–{r.max():.2f}); fewer seeds than the data on diversity: "
                     f"{int(ds.diversity_differs.sel(candidate=ends).sum())} of {len(ends)}.")
    lines += ["", "In words:", ""]
    for run, bv in verdicts.items():
        reached = [b for b, v in bv.items() if v.reaches]
        moved = [b for b, v in bv.items() if v.moved]
        lines.append(f"- **{labels.get(run, run)}** reaches the data in "
                     f"{', '.join(reached) if reached else 'no band'}, and moved toward it in "
                     f"{', '.join(moved) if moved else 'no band'}.")
    return lines
