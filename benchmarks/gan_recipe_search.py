"""Many short D2O-F fine-tunes side by side: which discriminator and learning rates make the high band *structured*.

Each configuration is one ``freqlab.finetune.loop.finetune`` run from the same checkpoint, in its own process (``--workers``
at a time; on one GPU several processes share it well because the ``cpu-small`` model is small). For every run it
records, per log row: the log-spectral distance per band (and the high band's ratio to the first row, the
pre-trained model's one-step output), the mean relative power in the high band (dB: negative means too smooth), the
high-band kurtosis gap (0: as sparse as the data) and the diversity ratio; and it keeps the sample grid of the last
row. This is how the discriminator of ``freqlab finetune`` was chosen; the default learning rates and lookahead were
set afterwards from CPU runs (benchmarks/README.md, "GAN recipe"). Its runs use plain Adam steps (``lookahead=0``).

    python benchmarks/gan_recipe_search.py --checkpoint runs/demo/pretrain/checkpoints/step-000300 \\
        --plan seeds --images 13000 --device cuda --workers 8 --out runs/gan_recipe_search

Plans: ``discriminators`` (the four discriminator variants x six learning-rate / R1 settings), ``seeds`` (the
recipe that was the default then, and three neighbours, eight seeds each). Writes ``results.jsonl`` (one line per
run, appended as runs finish, so an interrupted search keeps what finished), ``summary.md`` and ``samples/<run>.png``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# discriminator variants, as options of freqlab.finetune.loop.Discriminator; freqlab finetune --discriminator offers
# highpass-patch-c16 (as "highpass", the default), pixel-patch and pixel (with --d-channels, 16 by default)
DISCRIMINATORS = {
    "pixel": dict(channels=32, highpass_gain=0.0, patch_logits=False, minibatch_std=0),
    "pixel-patch": dict(channels=32, highpass_gain=0.0, patch_logits=True, minibatch_std=4),
    "highpass-patch": dict(channels=32, highpass_gain=4.0, patch_logits=True, minibatch_std=4),
    "highpass-patch-c16": dict(channels=16, highpass_gain=4.0, patch_logits=True, minibatch_std=4),  # the default
}
RATES = {
    "lr1e-4/2e-4": dict(lr_g=1e-4, lr_d=2e-4, r1_gamma=0.1),
    "lr2e-4/2e-4": dict(lr_g=2e-4, lr_d=2e-4, r1_gamma=0.1),
    "lr2e-4/4e-4": dict(lr_g=2e-4, lr_d=4e-4, r1_gamma=0.1),  # the default until lookahead (benchmarks/README.md)
    "lr3e-4/3e-4_γ0.01": dict(lr_g=3e-4, lr_d=3e-4, r1_gamma=0.01),
    "lr4e-4/2e-4": dict(lr_g=4e-4, lr_d=2e-4, r1_gamma=0.1),
    "lr1e-4/1e-4_γ1": dict(lr_g=1e-4, lr_d=1e-4, r1_gamma=1.0),
}


def plan(name: str, images: int) -> list[dict]:
    if name == "discriminators":
        return [dict(name=f"{d} {r}", d=d, n_images=images, seed=0, **RATES[r])
                for d, r in itertools.product(DISCRIMINATORS, RATES)]
    if name == "seeds":
        recipes = [("highpass-patch-c16", "lr2e-4/4e-4"), ("highpass-patch-c16", "lr2e-4/2e-4"),
                   ("highpass-patch", "lr2e-4/2e-4"), ("pixel", "lr1e-4/2e-4")]
        return [dict(name=f"{d} {r} s{s}", d=d, n_images=images, seed=s, **RATES[r])
                for (d, r), s in itertools.product(recipes, range(8))]
    raise ValueError(f"unknown plan {name!r}: discriminators or seeds")


def run_one(cfg: dict, args) -> dict:
    import torch

    from freqlab.finetune.discriminator import Discriminator
    from freqlab.finetune.loop import finetune
    from freqlab.spectral import band_mask

    torch.set_num_threads(args.threads)
    work = Path(args.out) / "runs" / cfg["name"].replace(" ", "_").replace("/", "-").replace(",", "_")
    options = DISCRIMINATORS[cfg["d"]]
    kw = {k: v for k, v in cfg.items() if k not in ("name", "d")}
    t0 = time.perf_counter()
    try:
        run = finetune(args.checkpoint, work, discriminator_factory=lambda shape: Discriminator(shape, **options),
                       log_every=args.log_every, checkpoint_every=10**12, progress=False, overwrite=True,
                       device=args.device, lookahead=0, **kw)  # the search predates lookahead (plain Adam steps)
    except ValueError as err:  # a non-finite loss stops a run; the search goes on
        return {"name": cfg["name"], "error": str(err)}
    log = run.log.mean("channel")  # channel means of freqlab's per-channel metrics
    high = log.sel(band="high")
    in_high = band_mask(torch.tensor(log.freq.values), float(high.band_lo), float(high.band_hi)).numpy()
    rec = {"name": cfg["name"], "config": cfg, "wall_seconds": round(time.perf_counter() - t0, 1),
           "images_seen": [int(i) for i in log.images_seen.values],
           "relative_power_high_db": [round(float(v), 2) for v in log.relative_power_db[:, in_high].mean("freq")]}
    # the record keys predate freqlab's shared names (results.jsonl of earlier searches use them): lsd is stored
    # as log_spectral_distance
    for key, var in (("log_spectral_distance", "lsd"), ("kurtosis_gap", "kurtosis_gap"),
                     ("diversity_ratio", "diversity_ratio")):
        for band in ("low", "mid", "high"):
            rec[f"{key}.{band}"] = [round(float(v), 3) for v in log[var].sel(band=band).values]
    samples = Path(args.out) / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    shutil.copy(sorted((work / "samples").glob("images_seen-*.png"))[-1], samples / f"{work.name}.png")
    shutil.rmtree(work, ignore_errors=True)  # the numbers are in results.jsonl; runs are many and large
    return rec


def summary_table(records: list[dict]) -> str:
    lines = ["| run | images | high-band LSD / start: end (min) | high-band power vs data (dB), end | "
             "kurtosis gap high, end | diversity high, end | LSD low / mid end (dB) |", "|" + "---|" * 7]
    for r in sorted(records, key=lambda r: r["name"]):
        if "error" in r:
            lines.append(f"| {r['name']} | stopped: {r['error'][:80]} |||||")
            continue
        hi = r["log_spectral_distance.high"]
        lines.append(f"| {r['name']} | {r['images_seen'][-1]} | {hi[-1] / hi[0]:.2f} ({min(hi) / hi[0]:.2f}) | "
                     f"{r['relative_power_high_db'][-1]:+.1f} | {r['kurtosis_gap.high'][-1]:.2f} | "
                     f"{r['diversity_ratio.high'][-1]:.2f} | {r['log_spectral_distance.low'][-1]:.2f} / "
                     f"{r['log_spectral_distance.mid'][-1]:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="the pre-trained checkpoint every run starts from")
    p.add_argument("--plan", default="seeds", choices=("discriminators", "seeds"))
    p.add_argument("--images", type=int, default=13_000, help="budget per run, in images")
    p.add_argument("--log-every", type=int, default=1_000)
    p.add_argument("--workers", type=int, default=1, help="runs at a time (processes)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", default=None, help="comma-separated run names (default: the whole plan)")
    p.add_argument("--out", default="runs/gan_recipe_search")
    args = p.parse_args(argv)
    configs = plan(args.plan, args.images)
    if args.only:
        configs = [c for c in configs if c["name"] in args.only.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records, t0 = [], time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool, open(out / "results.jsonl", "a") as jsonl:
        for future in as_completed([pool.submit(run_one, c, args) for c in configs]):
            rec = future.result()
            records.append(rec)
            jsonl.write(json.dumps(rec) + "\n")
            jsonl.flush()
            if "error" in rec:
                print(f"{time.perf_counter() - t0:6.0f} s  {rec['name']}: {rec['error']}", flush=True)
            else:
                hi = rec["log_spectral_distance.high"]
                print(f"{time.perf_counter() - t0:6.0f} s  {rec['name']}: high-band LSD ratio {hi[-1] / hi[0]:.2f}, "
                      f"kurtosis gap {rec['kurtosis_gap.high'][-1]:.2f}, diversity "
                      f"{rec['diversity_ratio.high'][-1]:.2f}", flush=True)
    (out / "summary.md").write_text(summary_table(records))
    print(f"wrote {out / 'results.jsonl'}, {out / 'summary.md'}, {out / 'samples'}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
