"""``freqlab sweep``: spectra of one-step outputs of every checkpoint at every noise level σ, saved as netCDF.

Each checkpoint denoises ``x0 + σ·n`` (mode ``denoise``) and maps pure noise ``σ·z`` to an image (mode
``generate``, at σ_max the D2O generator before fine-tuning), with the same images and noise for every
checkpoint. The results file is written after each checkpoint; rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import sys

from freqlab.commands.common import add_common

EXAMPLES = """examples:
  freqlab sweep runs/pretrain                                  # every checkpoint of a run -> runs/sweep.nc
  freqlab sweep runs/pretrain --n-images 512 --n-sigmas 13 --modes generate
  freqlab sweep ckpt/step-000000 ckpt/step-004000 --sigmas 0.02,0.1,0.5,2,80 --out /tmp/two.nc
  torchrun --nproc_per_node=4 -m freqlab sweep runs/pretrain --n-images 8192   # 4 GPUs (or CPU processes)
  freqlab sweep path/to/ddpm-pipeline --data cifar10 --data-path ~/data/cifar-10-batches-py --sigmas 0.01,0.1,1,10
"""


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _bands(text: str) -> list[float]:
    edges = _floats(text)
    if len(edges) < 2:
        raise argparse.ArgumentTypeError("--bands needs at least two edges, e.g. 0,0.125,0.25,0.5")
    return edges


def register(sub) -> None:
    p = sub.add_parser("sweep", help="one-step output spectra across noise levels and checkpoints",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", metavar="RUN_DIR_OR_CHECKPOINT",
                   help="a run directory (all its checkpoints, in training order) or checkpoint paths")
    p.add_argument("--data", default="natural", help="data source name (default: natural, the embedded photographs)")
    p.add_argument("--split", default="test", choices=("train", "test"), help="data split (default: test)")
    p.add_argument("--data-path", default=None, help="folder / cifar10 / array sources: where the images are")
    p.add_argument("--n-images", type=int, default=512, help="images per (checkpoint, σ) (default 512)")
    p.add_argument("--batch-size", type=int, default=128, help="images per forward pass (default 128)")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--sigmas", type=_floats, default=None, help="comma-separated noise levels, e.g. 0.02,0.1,1,80")
    grid.add_argument("--n-sigmas", type=int, default=None,
                      help="log-spaced levels from the model's sigma_min to sigma_max (default 13)")
    p.add_argument("--modes", default="both", help="denoise, generate, or both (default; = denoise,generate)")
    p.add_argument("--bands", type=_bands, default=None,
                   help="band edges in cycles/pixel (default low/mid/high: 0,0.125,0.25,0.5)")
    p.add_argument("--window", default="hann", help="window of the radial spectra, each image's mean removed first: "
                   "hann (default, freqlab's convention), none (periodic spectrum), kaiser, hamming, blackman")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue an existing results file written with the same settings (default: yes)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file, whatever its settings")
    p.add_argument("--autocast", action="store_true", help="bf16 autocast for the models (GPU only; ignored on CPU)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow EDM .pkl checkpoints (unpickling runs code from the file: only for files you trust)")
    p.add_argument("--wasserstein-images", type=int, default=1024,
                   help="images whose band powers are kept for the Wasserstein distance (default 1024; memory)")
    p.add_argument("--distribute", default="auto", choices=("auto", "images", "checkpoints"),
                   help="under torchrun: split each checkpoint's images across processes, or give each process "
                        "whole checkpoints; auto (default) splits checkpoints when they divide evenly")
    p.add_argument("--any-resolution", action="store_true",
                   help="allow data at a resolution other than the checkpoint's own (default: a mismatch is an error)")
    add_common(p, out_default="runs/sweep.nc")
    p.set_defaults(func=run)


def _modes(text: str) -> tuple[str, ...]:
    return ("denoise", "generate") if text.strip() == "both" else tuple(m.strip() for m in text.split(",") if m.strip())


def run(args) -> int:
    from freqlab import distributed, sweep as sweep_mod

    models = args.models[0] if len(args.models) == 1 else list(args.models)
    data_options = {"path": args.data_path} if args.data_path else None
    ds = sweep_mod.sweep(
        models, args.data, args.sigmas if args.sigmas is not None else args.n_sigmas,
        modes=_modes(args.modes), n_images=args.n_images,
        batch_size=args.batch_size, seed=args.seed, device=args.device, bands=args.bands,
        window=None if args.window.lower() == "none" else args.window, out=args.out, resume=args.resume,
        overwrite=args.overwrite, autocast=args.autocast, progress=not args.quiet, split=args.split,
        data_options=data_options, trust_pickle=args.trust_pickle, wasserstein_images=args.wasserstein_images,
        distribute=args.distribute, any_resolution=args.any_resolution,
    )
    if distributed.is_main():
        print(sweep_mod.summarize(ds))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
