"""The ``freqlab`` command line: parses arguments and calls library functions, nothing more.

Each sub-command lives in ``freqlab/commands/<name>.py`` with ``register(subparsers)``; it sets ``func`` to a
function of the parsed arguments. Errors a user can cause (ValueError, FileNotFoundError) become one line on stderr
and exit status 2; ``--debug`` (before or after the sub-command) shows the traceback instead. ``--version`` prints
the version. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from freqlab.runtime import outputs

COMMANDS = ("spectra", "pretrain", "sweep", "finetune", "compare", "figures", "demo", "layers", "weights")
LOCKS_OUT = ("spectra", "pretrain", "sweep", "finetune", "compare", "demo", "layers", "weights")  # commands whose --out is locked for the run


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the command and where its options are listed (not the whole usage); help
    as plain text (the docstrings' reStructuredText ``literals`` without their backticks)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def format_help(self) -> str:
        return super().format_help().replace("``", "")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="freqlab",
        description="Frequency-domain study of diffusion models as one-step generators.",
        epilog="Run `freqlab COMMAND --help` for the options and examples of each command.",
    )
    from freqlab import __version__

    parser.add_argument("--version", action="version", version=f"freqlab {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks instead of one-line errors (also accepted after COMMAND)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"freqlab.commands.{name}").register(sub)
    parser.set_defaults(subparsers=sub.choices)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # freqlab never downloads weights
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere, e.g. `freqlab sweep RUN --debug`
    args, unknown = parser.parse_known_args([a for a in argv if a != "--debug"])
    if unknown:  # said by the sub-command, which points to its own options
        args.subparsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    args.debug = debug
    try:
        # the output's lock is taken before the command imports torch: a busy output refuses at once
        writes = args.command in LOCKS_OUT and not getattr(args, "dry_run", False)
        with outputs.hold(args.out if writes else None):
            result = args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError,
            outputs.OutputInUse) as err:
        if args.debug:
            raise
        print(f"freqlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        how = "the same command with --resume continues" if args.command == "pretrain" else "a rerun resumes"
        print(f"freqlab {args.command}: interrupted; finished work is saved and {how}", file=sys.stderr)
        return 130
    finally:  # a process group the command set up under torchrun (imported only if a command used it)
        if "freqlab.runtime.distributed" in sys.modules:
            sys.modules["freqlab.runtime.distributed"].shutdown()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
