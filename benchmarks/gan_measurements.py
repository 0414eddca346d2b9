"""What a light GAN fine-tune adds to diffusion pre-training, band by band (issue 6, "What it must show").

Runs ``freqlab.finetune.loop.finetune`` with the ``conv`` policy (D2O-F) and the same budget from

  * ``final``  the last checkpoint of a pre-training run (the D2O-F recipe),
  * ``random`` the same architecture with fresh weights (the control),
  * ``early`` / ``mid``  earlier checkpoints of the same run ("which bands has pre-training equipped"),

then writes, under ``--out``:

  * ``<name>/``                     each fine-tuning run (finetune.nc, samples/, checkpoints/); reruns resume/skip
  * ``summary.json``, ``summary.md`` every statistic at the first and last row of each run, images/s, wall time
  * ``gan_statistics.png``          log-spectral distance, diversity ratio, Wasserstein distance and kurtosis gap
                                     per band against images seen, for every run
  * ``gan_samples.png``             sample grids side by side: data, and each run at the start and at the end

The first row of the ``final`` run (images_seen = 0) is the pre-trained model's own one-step output at σ_max, the
reference of the target: high-band log-spectral distance reduced by at least half within ≤ 5 minutes.

Usage (2 CPU cores; the budget is in images, pick it so one run takes ≤ 5 minutes on your machine)::

    python benchmarks/gan_measurements.py --pretrain-run runs/pretrain-cpu-small --out runs/gan_measurements
    python benchmarks/gan_measurements.py --pretrain-run ... --report-only      # figures and tables only
    python benchmarks/gan_measurements.py --pretrain-run ... --loss hinge       # the loss of the reported run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def pick_checkpoints(run_dir: Path, prefer_ema: bool) -> dict[str, Path]:
    """``early``, ``mid`` and ``final`` checkpoints of a pre-training run (by images seen, log-spaced)."""
    from freqlab.checkpoints.store import discover_checkpoints

    infos = discover_checkpoints(run_dir)
    ema = [i for i in infos if i.ema]
    plain = [i for i in infos if not i.ema]
    infos = (ema or plain) if prefer_ema else (plain or ema)
    infos = [i for i in infos if (i.images_seen or 0) > 0] or infos
    final = infos[-1]
    seen = np.array([float(i.images_seen or i.step or 1) for i in infos])
    top = math.log(seen[-1])

    def nearest(fraction: float):  # in log images seen: early ≈ 1/16 of the way, mid ≈ 1/4
        target = top + math.log(fraction)
        return infos[int(np.argmin(np.abs(np.log(seen) - target)))]

    return {"early": nearest(1 / 16).path, "mid": nearest(1 / 4).path, "final": final.path}


def run_all(args) -> dict[str, dict]:
    from freqlab.finetune.loop import finetune

    checkpoints = pick_checkpoints(Path(args.pretrain_run), args.ema_weights)
    plan = [("final", checkpoints["final"], "checkpoint"), ("random", checkpoints["final"], "random")]
    if not args.skip_stages:
        plan += [("early", checkpoints["early"], "checkpoint"), ("mid", checkpoints["mid"], "checkpoint")]
    info = {}
    for name, ckpt, kind in plan:
        t0 = time.perf_counter()
        print(f"[{name}] {kind} init from {ckpt}", file=sys.stderr)
        finetune(ckpt, Path(args.out) / name, init_kind=kind, freeze=args.freeze, n_images=args.images,
                 log_every=max(args.batch_size, args.images // args.rows), batch_size=args.batch_size,
                 loss=args.loss, lr_g=args.lr_g, lr_d=args.lr_d, lookahead=args.lookahead, r1_gamma=args.r1_gamma,
                 r1_every=args.r1_every, ema=args.ema, seed=args.seed, device=args.device, progress=not args.quiet)
        wall = time.perf_counter() - t0
        info[name] = {"checkpoint": str(ckpt), "init_kind": kind, "wall_seconds_this_call": round(wall, 1)}
    return info


def summarise(out: Path, run_info: dict) -> dict:
    from freqlab.checkpoints.store import load_checkpoint_metadata
    from freqlab.runtime import results

    summary = {}
    for run_dir in sorted(p for p in out.iterdir() if (p / "finetune.nc").is_file()):
        ds = results.load(run_dir / "finetune.nc")
        first, last = ds.isel(images_seen=0).mean("channel"), ds.isel(images_seen=-1).mean("channel")
        per_band = {}
        for band in ds.band.values:
            row = {}
            for var in ("lsd", "diversity_ratio", "band_power_wasserstein", "kurtosis_gap"):
                row[var] = [round(float(first[var].sel(band=band)), 3), round(float(last[var].sel(band=band)), 3)]
            per_band[str(band)] = row
        ips = ds.images_per_second.values[1:]
        init = ds.attrs.get("config_init", "")
        meta = {}
        try:
            meta = load_checkpoint_metadata(init) if init and Path(init).exists() else {}
            if ds.attrs["config_init_kind"] == "random":  # the checkpoint only lent its architecture
                meta = {}
        except (ValueError, FileNotFoundError):
            pass
        lsd_high = per_band.get("high", {}).get("lsd", [math.nan, math.nan])
        summary[run_dir.name] = {
            "init": init, "init_kind": ds.attrs["config_init_kind"],
            "pretrain_images_seen": meta.get("images_seen"), "pretrain_step": meta.get("step"),
            "freeze": ds.attrs["config_freeze"], "loss": ds.attrs["config_loss"],
            "frozen_share": round(float(ds.attrs["frozen_share"]), 4),
            "images_seen": int(last.images_seen), "batch_size": int(ds.attrs["config_batch_size"]),
            "images_per_second": round(float(np.nanmean(ips)), 2) if ips.size else None,
            "train_seconds": round(float(np.nansum(np.diff(ds.images_seen.values) / ips)), 1) if ips.size else None,
            "cutoff_freq": [round(float(first.cutoff_freq), 4), round(float(last.cutoff_freq), 4)],
            "high_band_lsd_ratio_end_over_start": round(lsd_high[1] / lsd_high[0], 3) if lsd_high[0] else None,
            "loss_d_last": round(float(last.loss_d), 4), "loss_g_last": round(float(last.loss_g), 4),
            "bands": per_band, **run_info.get(run_dir.name, {}),
        }
    if "final" in summary:  # the target compares with the pre-trained model's one-step output at σ_max
        ref = summary["final"]["bands"]["high"]["lsd"][0]
        for s in summary.values():
            s["high_band_lsd_ratio_vs_pretrained_one_step"] = round(s["bands"]["high"]["lsd"][1] / ref, 3)
    return summary


def write_markdown(summary: dict, path: Path) -> None:
    lines = ["| run | init | pre-train images | frozen | images | img/s | band | LSD dB start→end | diversity start→end "
             "| W1 dB start→end | kurtosis gap start→end |", "|" + "---|" * 11]
    for name, s in summary.items():
        for band, row in s["bands"].items():
            cells = [f"{a:.2f}→{b:.2f}" for a, b in (row["lsd"], row["diversity_ratio"],
                                                       row["band_power_wasserstein"], row["kurtosis_gap"])]
            lines.append(f"| {name} | {s['init_kind']} | {s['pretrain_images_seen']} | {s['frozen_share']:.1%} | "
                         f"{s['images_seen']} | {s['images_per_second']} | {band} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, s in summary.items():
        lines.append(f"- {name}: cutoff {s['cutoff_freq'][0]:.3f}→{s['cutoff_freq'][1]:.3f} cycles/px; "
                     f"high-band LSD end / pre-trained one-step: {s.get('high_band_lsd_ratio_vs_pretrained_one_step')}; "
                     f"training time (logging excluded) {s['train_seconds']} s")
    path.write_text("\n".join(lines) + "\n")


def statistics_figure(out: Path, names: list[str]):
    import matplotlib.pyplot as plt

    from freqlab.plots import style
    from freqlab.runtime import results

    plt.rcParams.update(style.theme_rc())  # a script of its own: its figures in freqlab's look
    logs = {n: results.load(out / n / "finetune.nc") for n in names}
    variables = [("lsd", "log-spectral distance (dB)"), ("diversity_ratio", "diversity ratio"),
                 ("band_power_wasserstein", "W1 of log band power (dB)"), ("kurtosis_gap", "kurtosis gap")]
    bands = list(next(iter(logs.values())).band.values)
    fig, axes = plt.subplots(len(variables), len(bands), figsize=(3.6 * len(bands), 2.6 * len(variables)),
                             sharex=True, squeeze=False)
    colours = dict(zip(names, style.palette(len(names))))
    for (var, label), row in zip(variables, axes):
        for band, ax in zip(bands, row):
            for name, ds in logs.items():
                ax.plot(ds.images_seen, ds[var].sel(band=band).mean("channel"), marker="o", ms=3, color=colours[name], label=name)
            if var == "diversity_ratio":
                ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
            if var == "kurtosis_gap":
                ax.axhline(0.0, color="0.5", lw=0.8, ls="--")
            ax.set_ylabel(label)
            ax.set_title(f"{band} band [{float(ds.band_lo.sel(band=band)):.3g}, {float(ds.band_hi.sel(band=band)):.3g}) cyc/px")
    for ax in axes[-1]:
        ax.set_xlabel("images seen by the generator")
    axes[0][0].legend()
    fig.suptitle("D2O-F fine-tuning: the fixed-z outputs against the data, per band")
    fig.tight_layout()
    return style.save_figure(fig, out / "gan_statistics", formats=("png",))


def samples_figure(out: Path, names: list[str]):
    """Top row: the data, then each run's fixed-z outputs at images_seen = 0; bottom row: the same z at the end."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from freqlab.plots import style

    plt.rcParams.update(style.theme_rc())  # a script of its own: its figures in freqlab's look
    fig, axes = plt.subplots(2, len(names) + 1, figsize=(2.7 * (len(names) + 1), 5.8), squeeze=False)
    axes[0][0].imshow(np.asarray(Image.open(out / names[0] / "samples" / "data.png")), interpolation="nearest", cmap="gray")
    axes[0][0].set_title("data", fontsize=9)
    for col, name in enumerate(names, start=1):
        pngs = sorted((out / name / "samples").glob("images_seen-*.png"))
        for row, png in enumerate((pngs[0], pngs[-1])):
            axes[row][col].imshow(np.asarray(Image.open(png)), interpolation="nearest", cmap="gray")
            axes[row][col].set_title(f"{name}: {int(png.stem.split('-')[1])} images", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return style.save_figure(fig, out / "gan_samples", formats=("png",))


def main(argv=None) -> int:
    from freqlab.finetune.config import LOSSES
    from freqlab.finetune.config import FinetuneConfig as C

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrain-run", required=True, help="a pre-training run directory (with checkpoints/)")
    p.add_argument("--out", default="runs/gan_measurements")
    p.add_argument("--images", type=int, default=13_000, help="fine-tuning budget per run, in images (default "
                   "13,000: 4.5-4.8 min wall per run, start-up included, measured on two CPU cores with the "
                   "cpu-small model and the hinge loss)")
    p.add_argument("--rows", type=int, default=13, help="log rows per run (default 13: one every 1,000 images of the "
                   "default budget)")
    p.add_argument("--batch-size", type=int, default=C.batch_size)
    p.add_argument("--freeze", default="conv")
    p.add_argument("--loss", default=C.loss, choices=LOSSES, help=f"GAN loss (default {C.loss})")
    p.add_argument("--lr-g", type=float, default=C.lr_g)
    p.add_argument("--lr-d", type=float, default=C.lr_d)
    p.add_argument("--lookahead", type=int, default=C.lookahead)
    p.add_argument("--r1-gamma", type=float, default=C.r1_gamma)
    p.add_argument("--r1-every", type=int, default=C.r1_every)
    p.add_argument("--ema", type=float, default=C.ema)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--ema-weights", action="store_true", help="fine-tune the EMA checkpoints of the pre-training run")
    p.add_argument("--skip-stages", action="store_true", help="only final and random (no early / mid)")
    p.add_argument("--report-only", action="store_true", help="no training: summarise the runs in --out")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info_path = out / "run_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    if not args.report_only:
        new = run_all(args)
        for name, entry in new.items():  # keep the wall time of the call that actually trained
            if name not in info or entry["wall_seconds_this_call"] > 5:
                info[name] = entry
        info_path.write_text(json.dumps(info, indent=1))
    summary = summarise(out, info)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    write_markdown(summary, out / "summary.md")
    names = [n for n in ("final", "random", "mid", "early") if n in summary] + \
        [n for n in summary if n not in ("final", "random", "mid", "early")]
    written = statistics_figure(out, names) + samples_figure(out, names)
    print((out / "summary.md").read_text())
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
