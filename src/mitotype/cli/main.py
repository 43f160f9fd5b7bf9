"""Entry point of the ``mitotype`` command: dispatches to subcommand modules.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace, returning an exit status). Modules are imported
only to build the parser; heavy imports (torch, timm) happen inside the command functions so
that ``mitotype --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from mitotype import __version__
from mitotype.cli.extras import TRAINING_MODULES, require_extra, training_extra_error
from mitotype.errors import MitotypeError, describe_os_error

SUBCOMMAND_MODULES = (
    "mitotype.cli.data",
    "mitotype.cli.models",
    "mitotype.cli.train",
    "mitotype.cli.cv",
    "mitotype.cli.ablate",
    "mitotype.cli.evaluate",
    "mitotype.cli.demo",
    "mitotype.cli.holdout",
    "mitotype.cli.score",
    "mitotype.cli.predict",
    "mitotype.cli.challenge",
    "mitotype.cli.export",
    "mitotype.cli.slides",
)
"""One module per command (``data`` and ``models`` hold their subcommands), in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mitotype",
        description="Normal vs atypical mitotic figure classification (MIDOG 2025 Track 2). "
        "Atypical is the positive class: every probability is p(atypical).",
    )
    parser.add_argument("--version", action="version", version=f"mitotype {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a subcommand group not written yet
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # OpenMP threads that spin while waiting make small CPU ops tens of times slower on a busy
    # machine (benchmarks/README.md); passive waiting costs nothing measurable on a quiet one.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from mitotype.models.allocator import retain_freed_memory
    from mitotype.runs import record_command

    retain_freed_memory()  # large CPU tensors reuse freed pages (models/allocator.py)

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    record_command(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    previous = _terminate_as_exception()
    try:
        require_extra(args)  # a command of the training extra says so before it reads anything
        return int(args.func(args) or 0)
    except MitotypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # the base install: a module of the training extra is missing
        if (exc.name or "").partition(".")[0] not in TRAINING_MODULES:
            raise
        print(f"error: {training_extra_error(args)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`mitotype score ... | head`): stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's exit flush does not raise again
        return 141
    except OSError as exc:  # a path of the user's: missing, read-only, a file where a folder must be...
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate_as_exception() -> Any:
    """Make SIGTERM (``kill``, a batch scheduler's time limit) unwind like Ctrl-C, so a run folder records
    that it failed and temporary files are removed; returns the previous handler (``None``: unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":
    sys.exit(main())
