"""Carry out planned actions: the only code that mutates anything remote.

For each planned action, in the order decide gives (oldest finding first):

1. Budget: `limits.max_actions_per_cycle` (POSTs sent in this call) and
   `limits.max_actions_per_hour` (a sliding hour of POSTs sent, kept in memory.py on the
   watchdog's own clock, so it survives restarts with a state file and ignores the server's
   `Date`). Past either: `skipped_budget`, nothing is read or sent.
2. Re-read the workspace now and run the same ladder on it (decide.plan_for_workspace, at the
   server time of that read). Act only if it still plans the same rung for the same holder
   and the same run in the same status; else `skipped_changed`. A failed re-read is `failed`.
3. Permissions from the fresh read (`permissions.can-*`); without them `forbidden`, logged
   once per workspace and action for the life of the process (counted every time).
   Then, for `unlock`/`force_unlock` only, one GET for the workspace's pending state versions
   (a read: it spends no action budget, it is counted in the API request metrics). The docs
   (https://developer.hashicorp.com/terraform/cloud-docs/api-docs/state-versions): a
   workspace cannot be unlocked until its latest state version is finalized, but a
   force-unlock proceeds anyway and can lose the upload of the process that held the lock.
   A pending version is `failed` with `retry_later` and "state upload pending" (the same
   outcome as an unlock answered "state version pending", so one alert covers both: decide
   plans it again next cycle). A check that cannot be made (any API error, an unreadable
   body) is `failed` with its reason, as a failed re-read is: nothing is taken on faith.
   It comes after the permission check so a workspace the token may not unlock costs no
   request, and before dry-run so a preview says what a real cycle would do. After it the
   workspace is re-read and checked once more (step 2 and 3 again): force-unlock has no
   holder condition, so the read that vouches for the holder must be the POST's last request.
4. Dry-run: `dry_run`, logged as `would <action> <org>/<workspace>` with every field.
5. Else the intent is written to the state file (fsynced) and exactly one POST is sent; its
   record is then completed with the outcome. An intent that cannot be written is `failed`
   and nothing is sent. 409 means the world changed (`skipped_changed`, never retried or
   escalated); 404 is "not found or not permitted" (`forbidden`); a pending state version
   on unlock is `failed` with `retry_later` (decide plans it again next cycle). A 429, any
   other 4xx or a connection that could not be made is `failed` (the server did not act); a
   timeout or a connection dropped after the request was sent, or a 5xx, is `unknown` (it
   may have acted). None of these is retried in this cycle: the next cycle re-reads.

Every outcome increments `tfc_watchdog_actions_total{action,outcome}` and writes one audit
event. Only the sources' errors (SourceError, watchdog.sources.errors: each source translates
its own into them) are caught, and `failure_outcome` maps a failed mutating request of any
source: anything else is a bug and keeps its traceback.

Dry-run and the budget: a dry-run action is gated by the budget as it stands (so a spent
hourly budget shows as `skipped_budget` in a preview too) but spends none of it, because it
sends nothing. A dry-run cycle therefore previews every action that passes its checks.

Both budgets count every POST sent, whatever the answer (done, failed, unknown, a 409, a
404): a request whose answer was lost may still have been performed, and a process killed
after sending could otherwise send it again past the budget. The intent is written before
the POST, so no sequence of crashes can exceed the hourly budget.

Sources: actions are dispatched by `PlannedAction.source` to an executor. `TfcExecutor` does
the TFC rungs; `BackendLockExecutor` does `delete_lock` for the backend lock stores (DynamoDB
items, S3 and GCS `.tflock` objects, GitLab-managed state): a fresh read of the one lock, the
same ladder on it at the store's clock (`decide.plan_for_backend_lock`), act only if it is
the same lock (same `Info`, ETag, generation or GitLab lock token) still past its threshold,
then one compare-and-delete. `ChangedError` (the
condition failed: another run took the lock in between) is `skipped_changed`,
`ForbiddenError` is `forbidden`, a timeout, transport failure or 5xx is `unknown` (the
delete may have happened), any other `SourceError` is `failed`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from watchdog.decide import plan_for_backend_lock, plan_for_workspace
from watchdog.memory import RUN_COMMENT, Memory
from watchdog.metrics import Metrics
from watchdog.model import (
    UNLOCK_RUNGS,
    ActionKind,
    ActionResult,
    BackendLock,
    Holder,
    Notice,
    Outcome,
    PlannedAction,
    Source,
    Workspace,
)
from watchdog.policy import Limits, Policy
from watchdog.sources.errors import ChangedError, ForbiddenError, RetryLaterError, SourceError

HOUR = timedelta(hours=1)
_RUN_RUNGS = frozenset({ActionKind.CANCEL, ActionKind.FORCE_CANCEL, ActionKind.DISCARD})


class ActionTarget(Protocol):
    """What act.py needs from the TFC source (watchdog.sources.tfc.source.TfcSource).

    Every call raises SourceError (watchdog.sources.errors) when it fails."""

    async def read_workspace(self, workspace_id: str, organization: str) -> Workspace: ...
    async def cancel_run(self, run_id: str, comment: str) -> None: ...
    async def force_cancel_run(self, run_id: str, comment: str) -> None: ...
    async def discard_run(self, run_id: str, comment: str) -> None: ...
    async def unlock_workspace(self, workspace_id: str) -> None: ...
    async def force_unlock_workspace(self, workspace_id: str) -> None: ...
    async def pending_state_versions(self, organization: str, workspace: str) -> int: ...
    async def comment_run(self, run_id: str, body: str) -> None: ...
    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of re-verifying one action: `outcome` None means go ahead."""

    outcome: Outcome | None = None
    detail: str = ""
    # Try again next cycle (a pending state version): see ActionResult.retry_later.
    retry_later: bool = False


class Executor(Protocol):
    """Re-verifies and performs actions of one source."""

    async def recheck(
        self, action: PlannedAction, identity: Holder | None, policy: Policy
    ) -> Verdict: ...

    async def perform(self, action: PlannedAction) -> ActionResult: ...


class TfcExecutor:
    """TFC/TFE: re-read the workspace, check `permissions`, send one POST."""

    def __init__(self, target: ActionTarget, memory: Memory) -> None:
        self._target = target
        self._memory = memory

    async def recheck(
        self, action: PlannedAction, identity: Holder | None, policy: Policy
    ) -> Verdict:
        verdict, fresh = await self._verify(action, identity, policy)
        if verdict.outcome is not None or fresh is None or action.kind not in UNLOCK_RUNGS:
            return verdict
        verdict = await state_upload_check(self._target, fresh.organization, fresh.name)
        if verdict.outcome is not None:
            return verdict
        # Force-unlock has no holder condition: the API removes whatever lock is there. So the
        # read that vouches for the holder must be the last request before the POST, not the
        # one before the state-versions check (a request, and a limiter slot, earlier).
        verdict, _ = await self._verify(action, identity, policy)
        return verdict

    async def _verify(
        self, action: PlannedAction, identity: Holder | None, policy: Policy
    ) -> tuple[Verdict, Workspace | None]:
        """Re-read the workspace: does it still justify the action, with the permission?"""
        try:
            fresh = await self._target.read_workspace(action.workspace_id, action.organization)
        except SourceError as exc:
            return Verdict(Outcome.FAILED, f"re-read failed: {exc}"), None
        replan = plan_for_workspace(
            fresh,
            organization_complete=True,
            policy=policy,
            memory=self._memory,
            now=self._target.now(),
            identity=identity,
        )
        change = _what_changed(action, fresh, replan)
        if change:
            return Verdict(Outcome.SKIPPED_CHANGED, change), fresh
        if action.run_id is not None and (
            fresh.current_run is None or fresh.current_run.id != action.run_id
        ):
            # The ladder saw this run, so it should be the current one; never act on a guess.
            verdict = Verdict(Outcome.SKIPPED_CHANGED, f"run {action.run_id} is no longer current")
            return verdict, fresh
        missing = missing_permission(action, fresh)
        if missing:
            return Verdict(Outcome.FORBIDDEN, f"the token lacks {missing}"), fresh
        return Verdict(), fresh

    async def perform(self, action: PlannedAction) -> ActionResult:
        try:
            await self._post(action)
        except SourceError as exc:
            return failure_outcome(action, exc)
        return ActionResult(action, Outcome.DONE)

    async def _post(self, action: PlannedAction) -> None:
        target = self._target
        match action.kind:
            case ActionKind.CANCEL:
                await target.cancel_run(_run_id(action), action.comment)
            case ActionKind.FORCE_CANCEL:
                await target.force_cancel_run(_run_id(action), action.comment)
            case ActionKind.DISCARD:
                await target.discard_run(_run_id(action), action.comment)
            case ActionKind.UNLOCK:
                await target.unlock_workspace(action.workspace_id)
            case ActionKind.FORCE_UNLOCK:
                await target.force_unlock_workspace(action.workspace_id)
            case _:
                raise ValueError(f"{action.kind.value} is not a TFC action")


async def state_upload_check(target: ActionTarget, organization: str, workspace: str) -> Verdict:
    """No unlock while a state version is pending, nor when that cannot be checked (the act
    stage and `tfc-watchdog unlock` share it)."""
    try:
        pending = await target.pending_state_versions(organization, workspace)
    except SourceError as exc:
        return Verdict(
            Outcome.FAILED, f"pending state versions could not be checked; not unlocking: {exc}"
        )
    if pending:
        return Verdict(
            Outcome.FAILED,
            f"state upload pending ({pending} state version(s) not finalized); retrying next cycle",
            retry_later=True,
        )
    return Verdict()


def _run_id(action: PlannedAction) -> str:
    if action.run_id is None:
        raise ValueError(f"{action.kind.value} planned without a run id")
    return action.run_id


def _what_changed(
    action: PlannedAction, fresh: Workspace, replan: PlannedAction | None
) -> str | None:
    """Why the fresh read no longer justifies the action (one line), or None if it does."""
    if replan is None:
        run = fresh.current_run
        now = f"holder {_holder(fresh.holder)}, run {run.id + ' ' + run.status if run else 'none'}"
        return f"no action planned on a fresh read (now: {now})"
    changes = []
    if replan.kind != action.kind:
        changes.append(f"action {action.kind.value} -> {replan.kind.value}")
    old_holder = action.holder.id if action.holder else None
    new_holder = replan.holder.id if replan.holder else None
    if old_holder != new_holder:
        changes.append(f"holder {_holder(action.holder)} -> {_holder(replan.holder)}")
    if replan.run_id != action.run_id:
        changes.append(f"run {action.run_id} -> {replan.run_id}")
    if replan.run_status != action.run_status:
        changes.append(f"run status {action.run_status} -> {replan.run_status}")
    return "; ".join(changes) or None


def _holder(holder: Holder | None) -> str:
    return holder.label() if holder else "none"


def missing_permission(action: PlannedAction, fresh: Workspace) -> str | None:
    """The `permissions.can-*` the fresh read lacks for this action, or None (the act stage
    and `tfc-watchdog unlock` share it)."""
    ws = fresh.permissions
    if action.kind is ActionKind.UNLOCK:
        return None if ws.can_unlock else "can-unlock"
    if action.kind is ActionKind.FORCE_UNLOCK:
        return None if ws.can_force_unlock else "can-force-unlock"
    run = fresh.current_run
    if run is None:
        raise ValueError(f"{action.kind.value} checked without a current run")
    needed = {
        ActionKind.CANCEL: ("can-cancel", run.permissions.can_cancel),
        ActionKind.FORCE_CANCEL: ("can-force-cancel", run.permissions.can_force_cancel),
        ActionKind.DISCARD: ("can-discard", run.permissions.can_discard),
    }
    if action.kind not in needed:
        raise ValueError(f"{action.kind.value} is not a TFC action")
    name, granted = needed[action.kind]
    return None if granted else name


class BackendLockTarget(Protocol):
    """What act.py needs from a backend lock source (DynamoDbLockSource, S3LockfileSource,
    GcsLockfileSource, GitLabStateSource)."""

    async def read_lock(self, store: str, path: str) -> BackendLock | None: ...
    async def delete_lock(self, lock: BackendLock) -> None: ...
    def now(self) -> datetime: ...


class BackendLockExecutor:
    """Backend locks: re-read the one lock, re-plan at the store's clock, compare-and-delete."""

    def __init__(self, target: BackendLockTarget, memory: Memory) -> None:
        self._target = target
        self._memory = memory

    async def recheck(
        self, action: PlannedAction, identity: Holder | None, policy: Policy
    ) -> Verdict:
        observed = _observed_lock(action)
        try:
            fresh = await self._target.read_lock(observed.store, observed.path)
        except ForbiddenError as exc:
            return Verdict(Outcome.FORBIDDEN, f"re-read refused: {exc}")
        except SourceError as exc:
            return Verdict(Outcome.FAILED, f"re-read failed: {exc}")
        if fresh is None:
            return Verdict(Outcome.SKIPPED_CHANGED, f"lock {observed.info.id} was released")
        if fresh.token != observed.token or fresh.info != observed.info:
            return Verdict(
                Outcome.SKIPPED_CHANGED,
                f"lock changed since it was read: ID {observed.info.id} -> {fresh.info.id or '?'}",
            )
        replan = plan_for_backend_lock(
            fresh, complete=True, policy=policy, memory=self._memory, now=self._target.now()
        )
        if replan is None or replan.kind is not action.kind:
            return Verdict(
                Outcome.SKIPPED_CHANGED,
                f"no {action.kind.value} planned on a fresh read of lock {fresh.info.id}",
            )
        return Verdict()

    async def perform(self, action: PlannedAction) -> ActionResult:
        if action.kind is not ActionKind.DELETE_LOCK:
            raise ValueError(f"{action.kind.value} is not an S3-backend action")
        try:
            # Conditional on the Info / ETag that was read: never removes a lock taken since.
            await self._target.delete_lock(_observed_lock(action))
        except SourceError as exc:
            return failure_outcome(action, exc)
        return ActionResult(action, Outcome.DONE)


def failure_outcome(action: PlannedAction, exc: SourceError) -> ActionResult:
    """The outcome of a mutating request that failed, for every source alike."""
    if isinstance(exc, ChangedError):
        # The world changed under us: re-read next cycle, never escalate on it.
        return ActionResult(action, Outcome.SKIPPED_CHANGED, str(exc))
    if isinstance(exc, ForbiddenError):
        return ActionResult(action, Outcome.FORBIDDEN, str(exc))
    if isinstance(exc, RetryLaterError):
        # decide plans it again next cycle (ActionResult.retry_later).
        return ActionResult(action, Outcome.FAILED, f"{exc}; retrying next cycle", retry_later=True)
    if exc.may_have_acted:
        return ActionResult(
            action, Outcome.UNKNOWN, f"the request may have been carried out: {exc}"
        )
    # Refused or never sent: nothing was done. Not retried in this cycle.
    return ActionResult(action, Outcome.FAILED, str(exc))


def _observed_lock(action: PlannedAction) -> BackendLock:
    if action.backend_lock is None:
        raise ValueError(f"{action.kind.value} planned without the lock it acts on")
    return action.backend_lock


class Actor:
    def __init__(
        self,
        *,
        source: ActionTarget | None,
        memory: Memory,
        metrics: Metrics,
        log: structlog.typing.FilteringBoundLogger,
        backend_sources: Mapping[Source, BackendLockTarget] | None = None,
    ) -> None:
        """`source` is the TFC source (None when no `tfc` is configured); `backend_sources`
        the backend lock sources by their `Source` (dynamodb, s3, gcs, gitlab)."""
        self._memory = memory
        self._metrics = metrics
        self._log = log
        self._executors: dict[Source, Executor] = {}
        self._tfc = source
        if source is not None:
            self._executors[Source.TFC] = TfcExecutor(source, memory)
        for kind, target in (backend_sources or {}).items():
            self._executors[kind] = BackendLockExecutor(target, memory)
        self._stopped = False
        # (workspace id, action) pairs whose missing permission was already logged.
        self._forbidden_logged: set[tuple[str, ActionKind]] = set()

    def stop(self) -> None:
        """Send no further request (SIGTERM). Actions not yet attempted are dropped."""
        self._stopped = True

    @property
    def stopped(self) -> bool:
        return self._stopped

    async def carry_out(
        self,
        planned: Sequence[PlannedAction],
        policy: Policy,
        now: datetime,
        identity: Holder | None,
        *,
        notices: Sequence[Notice] = (),
    ) -> list[ActionResult]:
        """Re-verify and perform `planned` in order, under the cycle's `policy` (its rules,
        budgets and dry-run); then post each of `notices` that concerns a run as a run
        comment, within what is left of the same budgets."""
        limits = policy.limits
        results: list[ActionResult] = []
        # Every result is counted, audited (saying whether it was a dry run) and kept.
        finish = functools.partial(self._finish, results, dry_run=policy.dry_run)
        posts = 0
        # At most one POST per workspace per cycle, whatever the plan holds.
        posted: set[tuple[Source, str]] = set()
        for index, action in enumerate(planned):
            if self._stopped:
                self._log_stop(len(planned) - index)
                break
            executor = self._executors.get(action.source)
            if executor is None:
                finish(
                    ActionResult(
                        action, Outcome.FAILED, f"no executor for source {action.source.value}"
                    ),
                )
                continue
            if (action.source, action.workspace_id) in posted:
                finish(
                    ActionResult(
                        action,
                        Outcome.SKIPPED_CHANGED,
                        "already acted on this workspace in this cycle",
                    ),
                )
                continue
            spent = self._over_budget(posts, limits)
            if spent:
                finish(ActionResult(action, Outcome.SKIPPED_BUDGET, spent))
                continue
            verdict = await executor.recheck(action, identity, policy)
            if self._stopped:
                # Stopped while re-reading: this action is dropped too, before its POST.
                self._log_stop(len(planned) - index)
                break
            if verdict.outcome is not None:
                finish(
                    ActionResult(
                        action, verdict.outcome, verdict.detail, retry_later=verdict.retry_later
                    ),
                    # A missing permission does not fix itself: say it once, count it always.
                    once=verdict.outcome is Outcome.FORBIDDEN,
                )
                continue
            if policy.dry_run:
                finish(ActionResult(action, Outcome.DRY_RUN))
                continue
            # Write-ahead: the POST counts (and is on disk) before it can reach the server.
            record = self._memory.begin_action(action)
            if record is None:
                finish(
                    ActionResult(
                        action,
                        Outcome.FAILED,
                        "not sent: the intent could not be written to the state file",
                    ),
                )
                continue
            posts += 1
            posted.add((action.source, action.workspace_id))
            result = await executor.perform(action)
            self._memory.finish_action(record, result.outcome)
            finish(result)
        for notice in notices:
            if self._stopped:
                break
            posts += await self._comment(notice, posts, policy)
        self._metrics.actions_budget_remaining.set(
            max(0, limits.max_actions_per_hour - self._memory.actions_in_window(HOUR))
        )
        return results

    def _over_budget(self, posts: int, limits: Limits) -> str | None:
        if posts >= limits.max_actions_per_cycle:
            return f"per-cycle budget spent ({limits.max_actions_per_cycle} per cycle)"
        if self._memory.actions_in_window(HOUR) >= limits.max_actions_per_hour:
            return f"hourly budget spent ({limits.max_actions_per_hour} per hour)"
        return None

    def _log_stop(self, remaining: int) -> None:
        self._log.info("stopping: planned actions not attempted", remaining=remaining)

    def _finish(
        self,
        results: list[ActionResult],
        result: ActionResult,
        *,
        dry_run: bool,
        once: bool = False,
    ) -> None:
        results.append(result)
        action = result.action
        self._metrics.action(action.kind, result.outcome)
        if once:
            key = (action.workspace_id, action.kind)
            if key in self._forbidden_logged:
                return
            self._forbidden_logged.add(key)
        audit(self._log, result, dry_run=dry_run)

    async def _comment(self, notice: Notice, posts: int, policy: Policy) -> int:
        """The notice on its run, as a comment: a mutating request like a rung (a fresh read
        that still shows the run current and unfinished, within the budgets, written ahead,
        never in dry-run). Returns the POSTs sent (0 or 1)."""
        action = notice.action
        if self._tfc is None or action.run_id is None or action.kind not in _RUN_RUNGS:
            return 0
        fields = {**action.audit_fields(), "action_at": notice.action_at.isoformat()}
        spent = self._over_budget(posts, policy.limits)
        if spent:
            self._log.warning("run_comment", outcome="skipped_budget", detail=spent, **fields)
            return 0
        try:
            fresh = await self._tfc.read_workspace(action.workspace_id, action.organization)
        except SourceError as exc:
            self._log.warning("run_comment", outcome="failed", detail=f"re-read: {exc}", **fields)
            return 0
        run = fresh.current_run
        if run is None or run.id != action.run_id or run.is_final:
            detail = f"run {action.run_id} is no longer current and unfinished"
            self._log.info("run_comment", outcome="skipped_changed", detail=detail, **fields)
            return 0
        if policy.dry_run:
            self._log.info(f"would comment on run {action.run_id}", outcome="dry_run", **fields)
            return 0
        record = self._memory.begin_request(RUN_COMMENT, Source.TFC.value, action.workspace_id)
        if record is None:
            detail = "not sent: the intent could not be written to the state file"
            self._log.warning("run_comment", outcome="failed", detail=detail, **fields)
            return 0
        body = (
            f"tfc-watchdog notice: {action.kind.value.replace('_', '-')} at "
            f"{notice.action_at.isoformat()} unless this run ends first. {action.reason} "
            f"(rule {action.rule})"
        )
        outcome, detail = Outcome.DONE, ""
        try:
            await self._tfc.comment_run(action.run_id, body)
        except SourceError as exc:
            outcome = Outcome.UNKNOWN if exc.may_have_acted else Outcome.FAILED
            detail = str(exc)
        self._memory.finish_action(record, outcome)
        log = self._log.info if outcome is Outcome.DONE else self._log.warning
        log("run_comment", outcome=outcome.value, detail=detail, **fields)
        return 1


def audit(
    log: structlog.typing.FilteringBoundLogger,
    result: ActionResult,
    *,
    dry_run: bool,
    extra: Mapping[str, object] | None = None,
) -> None:
    """The audit line of one action outcome (the act stage and `tfc-watchdog unlock`)."""
    action = result.action
    fields: dict[str, object] = {
        **action.audit_fields(),
        "outcome": result.outcome.value,
        "detail": result.detail,
        "dry_run": dry_run,
        **(extra or {}),
    }
    if result.retry_later:
        fields["retry_later"] = True
    lock = action.backend_lock
    if lock is not None:
        # Terraform's own "Lock Info" fields, so the audit trail says whose lock it was.
        fields["lock_id"] = lock.info.id
        fields["lock_who"] = lock.info.who
        fields["lock_operation"] = lock.info.operation
        fields["lock_created"] = lock.info.created.isoformat()
    if result.outcome is Outcome.DRY_RUN:
        what = f"{action.organization}/{action.workspace}"
        log.info(f"would {action.kind.value} {what}", **fields)
    elif result.outcome is Outcome.DONE:
        log.info("action", **fields)
    else:
        log.warning("action", **fields)
