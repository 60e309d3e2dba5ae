"""The report stage: where a cycle's report goes.

`Reporter` is the one object the cycle hands its findings and its report to. It publishes
them as metrics (the per-lock series through `metrics.LockSeries`, whose /metrics text it
has rendered once per report), as log events (a finding when it appears and when it clears,
a restraint once), as health (/livez, /readyz) and as the `/locks` document (the last
report). What the report says is `report.py` (the JSON contract and the `scan` table); this
module is about where it goes and what it remembers between cycles.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import structlog

from watchdog.decide import Restraint
from watchdog.exposition import MetricsExposition
from watchdog.memory import ClearedLock
from watchdog.metrics import LockPicture, Metrics
from watchdog.model import (
    Finding,
    FindingKind,
    LockState,
    Observation,
    Outcome,
    Source,
    utcnow,
)
from watchdog.report import CycleReport, finding_to_json

log = structlog.get_logger(__name__)


@dataclass
class Health:
    """What /livez (and its alias /healthz) and /readyz report.

    Liveness is about this process: a cycle ended (however it went) recently. Readiness is
    about the API: a cycle succeeded recently. Kept apart so that an API outage marks the
    pod not ready (and fires TfcWatchdogStalled) instead of restarting it, which would drop
    the per-lock series and resolve the very alerts the outage should keep."""

    started_monotonic: float = field(default_factory=time.monotonic)
    last_success_monotonic: float | None = None
    # When the last cycle ended: completely, incompletely (an API outage) or with an
    # exception. Only a scheduler that stopped running cycles leaves it old.
    last_cycle_end_monotonic: float | None = None
    # Ready after the first successful cycle; a 401 (bad or expired token) makes it false
    # again until a cycle succeeds.
    ready: bool = False
    last_error: str | None = None


def _scope(item: LockState | Finding | Observation) -> tuple[str, str]:
    return (item.source.value, item.organization)


def _complete_scopes(observations: Iterable[Observation]) -> set[tuple[str, str]]:
    return {_scope(o) for o in observations if o.complete}


class FindingLog:
    """Logs a finding once when it appears and once when it clears, not every cycle."""

    def __init__(self) -> None:
        self._active: dict[tuple[str, str, str], Finding] = {}

    def update(self, findings: Iterable[Finding], complete_scopes: set[tuple[str, str]]) -> None:
        """`complete_scopes` holds (source, organization) pairs read completely this cycle: a
        finding from a scope that could not be read is not declared cleared."""
        current = {f.key: f for f in findings}
        for key, finding in current.items():
            if key not in self._active:
                level = log.info if finding.kind == FindingKind.LOCK_HELD else log.warning
                level("finding", **finding_to_json(finding))
        for key, finding in list(self._active.items()):
            if key in current:
                continue
            if (finding.source.value, finding.organization) not in complete_scopes:
                current[key] = finding
                continue
            log.info("finding_cleared", **finding_to_json(finding))
        self._active = current


class RestraintLog:
    """Says once why a stale-looking lock or run is left alone (young, protected, ...)."""

    def __init__(self) -> None:
        self._announced: set[tuple[str, str]] = set()

    def update(self, restraints: Iterable[Restraint]) -> None:
        restraints = list(restraints)
        for restraint in restraints:
            if (restraint.workspace_id, restraint.reason) not in self._announced:
                log.info(
                    "not_acting",
                    organization=restraint.organization,
                    workspace=restraint.workspace,
                    workspace_id=restraint.workspace_id,
                    reason=restraint.reason,
                )
        self._announced = {(r.workspace_id, r.reason) for r in restraints}


@dataclass
class _Part:
    """One (source, organization)'s share of the per-lock series, while it is gathered."""

    locks: list[LockState] = field(default_factory=list)
    stuck_runs: list[tuple[str, str]] = field(default_factory=list)
    runs_blocked: list[tuple[str, str, str]] = field(default_factory=list)

    def picture(self) -> LockPicture:
        return LockPicture(tuple(self.locks), tuple(self.stuck_runs), tuple(self.runs_blocked))


def _pictures(report: CycleReport) -> dict[tuple[str, str], LockPicture]:
    """The report's per-lock series, by the (source, organization) they were read from."""
    parts: dict[tuple[str, str], _Part] = {}
    for lock in report.locks:
        parts.setdefault(_scope(lock), _Part()).locks.append(lock)
    for f in report.findings:
        part = parts.setdefault(_scope(f), _Part())
        if f.kind is FindingKind.RUN_STUCK:
            part.stuck_runs.append((f.organization, f.run_status or "unknown"))
        elif f.kind is FindingKind.RUNS_BLOCKED:
            part.runs_blocked.append((f.source.value, f.organization, f.workspace))
    return {scope: part.picture() for scope, part in parts.items()}


class Reporter:
    """The report stage of the cycle: one per process (the daemon's, or a `scan`'s)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.health = Health()
        # The `/locks` document: the last cycle's report (None until one has finished).
        self.last_report: CycleReport | None = None
        self.exposition = MetricsExposition(metrics)
        self._findings = FindingLog()
        self._restraints = RestraintLog()
        # The last per-lock picture of each (source, organization), see publish().
        self._pictures: dict[tuple[str, str], LockPicture] = {}
        self._started: float | None = None

    # --- during the cycle ---------------------------------------------------------------------

    def cycle_started(self) -> None:
        self.metrics.cycles.inc()
        self._started = time.monotonic()

    def locks_cleared(self, cleared: Iterable[ClearedLock]) -> None:
        """Time to clear: each lock memory found gone, once, attributed by our own POST
        records."""
        for lock in cleared:
            self.metrics.lock_cleared(
                lock.source, by_watchdog=lock.by_watchdog, age_seconds=lock.age.total_seconds()
            )

    def announce(
        self,
        findings: Sequence[Finding],
        restraints: Sequence[Restraint],
        observations: Sequence[Observation],
    ) -> None:
        """Say what was found (and why some of it is left alone). The cycle calls this before
        acting, so the log reads in the order things happened."""
        self._findings.update(findings, _complete_scopes(observations))
        self._restraints.update(restraints)

    # --- at its end ---------------------------------------------------------------------------

    def cycle_raised(self) -> None:
        """The cycle raised (a bug): counted, and said by /readyz until a cycle succeeds."""
        self.metrics.cycle_failures.inc()
        self.health.last_error = "cycle raised an exception (see the traceback)"
        self._ended()

    def publish(self, report: CycleReport) -> None:
        """Publish one finished cycle: metrics, their /metrics text, health and `/locks`."""
        self._publish_metrics(report)
        for result in report.results:
            if result.outcome is Outcome.FAILED and result.retry_later:
                log.info("action_retry_next_cycle", workspace=result.action.workspace)
        self._ended()
        self._record_health(report)
        self.last_report = report
        # Rendered now, inside the cycle, so that no scrape pays for it.
        self.exposition.prerender()

    def _ended(self) -> None:
        ended = time.monotonic()
        if self._started is not None:
            self.metrics.cycle_duration.observe(ended - self._started)
            self._started = None
        self.health.last_cycle_end_monotonic = ended

    def _publish_metrics(self, report: CycleReport) -> None:
        for observation in report.observations:
            # workspaces{organization} is about TFC organizations; a lock table or bucket
            # has no workspaces (its locks are in the per-lock series).
            if observation.complete and observation.source is Source.TFC:
                # The source keeps every locked workspace in `workspaces` (worth_keeping).
                locked = sum(1 for ws in observation.workspaces if ws.locked) + len(
                    observation.backend_locks
                )
                self.metrics.publish_organization(
                    observation.organization,
                    observation.workspace_count,
                    locked,
                )
        # A scope that could not be read this cycle keeps its last picture, so an API blip
        # does not resolve a stale-lock or stuck-run alert.
        current = _pictures(report)
        for observation in report.observations:
            scope = _scope(observation)
            if observation.complete or scope not in self._pictures:
                self._pictures[scope] = current.get(scope, LockPicture())
        self.metrics.lock_series.show(LockPicture.combine(self._pictures.values()))

    def _record_health(self, report: CycleReport) -> None:
        if report.complete:
            self.health.last_success_monotonic = time.monotonic()
            self.health.ready = True
            self.health.last_error = None
            self.metrics.cycle_succeeded(utcnow())
            return
        self.metrics.cycle_failures.inc()
        errors = [o.error or "unreadable" for o in report.observations if not o.complete]
        self.health.last_error = "; ".join(errors[:3])
        if any(o.error_reason == "unauthorized" for o in report.observations):
            self.health.ready = False
