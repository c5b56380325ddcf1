"""Typed errors: every failure the user can act on is a RunnerError with a clear message."""

from __future__ import annotations


class RunnerError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 69  # EX_UNAVAILABLE: the launch could not be carried out


class SpecError(RunnerError):
    """A job spec or a command-line value is invalid; nothing was created."""

    exit_code = 2


class NotFoundError(RunnerError):
    """A job, object or image does not exist."""

    exit_code = 66


class StoreError(RunnerError):
    """The object store could not be read or written."""


class AuthError(RunnerError):
    """Credentials are missing or lack a permission; never a capacity problem."""


class CapacityError(RunnerError):
    """The cloud has no capacity for this request in `scope` (a zone, a region)."""

    def __init__(self, message: str, scope: str = "") -> None:
        super().__init__(message)
        self.scope = scope


class QuotaError(CapacityError):
    """A quota or limit of the account blocks this request in `scope`."""


class NotOwnedError(RunnerError):
    """A VM named by a job's records does not carry that job's runner-job tag: runner leaves it alone."""

    exit_code = 77  # EX_NOPERM
