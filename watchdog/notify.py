"""Notifications: tell people about stale locks and stuck runs, through apprise
(https://github.com/caronc/apprise/wiki: Slack, Teams, Mattermost, email, JSON webhooks and
100+ others), instead of a webhook client per service written by hand.

A report-stage consumer: `Notifier.notify(report)` takes what a cycle found and did and
sends, per configured target (`notifications:` in the config), one message when a finding
(`lock_stale`, `run_stuck`) appears for a holder (a run, for `run_stuck`), an optional
reminder every `remind_every` while it lasts, and one `cleared` message when it is gone from
a complete read; `action` / `action_failed` when the act stage sent a request. Never one
message per cycle: what was sent is recorded in the state file (`Memory.note_notified`),
so a restart repeats nothing. A message that could not be sent is not recorded, so the next
cycle tries again.

Sending never fails a cycle and never holds it for long: the targets are sent to
concurrently (each target's messages in order), each message within its target's
`timeout`, the whole stage within the longest of them plus a second (asyncio's own
deadline, in case a plugin ignores apprise's); what did not go out in time is a `timeout`,
tried again next cycle. Every outcome is counted in
`tfc_watchdog_notifications_total{target,event,outcome}` (sent, failed, timeout); failures
are logged with the target's id, never its URLs, which hold secrets: they are registered
with the log redaction, apprise's own logger is silenced (it may print them), and the
config's repr and dump show only their schemes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import structlog

from watchdog import logs
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import (
    ActionResult,
    Finding,
    FindingKind,
    HolderType,
    LockState,
    Notice,
    Observation,
    Outcome,
    PlannedAction,
    Source,
    Workspace,
    format_age,
)
from watchdog.policy import NotificationEvent, NotificationTarget

log = structlog.get_logger(__name__)

# A grace on top of the longest target timeout before the stage stops waiting itself.
GRACE = timedelta(seconds=1)
_FINDING_EVENTS: dict[FindingKind, NotificationEvent] = {
    FindingKind.LOCK_STALE: "lock_stale",
    FindingKind.RUN_STUCK: "run_stuck",
}
_FAILED = frozenset({Outcome.FAILED, Outcome.UNKNOWN})


class Restraint(Protocol):
    @property
    def workspace_id(self) -> str: ...
    @property
    def reason(self) -> str: ...


class CycleFacts(Protocol):
    """What the notifier reads of a cycle's report (watchdog.report.CycleReport has it)."""

    @property
    def generated_at(self) -> datetime: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def observations(self) -> tuple[Observation, ...]: ...
    @property
    def locks(self) -> tuple[LockState, ...]: ...
    @property
    def findings(self) -> tuple[Finding, ...]: ...
    @property
    def planned(self) -> tuple[PlannedAction, ...]: ...
    @property
    def results(self) -> tuple[ActionResult, ...]: ...
    @property
    def restraints(self) -> Sequence[Restraint]: ...
    @property
    def notices(self) -> tuple[Notice, ...]: ...


@dataclass(frozen=True, slots=True)
class Message:
    target: str
    event: str
    title: str
    body: str
    # The state-file record: written when sent (None: nothing to remember); `forget` drops
    # a record once its `cleared` message is out.
    key: str | None = None
    record: dict[str, str] | None = None
    forget: bool = False


# --- what to say ------------------------------------------------------------------------------


def _where(source: Source | str, organization: str, workspace: str) -> str:
    if str(source) == Source.TFC.value:
        return f"{organization}/{workspace}"
    return f"{workspace} ({source} {organization})"


def _holder_of(finding: Finding) -> str:
    holder = finding.holder
    if holder is None:
        return f"run {finding.run_id}" if finding.run_id else "unknown"
    if holder.type is HolderType.RUN:
        return f"run {holder.id}"
    if holder.type is HolderType.TERRAFORM:
        return f"{holder.name or '?'} (Who: of lock {holder.id})"
    return holder.label()


def _subject(finding: Finding) -> str:
    """Whose finding it is: a lock's holder, a stuck run's id (one record each)."""
    if finding.kind is FindingKind.RUN_STUCK:
        return finding.run_id or ""
    return finding.holder.id if finding.holder else ""


def _scope(source: Source | str, organization: str) -> str:
    return f"{source}|{organization}"


def _watchdog_plan(facts: CycleFacts, finding: Finding) -> str:
    """What the watchdog does about it, as this cycle decided."""
    for result in facts.results:
        if result.action.workspace_id == finding.workspace_id:
            kind = result.action.kind.value
            return f"{kind}: {result.outcome.value}" + (
                f" ({result.detail})" if result.detail else ""
            )
    for planned in facts.planned:
        if planned.workspace_id == finding.workspace_id:
            verb = "would" if facts.dry_run else "will"
            return f"{verb} {planned.kind.value} ({planned.reason})"
    for restraint in facts.restraints:
        if restraint.workspace_id == finding.workspace_id:
            return f"not acting: {restraint.reason}"
    return f"reports only (rule {finding.rule} allows no action here)"


def _manual_fix(facts: CycleFacts, finding: Finding) -> str:
    lock = next((lk for lk in facts.locks if lk.workspace_id == finding.workspace_id), None)
    if finding.kind is FindingKind.RUN_STUCK or (lock is not None and lock.run is not None):
        run = finding.run_id or (lock.run.id if lock is not None and lock.run else "?")
        return (
            f"end the run (cancel run {run}, then force-cancel; a run waiting for "
            "confirmation is discarded): its lock goes with it"
        )
    lock_id = lock.lock_id if lock is not None else finding.workspace_id
    return (
        f"ask {_holder_of(finding)} whether they are done, then `terraform force-unlock "
        f"{lock_id}` (or `tfc-watchdog unlock`)"
    )


def finding_message(
    facts: CycleFacts, finding: Finding, target: str, event: str, *, reminder: bool
) -> Message:
    where = _where(finding.source, finding.organization, finding.workspace)
    holder = _holder_of(finding)
    age = format_age(finding.age) if finding.age is not None else "?"
    what = "Stale lock" if event == "lock_stale" else "Stuck run"
    title = f"{'Still: ' if reminder else ''}{what} on {where}: {holder}, {age}"
    since = finding.since.isoformat() if finding.since else "unknown"
    body = "\n".join(
        [
            f"Workspace: {where}",
            f"Holder: {holder}",
            f"Since: {since} ({age})",
            f"Why: {finding.reason}",
            f"The watchdog: {_watchdog_plan(facts, finding)}",
            f"Manual fix: {_manual_fix(facts, finding)}",
        ]
    )
    record = {
        "event": event,
        "scope": _scope(finding.source.value, finding.organization),
        "workspace_id": finding.workspace_id,
        "where": where,
        "holder": holder,
        "subject": _subject(finding),
        "sent_at": facts.generated_at.isoformat(),
    }
    key = "|".join(
        (target, event, finding.source.value, finding.organization, finding.workspace_id)
    )
    return Message(target, event, title, body, key=f"{key}|{_subject(finding)}", record=record)


def cleared_message(key: str, record: dict[str, str], target: str) -> Message:
    what = "stale lock" if record.get("event") == "lock_stale" else "stuck run"
    where, holder = record.get("where", "?"), record.get("holder", "?")
    title = f"Cleared: {what} on {where} ({holder})"
    body = f"The {what} of {holder} on {where}, reported at {record.get('sent_at', '?')}, is gone."
    return Message(target, "cleared", title, body, key=key, forget=True)


def action_message(facts: CycleFacts, result: ActionResult, target: str) -> Message:
    action = result.action
    event = "action" if result.outcome is Outcome.DONE else "action_failed"
    where = _where(action.source, action.organization, action.workspace)
    holder = action.holder.label() if action.holder else "none"
    title = f"{action.kind.value} {where}: {result.outcome.value}"
    lines = [
        f"Workspace: {where}",
        f"Holder: {holder}",
        f"Why: {action.reason} (rule {action.rule})",
        f"Outcome: {result.outcome.value}" + (f": {result.detail}" if result.detail else ""),
    ]
    if event == "action_failed":
        # Said once per workspace, action and holder: an unlock retried every cycle (a
        # pending state upload) is one message, not one per cycle.
        key = "|".join((target, event, action.source.value, action.workspace_id, action.kind.value))
        subject = action.run_id or (action.holder.id if action.holder else "")
        record = {
            "event": event,
            "scope": _scope(action.source.value, action.organization),
            "workspace_id": action.workspace_id,
            "sent_at": facts.generated_at.isoformat(),
        }
        return Message(
            target, event, title, "\n".join(lines), key=f"{key}|{subject}", record=record
        )
    return Message(target, event, title, "\n".join(lines))


def notice_message(facts: CycleFacts, notice: Notice, target: str) -> Message:
    action = notice.action
    where = _where(action.source, action.organization, action.workspace)
    holder = action.holder.label() if action.holder else "none"
    at = notice.action_at.strftime("%Y-%m-%d %H:%M UTC")
    verb = action.kind.value.replace("_", "-")
    subject = f"run {action.run_id}" if action.run_id else f"the lock of {holder}"
    title = f"Notice: {verb} {where} at {at} unless it is released"
    body = "\n".join(
        [
            f"{subject} on {where}, held {format_age(action.age)}, will be {verb}ed at {at} "
            "unless it is released (the watchdog acts only if the same lock is still there "
            "and still stale then).",
            f"Holder: {holder}",
            f"Why: {action.reason} (rule {action.rule})",
        ]
    )
    key = "|".join(
        (target, "notice", action.source.value, action.organization, action.workspace_id)
    )
    record = {
        "event": "notice",
        "scope": _scope(action.source.value, action.organization),
        "workspace_id": action.workspace_id,
        "sent_at": facts.generated_at.isoformat(),
    }
    full_key = f"{key}|{notice.holder_id}|{notice.run_id}"
    return Message(target, "notice", title, body, key=full_key, record=record)


# --- which messages this cycle ----------------------------------------------------------------


def _workspaces(facts: CycleFacts) -> dict[str, Workspace]:
    return {ws.id: ws for o in facts.observations for ws in o.workspaces}


def _matches(
    target: NotificationTarget,
    source: Source,
    workspace_id: str,
    workspace_name: str,
    workspaces: dict[str, Workspace],
) -> bool:
    if source is Source.TFC:
        workspace = workspaces.get(workspace_id)
        # A finding without its workspace in the report (never expected) matches only a
        # target that selects nothing in particular.
        if workspace is None:
            return target.match == type(target.match)()
        return target.match.matches_workspace(workspace)
    return target.match.matches_path(source.value, workspace_name)


def plan_messages(
    facts: CycleFacts, targets: Sequence[NotificationTarget], sent: dict[str, dict[str, str]]
) -> list[Message]:
    """The messages this cycle owes, given what was sent before (`sent`, from the state file)."""
    now = facts.generated_at
    workspaces = _workspaces(facts)
    complete = {_scope(o.source.value, o.organization) for o in facts.observations if o.complete}
    by_id = {target.id: target for target in targets}
    messages: list[Message] = []
    current: set[str] = set()
    live_workspaces: set[tuple[str, str]] = set()
    for finding in facts.findings:
        live_workspaces.add(
            (_scope(finding.source.value, finding.organization), finding.workspace_id)
        )
        event = _FINDING_EVENTS.get(finding.kind)
        if event is None:
            continue
        for target in targets:
            if event not in target.events or not _matches(
                target, finding.source, finding.workspace_id, finding.workspace, workspaces
            ):
                continue
            message = finding_message(facts, finding, target.id, event, reminder=False)
            assert message.key is not None
            current.add(message.key)
            previous = sent.get(message.key)
            if previous is None:
                messages.append(message)
            elif target.remind_every is not None and _due(previous, target.remind_every, now):
                messages.append(finding_message(facts, finding, target.id, event, reminder=True))
    for notice in facts.notices:
        action = notice.action
        for target in targets:
            if "notice" not in target.events or not _matches(
                target, action.source, action.workspace_id, action.workspace, workspaces
            ):
                continue
            message = notice_message(facts, notice, target.id)
            assert message.key is not None
            current.add(message.key)
            if message.key not in sent:
                messages.append(message)
    for result in facts.results:
        if result.outcome is not Outcome.DONE and result.outcome not in _FAILED:
            continue  # dry-run, skipped, forbidden: the finding's message already says it
        action = result.action
        for target in targets:
            message = action_message(facts, result, target.id)
            if message.event not in target.events or not _matches(
                target, action.source, action.workspace_id, action.workspace, workspaces
            ):
                continue
            if message.key is not None:
                current.add(message.key)
                if message.key in sent:
                    continue
            messages.append(message)
    present = _present(facts)
    for key, record in sent.items():
        if key in current or record.get("scope") not in complete:
            continue  # still there, or not read this cycle: nothing can be said
        if record.get("subject", "") in present.get(record.get("workspace_id", ""), ()):
            # The lock (or run) is still there, only no longer a finding (its age restarted
            # after a gap in watching, a threshold was raised): not cleared, not forgotten.
            continue
        owner = by_id.get(key.partition("|")[0])
        if record.get("event") == "notice":
            # Acted on, lapsed or released: the notice's record goes; the finding's message
            # (or its `cleared`) says the rest.
            messages.append(_forget_only(key))
        elif record.get("event") == "action_failed":
            if (record.get("scope", ""), record.get("workspace_id", "")) in live_workspaces:
                continue  # the workspace still has a finding: keep the record
            messages.append(_forget_only(key))
        elif owner is not None and "cleared" in owner.events:
            messages.append(cleared_message(key, record, owner.id))
        else:
            # The target is gone or does not want `cleared`: only the record goes.
            messages.append(_forget_only(key))
    return messages


def _forget_only(key: str) -> Message:
    """Drop the record `key` and send nothing (no event)."""
    return Message(key.partition("|")[0], "", "", "", key=key, forget=True)


def _present(facts: CycleFacts) -> dict[str, set[str]]:
    """Per workspace id: the holder ids of its locks and the ids of its unfinished runs."""
    present: dict[str, set[str]] = {}
    for lock in facts.locks:
        present.setdefault(lock.workspace_id, set()).add(lock.holder.id)
    for observation in facts.observations:
        for workspace in observation.workspaces:
            run = workspace.current_run
            if run is not None and not run.is_final:
                present.setdefault(workspace.id, set()).add(run.id)
    return present


def _due(record: dict[str, str], every: timedelta, now: datetime) -> bool:
    try:
        sent_at = datetime.fromisoformat(record["sent_at"])
    except (KeyError, ValueError):
        return True
    return now - sent_at >= every


# --- sending ----------------------------------------------------------------------------------


def _quiet_apprise() -> None:
    # apprise logs failures with the service URL (a webhook key, a token): not through ours.
    logger = logging.getLogger("apprise")
    logger.propagate = False
    logger.handlers[:] = [logging.NullHandler()]


class Notifier:
    def __init__(
        self, targets: Sequence[NotificationTarget], memory: Memory, metrics: Metrics
    ) -> None:
        """`targets` are used when a call passes none (the cycle passes its policy's, so a
        reloaded config takes effect at the next cycle)."""
        self._memory = memory
        self._metrics = metrics
        self._targets: tuple[NotificationTarget, ...] = ()
        _quiet_apprise()
        self._use(targets)

    def _use(self, targets: Sequence[NotificationTarget]) -> None:
        """These targets from now on; their URLs join the log redaction."""
        self._targets = tuple(targets)
        for target in self._targets:
            for url in target.urls:
                mask_url(url)

    @property
    def bound(self) -> timedelta:
        """The longest a cycle waits for its messages."""
        return max((t.timeout for t in self._targets), default=timedelta(0)) + GRACE

    async def notify(
        self, facts: CycleFacts, targets: Sequence[NotificationTarget] | None = None
    ) -> None:
        """Send what this cycle owes to `targets` (default: the last ones used); never raises
        for a failed send, never waits past `bound`. The state file is written when a record
        changed."""
        if targets is not None and tuple(targets) != self._targets:
            self._use(targets)
        if not self._targets:
            return
        messages = plan_messages(facts, self._targets, self._memory.notified())
        to_send = [m for m in messages if m.event]
        changed = False
        for message in messages:
            if not message.event and message.key is not None:
                self._memory.forget_notified(message.key)
                changed = True
        if to_send:
            outcomes = await self._send_all(to_send)
            for message, outcome in zip(to_send, outcomes, strict=True):
                self._metrics.notifications.labels(
                    target=message.target, event=message.event, outcome=outcome
                ).inc()
                if outcome != "sent":
                    log.warning(
                        "notification_not_sent",
                        target=message.target,
                        notify_event=message.event,
                        outcome=outcome,
                        note="tried again next cycle" if message.key else "not repeated",
                    )
                    continue
                if message.key is None:
                    continue
                if message.forget:
                    self._memory.forget_notified(message.key)
                elif message.record is not None:
                    self._memory.note_notified(message.key, message.record)
                changed = True
        if changed:
            self._memory.save()

    async def _send_all(self, messages: Sequence[Message]) -> list[str]:
        targets = {target.id: target for target in self._targets}
        outcomes = ["timeout"] * len(messages)

        async def in_order(indexes: list[int]) -> None:
            # One target's messages go in the order they were planned (a chat reads "stale"
            # before "notice"); targets are sent to concurrently.
            for index in indexes:
                target = targets.get(messages[index].target)
                if target is None:
                    outcomes[index] = "failed"
                    continue
                outcomes[index] = await _send(target, messages[index])

        by_target: dict[str, list[int]] = {}
        for index, message in enumerate(messages):
            by_target.setdefault(message.target, []).append(index)
        tasks = [asyncio.create_task(in_order(indexes)) for indexes in by_target.values()]
        _, pending = await asyncio.wait(tasks, timeout=self.bound.total_seconds())
        for task in pending:
            task.cancel()  # their outcome stays "timeout"
        return outcomes


def mask_url(url: str) -> None:
    """Register a URL and its parts with the log redaction: the HTTP library under apprise
    logs request lines (`POST /hooks/<key>`) at debug level, with the path but not the URL,
    and services put their keys in the user, password, path or query. Parts shorter than
    logs.MIN_SECRET_LENGTH (`/hook`) are not secrets anyone could use and stay readable."""
    logs.add_secret(url)
    parts = urlsplit(url)
    for value in (parts.username, parts.password):
        if value:
            logs.add_secret(unquote(value))
            logs.add_secret(value)
    for segment in parts.path.split("/"):
        if segment:
            logs.add_secret(unquote(segment))
            logs.add_secret(segment)
    for _, value in parse_qsl(parts.query):
        logs.add_secret(value)


def target_urls(target: NotificationTarget) -> list[str]:
    """The target's URLs: `urls`, and `urls_file` read now (a rotated Secret takes effect at
    the next message). Raises OSError when the file cannot be read."""
    urls = [url.strip() for url in target.urls if url.strip()]
    if target.urls_file:
        with open(target.urls_file, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
        for line in lines:
            if line and not line.startswith("#"):
                mask_url(line)
                urls.append(line)
    return urls


async def _send(target: NotificationTarget, message: Message) -> str:
    import apprise  # only a config with notifications pays for apprise's plugin scan

    try:
        urls = target_urls(target)
    except OSError as exc:
        log.warning("notification_urls_file_unreadable", target=target.id, error=exc.strerror)
        return "failed"
    sender = apprise.Apprise()
    for url in urls:
        sender.add(url)
    if not len(sender):
        return "failed"
    try:
        result = await sender.async_notify(
            body=message.body, title=message.title, timeout=target.timeout.total_seconds()
        )
    except Exception as exc:  # a plugin's bug must not fail the cycle
        log.warning("notification_error", target=target.id, error=type(exc).__name__)
        return "failed"
    if result:
        return "sent"
    return "timeout" if result.status == apprise.AppriseResultStatus.TIMEOUT else "failed"
