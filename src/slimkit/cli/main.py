"""The `slimkit` command line: one module per command, errors as one line."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# Each command lives in slimkit/cli/<name>.py and exposes add_parser(subparsers) and run(args).
COMMANDS = ("train", "evaluate", "info", "compare", "prune", "quantize", "run", "demo")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line, exit status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="slimkit",
        description="Make trained CNNs smaller and faster, measured by the survey's six ratios.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"slimkit.cli.{name}")
        module.add_parser(sub)
        sub.choices[name].set_defaults(run=module.run)
    return parser


def _version() -> str:
    from slimkit import __version__

    return f"slimkit {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("slimkit: interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"slimkit: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
