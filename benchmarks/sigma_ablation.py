"""The σ-ablation (issue 33, item 2): can D2O-F make a band that pre-training never saw the noise levels of?

freqlab's story: denoising pre-training at noise level σ equips the network with the frequency bands that σ
governs, and GAN fine-tuning with the convolutions frozen (D2O-F) recombines what is there into a one-step
generator. Its testable consequence: **a model never trained at the σ that govern a band cannot be fine-tuned
(D2O-F) into producing that band.**

    python benchmarks/sigma_ablation.py --out /tmp/sigma_ablation --seeds 3

For each seed, the demo's network (preset ``cpu-small``, the ``natural`` crops, data seed 0) is pre-trained three
ways on the same images and noise, for the same number of steps:

* ``full``  σ from the preset's distribution (3/4 log-uniform over [0.002, 80], 1/4 log-normal);
* ``above`` the same distribution truncated to σ >= σ_split (never trained at the σ that govern the high band);
* ``below`` the same distribution truncated to σ <= σ_split (never trained at the σ that govern the low band);

(``train_sigma_min`` / ``train_sigma_max``, freqlab.pretrain.loss.training_sigma: inverse CDF on the same normal
draws, so every run sees the same images). Each final checkpoint is then fine-tuned with the demo's D2O-F (hinge
loss, convolutions frozen, ``freqlab.demo._default_finetune``, seed = the seed) and the fine-tuned EMA generator's
one-step samples ``G(z)`` are compared with held-out crops band by band by ``freqlab.compare`` with the committed
criterion's settings and reference (``freqlab/compare/criterion.json``; the same ``z`` for every generator). The
pre-trained one step each fine-tune starts from is compared too (``--no-starts`` leaves it out).

**The split, fixed from the data alone before any run.** At frequency f the noise of level σ swamps the data when
σ²·P_w(f) > P_d(f) (P_d: the data's radial power, P_w: that of unit white noise, both Hann-windowed RAPS of
freqlab.spectral, so the window's normalisation cancels); σ*(f) = sqrt(P_d(f)/P_w(f)) is the σ that "governs" f.
σ_split = σ*(f_c) at f_c = sqrt(0.125·0.25), the geometric centre of the mid band (bands: low < 0.125 ≤ mid < 0.25 ≤
high cycles/pixel, freqlab's defaults). σ* falls with f, so every high-band frequency is governed by a σ below the
split (the ``above`` model never saw them) and every low-band frequency by a σ above it (the ``below`` model never
saw them); the mid band is split between the two and carries no prediction. On the 512 training crops this gives
σ_split ≈ 0.25 (σ* ≈ 0.40 at f = 0.125 and 0.15 at f = 0.25); the script computes and records it.

**Prediction and criterion, fixed before the first run** (the statistic: ``mmd2`` of ``freqlab compare``, the
unbiased MMD² of the fine-tuned generator's samples and held-out data in a band, standardised features; larger =
further from the data). Paired by seed, with n seeds and k = n for n <= 4, else ceil(0.8·n):

* HIGH: the ``above`` model's D2O-F samples are further from the data in the high band than the ``full`` model's on
  at least k of n seeds, and the mean difference exceeds the seed-to-seed SD of the ``full`` model's high-band MMD²;
* LOW: the ``below`` model's D2O-F samples are further from the data in the low band than the ``full`` model's, by
  the same rule.

The prediction passes when HIGH and LOW both hold; an arm whose opposite holds by the same rule is "opposite";
otherwise "no clear effect". Anything else the run shows (other bands, the starts) is reported, not tested.

Outputs: OUT/seed<k>/<range>/pretrain/ and finetune/, OUT/compare.nc, OUT/sigma_ablation.json (every number);
``--results`` (default benchmarks/results/sigma_ablation.md, written with the prediction and "pending" before the
runs and rewritten at the end) with a CSV beside it; ``sigma_ablation.nc`` in the results directory ``--into``
(default figures/results: ``freqlab figures`` redraws ``sigma_ablation.png`` from it, the criterion is
:mod:`freqlab.compare.ablation`, and the demo's report there gains a section on it), and the figure in ``--figures``
(default figures/). ``--redraw`` writes them all again from OUT/sigma_ablation.json without running anything.
Resumes: finished pre-trainings and fine-tunes are kept. Timing on this project's 2-core CPU: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from freqlab.compare.ablation import RANGES

ROOT = Path(__file__).resolve().parents[1]
BANDS = ("low", "mid", "high", "image")
F_SPLIT = math.sqrt(0.125 * 0.25)  # the geometric centre of the mid band, cycles/pixel

PREDICTION = """\
**Prediction** (freqlab's story): a model never trained at the σ that govern a band cannot be fine-tuned (D2O-F,
convolutions frozen) into producing that band.

**Criterion** (fixed before the first run; statistic: `freqlab compare`'s `mmd2` of the fine-tuned EMA generator's
one-step samples against held-out crops, per band; paired by seed; n seeds, k = n for n <= 4, else ceil(0.8 n)):

- HIGH: `above` (trained only at σ >= σ_split) is further from the data in the high band than `full` on at least k
  of n seeds, and the mean difference exceeds the seed-to-seed SD of `full`'s high-band MMD².
- LOW: `below` (trained only at σ <= σ_split) is further from the data in the low band than `full`, by the same
  rule.

The prediction passes when HIGH and LOW both hold. An arm whose opposite holds by the same rule is "opposite";
otherwise "no clear effect". Everything else (the mid band, the whole image, the pre-trained starts) is reported,
not tested."""


def split_sigma(n_images: int = 512) -> dict:
    """σ_split = sqrt(P_d(f_c)/P_w(f_c)) from the training crops (data seed 0) and unit white noise (module doc)."""
    import numpy as np
    import torch

    from freqlab.data.sources import make_source
    from freqlab.spectral.spectra import radial_power_spectrum

    x = make_source("natural", resolution=32, split="train", seed=0).images(list(range(n_images)))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    data, white = radial_power_spectrum(x, window="hann"), radial_power_spectrum(noise, window="hann")
    f = data.freq.double().numpy()
    sigma_star = (data.power.double().mean(dim=(0, 1)) / white.power.double().mean(dim=(0, 1))).sqrt().numpy()

    def at(freq: float) -> float:  # log-log interpolation, DC left out
        return float(np.exp(np.interp(math.log(freq), np.log(f[1:]), np.log(sigma_star[1:]))))

    return {"sigma_split": at(F_SPLIT), "f_split": F_SPLIT, "sigma_star_low_mid": at(0.125),
            "sigma_star_mid_high": at(0.25), "n_images": n_images,
            "sigma_star": {f"{fi:.4f}": float(s) for fi, s in zip(f, sigma_star)}}


def _bounds(name: str, split: float) -> dict:
    return {"full": {}, "above": {"train_sigma_min": split}, "below": {"train_sigma_max": split}}[name]


def run_one(out: Path, seed: int, name: str, split: float, args) -> dict:
    """Pre-train one range for one seed, then fine-tune its final checkpoint with D2O-F: the two checkpoints."""
    from freqlab import demo
    from freqlab.checkpoints.store import resolve_checkpoint
    from freqlab.finetune import loop as gan
    from freqlab.pretrain import loop as pretrain

    folder = out / f"seed{seed}" / name
    t0 = time.monotonic()
    config = pretrain.make_config("cpu-small", seed=seed, steps=args.steps, n_checkpoints=2,
                                  state_every=max(args.steps // 4, 1), log_every=max(args.steps // 8, 1),
                                  **_bounds(name, split))
    run = pretrain.pretrain(config, folder / "pretrain", resume=True, device=args.device, progress=False)
    if not run.finished or run.final is None:
        raise ValueError(f"pre-training in {folder / 'pretrain'} did not finish; rerun to resume it")
    t1 = time.monotonic()
    ft = replace(demo._default_finetune(), init_kind="checkpoint", freeze="conv", seed=seed)
    if args.finetune_images:
        ft = replace(ft, n_images=args.finetune_images, log_every=min(ft.log_every, args.finetune_images))
    ft = replace(ft, checkpoint_every=ft.n_images)
    gan.finetune(run.final, folder / "finetune", config=ft, device=args.device, resume=True, progress=False)
    t2 = time.monotonic()
    print(f"  seed {seed} {name}: pre-training {t1 - t0:.0f} s, D2O-F {t2 - t1:.0f} s", file=sys.stderr, flush=True)
    return {"start": str(resolve_checkpoint(run.final)), "end": str(resolve_checkpoint(folder / "finetune" / "final")),
            "pretrain_s": t1 - t0, "finetune_s": t2 - t1, "finetune_images": ft.n_images,
            "loss_over_baseline": _last_block_ratio(folder / "pretrain" / "loss_by_sigma.csv")}


def _last_block_ratio(path: Path) -> float:
    """The training loss over the skip-only baseline in the last logged block (count-weighted over σ ranges)."""
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    last = max(int(r["step"]) for r in rows)
    rows = [r for r in rows if int(r["step"]) == last]
    return (sum(float(r["count"]) * float(r["loss"]) for r in rows)
            / sum(float(r["count"]) * float(r["skip_baseline"]) for r in rows))


def compare_all(out: Path, made: dict, args) -> "object":
    """Every generator's samples against held-out crops (the criterion's settings, no controls): compare.nc."""
    from freqlab.compare.criterion import load_criterion
    from freqlab.compare.study import compare

    crit = load_criterion()
    config = crit.compare_config(args.first_seed, args.compare_images)
    reference, candidates = crit.sets(made, (3, 32, 32), config.n_images, args.device)
    ds = compare(reference, candidates, controls=False, config=config, device=args.device, progress=False,
                 out=out / "compare.nc")
    lsd = band_lsd(reference, candidates, config.n_images, config.batch_size)
    return ds, config, crit, lsd


def band_lsd(reference, candidates: dict, n: int, batch: int) -> dict:
    """The secondary statistic (not in the criterion; MMD² can saturate): per band, the log-spectral distance in
    dB between the mean Hann-windowed RAPS of a generator's ``n`` samples and of the reference's first ``n``."""
    from freqlab.spectral.metrics import log_spectral_distance
    from freqlab.spectral.spectra import radial_power_spectrum

    def mean_raps(source):
        total, freq = 0.0, None
        for i in range(0, n, batch):
            spec = radial_power_spectrum(source.images(list(range(i, min(i + batch, n)))), window="hann")
            total, freq = total + spec.power.double().mean(dim=1).sum(dim=0), spec.freq
        return freq, total / n

    freq, ref = mean_raps(reference)
    out = {}
    for key, source in candidates.items():
        power = mean_raps(source)[1]
        per_band = log_spectral_distance(power[1:], ref[1:], freq[1:].double())  # DC left out, as in compare
        out[key] = {**{b: float(v) for b, v in zip(BANDS[:3], per_band)},
                    "image": float(log_spectral_distance(power[1:], ref[1:]))}  # every bin but DC
    return out


def _stats(xs) -> str:
    import numpy as np

    xs = np.asarray(xs, float)
    sd = f" ± {xs.std(ddof=1):.3g}" if len(xs) > 1 else ""
    return f"{xs.mean():.3g}{sd} [{xs.min():.3g}, {xs.max():.3g}]"


def write_markdown(path: Path, split: dict, args, summary: dict | None) -> None:
    """The results file: the split and the prediction (written before the runs), then the results if any."""
    lines = ["# σ-ablation (issue 33, item 2): D2O-F from models pre-trained on part of the σ range", "",
             "Written by `benchmarks/sigma_ablation.py` (do not edit by hand; rerun it). The split and the "
             f"prediction below were written at {split['written']} UTC, before the first pre-training run.", "",
             f"**Split**: σ_split = σ*(f_c) = {split['sigma_split']:.4g}, f_c = sqrt(0.125·0.25) = {F_SPLIT:.4f} "
             "cycles/pixel, where σ*(f) = sqrt(P_data(f)/P_white(f)) (Hann-windowed RAPS of "
             f"{split['n_images']} training crops and of unit white noise); σ* = {split['sigma_star_low_mid']:.3g} "
             f"at the low/mid edge (0.125) and {split['sigma_star_mid_high']:.3g} at the mid/high edge (0.25).", "",
             f"**Command**: `{split['command']}`", "", PREDICTION, ""]
    if summary is None:
        lines += ["## Results", "", "Pending: the runs have not finished."]
    else:
        lines += _results_lines(summary)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _results_lines(s: dict) -> list[str]:
    seeds = s["seeds"]
    v = {(r["seed"], r["range"], r["stage"]): r for r in s["rows"]}
    out = ["## Results", "",
           f"Seeds {', '.join(map(str, seeds))}; pre-training {s['steps']} steps of 32 images per run "
           f"(the demo: 800); D2O-F {s['finetune_images']:,} images (the demo: {s['finetune_images_demo']:,}); "
           f"{s['compare_images']:,} samples "
           f"per generator against held-out crops (criterion {s['criterion']}). Wall time {s['wall_min']:.1f} min "
           f"on {s['machine']}.", "",
           "**Verdict: " + s["verdict"] + "**", ""]
    for arm in s["arms"]:
        out.append(f"- {arm['band'].upper()} (`{arm['range']}` vs `full`): further from the data on "
                   f"{arm['seeds_further']} of {arm['n']} seeds (needed {arm['k']}); mean MMD² difference "
                   f"{arm['mean_difference']:+.3g} vs SD of `full` {arm['sd_full']:.3g} → **{arm['outcome']}**; "
                   "per seed " + ", ".join(f"{d:+.3g}" for d in arm["differences"]))
    out += ["", "MMD² of the D2O-F generator's samples against held-out data, mean ± SD over seeds [min, max] "
            "(data against itself: " + ", ".join(f"{b} {s['mmd2_reference'][b]:.3g}" for b in BANDS) + "):", "",
            "| pre-training σ | " + " | ".join(BANDS) + " |", "|---|" + "---|" * len(BANDS)]
    out += _table_rows(v, seeds, lambda b: b)
    out += ["", "Secondary (not in the criterion; MMD² can saturate when every set is far from the data): log-"
            "spectral distance in dB between the mean RAPS of the same samples and of the held-out crops, per band "
            "(whole image: every bin but DC), mean ± SD [min, max]:", "",
            "| pre-training σ | " + " | ".join(BANDS) + " |", "|---|" + "---|" * len(BANDS)]
    out += _table_rows(v, seeds, lambda b: f"lsd_db_{b}")
    out += ["", "Recall on the whole image (diversity; the data against itself "
            f"{s['recall_reference']:.2f}): " + "; ".join(
                f"`{name}` " + ", ".join(f"{v[(k, name, 'end')]['recall_image']:.2f}" for k in seeds)
                for name in RANGES), "",
            "Pre-training loss over the skip-only baseline (below 1 = learned; last logged block, over the σ each "
            "run trained at): " + "; ".join(
                f"`{name}` " + ", ".join(f"{v[(k, name, 'end')]['loss_over_baseline']:.3f}" for k in seeds)
                for name in RANGES), "",
            "Per-seed numbers: `sigma_ablation.csv` beside this file; the figure: `figures/sigma_ablation.png`."]
    return out


def _table_rows(v: dict, seeds: list, key) -> list[str]:
    """One row per pre-training range and stage (end, then start): ``key(band)``'s mean ± SD [min, max] per band."""
    rows = []
    for stage in ("end", "start"):
        for name in RANGES:
            if (seeds[0], name, stage) not in v:
                continue
            label = f"`{name}` {'D2O-F end' if stage == 'end' else 'pre-trained one step (start)'}"
            rows.append(f"| {label} | " + " | ".join(_stats([v[(k, name, stage)][key(b)] for k in seeds])
                                                     for b in BANDS) + " |")
    return rows


def publish(summary: dict, args) -> None:
    """Every output of a finished run: OUT/sigma_ablation.json, the results file and its CSV, and
    ``sigma_ablation.nc`` in the results directory ``--into``, with its figure (the figure registry's, so that
    ``freqlab figures`` redraws it) and, where that directory holds a demo's results, its report."""
    from dataclasses import asdict

    from freqlab.compare import ablation
    from freqlab.plots.registry import make_figure
    from freqlab.report import write_report
    from freqlab.runtime import results

    split = summary["split"]
    ds = ablation.to_dataset(summary["rows"], BANDS, mmd2_reference=summary["mmd2_reference"], attrs={
        "sigma_split": split["sigma_split"], "f_split": F_SPLIT, "steps": summary["steps"],
        "finetune_images": summary["finetune_images"], "compare_images": summary["compare_images"],
        "criterion_sha256_prefix": summary["criterion"], "prediction_written": split["written"] + " UTC",
        "prediction": PREDICTION.replace("\n", " "), "command": split["command"], "machine": summary["machine"],
        "wall_min": summary["wall_min"], **results.provenance_attrs()})
    arms, summary["verdict"] = ablation.verdict(ds)
    summary["arms"] = [asdict(a) for a in arms]
    out, results_md, into = Path(args.out), Path(args.results), Path(args.into)
    (out / "sigma_ablation.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = summary["rows"]
    with open(results_md.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    write_markdown(results_md, split, args, summary)
    results.save(ds, into / ablation.ABLATION_FILE)
    make_figure("sigma_ablation", into, args.figures)
    if (into / "sweep.nc").exists():
        write_report(into)
    print(f"{summary['verdict']}\nresults {results_md}, {into / ablation.ABLATION_FILE}, figure "
          f"{Path(args.figures) / 'sigma_ablation.png'}; {summary['wall_min']:.1f} min", file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/sigma_ablation", help="run folders (large; default /tmp/...)")
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds (default 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--steps", type=int, default=800, help="pre-training steps of 32 images (default 800, "
                        "the demo's)")
    parser.add_argument("--finetune-images", type=int, default=None, help="D2O-F images (default: the demo's)")
    parser.add_argument("--compare-images", type=int, default=None, help="samples per generator (default: the "
                        "criterion's)")
    parser.add_argument("--split", type=float, default=None, help="σ_split (default: from the data, module doc)")
    parser.add_argument("--no-starts", action="store_true", help="do not compare the pre-trained one steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results/sigma_ablation.md"))
    parser.add_argument("--into", default=str(ROOT / "figures/results"), help="the results directory that gets "
                        "sigma_ablation.nc, and its report (default: figures/results, the committed demo's)")
    parser.add_argument("--figures", default=str(ROOT / "figures"), help="where sigma_ablation.png and .pdf go")
    parser.add_argument("--redraw", action="store_true", help="write every output again from OUT/sigma_ablation.json "
                        "without running anything")
    parser.add_argument("--machine", default="a 2-core CPU, no GPU, one torch thread",
                        help="the machine, in words, for the results file")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out, start = Path(args.out), time.monotonic()
    if args.redraw:
        if not (out / "sigma_ablation.json").exists():
            parser.error(f"--redraw needs {out / 'sigma_ablation.json'} (a finished run's); run without --redraw")
        publish(json.loads((out / "sigma_ablation.json").read_text()), args)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    prereg = out / "split.json"
    if prereg.exists():  # a resumed run keeps the split and prediction it wrote first
        split = json.loads(prereg.read_text())
    else:
        split = split_sigma()
        if args.split is not None:
            split["sigma_split"], split["note"] = args.split, "given with --split"
        split["written"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        split["command"] = "python benchmarks/sigma_ablation.py " + " ".join(sys.argv[1:] if argv is None else argv)
        prereg.write_text(json.dumps(split, indent=2) + "\n")
    results_md = Path(args.results)
    write_markdown(results_md, split, args, None)
    print(f"σ_split = {split['sigma_split']:.4g}; prediction written to {results_md}", file=sys.stderr, flush=True)

    made, runs = {}, {}
    for seed in seeds:
        for name in RANGES:
            runs[(seed, name)] = r = run_one(out, seed, name, split["sigma_split"], args)
            made[f"{name}-seed{seed}-end"] = r["end"]
            if not args.no_starts:
                made[f"{name}-seed{seed}-start"] = r["start"]
    t_cmp = time.monotonic()
    ds, config, crit, lsd = compare_all(out, made, args)
    print(f"  compare: {time.monotonic() - t_cmp:.0f} s for {len(made)} generators", file=sys.stderr, flush=True)

    rows = []
    for key in made:
        name, seed_text, stage = key.split("-")
        seed = int(seed_text[4:])
        row = {"seed": seed, "range": name, "stage": stage,
               **{b: float(ds.mmd2.sel(candidate=key, band=b)) for b in BANDS},
               "recall_image": float(ds.recall.sel(candidate=key, band="image")),
               **{f"lsd_db_{b}": lsd[key][b] for b in BANDS},
               "differs": ",".join(b for b in BANDS if int(ds.differs.sel(candidate=key, band=b))),
               "loss_over_baseline": runs[(seed, name)]["loss_over_baseline"],
               "pretrain_s": runs[(seed, name)]["pretrain_s"], "finetune_s": runs[(seed, name)]["finetune_s"]}
        rows.append(row)
    from freqlab.demo import _default_finetune

    summary = {"seeds": seeds, "steps": args.steps, "finetune_images": runs[(seeds[0], "full")]["finetune_images"],
               "finetune_images_demo": _default_finetune().n_images,
               "compare_images": config.n_images, "criterion": crit.short_hash, "split": split,
               "mmd2_reference": {b: float(ds.mmd2_reference.sel(band=b)) for b in BANDS},
               "recall_reference": float(ds.recall_reference.sel(band="image").mean()),
               "rows": rows, "machine": args.machine, "wall_min": (time.monotonic() - start) / 60}
    publish(summary, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
