"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse

from freqlab.commands.options import argument_type
from freqlab.runtime.settings import parse_floats


def add_common(parser: argparse.ArgumentParser, *, out_default: str | None = None) -> None:
    """``--device``, ``--seed``, ``--quiet``, ``--json`` and ``--out`` with the same meaning everywhere."""
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same numbers")
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as one JSON document on stdout instead of text")
    if out_default is not None:
        parser.add_argument("--out", default=out_default, help=f"output path (default: {out_default})")


def add_trust_pickle(parser: argparse.ArgumentParser, what: str = "EDM .pkl checkpoints") -> None:
    """``--trust-pickle``: unpickling runs code from the file, so it is opt-in, with the same warning everywhere."""
    parser.add_argument("--trust-pickle", action="store_true",
                        help=f"allow {what} (unpickling runs code from the file: only for files you trust)")


#: An argparse type: comma-separated numbers (``0.02,0.1,80``).
floats = argument_type(parse_floats)


def add_models_and_data(parser: argparse.ArgumentParser, *, data_help: str) -> None:
    """The checkpoints to measure (a run directory or paths) and the data source they are measured on (its split
    is a setting of the study)."""
    parser.add_argument("models", nargs="+", metavar="RUN_DIR_OR_CHECKPOINT",
                        help="a run directory (all its checkpoints, in training order) or checkpoint paths")
    parser.add_argument("--data", default="natural", help=data_help)
    parser.add_argument("--data-path", default=None, help="folder / cifar10 / array sources: where the images are")


def add_sigma_grid(parser: argparse.ArgumentParser, default_n: str) -> None:
    """``--sigmas`` or ``--n-sigmas``: the noise levels of a study."""
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument("--sigmas", type=floats, default=None, help="comma-separated noise levels, e.g. 0.02,0.1,1,80")
    grid.add_argument("--n-sigmas", type=int, default=None,
                      help=f"log-spaced levels from the model's sigma_min to sigma_max (default: {default_n})")


def report(args, text: str, doc: dict) -> None:
    """The command's summary on stdout: ``text``, or with ``--json`` the document ``doc`` (and the command)."""
    import json

    if getattr(args, "json", False):
        print(json.dumps({"command": args.command, **doc}, indent=2, default=str))
    else:
        print(text)
