"""``freqlab demo``: the whole story on the embedded default data, resumable stage by stage."""

from __future__ import annotations

import argparse

from freqlab.commands.common import add_common, report

EXAMPLES = """stages: pre-training (cpu-small) -> sweep over checkpoints x sigma (one step, and EDM's 18-step sampler)
-> D2O-F fine-tuning from the final checkpoint and from a random init, five seeds each -> inside the network
(per-layer feature spectra; on a GPU also what an unfrozen D2O run moved) -> data spectra -> figures -> report.md.
Rerunning reuses finished stages.

examples:
  freqlab demo                       # about 10 minutes on two CPU cores, into runs/demo
  freqlab demo --quick --out /tmp/d  # tiny everything, a smoke test (about 70 s)
  freqlab demo --device cuda         # a 35.7 M-parameter model on a GPU (2.7 min on one H200)
"""


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo (pre-train, sweep, fine-tune, figures, report)",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    p.add_argument("--figures", default=None,
                   help="also write the figures into this directory (e.g. figures), with the small result files "
                        "they are drawn from in its results/ folder (freqlab figures DIR/results redraws them)")
    add_common(p, out_default="runs/demo")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from freqlab.demo import run_demo
    from freqlab.plots.registry import copy_figures
    from freqlab.plots.results_dir import EXTERNAL_FILES, export_results
    from freqlab.report import write_report

    path = run_demo(args.out, quick=args.quick, device=args.device, seed=args.seed, progress=not args.quiet)
    if args.figures:
        dest = Path(args.figures) / "results"
        export_results(args.out, dest)
        copy_figures(Path(args.out) / "figures", args.figures)
        if any((dest / name).exists() for name in EXTERNAL_FILES):  # a benchmark's results kept there: reported too
            write_report(dest)
    report(args, path.read_text(encoding="utf-8"), {"out": str(args.out), "report": str(path),
                                                     "figures": str(args.figures) if args.figures else None})
    return 0
