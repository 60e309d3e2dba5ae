"""What the one-workspace commands (`unlock`, `wait`) share: parsing `<org>/<workspace>` and
`user:NAME`, and saying who holds a lock since when, in one line a person can read."""

from __future__ import annotations

from datetime import datetime

from watchdog.memory import Memory
from watchdog.model import Holder, HolderType, Workspace, format_age
from watchdog.report import iso


def parse_workspace_ref(text: str) -> tuple[str, str] | None:
    """`acme/network-prod` -> ("acme", "network-prod"); None unless exactly two parts."""
    organization, slash, name = text.partition("/")
    if not slash or not organization or not name or "/" in name:
        return None
    return organization, name


def parse_holder(text: str) -> tuple[HolderType, str] | None:
    """`user:bob`, `team:platform`, `run:run-abc` (as reports show holders), else None."""
    kind, colon, name = text.partition(":")
    try:
        holder_type = HolderType(kind)
    except ValueError:
        return None
    if not colon or not name:
        return None
    return holder_type, name


def holder_matches(holder: Holder, expected: tuple[HolderType, str]) -> bool:
    """`user:bob` matches the user named bob or with id bob (names are what people type);
    `terraform:WHO` a backend lock's `Who:` or its lock ID."""
    kind, name = expected
    return holder.type is kind and name in (holder.id, holder.name)


def lock_since(workspace: Workspace, memory: Memory | None) -> tuple[datetime | None, str]:
    """When the lock was taken as far as anyone can tell, and by whose account.

    The API gives a user or team lock no timestamp: the daemon's state file (read only)
    says when the watchdog first saw it. A run's lock is as old as the run's current status.
    """
    holder = workspace.holder
    if holder is None:
        return None, "unknown"
    run = workspace.current_run
    if holder.type is HolderType.RUN and run is not None and run.id == holder.id:
        entered = run.entered_status_at()
        if entered is not None:
            return entered, f"run {run.status}"
    first_seen = memory.first_seen(workspace.id, holder.id) if memory is not None else None
    if first_seen is not None:
        return first_seen, "first seen by the watchdog"
    return None, "unknown: the API does not say when a lock was taken"


def holder_text(holder: Holder | None) -> str:
    if holder is None:
        return "a holder the API did not name"
    if holder.type is HolderType.RUN:
        return f"run {holder.id}"
    return holder.label()


def describe_lock(workspace: Workspace, memory: Memory | None, now: datetime) -> list[str]:
    """`acme/net: locked by user:bob since 2026-...Z (3h 10m, first seen by the watchdog)`,
    then the lock reason and the current run when there are any."""
    where = f"{workspace.organization}/{workspace.name}"
    if not workspace.locked:
        return [f"{where}: not locked"]
    since, basis = lock_since(workspace, memory)
    when = (
        f"since {iso(since)} ({format_age(now - since)}, {basis})"
        if since is not None
        else f"since {basis}"
    )
    lines = [f"{where}: locked by {holder_text(workspace.holder)} {when}"]
    if workspace.locked_reason:
        lines.append(f"  lock reason: {workspace.locked_reason}")
    run = workspace.current_run
    if run is not None and not run.is_final:
        lines.append(f"  current run: {run.id} ({run.status})")
    return lines
