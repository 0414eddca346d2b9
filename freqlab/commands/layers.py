"""``freqlab layers``: where in the network each band lives, from the radial power spectra of every UNet block's
feature maps, per checkpoint and noise level σ.

Each checkpoint runs the sweep's inputs (``generate``: ``σ·z``; ``denoise``: ``x0 + σ·n``, same seed, same images
and noise); a hook on every block takes the radial power spectrum of its output (Hann window, each channel-image's
mean removed, channels averaged), normalised to the block's total non-DC power, on the image's frequency axis.
Writes OUT/layer_spectra.nc and its figure OUT/layer_spectra.png/.pdf; prints, per checkpoint at σ_max, the blocks
with the largest share of their power in the high band.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from freqlab.commands.common import add_common, add_models_and_data, add_trust_pickle, floats

EXAMPLES = """examples:
  freqlab layers runs/demo/pretrain/checkpoints/final --random-init      # the model and its random-init control
  freqlab layers runs/pretrain --n-sigmas 4 --n-images 64                 # every checkpoint of a run
  freqlab layers ckpt/final finetune/checkpoints/final --sigmas 80,20,2 --out runs/layers-ft
  freqlab layers edm-cifar10-32x32-uncond-vp.pkl --trust-pickle --mode denoise --device cuda
"""


def register(sub) -> None:
    p = sub.add_parser("layers", help="per-layer feature spectra: which UNet blocks carry which frequency bands",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_models_and_data(p, data_help="data source of denoise mode (default: natural)")
    p.add_argument("--mode", default="generate", choices=("generate", "denoise"),
                   help="generate: input σ·z (default; at σ_max the D2O generator); denoise: input x0 + σ·n")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--sigmas", type=floats, default=None, help="comma-separated noise levels, e.g. 80,20,2")
    grid.add_argument("--n-sigmas", type=int, default=None,
                      help="log-spaced levels from the model's sigma_min to sigma_max (default 4)")
    p.add_argument("--n-images", type=int, default=64, help="images per (checkpoint, σ) (default 64)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--window", default="hann", help="window of the spectra, each channel-image's mean removed "
                   "first: hann (default, freqlab's convention), none, kaiser, hamming, blackman")
    p.add_argument("--random-init", action="store_true",
                   help="also measure the first model's architecture with fresh weights (the control)")
    add_trust_pickle(p)
    add_common(p, out_default="runs/layers")
    p.set_defaults(func=run)


def run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")

    from freqlab.inside import layer_spectra
    from freqlab.plots import layers as layer_plots
    from freqlab.plots.style import save_figure

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a directory")
    models = args.models[0] if len(args.models) == 1 else list(args.models)
    data_options = {"path": args.data_path} if args.data_path else None
    ds = layer_spectra.layer_spectra(
        models, args.data, args.sigmas if args.sigmas is not None else args.n_sigmas, mode=args.mode,
        n_images=args.n_images, batch_size=args.batch_size, seed=args.seed, device=args.device,
        window=None if args.window.lower() == "none" else args.window, random_init=args.random_init,
        progress=not args.quiet, trust_pickle=args.trust_pickle, data_options=data_options, split=args.split,
        out=out / layer_spectra.FILE_NAME)
    written = save_figure(layer_plots.layer_spectra_figure(ds), out / "layer_spectra", close=True)
    print(layer_spectra.summarize(ds))
    for path in [out / layer_spectra.FILE_NAME, *written]:
        print(f"wrote {path}", file=sys.stderr)
    return 0
