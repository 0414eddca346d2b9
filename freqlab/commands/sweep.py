"""``freqlab sweep``: spectra of one-step outputs of every checkpoint at every noise level σ, saved as netCDF.

Each checkpoint denoises ``x0 + σ·n`` (mode ``denoise``) and maps pure noise ``σ·z`` to an image (mode
``generate``, at σ_max the D2O generator before fine-tuning), with the same images and noise for every
checkpoint; mode ``sample`` adds EDM's N-step sampler from the same ``σ_max·z`` (the multi-step reference) and the
band power along its steps. The results file is written after each checkpoint; rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import sys

from freqlab.commands.common import add_common, add_models_and_data, add_trust_pickle, floats
from freqlab.sweep.config import DEFAULT_MODES, MODES, SAMPLERS, SweepConfig

D = SweepConfig()  # the defaults, defined once

EXAMPLES = """examples:
  freqlab sweep runs/pretrain                                  # every checkpoint of a run -> runs/sweep.nc
  freqlab sweep runs/pretrain --n-images 512 --n-sigmas 13 --modes generate
  freqlab sweep runs/pretrain --modes all --sample-images 128     # + the 18-step Heun sampler (35 calls/image)
  freqlab sweep ckpt/step-000000 ckpt/step-004000 --sigmas 0.02,0.1,0.5,2,80 --out /tmp/two.nc
  torchrun --nproc_per_node=4 -m freqlab sweep runs/pretrain --n-images 8192   # 4 GPUs (or CPU processes)
  freqlab sweep path/to/ddpm-pipeline --data cifar10 --data-path ~/data/cifar-10-batches-py --sigmas 0.01,0.1,1,10
"""


def _bands(text: str) -> list[float]:
    edges = floats(text)
    if len(edges) < 2:
        raise argparse.ArgumentTypeError("--bands needs at least two edges, e.g. 0,0.125,0.25,0.5")
    return edges


def register(sub) -> None:
    p = sub.add_parser("sweep", help="one-step output spectra across noise levels and checkpoints",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_models_and_data(p, data_help="data source name (default: natural, the embedded photographs)", split=D.split)
    p.add_argument("--n-images", type=int, default=D.n_images, help=f"images per (checkpoint, σ) (default {D.n_images})")
    p.add_argument("--batch-size", type=int, default=D.batch_size,
                   help=f"images per forward pass (default {D.batch_size})")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--sigmas", type=floats, default=None, help="comma-separated noise levels, e.g. 0.02,0.1,1,80")
    grid.add_argument("--n-sigmas", type=int, default=None,
                      help="log-spaced levels from the model's sigma_min to sigma_max (default 13)")
    p.add_argument("--modes", default="both", help=f"comma-separated modes of {', '.join(MODES)}; both (default) = "
                   f"{','.join(DEFAULT_MODES)}; all = every mode")
    p.add_argument("--sample-steps", type=int, default=D.sample_steps,
                   help=f"steps of the sample mode's sampler (default {D.sample_steps}: 35 model calls with Heun)")
    p.add_argument("--sampler", default=D.sampler, choices=SAMPLERS, help=f"the sample mode's sampler (default {D.sampler})")
    p.add_argument("--sample-images", type=int, default=D.sample_images,
                   help="the sample mode measures the first N images only (default: all --n-images)")
    p.add_argument("--bands", type=_bands, default=None,
                   help="band edges in cycles/pixel (default low/mid/high: 0,0.125,0.25,0.5)")
    p.add_argument("--window", default=D.window, help="window of the radial spectra, each image's mean removed first: "
                   "hann (default, freqlab's convention), none (periodic spectrum), kaiser, hamming, blackman")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue an existing results file written with the same settings (default: yes)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file, whatever its settings")
    p.add_argument("--autocast", action="store_true", help="bf16 autocast for the models (GPU only; ignored on CPU)")
    add_trust_pickle(p)
    p.add_argument("--wasserstein-images", type=int, default=D.wasserstein_images,
                   help=f"images whose band powers are kept for the Wasserstein distance (default "
                        f"{D.wasserstein_images}; memory)")
    p.add_argument("--distribute", default=D.distribute, choices=("auto", "images", "checkpoints"),
                   help="under torchrun: split each checkpoint's images across processes, or give each process "
                        "whole checkpoints; auto (default) splits checkpoints when they divide evenly")
    p.add_argument("--any-resolution", action="store_true",
                   help="allow data at a resolution other than the checkpoint's own (default: a mismatch is an error)")
    add_common(p, out_default="runs/sweep.nc")
    p.set_defaults(func=run)


def _modes(text: str) -> tuple[str, ...]:
    named = {"both": DEFAULT_MODES, "all": MODES}
    return named.get(text.strip(), tuple(m.strip() for m in text.split(",") if m.strip()))


def run(args) -> int:
    from freqlab.runtime import distributed
    from freqlab.sweep import study as sweep_mod
    from freqlab.sweep.dataset import summarize

    models = args.models[0] if len(args.models) == 1 else list(args.models)
    data_options = {"path": args.data_path} if args.data_path else None
    ds = sweep_mod.sweep(
        models, args.data, args.sigmas if args.sigmas is not None else args.n_sigmas,
        modes=_modes(args.modes), n_images=args.n_images,
        batch_size=args.batch_size, seed=args.seed, device=args.device, bands=args.bands,
        window=None if args.window.lower() == "none" else args.window, out=args.out, resume=args.resume,
        overwrite=args.overwrite, autocast=args.autocast, progress=not args.quiet, split=args.split,
        data_options=data_options, trust_pickle=args.trust_pickle, wasserstein_images=args.wasserstein_images,
        distribute=args.distribute, any_resolution=args.any_resolution, sample_steps=args.sample_steps,
        sampler=args.sampler, sample_images=args.sample_images,
    )
    if distributed.is_main():
        print(summarize(ds))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
