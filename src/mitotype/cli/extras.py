"""Which commands need the training extra, and the one line that says so when it is missing.

The base install (``pip install mitotype``) classifies with ONNX Runtime; training, cross-validation,
PyTorch inference and export need ``pip install 'mitotype[train]'``. A command that needs it is marked where
its parser is defined (:func:`needs_training_extra`) and refused before it reads anything; a module of the
extra missing anywhere else ends in the same one line, never an ImportError traceback.
"""

from __future__ import annotations

import argparse

from mitotype.errors import TRAINING_EXTRA, MissingExtraError
from mitotype.extras import TRAINING_MODULES, training_extra_installed

__all__ = ["TRAINING_MODULES", "needs_training_extra", "require_extra", "training_extra_error"]


def needs_training_extra(parser: argparse.ArgumentParser) -> None:
    """Mark a (sub)command that cannot run without the training extra."""
    parser.set_defaults(needs_extra=parser.prog)


def training_extra_error(args: argparse.Namespace) -> MissingExtraError:
    """``mitotype <command> needs the training extra: pip install 'mitotype[train]'``."""
    command = getattr(args, "needs_extra", None) or f"mitotype {getattr(args, 'command', '') or ''}".strip()
    return MissingExtraError(command, TRAINING_EXTRA)


def require_extra(args: argparse.Namespace) -> None:
    """Refuse a marked command when a module of the training extra is not installed."""
    if getattr(args, "needs_extra", None) and not training_extra_installed():
        raise training_extra_error(args)
