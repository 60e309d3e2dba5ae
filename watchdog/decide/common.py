"""What both ladders (TFC workspaces, S3-backend locks) share: their output types, the
read-only view of memory they age locks by, and the sightings a lock needs before it may be
cleared."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from watchdog.model import Finding, LockState, Notice, PlannedAction, Source

# Sightings of the same lock (same holder) before it may be cleared: one cycle could be a
# glimpse of a lock someone is about to release.
MIN_SIGHTINGS = 2


class MemoryView(Protocol):
    """What decide reads of the memory, and all it may touch: `watchdog.memory.Memory`
    satisfies it, but through this view decide can neither update nor save it (mypy rejects
    the call), so deciding stays pure."""

    def first_seen(
        self, workspace_id: str, holder_id: str, source: Source = Source.TFC
    ) -> datetime | None: ...

    def last_activity(
        self, workspace_id: str, holder_id: str, source: Source = Source.TFC
    ) -> datetime | None: ...

    def sightings(self, workspace_id: str, holder_id: str, source: Source = Source.TFC) -> int: ...

    def notice_at(self, workspace_id: str, holder_id: str, run_id: str) -> datetime | None: ...


@dataclass(frozen=True)
class Restraint:
    """Why a lock or run was NOT acted on (logged: "young lock", "protected", ...)."""

    workspace_id: str
    organization: str
    workspace: str
    reason: str


@dataclass(frozen=True)
class Decision:
    locks: tuple[LockState, ...]
    findings: tuple[Finding, ...]
    # Stable order: oldest first, then organization/workspace name; at most one per workspace.
    planned: tuple[PlannedAction, ...]
    restraints: tuple[Restraint, ...]
    # Actions held back by a rule's `notice` (new ones are recorded and sent by the cycle).
    notices: tuple[Notice, ...] = ()


@dataclass
class Partial:
    """One ladder's share of a Decision, in the order it was made."""

    locks: list[LockState] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    planned: list[PlannedAction] = field(default_factory=list)
    restraints: list[Restraint] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)


def notice_reason(notice: Notice) -> str:
    """The restraint of a running notice: the same text every cycle (no ages), for every
    ladder."""
    action = notice.action
    holder = action.holder.label() if action.holder else "none"
    return (
        f"notice given {notice.given_at.isoformat()}: {action.kind.value} at "
        f"{notice.action_at.isoformat()} if the lock of {holder} is still there and stale"
    )
