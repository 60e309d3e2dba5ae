"""Terraform's lock info JSON, as the S3 backend stores it (DynamoDB `Info`, `.tflock` body)
and the gcs backend (`.tflock` body, whose `ID` the object's generation replaces).

Terraform writes `{"ID","Operation","Info","Who","Version","Created","Path"}` with `Created`
in Go's RFC 3339 with nanoseconds (`2026-11-29T04:14:57.641020969Z`). Python keeps
microseconds, so the extra digits are dropped.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from watchdog.model import TerraformLockInfo

# Go's time.RFC3339Nano: 1 to 9 fraction digits, `Z` or a numeric offset.
_GO_TIME = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<zone>[Zz]|[+-]\d{2}:\d{2})$"
)

_OPTIONAL_TEXT_FIELDS = ("Operation", "Info", "Who", "Version", "Path")

# How far ahead of the store's clock a `Created` may be and still count as a clock a little
# fast; beyond it the time is unreadable. Terraform itself has no lock before this year's
# releases, and Go's zero time (0001-01-01) is what an unset time.Time serializes to.
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)
EARLIEST_CREATED = datetime(2000, 1, 1, tzinfo=UTC)


class LockInfoError(ValueError):
    """The lock info could not be parsed; the message is one line, safe to log."""


def parse_go_time(text: str) -> datetime:
    """A Go RFC 3339 (nano) timestamp as an aware UTC datetime."""
    match = _GO_TIME.match(text.strip())
    if match is None:
        raise LockInfoError(f"Created is not an RFC 3339 time: {text[:60]!r}")
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]
    zone = "+00:00" if match["zone"] in ("Z", "z") else match["zone"]
    try:
        parsed = datetime.fromisoformat(f"{match['base'].replace(' ', 'T')}.{fraction}{zone}")
    except ValueError as exc:
        raise LockInfoError(f"Created is not a valid time: {text[:60]!r}") from exc
    return parsed.astimezone(UTC)


def parse_lock_info(
    raw: str | bytes,
    *,
    fallback_created: datetime | None = None,
    now: datetime | None = None,
    lock_id: str | None = None,
) -> TerraformLockInfo:
    """Parse a lock info document.

    `ID` is required. `Created` is required unless `fallback_created` is given (the `.tflock`
    object's LastModified) and `Created` is absent; a present but malformed `Created` is an
    error either way, because a lock whose age cannot be trusted must never be acted on. So
    is a `Created` before 2000 (Go's zero time included) or, given the store's clock `now`,
    more than CLOCK_SKEW_ALLOWANCE after it.

    `lock_id`, when given, is the lock's ID whatever the document says: the gcs backend's
    lock ID is the object's generation, and Terraform ignores the `ID` in the file.
    """
    try:
        document: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LockInfoError(f"lock info is not JSON: {exc}") from exc
    except RecursionError:
        # Anyone who can write the lock table or bucket can write this; a body nested deeper
        # than the interpreter's recursion limit is an unreadable lock, not a failed cycle.
        raise LockInfoError("lock info is not JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise LockInfoError(f"lock info is a JSON {type(document).__name__}, not an object")
    if lock_id is None:
        lock_id = document.get("ID")
        if not isinstance(lock_id, str) or not lock_id:
            raise LockInfoError("lock info has no ID")
    texts: dict[str, str] = {}
    for name in _OPTIONAL_TEXT_FIELDS:
        value = document.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise LockInfoError(f"lock info field {name} is not a string")
        texts[name] = value
    created_text = document.get("Created")
    if created_text in (None, "") and fallback_created is not None:
        created = fallback_created.astimezone(UTC)
    elif isinstance(created_text, str):
        created = parse_go_time(created_text)
    else:
        raise LockInfoError("lock info has no valid Created time")
    if created < EARLIEST_CREATED:
        raise LockInfoError(f"Created {created.isoformat()} is before 2000: not a real lock time")
    if now is not None and created > now + CLOCK_SKEW_ALLOWANCE:
        raise LockInfoError(
            f"Created {created.isoformat()} is in the future (more than 5m after the "
            f"store's clock, {now.isoformat()})"
        )
    return TerraformLockInfo(
        id=lock_id,
        operation=texts["Operation"],
        who=texts["Who"],
        version=texts["Version"],
        created=created,
        path=texts["Path"],
        info=texts["Info"],
    )


def unparsed_lock_info(created: datetime) -> TerraformLockInfo:
    """The placeholder for a lock whose info could not be parsed (the BackendLock's `problem`
    says why). `created` is only for display; such a lock is never acted on."""
    return TerraformLockInfo(id="", operation="", who="", version="", created=created, path="")
