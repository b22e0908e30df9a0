"""Exception classes the retry policy understands (``etlkit.common.retry.classify``)."""

from __future__ import annotations


class PermanentError(Exception):
    """Retrying cannot help: the task fails at once. The message says what to fix."""


class BadInputError(PermanentError):
    """The input or configuration is wrong: retrying cannot help, fail the task at once."""


class ConfigurationError(BadInputError):
    """A connection, Variable or param is missing or invalid."""


class ContractError(PermanentError):
    """A system answered outside its documented contract (a 2xx body that is not JSON, ...)."""


class TransientError(Exception):
    """A failure expected to go away on its own (network, 5xx, 429, lock timeout): retry."""


class InjectedFault(RuntimeError):
    """Raised only by tests that simulate a crash at a chosen step; transient, like a real crash."""
