"""``freqlab pretrain``: train a small diffusion model (EDM loss) and keep checkpoints at log-spaced steps.

The run directory gets run.json (the settings), checkpoints/step-NNNNNN/ (EMA weights; step 0 is the random
initialisation, the control), loss_by_sigma.csv and state/ (to resume). Every option left out takes the
preset's value.

loss_by_sigma.csv holds, per σ range and logging interval, the training loss, skip_baseline (the loss of the
skip connection alone, network output 0, on the same images and σ: (σ²·m/σd² + σd²)/(σ² + σd²) for images of
mean square m, so 1 only when m = σd²; on average about 0.85 at large σ for the natural crops) and
loss_over_baseline. Below the baseline (loss_over_baseline < 1) = learned; a loss below 1 alone does not mean
learned.

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

from freqlab.commands.common import add_common

EXAMPLES = """examples:
  freqlab pretrain                                              # cpu-small on the embedded natural crops
  freqlab pretrain --steps 600 --lr 2e-3 --out runs/longer      # override any knob of the preset
  freqlab pretrain --resume --out runs/pretrain                 # continue a run that was interrupted
  freqlab pretrain --preset cifar --data cifar10 --data-path ~/data/cifar-10-batches-py --device cuda
  freqlab pretrain --preset tiny --out /tmp/tiny --overwrite    # seconds; replaces an earlier run there
"""


def _ints(text: str) -> tuple[int, ...]:
    text = text.strip().lower()
    if text in ("", "none"):
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def _option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


# (flag, TrainConfig field, type, help); every default is None: "the preset's value"
KNOBS = (
    ("--data", "data", str, "data source: natural (default), deadleaves, grf, white, folder, cifar10, array"),
    ("--data-path", "data_path", str, "folder / cifar10 / array data: where the images are"),
    ("--resolution", "resolution", int, "image size in pixels (square)"),
    ("--data-seed", "data_seed", int, "which crops a procedural source draws (kept apart from --seed)"),
    ("--channels", "channels", _ints, "UNet widths per level, e.g. 32,64,64"),
    ("--layers-per-block", "layers_per_block", int, "ResNet blocks per level"),
    ("--attention-levels", "attention_levels", _ints, "levels with self-attention, e.g. 2 (0 = full resolution; "
                                                      "'none' for none)"),
    ("--dropout", "dropout", float, "dropout in the ResNet blocks"),
    ("--sigma-data", "sigma_data", float, "EDM σ_data (0.5 for images in [-1, 1])"),
    ("--sigma-min", "sigma_min", float, "σ_min recorded in the checkpoints"),
    ("--sigma-max", "sigma_max", float, "σ_max recorded in the checkpoints (the D2O generator's σ)"),
    ("--loguniform-share", "loguniform_share", float, "share of training images whose σ is log-uniform over "
                                                      "[σ_min, σ_max] instead of log-normal (EDM: 0)"),
    ("--p-mean", "p_mean", float, "mean of log σ during training (EDM: -1.2)"),
    ("--p-std", "p_std", float, "standard deviation of log σ during training (EDM: 1.2)"),
    ("--steps", "steps", int, "optimisation steps"),
    ("--batch-size", "batch_size", int, "images per step"),
    ("--lr", "lr", float, "Adam learning rate"),
    ("--betas", "betas", _floats, "Adam betas, e.g. 0.9,0.999"),
    ("--warmup-steps", "warmup_steps", int, "steps of linear learning-rate warm-up"),
    ("--lr-schedule", "lr_schedule", str, "constant or cosine (decay to 0 after the warm-up)"),
    ("--grad-clip", "grad_clip", float, "maximum global gradient norm (0: off)"),
    ("--ema-halflife", "ema_halflife_images", float, "EMA half-life in images"),
    ("--ema-rampup-ratio", "ema_rampup_ratio", float, "EMA half-life at most this share of the images seen"),
    ("--ema-decay", "ema_decay", float, "fixed per-step EMA decay (overrides the half-life)"),
    ("--checkpoints", "n_checkpoints", int, "number of log-spaced checkpoints (step 0 and the last included)"),
    ("--state-every", "state_every", int, "steps between saved training states (what --resume restarts from)"),
    ("--log-every", "log_every", int, "steps per block of the loss-per-σ log"),
    ("--loss-sigma-edges", "loss_sigma_edges", _floats, "σ bin edges of the loss log, e.g. 0.01,0.1,1,10"),
)


def register(sub) -> None:
    p = sub.add_parser("pretrain", help="train a small diffusion model with the EDM loss; log-spaced checkpoints",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-small", help="cpu-small (default), cifar or tiny")
    for flag, dest, kind, text in KNOBS:
        p.add_argument(flag, dest=dest, type=kind, default=None, help=text,
                       metavar=flag.lstrip("-").upper().replace("-", "_"))
    p.add_argument("--grayscale", action="store_true", default=None, help="one channel instead of RGB")
    p.add_argument("--data-option", dest="data_options", type=_option, action="append", default=None,
                   metavar="KEY=VALUE", help="an option of the data source (e.g. max_crop=0.25); repeatable")
    p.add_argument("--no-amp", dest="amp", action="store_false", default=None,
                   help="no bf16 autocast on accelerators (CPU always runs float32)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last saved state")
    p.add_argument("--overwrite", action="store_true", help="delete a previous run in --out and start over")
    add_common(p, out_default="runs/pretrain")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from freqlab.pretrain.config import make_config
    from freqlab.pretrain.loop import pretrain

    fields = [dest for _, dest, _, _ in KNOBS] + ["grayscale", "amp"]
    overrides = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
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
    print(f"pretrain {config.preset}: step {result.step} of {config.steps}{speed}{loss}; "
          f"{len(result.checkpoints)} checkpoints in {result.out_dir / 'checkpoints'}")
    for path in result.checkpoints:
        print(path)
    return 0
