"""Does pre-training's head start in the reference run hold on other seeds (issue 33)?

In the reference run (``reference_run.py``, seed 0), D2O-F from the 8,000-step checkpoint was within 3 dB of the data
in every band after 25,000 images, by its monitor's 64 samples; its random-init control only after 75,000. One seed
is a draw. This script fine-tunes the same pair again, from the same checkpoint, on seeds never used for it, for
25,000 images each (two at a time, one thread each), and checks the reading as it was stated, fixed before these
seeds ran:

    after 25,000 images, the pre-trained run is within 3 dB of the data in every band and the control is not.

It also compares each end with held-out data under the committed criterion's settings (MMD² per band, whether each
band is called different, recall), a secondary reading.

    OMP_NUM_THREADS=1 python benchmarks/reference_finetune_seeds.py --run /tmp/reference_run_8000 --seeds 1 2 3

``--run`` is the reference run's folder (its ``pretrain/`` is used; nothing in it is changed). It writes
``--results`` (default benchmarks/results/reference_finetune_seeds.md) and a JSON beside it. About 5.5 minutes per
seed on this project's two cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BANDS = ("low", "mid", "high")
RUNS = {"pretrained": "checkpoint", "random": "random"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="/tmp/reference_run_8000", help="the reference run's folder")
    parser.add_argument("--out", default=None, help="fine-tune folders (default RUN/seeds)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--images", type=int, default=25_000, help="images a fine-tune (default 25,000)")
    parser.add_argument("--compare-images", type=int, default=None, help="samples per set (default: the criterion's)")
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results/reference_finetune_seeds.md"))
    args = parser.parse_args(argv)

    from freqlab import demo
    from freqlab.checkpoints.store import discover_checkpoints, resolve_checkpoint
    from freqlab.compare.criterion import load_criterion
    from freqlab.compare.study import compare
    from freqlab.report import MATCH_DB
    from freqlab.runtime import results

    t0 = time.monotonic()
    run, out = Path(args.run), Path(args.out or Path(args.run) / "seeds")
    init = discover_checkpoints(run / "pretrain")[-1].path
    ft = replace(demo.demo_settings().finetune, n_images=args.images, log_every=args.images,
                 checkpoint_every=args.images)
    jobs = [dict(init=init, out=out / f"{name}-seed{seed}", device="cpu", resume=True, progress=False,
                 config=replace(ft, init_kind=kind, freeze="conv", seed=seed))
            for seed in args.seeds for name, kind in RUNS.items()]
    demo.run_finetunes(jobs, workers=2)

    crit = load_criterion()
    made = {f"{name}-seed{seed}": resolve_checkpoint(out / f"{name}-seed{seed}" / "final")
            for seed in args.seeds for name in RUNS}
    ccfg = crit.compare_config(0, args.compare_images)
    reference, candidates = crit.sets(made, (3, 32, 32), ccfg.n_images, "cpu")
    cmp = compare(reference, candidates, controls=False, config=ccfg, device="cpu", progress=False,
                  out=out / "compare.nc")
    per_seed = {}
    for seed in args.seeds:
        row = {}
        for name in RUNS:
            log = results.load(out / f"{name}-seed{seed}" / "finetune.nc")
            lsd = log.lsd.mean("channel").isel(images_seen=-1)
            key = f"{name}-seed{seed}"
            row[name] = {"images_seen": int(log.images_seen[-1]),
                         "lsd": {b: float(lsd.sel(band=b)) for b in BANDS},
                         "mmd2": {b: float(cmp.mmd2.sel(candidate=key, band=b)) for b in (*BANDS, "image")},
                         "differs": [b for b in (*BANDS, "image") if int(cmp.differs.sel(candidate=key, band=b))],
                         "recall_image": float(cmp.recall.sel(candidate=key, band="image"))}
        within = {name: max(row[name]["lsd"].values()) <= MATCH_DB for name in RUNS}
        row["holds"] = within["pretrained"] and not within["random"]
        per_seed[seed] = row
    summary = {"seeds": args.seeds, "images": args.images, "match_db": MATCH_DB, "init": str(init),
               "per_seed": per_seed, "minutes": (time.monotonic() - t0) / 60}
    path = Path(args.results)
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    path.write_text(markdown(summary) + "\n")
    print(f"wrote {path}; {summary['minutes']:.1f} min", file=sys.stderr)
    return 0


def markdown(s: dict) -> str:
    runs = {int(k): v for k, v in s["per_seed"].items()}
    held = sum(r["holds"] for r in runs.values())
    lines = ["# Pre-training's head start in the reference run, on other seeds (issue 33)", "",
             "Written by `benchmarks/reference_finetune_seeds.py` (rerun it; do not edit). D2O-F and its random-init "
             f"control from the reference run's 8,000-step checkpoint, {s['images']:,} images each, seeds "
             f"{', '.join(map(str, s['seeds']))} (seed 0 is the reference run's own). {s['minutes']:.1f} min.", "",
             f"The reading, fixed before these seeds: after {s['images']:,} images the pre-trained run is within "
             f"{s['match_db']:g} dB of the data in every band (its monitor's samples) and the control is not. "
             f"**It held on {held} of {len(runs)} seeds.**", "",
             "| seed | run | log-spectral distance (dB, low / mid / high) | MMD² (low / mid / high / image) | "
             "bands called different | recall (image) | reading holds |", "|---|---|---|---|---|---|---|"]
    for seed, r in runs.items():
        for name in RUNS:
            v = r[name]
            lines.append(f"| {seed} | {name} | {' / '.join(f'{x:.1f}' for x in v['lsd'].values())} | "
                         f"{' / '.join(f'{x:.3f}' for x in v['mmd2'].values())} | {', '.join(v['differs']) or 'none'} | "
                         f"{v['recall_image']:.3f} | {('yes' if r['holds'] else '**no**') if name == 'pretrained' else ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
