"""The demo's verdict on seeds never used before: the committed criterion (freqlab/compare/criterion.json), unchanged,
applied to fresh fine-tunes of a finished demo's pre-trained model.

    python benchmarks/verdict_seeds.py runs/demo /tmp/seeds --first 100 --seeds 20

Runs the demo's three fine-tunes (D2O-F from the pre-trained model; random init with D2O-F's frozen set; random init
with nothing frozen) with the demo's settings for seeds FIRST .. FIRST+SEEDS-1 into OUT, compares every start and end
with held-out data and the controls exactly as the demo does (OUT/compare.nc), and prints the verdict section the
report would print, with the criterion's hash. Resumes: finished fine-tunes are kept. About 17 min for 20 seeds on
two CPU cores (60 fine-tunes, 86 comparisons).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", help="a finished demo's results directory (its pretrain/ is used)")
    parser.add_argument("out", help="where the fresh fine-tunes and compare.nc go")
    parser.add_argument("--first", type=int, default=100, help="the first seed (default 100)")
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds (default 20)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    from freqlab import demo
    from freqlab.checkpoints.store import discover_checkpoints
    from freqlab.compare.criterion import load_criterion
    from freqlab.compare.verdict import verdict_section
    from freqlab.report import RUN_NAMES
    from freqlab.runtime import results
    from freqlab.runtime.devices import resolve_device

    dev = resolve_device(args.device)
    final = discover_checkpoints(Path(args.demo) / "pretrain")[-1].path
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = replace(demo.demo_settings(device=str(dev)), finetune_seeds=args.seeds, finetune_unfrozen=False)
    stages = demo._Stages(time.monotonic())
    demo._finetune_stage(out, settings, args.first, dev, False, stages, final)
    demo._compare_stage(out, settings, args.first, dev, False, stages, final)
    print("\n".join(verdict_section(results.load(out / "compare.nc"), load_criterion(), RUN_NAMES)))
    print(f"seeds {args.first}..{args.first + args.seeds - 1}; pre-trained model {final}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
