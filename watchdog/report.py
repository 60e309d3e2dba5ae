"""Report: what a cycle saw and did, as JSON (the `scan --output json` and `/locks` contract)
and as a human table (`scan`).

Pure rendering. Where a report goes (metrics, logs, health, `/locks`) is the report stage,
`reporting.py`.
"""

from __future__ import annotations

import re
import shlex
import textwrap
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watchdog.decide import Restraint
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
    tfc = observation.source is Source.TFC
    return {
        "source": observation.source.value,
        "organization": observation.organization,
        "complete": observation.complete,
        "error": observation.error,
        # A lock table or bucket has no workspaces: null there, not a misleading 0.
        "workspaces": observation.workspace_count if tfc else None,
        "locks": None if tfc else len(observation.backend_locks),
        "unreadable": sorted(observation.unreadable),
    }


def source_error(observation: Observation) -> str | None:
    """One line naming what could not be read and why (None when it was read)."""
    if observation.error is None:
        return None
    return f"could not read {observation.source.value} {observation.organization}: " + (
        observation.error
    )


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
    # Why stale-looking locks and runs were left alone, and the memory file that carries
    # sightings between cycles: the table says why an action waits (not in the JSON).
    restraints: tuple[Restraint, ...] = ()
    state_file: str | None = None

    @property
    def complete(self) -> bool:
        return all(o.complete for o in self.observations)

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
            # Every source's error (each also under `sources[].error`).
            "errors": [e for e in map(source_error, self.observations) if e is not None],
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


# The width the human report fits when no terminal says otherwise (`scan` passes the
# terminal's). The JSON document is the contract; this table only has to read well.
DEFAULT_WIDTH = 120
_MAX_WORD = 24
_MIN_REASON = 24
_PIECES = re.compile(r"[^ ,]*[ ,]*")


def _wrap(cell: str, width: int) -> list[str]:
    """`cell` in lines of at most `width`, broken after spaces and commas (finding lists
    are comma-separated), and inside a word only when it alone is too long. Hand-written:
    textwrap breaks only at whitespace and hyphens."""
    lines: list[str] = []
    current = ""
    for piece in _PIECES.findall(cell):
        if not piece:
            continue
        if len(current) + len(piece.rstrip()) <= width:
            current += piece
            continue
        if current.strip():
            lines.append(current.rstrip())
        current = piece
        while len(current.rstrip()) > width:
            lines.append(current[:width])
            current = current[width:]
    if current.strip() or not lines:
        lines.append(current.rstrip())
    return lines


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int = DEFAULT_WIDTH,
    wrap: Iterable[str] = (),
) -> list[str]:
    """Columns padded to fit; when the table is wider than `width`, the `wrap` columns
    (free text, lists) are narrowed, widest first, and their cells continue on more lines.
    Cells are escaped first (`printable`), so a line break in a value never splits a row."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    wrappable = [i for i, header in enumerate(headers) if header in set(wrap)]
    # Narrowed no further than the longest word of the column (up to _MAX_WORD): a time
    # stamp or a run id is not broken in the middle when the text around it can wrap.
    floors = {
        i: max(
            len(headers[i]),
            min(
                _MAX_WORD,
                max((len(p.rstrip()) for r in rows for p in _PIECES.findall(r[i])), default=0),
            ),
        )
        for i in wrappable
    }
    # In the order given: the first `wrap` column is narrowed to its floor before the next.
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    for header in wrap:
        if header not in headers:
            continue
        i = list(headers).index(header)
        cut = max(0, min(excess, widths[i] - floors[i]))
        widths[i] -= cut
        excess -= cut
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*headers).rstrip()]
    for row in rows:
        cells = [
            _wrap(cell, w) if i in wrappable else [cell]
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        for n in range(max(len(c) for c in cells)):
            out.append(line.format(*(c[n] if n < len(c) else "" for c in cells)).rstrip())
    return out


def _lock_table(rows: list[list[str]], width: int) -> list[str]:
    """The TFC lock table. Columns that can wrap give way in this order: SINCE's "(first
    seen)", the run's status under its id, the findings one per line, then the lock reason;
    when the reason would still get fewer than _MIN_REASON columns, it leaves the table for
    a line of its own under its row."""
    headers = ["WORKSPACE", "HOLDER", "SINCE (UTC)", "AGE", "FINDING", "RULE", "LOCK ID"]
    # TFC's lock ID is `<organization>/<workspace>`, the first column already.
    if all(row[6] == row[0] for row in rows):
        headers.pop(6)
        rows = [row[:6] + row[7:] for row in rows]
    wrap = ("SINCE (UTC)", "HOLDER", "FINDING", "LOCK REASON")
    without = _table(headers, [row[:-1] for row in rows], width=width, wrap=wrap)
    room = width - max(len(line) for line in without) - 2
    if room >= _MIN_REASON or all(len(row[-1]) <= room for row in rows):
        return _table([*headers, "LOCK REASON"], rows, width=width, wrap=wrap)
    out = [without[0]]
    body = iter(without[1:])
    pending = next(body, None)
    for row in rows:
        # The row's first line, then its continuation lines (they start blank).
        assert pending is not None
        out.append(pending)
        pending = next(body, None)
        while pending is not None and pending.startswith(" "):
            out.append(pending)
            pending = next(body, None)
        if row[-1] != "-":
            out.extend(_fill(f"lock reason: {row[-1]}", width))
    return out


def _fill(text: str, width: int, indent: str = "  ") -> list[str]:
    """A long report line (manual fix, planned action, restraint) wrapped to `width`, its
    continuation lines indented two more spaces."""
    return textwrap.wrap(
        printable(text),
        width,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]


def render_table(report: CycleReport, width: int = DEFAULT_WIDTH) -> str:
    """A report shaped like Terraform's own "Lock Info" block, one row per locked workspace,
    fitted to `width` columns (long cells wrap onto more lines of their row)."""
    out: list[str] = []
    findings_by_ws: dict[str, list[Finding]] = {}
    for finding in report.findings:
        findings_by_ws.setdefault(finding.workspace_id, []).append(finding)

    for observation in report.observations:
        scope = f"{observation.source.value} {observation.organization}"
        error = source_error(observation)
        if error is not None:
            # The reason is said once, by `scan` on stderr (this table may go to a file).
            out.append(f"{scope}: NOT READ (the reason is on stderr)")
            continue
        if observation.source is Source.TFC:
            read = _count(observation.workspace_count, "workspace")
        else:
            read = _count(len(observation.backend_locks), "lock")
        state = "ok" if observation.complete else "INCOMPLETE"
        out.append(f"{scope}: {read} read, {state}")
    out.append("")
    tfc_locks = [lk for lk in report.locks if lk.source is Source.TFC]
    backend_locks = [lk for lk in report.locks if lk.source is not Source.TFC]
    if not tfc_locks and not backend_locks:
        readable = [o for o in report.observations if o.error is None]
        if not readable:
            out.append("Nothing could be read: no lock is reported, and none is ruled out.")
        elif len(readable) < len(report.observations):
            out.append("No locked workspaces in what could be read.")
        else:
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
                    ",".join(kinds) or ("stale" if lock.stale else "held"),
                    lock.rule,
                    lock.lock_id,
                    # The lock's own reason, as its holder wrote it (not the finding's):
                    # free text, so last, where it can wrap.
                    lock.reason or "-",
                ]
            )
        out.extend(_lock_table(rows, width))
        stale = [lk for lk in report.locks if lk.stale and lk.source.value == "tfc"]
        if stale:
            out.append("")
            out.append(
                "Manual fix, as Terraform users know it (check first that no apply is live):"
            )
            protected = _protected(report)
            for lk in stale:
                if lk.workspace_id in protected:
                    out.extend(
                        _fill(
                            f"{lk.lock_id}: {protected[lk.workspace_id]}; ask "
                            f"{lk.holder.label()}, do not unlock it",
                            width,
                        )
                    )
                elif lk.run is not None:
                    # A run-held lock is cleared by ending its run, never by force-unlock.
                    out.extend(_fill(f"{lk.lock_id}: {_end_run(lk.run)}", width))
                else:
                    # One line, whatever its length: it is meant to be pasted.
                    out.append(f"  terraform force-unlock {shlex.quote(lk.lock_id)}")

    if backend_locks:
        if tfc_locks:
            out.append("")
        out.extend(_backend_table(backend_locks, findings_by_ws, width, _protected(report)))

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
                width=width,
                wrap=("FINDING", "REASON"),
            )
        )
    if report.planned:
        out.append("")
        mode = "would do (dry-run)" if report.dry_run else "plans"
        out.append(f"The watchdog {mode}:")
        for a in report.planned:
            out.extend(_fill(f"{a.kind.value} {_target(a)}: {a.reason} (rule {a.rule})", width))
    if report.restraints:
        out.append("")
        out.append("The watchdog would not act:")
        for r in report.restraints:
            target = (
                f"{r.organization}/{r.workspace}"
                if r.organization and not r.workspace.startswith(f"{r.organization}/")
                else r.workspace
            )
            out.extend(_fill(f"{target}: {r.reason}", width))
        if any(_SIGHTINGS in r.reason for r in report.restraints):
            out.extend(_second_sighting(report.state_file))
    # Every line, not only table cells: observation errors, manual fixes and planned-action
    # reasons quote API text too.
    return "\n".join(printable(line) for line in out) + "\n"


# decide's guard for a lock seen in too few cycles ("lock seen with this holder/ID in 1
# cycle(s), 2 needed").
_SIGHTINGS = "cycle(s), "


def _second_sighting(state_file: str | None) -> list[str]:
    """Why a `scan` that sees a stale lock once cannot see it twice, and what does."""
    lines = [
        "  The action waits for a second sighting of the same lock;",
        "  `scan` alone never provides the second sighting: it reads the state_file, "
        "never writes it.",
    ]
    if state_file is None:
        lines.append(
            "  No state_file is configured: set one, shared with the daemon (`tfc-watchdog run`)."
        )
    else:
        lines.append(
            f"  {state_file} is written by the daemon (`tfc-watchdog run`): after its next "
            "cycle the lock counts as seen again."
        )
    return lines


def _target(action: PlannedAction) -> str:
    """What an action is on: `org/workspace` for TFC; for the S3 backend the state path,
    which already starts with the bucket."""
    if action.source is Source.TFC:
        return f"{action.organization}/{action.workspace}"
    return f"{action.source.value}:{action.workspace}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _end_run(run: Run) -> str:
    """How to end the run that holds a lock, by the rung the ladder gives it (decide
    `_run_step`): a run waiting for a human is discarded (cancel does not apply to a run
    that is not executing), a run whose cancel was already requested is force-cancelled, any
    other run is cancelled first."""
    if run.phase_group == "waiting":
        return f"discard run {run.id} (it is {run.status}, waiting for confirmation)"
    if run.canceled_at is not None:
        return f"force-cancel run {run.id} (cancel already requested)"
    return f"cancel run {run.id} (then force-cancel)"


def _protected(report: CycleReport) -> dict[str, str]:
    """Why each protected lock is protected, by workspace id (a state path's for the S3
    backend): a protected lock gets no unlock advice, only its protection and who to ask."""
    return {
        r.workspace_id: r.reason.partition(" (would ")[0]
        for r in report.restraints
        if r.reason.startswith("protected: ")
    }


def _backend_table(
    locks: Sequence[LockState],
    findings: dict[str, list[Finding]],
    width: int,
    protected: dict[str, str],
) -> list[str]:
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
                _backend_lock_id(lock),
            ]
        )
    headers = ["STORE", "STATE PATH", "WHO", "OPERATION", "CREATED (UTC)", "AGE", "FINDING"]
    # The lock ID stays whole: it is what `terraform force-unlock` takes.
    wrap = ("STATE PATH", "WHO", "OPERATION", "FINDING")
    out = _table([*headers, "RULE", "LOCK ID"], rows, width=width, wrap=wrap)
    stale = [lk for lk in locks if lk.stale and (lk.lock_id or _is_gitlab(lk))]
    if stale:
        out.append("")
        out.append(
            "Manual fix, as Terraform users know it (check first that no apply is live; "
            "run it in the configuration's directory):"
        )
        # Quoted: the lock ID comes from whoever wrote the lock, and this line is meant to be
        # pasted into a shell.
        for lk in stale:
            if lk.workspace_id in protected:
                who = lk.lock_info.who if lk.lock_info and lk.lock_info.who else "its holder"
                out.extend(
                    _fill(
                        f"{lk.workspace}: {protected[lk.workspace_id]}; ask {who}, "
                        "do not unlock it",
                        width,
                    )
                )
            elif _is_gitlab(lk):
                out.extend(_fill(f"{lk.workspace}: {_GITLAB_FIX}", width))
            else:
                out.append(f"  {lk.workspace}: terraform force-unlock {shlex.quote(lk.lock_id)}")
    return out


# GitLab's read API shows no lock ID: the user has it from Terraform's own error ("Lock Info:
# ID: ..."), or unlocks in GitLab (https://docs.gitlab.com/user/infrastructure/iac/
# terraform_state/), which needs the Maintainer role.
_GITLAB_FIX = (
    'terraform force-unlock <the ID in Terraform\'s "Lock Info">, or in GitLab: '
    "Operate > Terraform states > Actions > Unlock"
)


def _is_gitlab(lock: LockState) -> bool:
    return lock.source.value == "gitlab" and lock.lock_info is not None


def _backend_lock_id(lock: LockState) -> str:
    if lock.lock_id:
        return lock.lock_id
    if _is_gitlab(lock):
        return "(not shown by GitLab)"
    return f"UNREADABLE: {lock.reason}"


def _since_note(lock: LockState) -> str:
    """Where a TFC lock's SINCE comes from, when it is not the run's own timestamp."""
    if lock.age_source != "first_seen":
        return ""
    if lock.last_activity is not None and lock.since == lock.last_activity:
        return " (last activity)"
    return " (first seen)"
