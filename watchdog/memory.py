"""What the watchdog remembers between cycles: when each lock was first and last seen, how
many cycles saw it, and every action sent (for the per-hour budget).

The TFC API has no timestamp for a user or team lock (the workspace's `locked-by` carries
none), so the age of such a lock is "now minus first seen by this daemon".
A lock is identified by its source, workspace id and holder id: a different holder is a new
lock with a new age.

An observed age is only as long as the watchdog watched continuously. Each lock also keeps
when it was last seen, on the watchdog's own clock; when two sightings are further apart than
`allowed_gap(interval)` (a restart, failed reads, a paused process), the watchdog cannot say
the lock was not released and taken again meanwhile, so its first-seen time and sighting count
restart. When cycles were missed since the last sighting (failed reads, a restart, `run
--once`), the server's clock is a second witness: a gap on either clock is a gap. Within an
unbroken run of cycles only the watchdog's clock counts: the server's may jump (or, in the
simulator, run faster). A restart, a lost state file or an outage therefore only delays action.

With TFC two-tier polling (`tfc.full_scan_interval`), fast reads between full reads list only
the workspaces whose current run is not final. They see run-held locks there (a sighting, as
any read, so such a lock keeps the cycles' gap, in full reads too); they do not look at
user/team locks (nor at a run lock whose run is final): such a lock is neither sighted nor released
by a fast read (one on a listed workspace is present; an unlisted workspace is not unlocked),
and its gaps are measured from one full read to the next, allowed 2 x max(interval,
full_scan_interval) + 30 s (a full read comes at the first cycle at least full_scan_interval
after the last, so full reads are at most full_scan_interval + interval apart; one missed
full read is covered as one missed cycle is). Its first-seen time is precise to the
full-walk interval, and a release and re-take by the same holder between two full reads is
not seen as new.

Budget: every POST is recorded here BEFORE it is sent (an intent, written and fsynced to the
state file) and completed with its outcome afterwards. Every record counts against the hourly
budget whatever the answer, so no sequence of crashes (SIGKILL between sending and recording)
can send more than the budget allows. Records are aged on the watchdog's own clock, never on
the server's `Date`: within a process on a monotonic clock (a wall-clock step neither drops
nor pins them), across restarts on the local wall clock, with a record that lies in the
future (the clock was stepped back) counted as made now, so it blocks for at most one window
of real time.

Persisted to `state_file` as JSON with a format marker and a version, written atomically.
The path is refused at start-up when it exists and is anything but a state file this
program wrote (a special file, a directory, another program's file): the watchdog never
overwrites what it did not write. A state file of the previous format is read with its lock
ages restarted (it did not record when each lock was last seen).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from watchdog.model import (
    HolderType,
    Observation,
    Outcome,
    PlannedAction,
    Source,
    backend_lock_key,
)

log = structlog.get_logger(__name__)

STATE_FORMAT = "tfc-watchdog-state"
STATE_VERSION = 2
# The first format: no marker, no last-seen times. Read with lock ages restarted.
_OLD_VERSION = 1

# The record kind of a run comment (a notice posted on a run): budgeted like an action.
RUN_COMMENT = "run_comment"

# The action budget is a sliding hour.
BUDGET_WINDOW = timedelta(hours=1)
# Records are kept a little longer than the window so the file shows the recent past.
ACTION_RETENTION = timedelta(hours=2)

# How late a sighting may be and still continue the observation: two intervals (one missed
# cycle, e.g. a cycle that overran its interval and was coalesced) plus time for a slow cycle.
GAP_SLACK = timedelta(seconds=30)


def allowed_gap(interval: timedelta) -> timedelta:
    """The longest time between two sightings of a lock that keeps its observed age."""
    return 2 * interval + GAP_SLACK


class Clock(Protocol):
    """The watchdog's own clock (injectable for tests)."""

    def wall(self) -> datetime:
        """The local wall clock (UTC); may be stepped by NTP or an operator."""
        ...

    def ticks(self) -> float:
        """Seconds on a clock that never jumps (within one process only)."""
        ...


class SystemClock:
    def wall(self) -> datetime:
        return datetime.now(UTC)

    def ticks(self) -> float:
        # CLOCK_BOOTTIME keeps counting while the machine is suspended (CLOCK_MONOTONIC does
        # not), so a suspended host is seen as the gap it is.
        boottime = getattr(time, "CLOCK_BOOTTIME", None)
        if boottime is not None:
            return time.clock_gettime(boottime)
        return time.monotonic()


@dataclass(frozen=True, slots=True)
class _Stamp:
    """One moment on the watchdog's own clock."""

    wall: datetime
    ticks: float


@dataclass(slots=True)
class _LockEntry:
    organization: str
    first_seen: datetime  # the cycle's (server) time of the first sighting: ages are on it
    sightings: int
    last_seen: _Stamp  # on the watchdog's clock: gaps are measured on it
    # The cycle's (server) time of the last sighting: a second witness of a gap, used when
    # the watchdog did not look in every cycle since (see Memory.update).
    last_seen_at: datetime
    # The number of this process's update() that last saw it; None when loaded from the file.
    last_cycle: int | None = None
    # The latest sign of life of a user/team lock's holder seen while the lock was held: its
    # workspace's `latest-change-at`, when later than the first sighting (server clock). The
    # age runs from it. Not saved: every list read carries it again, before decide runs.
    activity: datetime | None = None


@dataclass(slots=True)
class ActionRecord:
    """One POST: written as an intent before it is sent, completed with its outcome."""

    id: str
    action: str
    source: str
    workspace_id: str
    outcome: str | None  # None: sent (or about to be) and not completed, e.g. killed
    at: _Stamp


@dataclass(frozen=True, slots=True)
class ClearedLock:
    """A lock memory.update() found gone: what the time-to-clear histogram observes, once."""

    source: str
    workspace_id: str
    holder_id: str
    # Its observed age when last seen (server clock): when the watchdog ended it, exactly the
    # age it acted at (act runs in the cycle of that sighting); else a lower bound, short by
    # at most the time between two cycles.
    age: timedelta
    # A POST of ours on its workspace since that sighting may have ended it (done, unknown,
    # or sent and never completed: a process killed in flight).
    by_watchdog: bool


# Outcomes of a POST after which the server certainly did nothing.
_DID_NOTHING = frozenset(
    {Outcome.FAILED.value, Outcome.FORBIDDEN.value, Outcome.SKIPPED_CHANGED.value}
)


# (source, workspace id, holder id). For S3-backend locks the "workspace id" is
# `<table or bucket>/<state path>` and the holder id is Terraform's lock ID.
_Key = tuple[str, str, str]


class StateFileError(ValueError):
    """The state file exists but does not hold what this version wrote."""


class StateFileRefusedError(StateFileError):
    """The state file path names something this program must not overwrite."""


# Used when the caller does not say its interval (the default `interval`): too short a gap only
# restarts ages, it never lets one through.
_DEFAULT_GAP = allowed_gap(timedelta(seconds=60))


def check_state_file(path: str) -> str | None:
    """One line saying why `path` must not be used as the state file, or None if it may.

    It may be missing (or a dangling link: the atomic rename replaces the link itself),
    empty, or a state file this program wrote. Anything else would be overwritten by the
    first save: a device (`/dev/null`), a directory, the config file, another program's data.
    """
    try:
        info = os.stat(path)  # follows a symlink: what matters is what it names
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"state_file {path}: cannot be checked: {exc.strerror or exc}"
    if not stat.S_ISREG(info.st_mode):
        return f"state_file {path}: not a regular file; refusing to use it"
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        return f"state_file {path}: cannot be read: {exc.strerror or exc}"
    if not raw.strip():
        return None
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if not _written_by_us(document):
        return (
            f"state_file {path}: not a tfc-watchdog state file (no "
            f'"format": "{STATE_FORMAT}"); refusing to overwrite it'
        )
    return None


def _written_by_us(document: Any) -> bool:
    if not isinstance(document, dict):
        return False
    if "format" in document:
        return bool(document["format"] == STATE_FORMAT)
    # The first format had no marker: exactly these three keys, version 1.
    return document.get("version") == _OLD_VERSION and set(document) <= {
        "version",
        "locks",
        "actions",
    }


class Memory:
    """First-seen and last-seen times and sightings of locks, and the actions sent."""

    def __init__(self, path: str | None = None, *, clock: Clock | None = None) -> None:
        self._path = path
        self._clock: Clock = clock or SystemClock()
        self._locks: dict[_Key, _LockEntry] = {}
        self._actions: list[ActionRecord] = []
        # What the notifier sent, so a restart repeats no message: an opaque key (target,
        # event, finding, holder) -> string fields (see watchdog/notify.py).
        self._notified: dict[str, dict[str, str]] = {}
        # Notices given before a first action (rule `notice`): "workspace|holder|run" -> when
        # (the server's clock, ISO 8601). A new holder or run is a new key: the notice lapses.
        self._notices: dict[str, str] = {}
        # update() calls in this process: a lock seen by the previous one was watched without
        # a missed cycle, whatever the server's clock says happened meanwhile.
        self._cycles = 0
        # (source, organization) -> the update() that last had a full read of it.
        self._last_full_read: dict[tuple[str, str], int] = {}

    # --- loading and saving -----------------------------------------------------------------

    @classmethod
    def load(cls, path: str | None, *, clock: Clock | None = None) -> Memory:
        """Read `path`; a missing file gives an empty memory, and so (with a warning) does a
        state file whose content is damaged. Raises StateFileRefusedError when `path` is not
        something this program may overwrite (see check_state_file)."""
        memory = cls(path, clock=clock)
        if path is None:
            return memory
        problem = check_state_file(path)
        if problem is not None:
            raise StateFileRefusedError(problem)
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
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
        if not text.strip():
            log.info("state file empty, starting with empty memory", path=path)
            return memory
        now = memory._now()
        try:
            document = json.loads(text)
            if document.get("format") != STATE_FORMAT:
                memory._actions = _parse_old(document, now)
                log.warning(
                    "state file has the previous format; lock ages restart (it did not "
                    "record when each lock was last seen), recent actions are kept",
                    path=path,
                    version=document.get("version"),
                )
            else:
                memory._locks, memory._actions = _parse(document, now)
                memory._notified = _parse_notified(document.get("notifications", {}), path)
                memory._notices = _parse_notices(document.get("notices", {}), path)
        except (StateFileError, KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning(
                "state file corrupt, starting with empty memory; lock ages restart",
                path=path,
                error=str(exc) or type(exc).__name__,
            )
            memory._locks, memory._actions = {}, []
            return memory
        memory._note_interrupted()
        return memory

    def _note_interrupted(self) -> None:
        """Intents never completed: the process stopped between writing the intent and
        recording the answer. The server may have acted; they stay counted."""
        for record in self._actions:
            if record.outcome is None:
                record.outcome = Outcome.UNKNOWN.value
                log.warning(
                    "an action was sent (or about to be) when the process stopped; its outcome "
                    "is unknown and it counts against the budget",
                    action=record.action,
                    source=record.source,
                    workspace_id=record.workspace_id,
                    at=record.at.wall.isoformat(),
                )

    def save(self) -> bool:
        """Write the state file atomically: a crash leaves the old file or the new, never half.

        Returns whether it was written (True without a path: there is nothing to write). A
        failed write is logged, not raised: the in-memory state stays right and the next
        cycle tries again; a lost write only costs ages after a restart.
        """
        if self._path is None:
            return True
        problem = _unsafe_to_replace(self._path)
        if problem is not None:
            log.error("refusing to write the state file", path=self._path, error=problem)
            return False
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
            return False
        finally:
            if temp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp_name)
        return True

    def _to_document(self) -> dict[str, Any]:
        now = self._now()
        locks: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        for (source, workspace_id, holder_id), entry in sorted(self._locks.items()):
            locks.setdefault(source, {}).setdefault(workspace_id, {})[holder_id] = {
                "organization": entry.organization,
                "first_seen": entry.first_seen.isoformat(),
                "sightings": entry.sightings,
                "last_seen_local": entry.last_seen.wall.isoformat(),
                "last_seen": entry.last_seen_at.isoformat(),
            }
        actions = []
        for record in self._actions:
            # The record's age on the clock that cannot jump, written as a wall time: a step
            # of the wall clock since the record was made neither ages nor rejuvenates it.
            at = now.wall - timedelta(seconds=max(0.0, now.ticks - record.at.ticks))
            actions.append(
                {
                    "id": record.id,
                    "action": record.action,
                    "source": record.source,
                    "workspace_id": record.workspace_id,
                    "outcome": record.outcome,
                    "at_local": at.isoformat(),
                }
            )
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "locks": locks,
            "actions": actions,
            "notifications": {key: dict(entry) for key, entry in sorted(self._notified.items())},
            "notices": dict(sorted(self._notices.items())),
        }

    # --- notices before a first action ------------------------------------------------------

    def notice_at(self, workspace_id: str, holder_id: str, run_id: str) -> datetime | None:
        """When a notice was given for this lock (same holder, same run), on the server's
        clock; None if none was."""
        value = self._notices.get(_notice_key(workspace_id, holder_id, run_id))
        return None if value is None else _parse_time(value)

    def note_notice(self, workspace_id: str, holder_id: str, run_id: str, at: datetime) -> None:
        self._notices.setdefault(_notice_key(workspace_id, holder_id, run_id), at.isoformat())

    def prune_notices(self, observations: Sequence[Observation]) -> None:
        """Drop the notices whose lock is gone or changed hands (or whose run ended) in a
        complete read: they lapse, and a new lock needs a new notice. A backend lock's notice
        is keyed by its store and path and its lock ID (`backend_lock_key`): a new lock ID on
        the same path is a new lock."""
        if not self._notices:
            # The usual case, every cycle: nothing to prune, so no need to gather the ids of
            # every workspace read (tens of thousands in a large organization).
            return
        current: dict[str, set[str]] = {}
        read: set[str] = set()
        # Backend stores ("<store>/<path>" ids): those read completely this cycle, and those
        # some observation read only in part (their notices are kept: a lock not listed may
        # be in the part that failed).
        stores_read: set[str] = set()
        stores_partial: set[str] = set()
        for observation in observations:
            if observation.source is not Source.TFC:
                store = f"{observation.organization}/"
                (stores_read if observation.complete else stores_partial).add(store)
                for lock in observation.backend_locks:
                    workspace_id, holder = backend_lock_key(lock)
                    current.setdefault(workspace_id, set()).add(
                        _notice_key(workspace_id, holder, "")
                    )
                continue
            if not observation.complete:
                continue
            read |= observation.ids_read
            for ws in observation.workspaces:
                current.setdefault(ws.id, set()).add(_notice_key(*ws.notice_key))

        def was_read(workspace_id: str) -> bool:
            if workspace_id in read:
                return True
            return any(workspace_id.startswith(s) for s in stores_read) and not any(
                workspace_id.startswith(s) for s in stores_partial
            )

        for key in list(self._notices):
            workspace_id = key.partition("|")[0]
            if was_read(workspace_id) and key not in current.get(workspace_id, set()):
                del self._notices[key]

    # --- what the notifier sent -----------------------------------------------------------

    def notified(self) -> dict[str, dict[str, str]]:
        """Every message record (a copy): key -> fields."""
        return {key: dict(entry) for key, entry in self._notified.items()}

    def note_notified(self, key: str, entry: dict[str, str]) -> None:
        self._notified[key] = dict(entry)

    def forget_notified(self, key: str) -> None:
        self._notified.pop(key, None)

    def _now(self) -> _Stamp:
        return _Stamp(self._clock.wall(), self._clock.ticks())

    # --- locks ------------------------------------------------------------------------------

    def update(
        self,
        observations: Sequence[Observation],
        now: datetime,
        *,
        max_gap: timedelta = _DEFAULT_GAP,
    ) -> list[ClearedLock]:
        """Record this cycle's locks: first-seen for new ones, one more sighting for each.
        Returns the locks found gone this cycle (each once: its entry is dropped).

        `now` is the cycle's (server) time, on which ages are measured. A lock last seen
        longer than `max_gap` ago (on the watchdog's own clock) starts over as if new: the
        watchdog did not watch it meanwhile, so it cannot say it is the same lock.

        Entries whose lock is gone are dropped only for organizations whose read was complete:
        a partial read says nothing about the workspaces it did not see, and forgetting their
        ages would needlessly delay action. Workspaces that were read (and parsed) are always
        authoritative for themselves.
        """
        stamp = self._now()
        self._cycles += 1
        seen: set[_Key] = set()
        cleared: list[ClearedLock] = []
        for observation in observations:
            scope = (observation.source.value, observation.organization)
            previous_full = self._last_full_read.get(scope)
            # Locks only a full read sees (user/team locks, run locks on workspaces the fast
            # path does not list) are watched from one full read to the next; the fast reads
            # between do not look at them (Observation.full_read_every). A run lock the fast
            # path lists is sighted by every read, fast or full: its gap stays the cycles'.
            full_walk_gap = max_gap
            if not observation.fast and observation.full_read_every:
                full_walk_gap = max(max_gap, allowed_gap(observation.full_read_every))
            for key, activity, sighted, by_full_reads in _held_locks(observation):
                if key in seen:
                    continue
                seen.add(key)
                if not sighted:
                    continue
                limit = full_walk_gap if by_full_reads else max_gap
                entry = self._locks.get(key)
                if entry is None:
                    self._locks[key] = _LockEntry(
                        observation.organization, now, 1, stamp, now, self._cycles
                    )
                    continue
                gap = _gap(entry.last_seen, stamp)
                unbroken = entry.last_cycle == self._cycles - 1 or (
                    # Seen by the previous full read of its organization: only fast reads,
                    # which do not look at it, came between.
                    not observation.fast
                    and previous_full is not None
                    and entry.last_cycle == previous_full
                )
                if not unbroken:
                    # Cycles were missed (failed reads, a restart, `run --once` from cron):
                    # nobody looked in between, so the server's clock is a witness too. Within
                    # an unbroken run of cycles it is not: it may jump, or (the simulator) run
                    # faster than the watchdog's.
                    gap = max(gap, now - entry.last_seen_at)
                if gap > limit:
                    log.info(
                        "lock not watched continuously; its observed age restarts",
                        source=key[0],
                        workspace_id=key[1],
                        holder_id=key[2],
                        gap_seconds=round(gap.total_seconds(), 1),
                        allowed_seconds=limit.total_seconds(),
                    )
                    entry.first_seen = now
                    entry.sightings = 1
                    entry.activity = None
                else:
                    entry.sightings += 1
                    if activity is not None and activity > entry.first_seen:
                        # A state version created while the lock was held: its holder is alive.
                        # A time ahead of the cycle's clock counts as now.
                        entry.activity = min(activity, now)
                entry.last_seen_at = now
                entry.last_cycle = self._cycles
                entry.last_seen = stamp
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
                # A fast read lists only some workspaces: one absent from it is not unlocked.
                gone_from_complete_read = (
                    observation.complete
                    and not observation.fast
                    and entry.organization == observation.organization
                    and key[1] not in observation.unreadable
                )
                if gone_from_complete_read or key[1] in read_ids:
                    del self._locks[key]
                    cleared.append(self._cleared(key, entry))
        for observation in observations:
            if not observation.fast:
                scope = (observation.source.value, observation.organization)
                self._last_full_read[scope] = self._cycles
        self._prune_actions(stamp)
        return cleared

    def _cleared(self, key: _Key, entry: _LockEntry) -> ClearedLock:
        source, workspace_id, holder_id = key
        # Our POSTs come after the update() of their cycle, so one made since the lock's last
        # sighting is stamped later than it (both on the watchdog's own clock).
        ours = any(
            record.source == source
            and record.workspace_id == workspace_id
            and record.at.ticks >= entry.last_seen.ticks
            and record.outcome not in _DID_NOTHING
            # A run comment (a notice) clears nothing.
            and record.action != RUN_COMMENT
            for record in self._actions
        )
        return ClearedLock(
            source=source,
            workspace_id=workspace_id,
            holder_id=holder_id,
            age=max(timedelta(0), entry.last_seen_at - entry.first_seen),
            by_watchdog=ours,
        )

    def first_seen(
        self, workspace_id: str, holder_id: str, source: Source = Source.TFC
    ) -> datetime | None:
        """Where the lock's observed age starts: its first sighting, or the last sign of
        life of its holder since then (see `last_activity`)."""
        entry = self._locks.get((source.value, workspace_id, holder_id))
        if entry is None:
            return None
        return max(entry.first_seen, entry.activity or entry.first_seen)

    def last_activity(
        self, workspace_id: str, holder_id: str, source: Source = Source.TFC
    ) -> datetime | None:
        """The workspace's `latest-change-at` when it moved while this lock was held."""
        entry = self._locks.get((source.value, workspace_id, holder_id))
        return None if entry is None else entry.activity

    def sightings(self, workspace_id: str, holder_id: str, source: Source = Source.TFC) -> int:
        """In how many update() calls (cycles) this exact lock was seen without a gap; 0 if
        never."""
        entry = self._locks.get((source.value, workspace_id, holder_id))
        return 0 if entry is None else entry.sightings

    def __len__(self) -> int:
        return len(self._locks)

    # --- action budget ----------------------------------------------------------------------

    def begin_action(self, action: PlannedAction) -> ActionRecord | None:
        """Record the intent to send `action`, durably, before it is sent.

        Returns the record to complete with finish_action(), or None when the intent could
        not be written to the state file: then the action must not be sent (a POST nobody
        recorded could be sent again after a crash, past the budget)."""
        return self.begin_request(action.kind.value, action.source.value, action.workspace_id)

    def begin_request(self, kind: str, source: str, workspace_id: str) -> ActionRecord | None:
        """begin_action for a mutating request that is not a rung (a run comment): it counts
        against the same budgets and is written before it is sent, the same way."""
        record = ActionRecord(
            id=uuid.uuid4().hex,
            action=kind,
            source=source,
            workspace_id=workspace_id,
            outcome=None,
            at=self._now(),
        )
        self._actions.append(record)
        if self.save():
            return record
        self._actions.remove(record)
        return None

    def finish_action(self, record: ActionRecord, outcome: Outcome) -> None:
        """Complete an intent with what the server answered (best effort to disk: the intent
        already counts)."""
        record.outcome = outcome.value
        self.save()

    def actions_in_window(self, window: timedelta = BUDGET_WINDOW) -> int:
        """Actions sent (whatever their outcome) within the last `window`, on the watchdog's
        own clock."""
        now = self._clock.ticks()
        limit = window.total_seconds()
        return sum(1 for record in self._actions if now - record.at.ticks <= limit)

    @property
    def actions(self) -> tuple[ActionRecord, ...]:
        return tuple(self._actions)

    def _prune_actions(self, now: _Stamp) -> None:
        limit = ACTION_RETENTION.total_seconds()
        self._actions = [r for r in self._actions if now.ticks - r.at.ticks <= limit]


def _gap(last: _Stamp, now: _Stamp) -> timedelta:
    """Time between two sightings: the longer of the wall-clock and the tick measure, so
    neither a wall-clock step back nor a tick clock that stood still hides a gap."""
    seconds = max(now.ticks - last.ticks, (now.wall - last.wall).total_seconds())
    return timedelta.max if math.isinf(seconds) else timedelta(seconds=seconds)


def _unsafe_to_replace(path: str) -> str | None:
    """Why the atomic rename must not replace `path` now, or None."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be checked: {exc.strerror or exc}"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    return None


def _held_locks(
    observation: Observation,
) -> Iterator[tuple[_Key, datetime | None, bool, bool]]:
    """Each held lock's key, with its holder's sign of life (user/team locks of TFC only: a
    run's lock ends with its run, and the S3 backend has no such field), whether this
    read counts as a sighting of it, and whether only full reads sight it (a user/team
    lock of TFC, or a run lock on a workspace the fast path does not list: its gap is the
    full reads', not the cycles').

    A fast-path read sees only the workspaces it listed: a run-held lock there is a
    sighting; a user/team lock there is present (not released) but not a sighting, since
    the fast path is not what watches user/team locks (their sightings and gaps are those of
    the full reads); the workspaces it carried from the last full read are not read at all.
    """
    source = observation.source.value
    for workspace in observation.workspaces:
        if workspace.id in observation.unreadable:
            continue
        if observation.fast and workspace.id not in observation.listed_ids:
            continue
        holder = workspace.holder
        if workspace.locked and holder is not None:
            alive = holder.type in (HolderType.USER, HolderType.TEAM)
            key = (source, workspace.id, holder.id)
            sighted = not (observation.fast and holder.type is not HolderType.RUN)
            # The fast path lists a workspace only while its current run is not final: a run
            # lock on any other (its run ended without letting go) is sighted by full reads
            # only, as a user/team lock is.
            current = workspace.current_run
            fast_path_lists = current is not None and not current.is_final
            by_full_reads = alive or not fast_path_lists
            yield key, workspace.latest_change_at if alive else None, sighted, by_full_reads
    for lock in observation.backend_locks:
        if lock.problem is None:
            workspace_id, holder_id = backend_lock_key(lock)
            yield (source, workspace_id, holder_id), None, True, False


def _loaded_stamp(value: Any, now: _Stamp, *, future_is_gap: bool) -> _Stamp:
    """A wall time read from the file, placed on this process's tick clock.

    A time in the future means the wall clock was stepped back since it was written. For a
    budget record it counts as made now (it blocks for at most one window of real time); for
    a lock's last sighting it is a gap (the watchdog cannot vouch for the time between)."""
    wall = _parse_time(value)
    age = (now.wall - wall).total_seconds()
    if age < 0:
        if future_is_gap and -age > GAP_SLACK.total_seconds():
            return _Stamp(wall, float("-inf"))
        return _Stamp(now.wall, now.ticks)
    return _Stamp(wall, now.ticks - age)


def _parse(document: Any, now: _Stamp) -> tuple[dict[_Key, _LockEntry], list[ActionRecord]]:
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
                    organization,
                    _parse_time(raw["first_seen"]),
                    sightings,
                    _loaded_stamp(raw["last_seen_local"], now, future_is_gap=True),
                    # Written by every version that wrote `last_seen_local`'s format; a file
                    # without it gets the first sighting, so the server's clock still counts.
                    _parse_time(raw.get("last_seen", raw["first_seen"])),
                )
    actions = []
    for raw in raw_actions:
        outcome = raw["outcome"]
        if outcome is not None:
            Outcome(outcome)  # ValueError for an outcome this version does not know
        fields = (raw["id"], raw["action"], raw["source"], raw["workspace_id"])
        if not all(isinstance(value, str) for value in fields):
            raise StateFileError("an action's id, action, source and workspace_id are strings")
        actions.append(
            ActionRecord(
                *fields,
                outcome=outcome,
                at=_loaded_stamp(raw["at_local"], now, future_is_gap=False),
            )
        )
    return locks, actions


def _parse_notified(raw: Any, path: str) -> dict[str, dict[str, str]]:
    """The notifier's records; a damaged section costs only itself (at worst a message is
    sent again), never the lock ages and the budget beside it."""
    if isinstance(raw, dict) and all(
        isinstance(key, str)
        and isinstance(entry, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in entry.items())
        for key, entry in raw.items()
    ):
        return {key: dict(entry) for key, entry in raw.items()}
    log.warning("state file: notification records unreadable, dropped", path=path)
    return {}


def _notice_key(workspace_id: str, holder_id: str, run_id: str) -> str:
    return f"{workspace_id}|{holder_id}|{run_id}"


def _parse_notices(raw: Any, path: str) -> dict[str, str]:
    """The notices given; a damaged section is dropped alone (a notice is given again, which
    only delays an action)."""
    try:
        if isinstance(raw, dict):
            for value in raw.values():
                _parse_time(value)
            return {str(key): str(value) for key, value in raw.items()}
    except (TypeError, ValueError, StateFileError):
        pass
    log.warning("state file: notices unreadable, dropped", path=path)
    return {}


def _parse_old(document: Any, now: _Stamp) -> list[ActionRecord]:
    """The previous format's actions (its lock entries have no last sighting: dropped).

    It recorded only successful POSTs, as bare times; they are kept as `done` records."""
    if not isinstance(document, dict) or document.get("version") != _OLD_VERSION:
        raise StateFileError(f"unsupported version {document.get('version')!r}")
    raw_actions = document.get("actions", [])
    if not isinstance(raw_actions, list):
        raise StateFileError("`actions` must be a list")
    return [
        ActionRecord(
            id=uuid.uuid4().hex,
            action="unrecorded",
            source="unrecorded",
            workspace_id="unrecorded",
            outcome=Outcome.DONE.value,
            at=_loaded_stamp(value, now, future_is_gap=False),
        )
        for value in raw_actions
    ]


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
