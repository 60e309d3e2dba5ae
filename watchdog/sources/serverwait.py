"""How long a server asked us to wait, read from its answer's headers; shared by the HTTP API
clients (TFC, GitLab) so both honour and cap a server's wait the same way.

- `Retry-After`: delta-seconds or an HTTP-date (RFC 9110, section 10.2.3).
- TFC's `X-RateLimit-Reset`: seconds until the reset (docs/tfc-api.md, "Rate limits").
- GitLab's `RateLimit-Reset`: the reset as a Unix time, `RateLimit-ResetTime` the same as an
  HTTP-date (https://docs.gitlab.com/administration/settings/user_and_ip_rate_limits/,
  "Response headers").

A server's value is capped at `MAX_SERVER_WAIT`: one absurd value must not stall the daemon.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Final

import structlog

log = structlog.get_logger(__name__)

# The longest wait taken from a server. Documented resets are a second (TFC) to a minute
# (GitLab's per-minute limits); longer waits are capped, and logged.
MAX_SERVER_WAIT: Final = 60.0


def parse_seconds(value: str | None) -> float | None:
    """A non-negative, finite number of seconds; None for anything else."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None


def http_date(value: str | None) -> datetime | None:
    """An HTTP-date (the `Date` header) as an aware UTC datetime; None when unreadable."""
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def retry_after(value: str | None, now: datetime) -> float | None:
    """`Retry-After` in seconds: delta-seconds, or an HTTP-date measured from `now` (the
    server's clock, its `Date`, so a skewed local clock does not matter)."""
    seconds = parse_seconds(value)
    if seconds is not None or value is None:
        return seconds
    moment = http_date(value)
    if moment is None:
        return None
    return max(0.0, (moment - now).total_seconds())


def until_unix_time(value: str | None, now: datetime) -> float | None:
    """A reset given as a Unix time (GitLab's `RateLimit-Reset`), in seconds from `now`."""
    moment = parse_seconds(value)
    if moment is None:
        return None
    return max(0.0, moment - now.timestamp())


def capped(wait: float, *, event: str, endpoint: str, header: str, raw: str | None) -> float:
    """`wait`, at most MAX_SERVER_WAIT; a capped value is logged as `event`."""
    if wait <= MAX_SERVER_WAIT:
        return wait
    log.warning(
        event,
        endpoint=endpoint,
        header=header,
        server_value=raw,
        waited_seconds=MAX_SERVER_WAIT,
    )
    return MAX_SERVER_WAIT
