"""One cycle: observe -> decide -> act -> report.

`CycleRunner.run_cycle(policy)` is the whole job of the daemon, of `run --once` and (with
`act=False`) of `scan`. The policy is the caller's (the daemon owns it and swaps it on a
reload): each cycle runs under the one it is given, and nothing here keeps a copy.

Data flows one way: sources produce observations, memory ages them, decide plans, act.py
carries out, and the report (metrics, logs, the `/locks` document) is made from what the
earlier stages returned. Nothing here speaks HTTP or mutates anything remote.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from watchdog.decide import Decision, decide
from watchdog.memory import Memory, allowed_gap
from watchdog.metrics import Metrics
from watchdog.model import (
    UNLOCK_RUNGS,
    ActionResult,
    Finding,
    FindingKind,
    Holder,
    LockState,
    Observation,
    Outcome,
    PlannedAction,
    Source,
    utcnow,
)
from watchdog.policy import Policy
from watchdog.report import CycleReport, FindingLog

log = structlog.get_logger(__name__)


class ObservingSource(Protocol):
    """What the cycle needs of a lock store: one Observation per organization/table/bucket.

    `observe()` never raises for a backend failure: it returns incomplete observations."""

    async def observe(self) -> list[Observation]: ...


class IdentitySource(Protocol):
    async def identity(self) -> Holder | None: ...


class ActionRunner(Protocol):
    """act.py's Actor, seen from here (the cycle does not need the concrete class)."""

    async def carry_out(
        self,
        planned: Sequence[PlannedAction],
        policy: Policy,
        now: datetime,
        identity: Holder | None,
    ) -> list[ActionResult]: ...


def _cycle_now(observations: Sequence[Observation]) -> datetime:
    """The cycle's clock: the TFC server's when TFC was read (the simulator's clock drives
    tests and the demo), else the lock stores'. decide ages S3-backend locks by their
    own observation's `server_now`, so a skew between AWS and TFC never shifts an age."""
    tfc = [o.server_now for o in observations if o.source is Source.TFC]
    return max(tfc or [o.server_now for o in observations], default=utcnow())


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


@dataclass
class _ScopeSeries:
    """The per-workspace metric series one (source, organization) produced."""

    locks: list[LockState] = field(default_factory=list)
    stuck: list[tuple[str, str]] = field(default_factory=list)  # (organization, status)
    blocked: list[tuple[str, str, str]] = field(default_factory=list)  # (source, org, workspace)


def _scope(item: LockState | Finding | Observation) -> tuple[str, str]:
    return (item.source.value, item.organization)


def _complete_scopes(observations: Sequence[Observation]) -> set[tuple[str, str]]:
    return {(o.source.value, o.organization) for o in observations if o.complete}


class CycleRunner:
    """Runs one cycle at a time over the same sources, memory and actor; what must outlive a
    cycle (memory, the last report, health, what was already logged) lives here."""

    def __init__(
        self,
        *,
        sources: Sequence[ObservingSource],
        memory: Memory,
        metrics: Metrics,
        identity_source: IdentitySource | None = None,
        actor: ActionRunner | None = None,
    ) -> None:
        self.sources = list(sources)
        self.memory = memory
        self.metrics = metrics
        self.identity_source = identity_source
        self.actor = actor
        self.health = Health()
        self.last_report: CycleReport | None = None
        self._identity: Holder | None = None
        self._identity_known = False
        self._finding_log = FindingLog()
        self._announced_restraints: set[tuple[str, str]] = set()
        # The last per-workspace series of each (source, organization), see _publish.
        self._last_series: dict[tuple[str, str], _ScopeSeries] = {}

    def _needs_identity(self, policy: Policy) -> bool:
        """Only the unlock rung depends on who we are (unlock our own lock vs force-unlock
        someone else's), so only then is the extra request spent."""
        if self.identity_source is None:
            return False
        rungs = set(policy.defaults.actions)
        for rule in policy.rules:
            rungs.update(rule.actions or ())
        return bool(rungs & UNLOCK_RUNGS)

    async def _identity_once(self, policy: Policy) -> Holder | None:
        if self._identity_known or not self._needs_identity(policy):
            return self._identity
        assert self.identity_source is not None
        try:
            self._identity = await self.identity_source.identity()
            self._identity_known = True
            log.info(
                "identity",
                holder=self._identity.label() if self._identity else None,
                note=None
                if self._identity
                else "team or organization token: every unlock "
                "of a user/team lock is a force-unlock",
            )
        except Exception as exc:
            log.warning("identity_unknown", error=str(exc))
        return self._identity

    async def run_cycle(self, policy: Policy, *, act: bool = True) -> CycleReport:
        """Run one full cycle under `policy`; never raises for a backend failure (bugs do
        raise)."""
        started = time.monotonic()
        self.metrics.cycles.inc()
        try:
            report = await self._cycle(policy, act=act)
        except Exception:
            self.metrics.cycle_failures.inc()
            self.health.last_error = "cycle raised an exception (see the traceback)"
            log.exception("cycle_failed")
            raise
        finally:
            ended = time.monotonic()
            self.metrics.cycle_duration.observe(ended - started)
            self.health.last_cycle_end_monotonic = ended
        self._record_health(report)
        self.last_report = report
        return report

    async def _cycle(self, policy: Policy, *, act: bool) -> CycleReport:
        observations = [
            observation
            for chunk in await asyncio.gather(*(source.observe() for source in self.sources))
            for observation in chunk
        ]
        now = _cycle_now(observations)
        cleared = self.memory.update(observations, now, max_gap=allowed_gap(policy.interval))
        # Time to clear: each lock memory found gone, once, attributed by our own POST records.
        for lock in cleared:
            self.metrics.lock_cleared(
                lock.source, by_watchdog=lock.by_watchdog, age_seconds=lock.age.total_seconds()
            )
        identity = await self._identity_once(policy)
        decision = decide(observations, policy, self.memory, now, identity=identity)
        # Say what was found (and why some of it is left alone) before acting on it, so the
        # log reads in the order things happened.
        self._finding_log.update(decision.findings, _complete_scopes(observations))
        self._log_restraints(decision)
        results: list[ActionResult] = []
        if act and self.actor is not None and decision.planned:
            results = await self.actor.carry_out(decision.planned, policy, now, identity)
        if act:
            self.memory.save()  # never raises: a failed write is logged, memory stays right
        report = CycleReport(
            generated_at=now,
            dry_run=policy.dry_run,
            observations=tuple(observations),
            locks=decision.locks,
            findings=decision.findings,
            planned=decision.planned,
            results=tuple(results),
            restraints=decision.restraints,
            state_file=policy.state_file,
        )
        self._publish(report, decision)
        return report

    def _log_restraints(self, decision: Decision) -> None:
        """Say once why a stale-looking lock or run is left alone (young, protected, ...)."""
        current = {(r.workspace_id, r.reason) for r in decision.restraints}
        for restraint in decision.restraints:
            if (restraint.workspace_id, restraint.reason) not in self._announced_restraints:
                log.info(
                    "not_acting",
                    organization=restraint.organization,
                    workspace=restraint.workspace,
                    workspace_id=restraint.workspace_id,
                    reason=restraint.reason,
                )
        self._announced_restraints = current

    def _publish(self, report: CycleReport, decision: Decision) -> None:
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
        # Per-workspace series, grouped by the (source, organization) they were read from. A
        # scope that could not be read this cycle keeps its last series, so an API blip does
        # not resolve a stale-lock or stuck-run alert.
        current: dict[tuple[str, str], _ScopeSeries] = {}
        for lock in decision.locks:
            current.setdefault(_scope(lock), _ScopeSeries()).locks.append(lock)
        for f in decision.findings:
            series = current.setdefault(_scope(f), _ScopeSeries())
            if f.kind is FindingKind.RUN_STUCK:
                series.stuck.append((f.organization, f.run_status or "unknown"))
            elif f.kind is FindingKind.RUNS_BLOCKED:
                series.blocked.append((f.source.value, f.organization, f.workspace))
        for observation in report.observations:
            scope = _scope(observation)
            if observation.complete or scope not in self._last_series:
                self._last_series[scope] = current.get(scope, _ScopeSeries())
        kept = list(self._last_series.values())
        self.metrics.publish_locks(
            (lock for series in kept for lock in series.locks),
            [item for series in kept for item in series.stuck],
        )
        self.metrics.publish_runs_blocked(item for series in kept for item in series.blocked)
        for result in report.results:
            if result.outcome is Outcome.FAILED and result.retry_later:
                log.info("action_retry_next_cycle", workspace=result.action.workspace)

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
