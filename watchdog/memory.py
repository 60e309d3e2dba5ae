"""What the watchdog remembers between cycles: when each lock was first seen, how many cycles
saw it, and when actions were taken (for the sliding-hour budget).

The TFC API has no timestamp for a user or team lock (reference/tfc-api.md 1.3), so the age
of such a lock is "now minus first seen by this daemon". A lock is identified by its source,
workspace id and holder id: a different holder is a new lock with a new age.

Persisted to `state_file` as versioned JSON, written atomically. A missing or corrupt file
is logged and treated as empty: ages restart, which only delays action, never hastens it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from watchdog.model import BackendLock, Observation, Source

log = structlog.get_logger(__name__)

STATE_VERSION = 1

# The action budget is a sliding hour; keep a margin so a budget computed a little after
# the newest action still sees every action of its hour.
ACTION_RETENTION = timedelta(hours=2)


@dataclass(slots=True)
class _LockEntry:
    organization: str
    first_seen: datetime
    sightings: int


# (source, workspace id, holder id). For S3-backend locks the "workspace id" is
# `<table or bucket>/<state path>` and the holder id is Terraform's lock ID.
_Key = tuple[str, str, str]


class StateFileError(ValueError):
    """The state file exists but does not hold what this version wrote."""


def backend_lock_key(lock: BackendLock) -> tuple[str, str]:
    """(workspace id, holder id) under which an S3-backend lock is remembered."""
    return f"{lock.store}/{lock.path}", lock.info.id


class Memory:
    """First-seen times and sightings of locks, and the times of recent actions."""

    def __init__(self, path: str | None = None) -> None:
        self._path = path
        self._locks: dict[_Key, _LockEntry] = {}
        self._actions: list[datetime] = []

    # --- loading and saving -----------------------------------------------------------------

    @classmethod
    def load(cls, path: str | None) -> Memory:
        """Read `path`; a missing or corrupt file is logged and gives an empty memory."""
        memory = cls(path)
        if path is None:
            return memory
        try:
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
        except FileNotFoundError:
            log.info("state file not found, starting with empty memory", path=path)
            return memory
        except (OSError, ValueError) as exc:
            log.warning(
                "state file unreadable, starting with empty memory; lock ages restart",
                path=path,
                error=str(exc),
            )
            return memory
        try:
            memory._locks, memory._actions = _parse(document)
        except (StateFileError, KeyError, TypeError, ValueError) as exc:
            log.warning(
                "state file corrupt, starting with empty memory; lock ages restart",
                path=path,
                error=str(exc) or type(exc).__name__,
            )
            memory._locks, memory._actions = {}, []
        return memory

    def save(self) -> None:
        """Write the state file atomically: a crash leaves the old file or the new, never half.

        A failed write is logged, not raised: the in-memory state stays right and the next
        cycle tries again; a lost write only costs ages after a restart.
        """
        if self._path is None:
            return
        directory = os.path.dirname(os.path.abspath(self._path))
        payload = json.dumps(self._to_document(), indent=1, sort_keys=True)
        temp_name: str | None = None
        try:
            fd, temp_name = tempfile.mkstemp(
                prefix=".tfc-watchdog-state.", suffix=".tmp", dir=directory
            )
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self._path)
            temp_name = None
            _fsync_directory(directory)
        except OSError as exc:
            log.error("could not write the state file", path=self._path, error=str(exc))
        finally:
            if temp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp_name)

    def _to_document(self) -> dict[str, Any]:
        locks: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        for (source, workspace_id, holder_id), entry in sorted(self._locks.items()):
            locks.setdefault(source, {}).setdefault(workspace_id, {})[holder_id] = {
                "organization": entry.organization,
                "first_seen": entry.first_seen.isoformat(),
                "sightings": entry.sightings,
            }
        return {
            "version": STATE_VERSION,
            "locks": locks,
            "actions": [at.isoformat() for at in sorted(self._actions)],
        }

    # --- locks ------------------------------------------------------------------------------

    def update(self, observations: Sequence[Observation], now: datetime) -> None:
        """Record this cycle's locks: first-seen for new ones, one more sighting for each.

        Entries whose lock is gone are dropped only for organizations whose read was complete:
        a partial read says nothing about the workspaces it did not see, and forgetting their
        ages would needlessly delay action. Workspaces that were read (and parsed) are always
        authoritative for themselves.
        """
        seen: set[_Key] = set()
        for observation in observations:
            for key in _held_locks(observation):
                if key in seen:
                    continue
                seen.add(key)
                entry = self._locks.get(key)
                if entry is None:
                    self._locks[key] = _LockEntry(observation.organization, now, 1)
                else:
                    entry.sightings += 1
                    entry.organization = observation.organization

        for observation in observations:
            source = observation.source.value
            # Every workspace read, not only those the source kept in `workspaces`.
            read_ids = set(observation.ids_read) - observation.unreadable
            read_ids |= {backend_lock_key(lock)[0] for lock in observation.backend_locks}
            for key in list(self._locks):
                if key in seen or key[0] != source:
                    continue
                entry = self._locks[key]
                gone_from_complete_read = (
                    observation.complete
                    and entry.organization == observation.organization
                    and key[1] not in observation.unreadable
                )
                if gone_from_complete_read or key[1] in read_ids:
                    del self._locks[key]
        self._prune_actions(now)

    def first_seen(
        self, workspace_id: str, holder_id: str, source: Source = Source.TFC
    ) -> datetime | None:
        entry = self._locks.get((source.value, workspace_id, holder_id))
        return None if entry is None else entry.first_seen

    def sightings(self, workspace_id: str, holder_id: str, source: Source = Source.TFC) -> int:
        """In how many update() calls (cycles) this exact lock was seen; 0 if never."""
        entry = self._locks.get((source.value, workspace_id, holder_id))
        return 0 if entry is None else entry.sightings

    def __len__(self) -> int:
        return len(self._locks)

    # --- action budget ----------------------------------------------------------------------

    def record_action(self, at: datetime) -> None:
        self._actions.append(at)
        self._prune_actions(max(self._actions))

    def actions_since(self, since: datetime) -> int:
        return sum(1 for at in self._actions if at >= since)

    def _prune_actions(self, now: datetime) -> None:
        cutoff = now - ACTION_RETENTION
        self._actions = [at for at in self._actions if at >= cutoff]


def _held_locks(observation: Observation) -> Iterator[_Key]:
    source = observation.source.value
    for workspace in observation.workspaces:
        if workspace.id in observation.unreadable:
            continue
        if workspace.locked and workspace.holder is not None:
            yield source, workspace.id, workspace.holder.id
    for lock in observation.backend_locks:
        if lock.problem is None:
            workspace_id, holder_id = backend_lock_key(lock)
            yield source, workspace_id, holder_id


def _parse(document: Any) -> tuple[dict[_Key, _LockEntry], list[datetime]]:
    if not isinstance(document, dict):
        raise StateFileError("not a JSON object")
    if document.get("version") != STATE_VERSION:
        raise StateFileError(f"unsupported version {document.get('version')!r}")
    raw_locks = document.get("locks", {})
    raw_actions = document.get("actions", [])
    if not isinstance(raw_locks, dict) or not isinstance(raw_actions, list):
        raise StateFileError("`locks` must be an object and `actions` a list")
    locks: dict[_Key, _LockEntry] = {}
    for source, workspaces in raw_locks.items():
        Source(source)  # ValueError for a source this version does not know
        if not isinstance(workspaces, dict):
            raise StateFileError(f"locks.{source} must be an object")
        for workspace_id, holders in workspaces.items():
            if not isinstance(holders, dict):
                raise StateFileError(f"locks.{source}.{workspace_id} must be an object")
            for holder_id, raw in holders.items():
                organization = raw["organization"]
                sightings = raw["sightings"]
                if not isinstance(organization, str):
                    raise StateFileError("organization must be a string")
                if not isinstance(sightings, int) or isinstance(sightings, bool) or sightings < 0:
                    raise StateFileError("sightings must be a non-negative integer")
                locks[(source, workspace_id, holder_id)] = _LockEntry(
                    organization, _parse_time(raw["first_seen"]), sightings
                )
    return locks, [_parse_time(value) for value in raw_actions]


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise StateFileError("a timestamp must be an ISO 8601 string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise StateFileError(f"timestamp {value!r} has no timezone")
    return parsed


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); best effort where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
