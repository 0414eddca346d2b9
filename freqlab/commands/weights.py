"""``freqlab weights``: what a fine-tune moved, tensor by tensor, against what D2O-F freezes.

Compares two checkpoints with the same architecture (before and after a fine-tune), parameter by parameter, and
writes ``OUT/weight_change.nc`` (per tensor and per layer type: relative change ‖ΔW‖/‖W‖, absolute change, the
share of the squared change on the policy's frozen set beside its share of the parameters) and its figure
``OUT/weight_change.png`` / ``.pdf``. Prints the share of the change on the frozen set and the three layer types
that moved most. Definitions: docs/INSIDE.md, "What fine-tuning moves". The comparison runs on the CPU (--device
and --seed are accepted as by every command and change nothing here).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from freqlab.commands.common import add_common, add_trust_pickle, report

EXAMPLES = """examples:
  freqlab weights runs/pretrain/checkpoints/final runs/d2o/final           # a D2O fine-tune against its start
  freqlab weights ckpt/step-004000 runs/d2o/checkpoints/finetune-0003000-ema --out /tmp/moved
  freqlab weights edm-cifar10-32x32-uncond-vp.pkl runs/d2o-edm/final --trust-pickle
  freqlab weights BEFORE AFTER --policy 'conv_shortcut|norm'               # another frozen set (a regex)
"""


def register(sub) -> None:
    p = sub.add_parser("weights", help="which layers a fine-tune moved, against the D2O-F frozen set",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before", metavar="BEFORE", help="the checkpoint the fine-tune started from (RUN/final works)")
    p.add_argument("after", metavar="AFTER", help="the fine-tuned checkpoint (e.g. RUN/final: the last EMA export)")
    p.add_argument("--policy", default="conv",
                   help="the freezing policy whose frozen set is compared: conv (D2O-F, default), none, or a regex "
                        "over parameter names, as `freqlab finetune --freeze` takes it")
    add_trust_pickle(p)
    add_common(p, out_default="runs/weights")
    p.set_defaults(func=run)


def run(args) -> int:
    from freqlab.inside.weight_change import FILE_NAME, summarize, to_json, weight_change
    from freqlab.plots.style import save_figure
    from freqlab.plots.weights import weight_change_figure

    out = Path(args.out)
    nc = out / FILE_NAME
    ds = weight_change(args.before, args.after, policy=args.policy, trust_pickle=args.trust_pickle, out=nc)
    written = save_figure(weight_change_figure(ds), out / Path(FILE_NAME).stem, close=True)
    report(args, summarize(ds), {"out": str(nc), **to_json(ds)})
    print(f"wrote {nc} and {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0
