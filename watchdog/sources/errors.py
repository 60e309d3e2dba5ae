"""The errors every lock source raises to act.py: one vocabulary, whatever the store.

Each source translates its own failures into these (the TFC source its HTTP errors, the S3
backend sources boto3's), so act.py has one mapping to outcomes: `ChangedError` ->
`skipped_changed`, `ForbiddenError` -> `forbidden`, `RetryLaterError` -> `failed` and planned
again next cycle, any other `SourceError` -> `unknown` when the request may have been carried
out (`may_have_acted`), else `failed`. The subclasses derive from `SourceError`, so catch them
before it.
"""

from __future__ import annotations

# The metrics reasons after which a request may have been carried out: it was sent (or may
# have been) and no answer says it was not. botocore's "transport" also covers a connection
# never made; its errors do not say which, so the S3 sources leave it as "may have acted"
# (it counts against the budget either way). A source that knows better (the TFC client
# tells a connection that never opened) says so with `may_have_acted`.
_MAY_HAVE_ACTED = frozenset({"timeout", "transport", "server_error"})


def reason_of_status(status: int) -> str | None:
    """The metrics reason an HTTP status gives by itself (401/403, 404, 429, 5xx); None for
    any other, which each source judges with what else it knows of the failure."""
    if status in (401, 403):
        return "unauthorized"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return None


def one_line(exc: Exception) -> str:
    """A one-line description of a store client's failure (boto3, google-cloud-storage):
    its type and message, whitespace folded, at most 300 characters. Their messages carry no
    credentials (a bearer token or a signature is a header, never part of them)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300]


class SourceError(Exception):
    """A request to a lock source failed. `str()` is one line without secrets; `reason` is
    a metrics error reason (metrics.ERROR_REASONS)."""

    def __init__(
        self, detail: str, *, reason: str = "other", may_have_acted: bool | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason
        # Whether the store may have performed a mutating request although it failed.
        self.may_have_acted = (
            reason in _MAY_HAVE_ACTED if may_have_acted is None else may_have_acted
        )


class ChangedError(SourceError):
    """The target is no longer in the state the request needs (another run took the lock, the
    run moved on): nothing was done, and the next cycle reads again."""

    def __init__(self, detail: str, *, reason: str = "other") -> None:
        super().__init__(detail, reason=reason, may_have_acted=False)


class ForbiddenError(SourceError):
    """The credentials may not do this (or may not even see the target)."""

    def __init__(self, detail: str, *, reason: str = "unauthorized") -> None:
        super().__init__(detail, reason=reason, may_have_acted=False)


class RetryLaterError(SourceError):
    """Refused for now by a condition that passes by itself (a state upload being finalized):
    nothing was done; planning it again next cycle is right."""

    def __init__(self, detail: str, *, reason: str = "other") -> None:
        super().__init__(detail, reason=reason, may_have_acted=False)
