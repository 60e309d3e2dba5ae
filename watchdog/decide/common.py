"""What both ladders (TFC workspaces, S3-backend locks) share: their output types, the
read-only view of memory they age locks by, and the sightings a lock needs before it may be
cleared."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from watchdog.model import Finding, LockState, PlannedAction, Source

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


@dataclass
class Partial:
    """One ladder's share of a Decision, in the order it was made."""

    locks: list[LockState] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    planned: list[PlannedAction] = field(default_factory=list)
    restraints: list[Restraint] = field(default_factory=list)
