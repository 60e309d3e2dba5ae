"""Errors of the S3-backend lock stores (DynamoDB lock table, S3 `.tflock` objects).

`act.py` maps them to outcomes: `LockChangedError` -> `skipped_changed`, `ForbiddenError` ->
`forbidden`, any other `BackendError` -> `failed`. The subclasses derive from `BackendError`,
so catch them before it.
"""

from __future__ import annotations


class BackendError(Exception):
    """A lock store request failed. `str()` is one line; `reason` is a metrics error reason."""

    def __init__(self, detail: str, *, reason: str = "other") -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason


class LockChangedError(BackendError):
    """The compare-and-delete found a different lock (or none): nothing was deleted."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, reason="other")


class ForbiddenError(BackendError):
    """The credentials may not do this (AccessDenied)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, reason="unauthorized")
