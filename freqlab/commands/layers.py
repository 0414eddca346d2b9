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

from freqlab.commands.common import add_common, add_models_and_data, add_sigma_grid, add_trust_pickle, report
from freqlab.commands.options import add_setting_options, setting_values
from freqlab.inside.layer_config import DEFAULT_N_SIGMAS, LayerSpectraConfig

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
    add_sigma_grid(p, str(DEFAULT_N_SIGMAS))
    add_setting_options(p, LayerSpectraConfig, skip=("seed",),
                        title="what determines the numbers (freqlab.inside.layer_config)")
    add_trust_pickle(p)
    add_common(p, out_default="runs/layers")
    p.set_defaults(func=run)


def run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from freqlab.inside import layer_spectra
    from freqlab.plots import layers as layer_plots
    from freqlab.plots.style import save_figure
    from freqlab.runtime.outputs import check_writable_under

    out = Path(args.out)
    check_writable_under(out, include_self=True)
    models = args.models[0] if len(args.models) == 1 else list(args.models)
    data_options = {"path": args.data_path} if args.data_path else None
    config = LayerSpectraConfig(**setting_values(LayerSpectraConfig, args), data_options=data_options)
    ds = layer_spectra.layer_spectra(models, args.data, args.sigmas if args.sigmas is not None else args.n_sigmas,
                                     config=config, device=args.device, out=out / layer_spectra.FILE_NAME,
                                     progress=not args.quiet, trust_pickle=args.trust_pickle)
    written = save_figure(layer_plots.layer_spectra_figure(ds), out / "layer_spectra", close=True)
    report(args, layer_spectra.summarize(ds), {"out": str(out / layer_spectra.FILE_NAME), **layer_spectra.to_json(ds)})
    for path in [out / layer_spectra.FILE_NAME, *written]:
        print(f"wrote {path}", file=sys.stderr)
    return 0
