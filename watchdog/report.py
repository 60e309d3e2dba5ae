"""Report: what a cycle saw and did, as JSON (the `scan --output json` and `/locks` contract),
as a human table (`scan`), and as log events that fire when a finding appears or clears.

Pure rendering plus one small stateful piece (`FindingLog`) that remembers which findings
were already announced, so logs say what changed instead of repeating every cycle.
"""

from __future__ import annotations

import shlex
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from watchdog.model import (
    ActionResult,
    Finding,
    FindingKind,
    LockState,
    Observation,
    PlannedAction,
    Run,
    Source,
    format_age,
)

log = structlog.get_logger(__name__)

# Findings that mean "someone should look": `scan` exits 3 when any is present.
ALARMING = frozenset(
    {
        FindingKind.LOCK_STALE,
        FindingKind.RUN_STUCK,
        FindingKind.RUN_WAITING,
        FindingKind.RUNS_BLOCKED,
    }
)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def lock_to_json(lock: LockState) -> dict[str, Any]:
    data: dict[str, Any] = {
        "source": lock.source.value,
        "organization": lock.organization,
        "workspace": lock.workspace,
        "workspace_id": lock.workspace_id,
        "holder_type": lock.holder.type.value,
        "holder_id": lock.holder.id,
        "holder_name": lock.holder.name,
        "holder": lock.holder.label(),
        "lock_id": lock.lock_id,
        "since": iso(lock.since),
        "age_seconds": int(lock.age.total_seconds()),
        "age": format_age(lock.age),
        "age_source": lock.age_source,
        # The holder's last sign of life (a state version created while it held the lock).
        "last_activity": iso(lock.last_activity),
        "stale": lock.stale,
        "rule": lock.rule,
        "reason": lock.reason,
        "run": None if lock.run is None else {"id": lock.run.id, "status": lock.run.status},
    }
    if lock.lock_info is not None:
        info = lock.lock_info
        data["lock_info"] = {
            "ID": info.id,
            "Path": info.path,
            "Operation": info.operation,
            "Who": info.who,
            "Version": info.version,
            "Created": iso(info.created),
            "Info": info.info,
        }
    return data


def finding_to_json(finding: Finding) -> dict[str, Any]:
    return {
        "kind": finding.kind.value,
        "source": finding.source.value,
        "organization": finding.organization,
        "workspace": finding.workspace,
        "workspace_id": finding.workspace_id,
        "rule": finding.rule,
        "reason": finding.reason,
        "holder": finding.holder.label() if finding.holder else None,
        "run": finding.run_id,
        "run_status": finding.run_status,
        "since": iso(finding.since),
        "age_seconds": None if finding.age is None else int(finding.age.total_seconds()),
        "threshold_seconds": (
            None if finding.threshold is None else int(finding.threshold.total_seconds())
        ),
    }


def result_to_json(result: ActionResult) -> dict[str, Any]:
    return {
        **result.action.audit_fields(),
        "outcome": result.outcome.value,
        "detail": result.detail,
        "retry_later": result.retry_later,
    }


def observation_to_json(observation: Observation) -> dict[str, Any]:
    return {
        "source": observation.source.value,
        "organization": observation.organization,
        "complete": observation.complete,
        "error": observation.error,
        "workspaces": observation.workspace_count,
        "unreadable": sorted(observation.unreadable),
    }


@dataclass(frozen=True)
class CycleReport:
    """Everything one cycle (or one `scan`) produced: the `/locks` and scan JSON document."""

    generated_at: datetime
    dry_run: bool
    observations: tuple[Observation, ...]
    locks: tuple[LockState, ...]
    findings: tuple[Finding, ...]
    planned: tuple[PlannedAction, ...] = ()
    results: tuple[ActionResult, ...] = ()
    errors: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return not self.errors and all(o.complete for o in self.observations)

    @property
    def alarming(self) -> bool:
        return any(f.kind in ALARMING for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "generated_at": iso(self.generated_at),
            "dry_run": self.dry_run,
            "complete": self.complete,
            "sources": [observation_to_json(o) for o in self.observations],
            "locks": [lock_to_json(lock) for lock in self.locks],
            "findings": [finding_to_json(f) for f in self.findings],
            "planned_actions": [a.audit_fields() for a in self.planned],
            "actions": [result_to_json(r) for r in self.results],
            "errors": list(self.errors),
        }


# --- Human table (scan) -----------------------------------------------------------------------

# Characters that must not reach a terminal raw: controls (newline, ESC starting an ANSI
# sequence, ...), invisible format characters (bidirectional overrides, zero-width), and line
# and paragraph separators. Lock reasons, holder names and lock info are written by any user
# of the API (or any CI job writing a lock): raw, they could forge table rows or drive the
# terminal.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def printable(text: str) -> str:
    """`text` with each unprintable character written as a Python escape (`\\n`, `\\x1b`,
    `\\u202e`), so one value stays on one line and shows what it really holds. For human
    output only: the JSON output keeps values exact (JSON escapes them itself)."""
    if text.isprintable():  # the common case, and fast (C): nothing to escape
        return text
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in _UNPRINTABLE_CATEGORIES
        else char
        for char in text
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return [line.format(*headers).rstrip(), *(line.format(*row).rstrip() for row in rows)]


def render_table(report: CycleReport) -> str:
    """A report shaped like Terraform's own "Lock Info" block, one row per locked workspace."""
    out: list[str] = []
    findings_by_ws: dict[str, list[Finding]] = {}
    for finding in report.findings:
        findings_by_ws.setdefault(finding.workspace_id, []).append(finding)

    for observation in report.observations:
        state = "ok" if observation.complete else f"INCOMPLETE: {observation.error}"
        if observation.source is Source.TFC:
            count = observation.workspace_count
            read = f"{count} workspaces read"
        else:
            read = f"{len(observation.backend_locks)} locks read"
        out.append(f"{observation.source.value} {observation.organization}: {read}, {state}")
    out.append("")
    tfc_locks = [lk for lk in report.locks if lk.source is Source.TFC]
    backend_locks = [lk for lk in report.locks if lk.source is not Source.TFC]
    if not tfc_locks and not backend_locks:
        out.append("No locked workspaces.")
    elif tfc_locks:
        rows = []
        for lock in sorted(tfc_locks, key=lambda lk: -lk.age.total_seconds()):
            holder = lock.holder.label()
            if lock.run is not None:
                holder = f"run:{lock.run.id} ({lock.run.status})"
            kinds = sorted(
                {f.kind.value for f in findings_by_ws.get(lock.workspace_id, [])}
                - {FindingKind.LOCK_HELD.value}
            )
            rows.append(
                [
                    f"{lock.organization}/{lock.workspace}",
                    holder,
                    (iso(lock.since) or "") + _since_note(lock),
                    format_age(lock.age),
                    lock.reason or "-",
                    ",".join(kinds) or ("stale" if lock.stale else "held"),
                    lock.rule,
                    lock.lock_id,
                ]
            )
        headers = ["WORKSPACE", "HOLDER", "SINCE (UTC)", "AGE", "REASON", "FINDING", "RULE"]
        out.extend(_table([*headers, "LOCK ID"], rows))
        stale = [lk for lk in report.locks if lk.stale and lk.source.value == "tfc"]
        if stale:
            out.append("")
            out.append(
                "Manual fix, as Terraform users know it (check first that no apply is live):"
            )
            for lk in stale:
                if lk.run is not None:
                    # A run-held lock is cleared by ending its run, never by force-unlock.
                    out.append(f"  {lk.lock_id}: {_end_run(lk.run)}")
                else:
                    out.append(f"  terraform force-unlock {shlex.quote(lk.lock_id)}")

    if backend_locks:
        if tfc_locks:
            out.append("")
        out.extend(_backend_table(backend_locks, findings_by_ws))

    other = [
        f for f in report.findings if f.kind in {FindingKind.RUN_STUCK, FindingKind.RUN_WAITING}
    ]
    if other:
        out.append("")
        out.append("Stuck runs:")
        out.extend(
            _table(
                ["WORKSPACE", "RUN", "STATUS", "FINDING", "RULE", "REASON"],
                [
                    [
                        f"{f.organization}/{f.workspace}",
                        f.run_id or "-",
                        f.run_status or "-",
                        f.kind.value,
                        f.rule,
                        f.reason,
                    ]
                    for f in other
                ],
            )
        )
    if report.planned:
        out.append("")
        mode = "would do (dry-run)" if report.dry_run else "plans"
        out.append(f"The watchdog {mode}:")
        out.extend(
            f"  {a.kind.value} {a.organization}/{a.workspace}: {a.reason} (rule {a.rule})"
            for a in report.planned
        )
    # Every line, not only table cells: observation errors, manual fixes and planned-action
    # reasons quote API text too.
    return "\n".join(printable(line) for line in out) + "\n"


def _end_run(run: Run) -> str:
    """How to end the run that holds a lock, by the rung the ladder gives it (decide.py
    `_run_step`): a run waiting for a human is discarded (cancel does not apply to a run
    that is not executing), a run whose cancel was already requested is force-cancelled, any
    other run is cancelled first."""
    if run.phase_group == "waiting":
        return f"discard run {run.id} (it is {run.status}, waiting for confirmation)"
    if run.canceled_at is not None:
        return f"force-cancel run {run.id} (cancel already requested)"
    return f"cancel run {run.id} (then force-cancel)"


def _backend_table(locks: Sequence[LockState], findings: dict[str, list[Finding]]) -> list[str]:
    """S3-backend locks with Terraform's own "Lock Info" fields (Who, Operation, Created)."""
    rows = []
    for lock in sorted(locks, key=lambda lk: -lk.age.total_seconds()):
        info = lock.lock_info
        kinds = sorted(
            {f.kind.value for f in findings.get(lock.workspace_id, [])}
            - {FindingKind.LOCK_HELD.value}
        )
        rows.append(
            [
                f"{lock.source.value}:{lock.organization}",
                lock.workspace,
                (info.who or "-") if info else "-",
                (info.operation or "-") if info else "-",
                iso(lock.since) or "",
                format_age(lock.age),
                ",".join(kinds) or ("stale" if lock.stale else "held"),
                lock.rule,
                lock.lock_id or f"UNREADABLE: {lock.reason}",
            ]
        )
    headers = ["STORE", "STATE PATH", "WHO", "OPERATION", "CREATED (UTC)", "AGE", "FINDING"]
    out = _table([*headers, "RULE", "LOCK ID"], rows)
    stale = [lk for lk in locks if lk.stale and lk.lock_id]
    if stale:
        out.append("")
        out.append(
            "Manual fix, as Terraform users know it (check first that no apply is live; "
            "run it in the configuration's directory):"
        )
        # Quoted: the lock ID comes from whoever wrote the lock, and this line is meant to be
        # pasted into a shell.
        out.extend(
            f"  {lk.workspace}: terraform force-unlock {shlex.quote(lk.lock_id)}" for lk in stale
        )
    return out


# --- Log events when findings appear and clear ------------------------------------------------


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


def _since_note(lock: LockState) -> str:
    """Where a TFC lock's SINCE comes from, when it is not the run's own timestamp."""
    if lock.age_source != "first_seen":
        return ""
    if lock.last_activity is not None and lock.since == lock.last_activity:
        return " (last activity)"
    return " (first seen)"
