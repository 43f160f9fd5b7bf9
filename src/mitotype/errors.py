"""Errors that mean "the user gave us something wrong", shown as one line without a traceback."""

from __future__ import annotations


class MitotypeError(Exception):
    """A user-facing error: the CLI prints ``error: <message>`` and exits with status 2."""


class DataError(MitotypeError):
    """Input data is missing, malformed or inconsistent (the message names the file and row)."""


class ConfigError(MitotypeError):
    """A configuration is invalid (unknown key, value out of range, missing column)."""


class WeightsError(MitotypeError):
    """Model weights are missing or do not match the architecture."""
