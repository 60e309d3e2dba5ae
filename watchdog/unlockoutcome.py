"""What `tfc-watchdog unlock` says and counts, for TFC workspaces and S3/GCS-backend locks
alike: the exit codes, the refusal and failure lines, and the audit line of the outcome."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from watchdog.act import audit
from watchdog.metrics import Metrics
from watchdog.model import ActionResult, Outcome

EXIT_UNLOCKED, EXIT_API_FAILURE, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 4
COMMAND = "unlock command"

log = structlog.get_logger("watchdog.unlock")

# Outcomes after which the lock is still there because a gate (or the server, for the same
# reasons) said no; anything else that is not DONE is an API failure.
_REFUSALS = frozenset({Outcome.SKIPPED_CHANGED, Outcome.FORBIDDEN})


class Refused(Exception):
    """A gate said no: one line, exit 4."""


class ApiFailure(Exception):
    """The API failed (or may have acted without saying so): one line, exit 1."""


def finish(result: ActionResult, metrics: Metrics, out: Callable[[str], None]) -> int:
    """Count and audit the outcome as the act stage does; exit 0, or raise Refused or
    ApiFailure with its one line."""
    metrics.action(result.action.kind, result.outcome)
    audit(log, result, dry_run=False, extra={"initiated_by": COMMAND})
    action = result.action
    where = f"{action.organization}/{action.workspace}"
    verb = action.kind.value.replace("_", "-")
    if result.outcome is Outcome.DONE:
        out(f"{verb}: {where} is unlocked")
        return EXIT_UNLOCKED
    line = f"{verb} {where}: {result.outcome.value}: {result.detail}"
    if result.outcome in _REFUSALS or result.retry_later:
        raise Refused(line)
    raise ApiFailure(line)
