"""``freqlab sweep``: spectra of one-step outputs of every checkpoint at every noise level σ, saved as netCDF.

Each checkpoint denoises ``x0 + σ·n`` (mode ``denoise``) and maps pure noise ``σ·z`` to an image (mode
``generate``, at σ_max the D2O generator before fine-tuning), with the same images and noise for every
checkpoint; mode ``sample`` adds EDM's N-step sampler from the same ``σ_max·z`` (the multi-step reference) and the
band power along its steps. The results file is written after each checkpoint; rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import sys

from freqlab.commands.common import add_common, add_models_and_data, add_sigma_grid, add_trust_pickle, report
from freqlab.commands.options import add_setting_options, setting_values
from freqlab.sweep.config import SweepConfig

EXAMPLES = """examples:
  freqlab sweep runs/pretrain                                  # every checkpoint of a run -> runs/sweep.nc
  freqlab sweep runs/pretrain --n-images 512 --n-sigmas 13 --modes generate
  freqlab sweep runs/pretrain --modes all --sample-images 128     # + the 18-step Heun sampler (35 calls/image)
  freqlab sweep ckpt/step-000000 ckpt/step-004000 --sigmas 0.02,0.1,0.5,2,80 --out /tmp/two.nc
  torchrun --nproc_per_node=4 -m freqlab sweep runs/pretrain --n-images 8192   # 4 GPUs (or CPU processes)
  freqlab sweep path/to/ddpm-pipeline --data cifar10 --data-path ~/data/cifar-10-batches-py --sigmas 0.01,0.1,1,10
"""


def register(sub) -> None:
    p = sub.add_parser("sweep", help="one-step output spectra across noise levels and checkpoints",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_models_and_data(p, data_help="data source name (default: natural, the embedded photographs)")
    add_sigma_grid(p, "13")
    add_setting_options(p, SweepConfig, skip=("seed",), title="what determines the numbers (freqlab.sweep.config)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue an existing results file written with the same settings (default: on)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file, whatever its settings")
    add_trust_pickle(p)
    add_common(p, out_default="runs/sweep.nc")
    p.set_defaults(func=run)


def run(args) -> int:
    from freqlab.runtime import distributed
    from freqlab.sweep.dataset import summarize, to_json
    from freqlab.sweep.study import sweep

    models = args.models[0] if len(args.models) == 1 else list(args.models)
    data_options = {"path": args.data_path} if args.data_path else None
    ds = sweep(models, args.data, args.sigmas if args.sigmas is not None else args.n_sigmas,
               config=SweepConfig(**setting_values(SweepConfig, args), data_options=data_options), device=args.device,
               out=args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
               trust_pickle=args.trust_pickle)
    if distributed.is_main():
        report(args, summarize(ds), {"out": str(args.out), **to_json(ds)})
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
