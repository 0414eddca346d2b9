"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse


def add_common(parser: argparse.ArgumentParser, *, out_default: str | None = None) -> None:
    """``--device``, ``--seed``, ``--quiet`` and ``--out`` with the same meaning everywhere."""
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same numbers")
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bars")
    if out_default is not None:
        parser.add_argument("--out", default=out_default, help=f"output path (default: {out_default})")
