"""The ``hsanet`` command line: analyze, train, evaluate, baseline, bench, reference, report.

One module per command (``hsanet/cli/<command>.py``, each with ``register(subparsers)``); the work
itself is in the library. Bad input ends with exit code 2 and one line on stderr, never a traceback;
progress goes to stderr and results to stdout (``hsanet evaluate ... | jq`` works).
"""
from __future__ import annotations

import argparse
import io
import os
import sys

from hsanet.cli.errors import UsageError, check_at_least

COMMANDS = ("analyze", "train", "evaluate", "bench", "reference", "report")   # modules of hsanet/cli/

__all__ = ["UsageError", "build_parser", "check_at_least", "main"]


def _no_default(value) -> bool:
    return value is None or value is False or value is argparse.SUPPRESS


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after every option that has one, unless its help already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or _no_default(action.default):
            return text
        return super()._get_help_string(action)


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's default in ``--help`` (argparse shows it only for options with a help text)."""
    parser.formatter_class = _DefaultsFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _show_defaults(child)
        elif action.help is None and action.option_strings and not _no_default(action.default):
            action.help = "(default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: what is wrong and where to look (not the whole usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    p = _Parser(prog="hsanet", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"hsanet.cli.{name}").register(sub)
    _show_defaults(p)
    return p


def _user_error(command: str, exc) -> int:
    message = " ".join(str(exc).split())         # always one line
    print(f"hsanet {command}: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # process settings belong to the entry point, not to ``import hsanet`` (hsanet/inference/runtime.py)
    from hsanet.inference.runtime import defer_unused_imports, tune_allocator

    defer_unused_imports()
    tune_allocator()
    from hsanet.config import ConfigError
    from hsanet.featurizers import MoleculeError
    from hsanet.models.hsanet import CheckpointError

    try:
        return int(args.func(args) or 0)
    except (UsageError, MoleculeError, ConfigError, CheckpointError, FileNotFoundError) as exc:
        if isinstance(exc, FileNotFoundError) and exc.filename and exc.strerror:
            exc = f"{exc.filename}: no such file or folder"
        return _user_error(args.command, exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`hsanet analyze --file F | head`): stop quietly; point stdout at
        # /dev/null so that the interpreter's final flush does not complain either
        try:
            fd = sys.stdout.fileno()
            os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass
        return 141
    except OSError as exc:                   # after BrokenPipeError: a path that is a folder, unreadable, ...
        if exc.filename and exc.strerror:
            return _user_error(args.command, f"{exc.filename}: {exc.strerror}")
        raise
    except Exception as exc:                 # after BrokenPipeError, an Exception too
        if type(exc).__name__ == "MisconfigurationException":    # Lightning's: a device / strategy setting
            return _user_error(args.command, exc)
        raise


if __name__ == "__main__":
    sys.exit(main())
