"""``freqlab pretrain``: train a small diffusion model (EDM loss) and keep checkpoints at log-spaced steps.

The run directory gets run.json (the settings), checkpoints/step-NNNNNN/ (EMA weights; step 0 is the random
initialisation, the control), loss_by_sigma.csv and state/ (to resume). Every option left out takes the
preset's value (each option's help gives them).

loss_by_sigma.csv holds, per σ range and logging interval, the training loss, skip_baseline (the loss of the
skip connection alone, network output 0, on the same images and σ: (σ²·m/σd² + σd²)/(σ² + σd²) for images of
mean square m, so 1 only when m = σd²; on average about 0.85 at large σ for the natural crops) and
loss_over_baseline. Below the baseline (loss_over_baseline < 1) = learned; a loss below 1 alone does not mean
learned. When an interval's loss over the baseline rises above twice the lowest of an earlier one, the run has
collapsed (the denoiser lost what it had learned): a warning says at which step, during the run and in its summary.

presets:
  cpu-small  (default) 32x32 RGB UNet, channels 16,32,64,64, 1.09 M parameters; about 6 min on two CPU cores
  cifar      32x32 RGB UNet, channels 128,256,256,256, 35.7 M parameters (DDPM's CIFAR-10 size); for a GPU
  tiny       16x16 RGB UNet, channels 8,16, 0.05 M parameters, 12 steps; for tests

cpu-small's schedule: 800 steps of 32 images, Adam lr 2e-3 (betas 0.9,0.999) after a 50-step linear warm-up,
gradient norm clipped at 1, EMA half-life 2000 images (at most 5 % of the images seen), 8 checkpoints.
Where it departs from EDM, and why (each measured with benchmarks/pretrain_quality.py, see benchmarks/README.md):
  sigma   3/4 of the images take a log-uniform σ over [0.002, 80], the rest log σ ~ N(1.0, 1.2²); EDM's
          N(-1.2, 1.2²) puts 0.4 % of the images above σ = 7.6, and the model stayed at the skip-only loss there
          (held-out MSE 1.24-1.29x the Wiener filter's at σ ≥ 7.6, 1.11x at σ = 0.002)
  widths  16,32,64,64 with attention at 4x4: 1.75x the images/s of 32,64,64 at the same size on a CPU
  lr      2e-3: better than 1e-3 at every σ after 540 steps
The cifar preset keeps EDM's σ sampling. The same code trains it on a GPU (bf16 autocast there).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses

from freqlab.commands.common import add_common, report
from freqlab.commands.options import add_setting_options, setting_values

EXAMPLES = """examples:
  freqlab pretrain                                              # cpu-small on the embedded natural crops
  freqlab pretrain --steps 600 --lr 2e-3 --out runs/longer      # override any knob of the preset
  freqlab pretrain --resume --out runs/pretrain                 # continue a run that was interrupted
  freqlab pretrain --preset cifar --data cifar10 --data-path ~/data/cifar-10-batches-py --device cuda
  freqlab pretrain --preset tiny --out /tmp/tiny --overwrite    # seconds; replaces an earlier run there
"""


def _option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def register(sub) -> None:
    p = sub.add_parser("pretrain", help="train a small diffusion model with the EDM loss; log-spaced checkpoints",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    from freqlab.pretrain.config import PRESETS, TrainConfig, make_config

    p.add_argument("--preset", default="cpu-small", choices=tuple(PRESETS),
                   help="the settings every option left out takes (default: cpu-small)")
    add_setting_options(p, TrainConfig, skip=("preset", "seed"), presets={k: make_config(k, validate=False) for k in PRESETS},
                        title="settings (default: the preset's value, given for each preset)")
    p.add_argument("--data-option", dest="data_options", type=_option, action="append", default=None,
                   metavar="KEY=VALUE", help="an option of the data source (e.g. max_crop=0.25); repeatable")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last saved state")
    p.add_argument("--overwrite", action="store_true", help="delete a previous run in --out and start over")
    add_common(p, out_default="runs/pretrain")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from freqlab.pretrain.config import TrainConfig, make_config
    from freqlab.pretrain.loop import pretrain

    overrides = {name: value for name, value in setting_values(TrainConfig, args).items()
                 if value is not None and name not in ("preset", "seed", "data_options")}
    if args.data_options:
        overrides["data_options"] = dict(args.data_options)
    config = make_config(args.preset, seed=args.seed, **overrides)
    result = pretrain(config, args.out, resume=args.resume, overwrite=args.overwrite, device=args.device,
                      progress=not args.quiet)
    speed = f", {result.images_per_second:.1f} images/s" if result.seconds else " (already finished)"
    # the raw loss alone misleads (the skip connection alone scores below 1 on data of mean square below σd²):
    # give it relative to the skip-only baseline of the same steps
    loss = ("" if result.loss_over_baseline is None else
            f"; training loss {result.loss:.4f} = {result.loss_over_baseline:.3f} x the skip-only baseline "
            "(below 1 = learned)")
    text = "\n".join([f"pretrain {config.preset}: step {result.step} of {config.steps}{speed}{loss}; "
                      f"{len(result.checkpoints)} checkpoints in {result.out / 'checkpoints'}",
                      *[str(path) for path in result.checkpoints]]
                     + ([f"warning: {result.collapse.message(config.lr, config.lr_schedule)}"]
                        if result.collapse else []))
    report(args, text, {"preset": config.preset, "step": result.step, "steps": config.steps, "loss": result.loss,
                        "loss_over_baseline": result.loss_over_baseline,
                        "images_per_second": result.images_per_second if result.seconds else None,
                        "checkpoints": [str(p) for p in result.checkpoints],
                        "collapse": None if result.collapse is None else dataclasses.asdict(result.collapse)})
    return 0
