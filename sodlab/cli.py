"""The `sodlab` command line.

Every module in `sodlab.commands` is one subcommand: it defines `NAME`, `HELP`,
`add_arguments(parser)` and `run(args) -> int`, and may define `DESCRIPTION` (the longer text
of its ``--help``) and `resume_hint(args) -> str` (what to run after an interruption). Modules
whose name starts with ``_`` are shared helpers, not commands. Modules are discovered, so adding a command never means
editing this file.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import pkgutil
import signal
import sys
import threading
import warnings
from typing import Iterator, Sequence

from . import commands as _commands_pkg
from .errors import SodlabError


def _command_modules():
    mods = []
    for info in sorted(pkgutil.iter_modules(_commands_pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"{_commands_pkg.__name__}.{info.name}"))
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sodlab", description="Salient object detection lab: CSNet, CSF+Res2Net and the semantic studies.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _resume_hint=getattr(mod, "resume_hint", None))
    return parser


def _warning_as_log_line(message, category, filename, lineno, file=None, line=None) -> None:
    # A user of the command line wants the warning, not the library line that raised it.
    logging.getLogger("sodlab").warning("%s", message)


@contextlib.contextmanager
def _further_interrupts_ignored() -> Iterator[None]:
    """While an interruption is reported, a second Ctrl-C (an impatient user; `timeout -s INT`
    signals twice) must not replace the message with a traceback. The handler is restored
    after: `main` also runs inside other programs (tests, notebooks), whose children would
    otherwise inherit an ignored SIGINT."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except SodlabError as exc:
        print(f"sodlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        with _further_interrupts_ignored():
            hint = args._resume_hint(args) if args._resume_hint is not None else ""
            print(f"sodlab {args.command}: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130


def console_main() -> int:
    """The `sodlab` program: `main` with warnings shown as one log line. (`main` itself leaves
    warnings alone: a program or test that calls it keeps its own warning handling.)"""
    with warnings.catch_warnings():
        warnings.showwarning = _warning_as_log_line
        return main()

if __name__ == "__main__":
    sys.exit(console_main())
