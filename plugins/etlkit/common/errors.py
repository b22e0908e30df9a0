"""Exception classes the retry policy understands."""

from __future__ import annotations


class BadInputError(Exception):
    """The input or configuration is wrong: retrying cannot help, fail the task at once."""


class ConfigurationError(BadInputError):
    """A connection, Variable or param is missing or invalid."""


class TransientError(Exception):
    """A failure expected to go away on its own (network, 5xx, 429, lock timeout): retry."""


class InjectedFault(RuntimeError):
    """Raised only by tests that simulate a crash at a chosen step."""
