"""Errors of the Ender Turing client that callers tell apart."""

from __future__ import annotations

from etlkit.common.errors import BadInputError


class EnderTuringRequestError(BadInputError):
    """A non-retryable answer (4xx other than a first 401 or 429, bad credentials, non-JSON body)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status

    @property
    def is_client_error(self) -> bool:
        """A 4xx the spec counts as a per-session detail failure (a repeated 401 fails the task)."""
        return self.status is not None and 400 <= self.status < 500 and self.status != 401


class EnderTuringLoginError(EnderTuringRequestError):
    """The credentials were rejected: no later call can succeed, so it is never a per-session failure."""

    @property
    def is_client_error(self) -> bool:
        return False
