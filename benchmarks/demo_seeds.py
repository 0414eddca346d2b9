"""Which of the demo's single-seed readings hold over pre-training seeds (issue 33, item 6)?

The demo pre-trains one seed. Another machine gives other weights from the same recipe (its float rounding differs,
and training amplifies the difference), so the spread over seeds of the same recipe on this machine is the spread a
reader can expect of a number on another machine; a reading that holds on every seed is one that should hold there.
This script pre-trains ``cpu-small`` with the demo's recipe for each seed (or reuses a finished run in
``OUT/seed<n>/pretrain``), sweeps the final checkpoint with the demo's sweep settings (13 σ, denoise, generate and
EDM's 18-step sampler, 64 held-out images, the references fitted on the training split) and reports, per seed and
over seeds, the three readings the README draws from the demo's single seed. Each is checked as the README states it,
fixed before the seeds that test it (seeds 3 and 4 were never pre-trained before this script):

1. **where the final checkpoint beats the best linear denoiser**: held-out MSE below the linear denoiser's at every
   σ ≤ 0.07 and at no σ above (the README: "at σ ≤ 0.07 ... and not above");
2. **what the sampler reaches**: EDM's sampler ends within 3 dB of the data (log-spectral distance) in every band;
3. **what one step reaches**: the one-step output at σ_max (the sampler's first estimate) is within 3 dB in no band.

    OMP_NUM_THREADS=1 python benchmarks/demo_seeds.py --out /tmp/demo_seeds --seeds 0 1 2 3 4

It writes ``--results`` (default benchmarks/results/demo_seeds.md) and a JSON beside it. About 4 minutes of
pre-training and half a minute of sweep per seed on one thread of this project's CPU. The committed results reused
the σ-ablation's full-range runs for seeds 0-2 (copied to ``OUT/seed<n>/pretrain`` from
``sigma_ablation.py``'s ``OUT/seed<n>/full/pretrain``: the same recipe and bookkeeping), and ``threads`` in the JSON
is this process's thread count, which was also theirs (both were run with ``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINEAR_UP_TO = 0.07  # the README's σ bound of claim 1
BANDS = ("low", "mid", "high")
CLAIMS = ("claim_linear", "claim_sampler", "claim_one_step")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/demo_seeds", help="run folders (OUT/seed<n>/...)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results/demo_seeds.md"))
    parser.add_argument("--redraw", action="store_true", help="rewrite the markdown from the JSON beside it")
    args = parser.parse_args(argv)
    path = Path(args.results)
    if args.redraw:  # the JSON's measurements, with the committed demo's readings read again
        summary = json.loads(path.with_suffix(".json").read_text())
        summary.pop("committed_demo_mse_over_linear", None)
        summary["committed_demo"] = committed_readings()
        path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
        path.write_text(markdown(summary) + "\n")
        return 0

    import torch

    from freqlab import demo
    from freqlab.checkpoints.store import resolve_checkpoint
    from freqlab.pretrain import loop as pretrain
    from freqlab.report import MATCH_DB
    from freqlab.sweep import study as sweep

    settings, per_seed, t0 = demo.demo_settings(), {}, time.monotonic()
    for seed in args.seeds:
        folder = Path(args.out) / f"seed{seed}"
        # the demo's recipe; two checkpoints and sparser logs (bookkeeping, which does not change the weights; the
        # σ-ablation's full-range runs used it, so they can be reused). The results file compares seed 0 with the
        # committed demo's sweep
        config = pretrain.make_config(settings.preset, seed=seed, **settings.pretrain_overrides, n_checkpoints=2,
                                      state_every=200, log_every=100)
        run = pretrain.pretrain(config, folder / "pretrain", resume=True, device="cpu", progress=True)
        ds = sweep.sweep({"final": resolve_checkpoint(run.final)}, "natural", settings.n_sigmas,
                         config=replace(settings.sweep, seed=0), device="cpu", out=folder / "sweep.nc",
                         progress=True, resume=True)
        per_seed[seed] = readings(ds, run.collapse)
    summary = {"seeds": args.seeds, "match_db": MATCH_DB, "linear_up_to": LINEAR_UP_TO,
               "committed_demo": committed_readings(), "threads": torch.get_num_threads(),
               "sigma": per_seed[args.seeds[0]]["sigma"], "per_seed": per_seed,
               "minutes": (time.monotonic() - t0) / 60}
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    path.write_text(markdown(summary) + "\n")
    print(f"wrote {path}; {summary['minutes']:.1f} min", file=sys.stderr)
    return 0


def committed_readings() -> dict:
    """The readings of the committed demo's sweep (figures/results/sweep.nc), which the README quotes."""
    from freqlab.runtime import results

    return readings(results.load(ROOT / "figures/results/sweep.nc"), None)


def readings(ds, collapse) -> dict:
    """The three readings of one seed's sweep (one checkpoint), as plain numbers."""
    from freqlab.report import MATCH_DB

    ratio = (ds.isel(checkpoint=-1).mse / ds.linear_mse).mean("channel")
    lsd = ds.sample_trajectory_lsd.isel(checkpoint=-1).mean("channel")
    many, one = lsd.isel(sampler_step=-1), lsd.isel(sampler_step=0)
    sigma = [float(s) for s in ds.sigma.values]
    beats = [s for s, r in zip(sigma, ratio.values) if r < 1]
    return {
        "sigma": sigma, "mse_over_linear": [float(r) for r in ratio.values],
        "sampler_lsd": {b: float(many.sel(band=b)) for b in BANDS},
        "one_step_lsd": {b: float(one.sel(band=b)) for b in BANDS},
        "claim_linear": sorted(beats) == [s for s in sigma if s <= LINEAR_UP_TO],
        "claim_sampler": all(abs(float(many.sel(band=b))) <= MATCH_DB for b in BANDS),
        "claim_one_step": not any(abs(float(one.sel(band=b))) <= MATCH_DB for b in BANDS),
        "beats_linear_at": beats,
        "collapsed_at": None if collapse is None else collapse.step,
    }


def spread(values) -> str:
    import numpy as np

    v = np.asarray(values, dtype=float)
    return f"{v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0:.2f} [{v.min():.2f}, {v.max():.2f}]"


def markdown(s: dict) -> str:
    seeds, runs = s["seeds"], s["per_seed"]
    runs = {int(k): v for k, v in runs.items()}
    lines = ["# The demo's readings over pre-training seeds (issue 33)", "",
             "Written by `benchmarks/demo_seeds.py` (rerun it; do not edit). `cpu-small`, the demo's recipe (800 steps), "
             f"seeds {', '.join(map(str, seeds))}; each final checkpoint swept with the demo's settings. "
             f"{s['minutes']:.1f} min. Values: mean ± SD [min, max] over the seeds.", "",
             "## The README's readings, seed by seed", "",
             "| seed | 1. beats the linear denoiser at σ ≤ 0.07 and not above | beats it at σ = | 2. sampler within "
             f"{s['match_db']:g} dB in every band | 3. one step within {s['match_db']:g} dB in no band | collapsed |",
             "|---|---|---|---|---|---|"]
    yes = {True: "yes", False: "**no**"}
    for seed in seeds:
        r = runs[seed]
        lines.append(f"| {seed} | {yes[r['claim_linear']]} | {', '.join(f'{x:.3g}' for x in r['beats_linear_at']) or 'none'}"
                     f" | {yes[r['claim_sampler']]} | {yes[r['claim_one_step']]} | {r['collapsed_at'] or 'no'} |")
    if 0 in runs:
        demo = s["committed_demo"]
        diff = max(abs(a / b - 1) for a, b in zip(runs[0]["mse_over_linear"], demo["mse_over_linear"]))
        same = [k for k in CLAIMS if runs[0][k] == demo[k]]
        lines += ["", f"Seed 0 is the demo's recipe and seed, pre-trained here on {s['threads']} torch thread(s); the "
                      "committed demo (figures/results/sweep.nc) was pre-trained on two. Other threads sum in another "
                      "order, as another CPU does, so the weights differ; its MSE ratios differ from the committed "
                      f"demo's by at most {diff:.1e} (relative), and {len(same)} of its {len(CLAIMS)} readings are "
                      "the committed demo's."]
    held = {k: sum(runs[seed][k] for seed in seeds) for k in CLAIMS}
    lines += ["", "Held on " + ", ".join(f"{name} {held[k]} of {len(seeds)}" for name, k in
                                        (("reading 1", "claim_linear"), ("reading 2", "claim_sampler"),
                                         ("reading 3", "claim_one_step"))) + " seeds.", "",
              "## Held-out MSE over the best linear denoiser's, per σ", "",
              "| σ | over seeds | seeds below 1 |", "|---|---|---|"]
    for i, sig in enumerate(s["sigma"]):
        vals = [runs[seed]["mse_over_linear"][i] for seed in seeds]
        lines.append(f"| {sig:.3g} | {spread(vals)} | {sum(v < 1 for v in vals)} of {len(seeds)} |")
    lines += ["", "## Log-spectral distance to the data at the final checkpoint (dB, from σ_max·z)", "",
              "| band | EDM's sampler | one step |", "|---|---|---|"]
    for b in BANDS:
        lines.append(f"| {b} | {spread([runs[seed]['sampler_lsd'][b] for seed in seeds])} | "
                     f"{spread([runs[seed]['one_step_lsd'][b] for seed in seeds])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
