"""``freqlab figures RESULTS_DIR``: regenerate every figure from saved results (nothing is recomputed, so this
command has no --device or --seed)."""

from __future__ import annotations

import argparse
import sys

from freqlab.commands.common import report


def register(sub) -> None:
    from freqlab.plots.registry import FIGURES

    p = sub.add_parser("figures", help="redraw all figures of a results directory", description=__doc__,
                       epilog="examples:\n  freqlab figures runs/demo                # -> figures/\n"
                              "  freqlab figures runs/demo --only cutoff_vs_sigma --out /tmp/f\n\n"
                              f"figures: {', '.join(FIGURES)}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", help="a directory written by `freqlab demo` (sweep.nc, finetune-*/, ...)")
    p.add_argument("--out", default="figures", help="where to write PNG and PDF files (default: figures)")
    p.add_argument("--only", default=None, help="comma-separated figure names")
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no lines about skipped figures and files written (errors still say what went wrong)")
    p.add_argument("--json", action="store_true", help="print the files written as one JSON document on stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    from freqlab.plots.registry import make_figures

    names = [n.strip() for n in args.only.split(",")] if args.only else None
    written = make_figures(args.results_dir, args.out, names, quiet=args.quiet)
    if args.json or not args.quiet:
        report(args, "\n".join(str(p) for p in written),
               {"results_dir": str(args.results_dir), "written": [str(p) for p in written]})
    if not (args.json or args.quiet):
        print(f"wrote {len(written)} files into {args.out}", file=sys.stderr)
    return 0
