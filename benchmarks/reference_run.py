"""A longer CPU reference run: where the demo's recipe and verdict go with more compute (issue 33, item 1).

The demo pre-trains `cpu-small` for 800 steps and fine-tunes 2,000 images. This script runs the same recipe longer,
on the same data and seed, and measures what the demo measures:

1. pre-training of `cpu-small` for ``--steps`` steps (the demo: 800);
2. the demo's sweep of the final checkpoint (13 σ, denoise and generate, 64 held-out images, the linear and Wiener
   references fitted on the training split): where it beats the best linear denoiser;
3. D2O-F from the final checkpoint and its random-init control (D2O-F's frozen set), ``--finetune-images`` each (the
   demo: 2,000), two at a time, one thread each;
4. ``freqlab compare`` of each run's start and end against held-out data under the committed criterion's settings:
   per band, MMD² and whether the band is called different.

    OMP_NUM_THREADS=1 python benchmarks/reference_run.py --out /tmp/reference_run --steps 4000 --finetune-images 20000

It writes ``--results`` (default benchmarks/results/reference_run.md) and a JSON beside it, with the demo's committed
numbers (figures/results) beside this run's. One seed: a draw, not a spread. Resumes: finished stages are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BANDS = ("low", "mid", "high", "image")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/reference_run", help="run folders (large)")
    parser.add_argument("--steps", type=int, default=4000, help="pre-training steps (default 4000; the demo: 800)")
    parser.add_argument("--finetune-images", type=int, default=20_000, help="D2O-F images (the demo: 2,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-images", type=int, default=None, help="samples per set (default: the criterion's)")
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results/reference_run.md"))
    args = parser.parse_args(argv)

    import numpy as np

    from freqlab import demo
    from freqlab.checkpoints.store import resolve_checkpoint
    from freqlab.compare.criterion import load_criterion
    from freqlab.compare.study import compare
    from freqlab.pretrain import loop as pretrain
    from freqlab.runtime import results
    from freqlab.sweep import study as sweep

    out, times = Path(args.out), {}
    out.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    config = pretrain.make_config("cpu-small", seed=args.seed, steps=args.steps, n_checkpoints=4)
    run = pretrain.pretrain(config, out / "pretrain", resume=True, device="cpu", progress=True)
    final = resolve_checkpoint(run.final)
    times["pretrain_s"] = time.monotonic() - t

    t = time.monotonic()
    settings = demo.demo_settings()
    cfg = replace(settings.sweep, modes=("denoise", "generate"), seed=args.seed)
    ds = sweep.sweep({"final": final}, "natural", settings.n_sigmas, config=cfg, device="cpu",
                     out=out / "sweep.nc", progress=True)
    times["sweep_s"] = time.monotonic() - t
    committed = results.load(ROOT / "figures/results/sweep.nc")

    def ratios(d, which):
        last = d.isel(checkpoint=-1)
        return (last.mse / d[which]).mean("channel").values

    t = time.monotonic()
    ft = replace(settings.finetune, n_images=args.finetune_images, log_every=max(args.finetune_images // 4, 1))
    ft = replace(ft, checkpoint_every=ft.n_images)
    runs = {"pretrained": ("checkpoint", "conv"), "random": ("random", "conv")}
    jobs = [dict(init=final, out=out / f"finetune-{name}", device="cpu", resume=True, progress=False,
                 config=replace(ft, init_kind=kind, freeze=freeze, seed=args.seed))
            for name, (kind, freeze) in runs.items()]
    demo.run_finetunes(jobs, workers=2)
    times["finetune_s"] = time.monotonic() - t

    t = time.monotonic()
    crit = load_criterion()
    ccfg = crit.compare_config(args.seed, args.compare_images)
    made = {}
    for name in runs:
        made[f"{name}-start"] = out / f"finetune-{name}" / "checkpoints" / "finetune-0000000-ema"
        made[f"{name}-end"] = resolve_checkpoint(out / f"finetune-{name}" / "final")
    reference, candidates = crit.sets(made, (3, 32, 32), ccfg.n_images, "cpu")
    cmp = compare(reference, candidates, controls=False, config=ccfg, device="cpu", progress=False,
                  out=out / "compare.nc")
    times["compare_s"] = time.monotonic() - t
    demo_cmp = results.load(ROOT / "figures/results/compare.nc")

    summary = {
        "steps": args.steps, "finetune_images": ft.n_images, "seed": args.seed, "times_s": times,
        "sigma": [float(s) for s in ds.sigma.values],
        "mse_over_linear": ratios(ds, "linear_mse").tolist(), "mse_over_wiener": ratios(ds, "wiener_mse").tolist(),
        "demo_mse_over_linear": ratios(committed, "linear_mse").tolist(),
        "demo_mse_over_wiener": ratios(committed, "wiener_mse").tolist(),
        "mmd2": {k: {b: float(cmp.mmd2.sel(candidate=k, band=b)) for b in BANDS} for k in made},
        "differs": {k: [b for b in BANDS if int(cmp.differs.sel(candidate=k, band=b))] for k in made},
        "recall_image": {k: float(cmp.recall.sel(candidate=k, band="image")) for k in made},
        "demo_mmd2_seed0": {f"{r}-end": {b: float(demo_cmp.mmd2.sel(candidate=f"{r}-seed0-end", band=b))
                                         for b in BANDS} for r in runs},
        "mmd2_reference": {b: float(cmp.mmd2_reference.sel(band=b)) for b in BANDS},
    }
    path = Path(args.results)
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    path.write_text(markdown(summary, np) + "\n")
    print(f"wrote {path}; {sum(times.values()) / 60:.1f} min", file=sys.stderr)
    return 0


def markdown(s: dict, np) -> str:
    beats = [sig for sig, r in zip(s["sigma"], s["mse_over_linear"]) if r < 1]
    demo_beats = [sig for sig, r in zip(s["sigma"], s["demo_mse_over_linear"]) if r < 1]
    lines = ["# A longer CPU reference run (issue 33, item 1)", "",
             "Written by `benchmarks/reference_run.py` (rerun it; do not edit). "
             f"`cpu-small` pre-trained for {s['steps']:,} steps (the demo: 800), D2O-F and its random-init control "
             f"for {s['finetune_images']:,} images each (the demo: 2,000), seed {s['seed']}: one draw, not a spread. "
             "Wall time: " + ", ".join(f"{k[:-2]} {v / 60:.1f} min" for k, v in s["times_s"].items()) + ".", "",
             "## Where the final checkpoint beats the best linear denoiser (held-out MSE over the linear MMSE "
             "denoiser's, fitted on the training split)", "",
             "| σ | this run | the demo (800 steps) | this run / Wiener | demo / Wiener |", "|---|---|---|---|---|"]
    for sig, a, b, c, d in zip(s["sigma"], s["mse_over_linear"], s["demo_mse_over_linear"], s["mse_over_wiener"],
                               s["demo_mse_over_wiener"]):
        lines.append(f"| {sig:.3g} | {a:.2f} | {b:.2f} | {c:.2f} | {d:.2f} |")
    lines += ["", f"Better than the linear denoiser at {len(beats)} of {len(s['sigma'])} σ"
              + (f" (σ ≤ {max(beats):.3g})" if beats else "") + f"; the demo's model at {len(demo_beats)}.", "",
              "## The verdict's statistic: MMD² to held-out data per band (the criterion's settings)", "",
              "| generator | " + " | ".join(BANDS) + " | bands called different | recall (image) |",
              "|---|" + "---|" * (len(BANDS) + 2)]
    for k, v in s["mmd2"].items():
        lines.append(f"| {k} | " + " | ".join(f"{v[b]:.3f}" for b in BANDS) + f" | {', '.join(s['differs'][k]) or 'none'}"
                     f" | {s['recall_image'][k]:.3f} |")
    for k, v in s["demo_mmd2_seed0"].items():
        lines.append(f"| the demo's {k} (seed 0, 2,000 images) | " + " | ".join(f"{v[b]:.3f}" for b in BANDS)
                     + " | | |")
    lines += ["", "The data against itself: " + ", ".join(f"{b} {v:.2g}" for b, v in s["mmd2_reference"].items())
              + ". A band *reaches* the data when it is not called different."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
