"""One cycle: observe -> decide -> act -> report.

`CycleRunner.run_cycle(policy)` is the whole job of the daemon, of `run --once` and (with
`act=False`) of `scan`. The policy is the caller's (the daemon owns it and swaps it on a
reload): each cycle runs under the one it is given, and nothing here keeps a copy.

Data flows one way: sources produce observations, memory ages them, decide plans, act.py
carries out, and the report is made from what the earlier stages returned and handed to the
report stage (`reporting.Reporter`: metrics, logs, health, the `/locks` document). Nothing
here speaks HTTP or mutates anything remote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import structlog

from watchdog.decide import decide
from watchdog.memory import Memory, allowed_gap
from watchdog.metrics import Metrics
from watchdog.model import (
    UNLOCK_RUNGS,
    ActionResult,
    Holder,
    Notice,
    Observation,
    PlannedAction,
    Source,
    utcnow,
)
from watchdog.policy import NotificationTarget, Policy
from watchdog.report import CycleReport
from watchdog.reporting import Reporter

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
        *,
        notices: Sequence[Notice] = (),
    ) -> list[ActionResult]: ...


def _cycle_now(observations: Sequence[Observation]) -> datetime:
    """The cycle's clock: the TFC server's when TFC was read (the simulator's clock drives
    tests and the demo), else the lock stores'. decide ages S3-backend locks by their
    own observation's `server_now`, so a skew between AWS and TFC never shifts an age."""
    tfc = [o.server_now for o in observations if o.source is Source.TFC]
    return max(tfc or [o.server_now for o in observations], default=utcnow())


class ReportConsumer(Protocol):
    """watchdog.notify.Notifier, seen from here: it reads the report, never raises for a
    failed send, and bounds its own time."""

    async def notify(
        self, facts: CycleReport, targets: Sequence[NotificationTarget] | None = None
    ) -> None: ...


class CycleRunner:
    """Runs one cycle at a time over the same sources, memory and actor; what must outlive a
    cycle lives here (memory) or in the report stage (the last report, health, what was
    already logged)."""

    def __init__(
        self,
        *,
        sources: Sequence[ObservingSource],
        memory: Memory,
        metrics: Metrics,
        identity_source: IdentitySource | None = None,
        actor: ActionRunner | None = None,
        notifier: ReportConsumer | None = None,
    ) -> None:
        self.sources = list(sources)
        self.memory = memory
        self.identity_source = identity_source
        self.actor = actor
        # Messages to people (notifications), from the report: a consumer of its own.
        self.notifier = notifier
        # The report stage: metrics, logs, health and the `/locks` document.
        self.reporter = Reporter(metrics)
        self._identity: Holder | None = None
        self._identity_known = False

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
        self.reporter.cycle_started()
        try:
            return await self._cycle(policy, act=act)
        except Exception:
            self.reporter.cycle_raised()
            log.exception("cycle_failed")
            raise

    async def _cycle(self, policy: Policy, *, act: bool) -> CycleReport:
        observations = [
            observation
            for chunk in await asyncio.gather(*(source.observe() for source in self.sources))
            for observation in chunk
        ]
        now = _cycle_now(observations)
        cleared = self.memory.update(observations, now, max_gap=allowed_gap(policy.interval))
        self.memory.prune_notices(observations)  # a lock gone or changed: its notice lapses
        self.reporter.locks_cleared(cleared)
        identity = await self._identity_once(policy)
        decision = decide(observations, policy, self.memory, now, identity=identity)
        # Say what was found (and why some of it is left alone) before acting on it, so the
        # log reads in the order things happened.
        self.reporter.announce(decision.findings, decision.restraints, observations)
        results: list[ActionResult] = []
        if act:
            # The notice period starts now (the server's clock), in dry-run too, so a preview
            # shows when the action would come; the notifier says it.
            for notice in decision.notices:
                if notice.new:
                    self.memory.note_notice(
                        notice.action.workspace_id, notice.holder_id, notice.run_id, now
                    )
            # A new notice on a run (a run-held lock, a stuck run) is also posted on the run.
            run_notices = [n for n in decision.notices if n.new and n.action.run_id is not None]
            if self.actor is not None and (decision.planned or run_notices):
                results = await self.actor.carry_out(
                    decision.planned, policy, now, identity, notices=run_notices
                )
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
            notices=decision.notices,
        )
        self.reporter.publish(report)
        if act and self.notifier is not None:
            await self._notify(self.notifier, report, policy)
        return report

    async def _notify(self, notifier: ReportConsumer, report: CycleReport, policy: Policy) -> None:
        try:
            await notifier.notify(report, policy.notifications)
        except Exception:
            # A bug in composing messages must not cost the cycle (its actions are done and
            # recorded); the traceback is kept.
            log.exception("notification_stage_failed")
