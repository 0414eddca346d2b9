"""``freqlab finetune``: turn a pre-trained denoiser into a one-step generator with a plain GAN loss (D2O / D2O-F).

The generator is G(z) = D(σ_max·z, σ_max); only a GAN loss trains it (no distillation, no teacher). Spectra and
per-image band statistics of a fixed batch of its outputs are logged against the data to OUT/finetune.nc (dim
images_seen), with a sample grid at each log moment (OUT/samples/) and checkpoints (OUT/checkpoints/). Running the
same command again resumes the run (or returns at once when it is finished); --overwrite starts over.
Under torchrun (e.g. `torchrun --nproc_per_node=4 -m freqlab finetune ...`) it trains with DDP: --batch-size is
the global batch, split evenly over the processes; rank 0 writes the files and the report.
"""

from __future__ import annotations

import argparse
import sys

from freqlab.commands.common import add_common, report
from freqlab.commands.options import add_setting_options, setting_values

EXAMPLES = """examples:
  freqlab finetune runs/pretrain/checkpoints/final --images 20000 --out runs/d2o-f           # D2O-F (conv frozen)
  freqlab finetune runs/pretrain/checkpoints/final --freeze none --out runs/d2o              # D2O (all trainable)
  freqlab finetune runs/pretrain/checkpoints/final --init random --out runs/d2o-f-random     # the control
  freqlab finetune edm-cifar10-32x32-uncond-vp.pkl --trust-pickle --out runs/edm-d2o-f       # the paper's networks
  freqlab finetune edm-cifar10-32x32-uncond-vp.pkl --trust-pickle --dry-run                  # what D2O-F freezes
  freqlab finetune CKPT --freeze 'resnets\\.\\d+\\.conv[12]\\.' --loss hinge --out runs/custom  # a regex policy
  freqlab finetune CKPT --images 40000 --out runs/d2o-f     # rerun with a larger budget: resumes and continues
"""


def register(sub) -> None:
    # no torch: the parser builds fast
    from freqlab.finetune.config import FinetuneConfig

    p = sub.add_parser("finetune", help="GAN fine-tuning of a denoiser into a one-step generator (D2O / D2O-F)",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a freqlab, diffusers or EDM checkpoint (load_denoiser)")
    add_setting_options(p, FinetuneConfig, skip=("seed",), title="what determines the numbers (freqlab.finetune.config)")
    p.add_argument("--overwrite", action="store_true", help="delete a previous fine-tuning run in --out and start over")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow an EDM network pickle (edm-*.pkl, network-snapshot-*.pkl) as CHECKPOINT: unpickling "
                        "runs code from the file, so only for files you trust; its fine-tuned checkpoints need it too")
    p.add_argument("--dry-run", action="store_true",
                   help="print what --freeze would freeze (share and per-layer-type breakdown), write nothing")
    add_common(p, out_default="runs/finetune")
    p.set_defaults(func=run)


def dry_run(args) -> int:
    """The frozen share and per-layer-type breakdown of ``--freeze`` on the model, without training."""
    from freqlab.finetune.freezing import freeze_policy, parameter_breakdown
    from freqlab.finetune.generator import make_generator

    gen = make_generator(args.checkpoint, init_kind=args.init_kind, seed=args.seed, device="cpu",
                         trust_pickle=args.trust_pickle)
    frozen = freeze_policy(gen.denoiser, args.freeze)
    print(frozen.summary())
    if frozen.pattern:
        print(f"rule: {frozen.pattern}")
    table = parameter_breakdown(gen.denoiser)
    print(f"  {'layer type':<16} {'frozen':>12} {'trainable':>12}")
    for kind in table.layer_type.values:
        frozen, trainable = int(table.n_frozen.sel(layer_type=kind)), int(table.n_trainable.sel(layer_type=kind))
        if frozen or trainable:
            print(f"  {kind:<16} {frozen:>12,} {trainable:>12,}")
    return 0


def run(args) -> int:
    from freqlab.finetune.loop import finetune
    from freqlab.measure import core as measure
    from freqlab.runtime import distributed

    if args.dry_run:
        return dry_run(args)
    from freqlab.finetune.config import FinetuneConfig

    settings = setting_values(FinetuneConfig, args)  # init (provenance) is no option: finetune sets it
    result = finetune(args.checkpoint, args.out, **settings, device=args.device, overwrite=args.overwrite,
                      progress=not args.quiet, trust_pickle=args.trust_pickle)
    if not distributed.is_main():  # under torchrun, rank 0 reports
        return 0
    log = result.log
    first, last = log.isel(images_seen=0), log.isel(images_seen=-1)
    lines = [result.freeze.summary(), f"images_seen {int(first.images_seen)} -> {int(last.images_seen)}"]
    doc = {"out": str(result.out), "frozen_share": float(log.attrs.get("frozen_share", float("nan"))),
           "images_seen": [int(first.images_seen), int(last.images_seen)], "bands": {}}
    first, last = first.mean("channel"), last.mean("channel")  # channel means of the per-channel metrics
    for band in log.band.values:
        lsd0, lsd1 = float(first.lsd.sel(band=band)), float(last.lsd.sel(band=band))
        div = float(last.diversity_ratio.sel(band=band))
        k0, k1 = float(first.kurtosis_gap.sel(band=band)), float(last.kurtosis_gap.sel(band=band))
        lines.append(f"  {band:>5} band: log-spectral distance {lsd0:6.2f} -> {lsd1:6.2f} dB, diversity ratio "
                     f"{div:.2f}, kurtosis gap {k0:+.2f} -> {k1:+.2f}")
        doc["bands"][str(band)] = {"lsd_db": [lsd0, lsd1], "diversity_ratio": div, "kurtosis_gap": [k0, k1]}
    f0, f1 = (measure.cutoff_text(*measure.channel_cutoff(row.cutoff_freq, row.cutoff_freq_bound))
              for row in (log.isel(images_seen=0), log.isel(images_seen=-1)))
    lines.append(f"  cutoff f_c (|relative power| > 3 dB): {f0} -> {f1}")
    doc["cutoff_freq"] = [f0, f1]
    report(args, "\n".join(lines), doc)
    print(f"wrote {result.out / 'finetune.nc'}, samples in {result.out / 'samples'}", file=sys.stderr)
    return 0

