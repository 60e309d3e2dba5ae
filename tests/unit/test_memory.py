"""Memory: first-seen lock times, sightings, the action window, and the state file."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from tests.support.builders import ALICE, BOB, NOW, H, M, backend_lock, planned_action
from tests.support.clock import FakeClock
from watchdog.memory import Memory, StateFileRefusedError, allowed_gap, check_state_file
from watchdog.model import (
    Holder,
    HolderType,
    Observation,
    Outcome,
    Source,
    Workspace,
)


def ws(wid: str, holder: Holder | None = ALICE, org: str = "acme") -> Workspace:
    return Workspace(
        organization=org, id=wid, name=f"name-{wid}", locked=holder is not None, holder=holder
    )


def obs(
    *workspaces: Workspace, org: str = "acme", complete: bool = True, **kw: object
) -> Observation:
    return Observation(
        source=Source.TFC,
        organization=org,
        server_now=NOW,
        workspaces=workspaces,
        complete=complete,
        **kw,  # type: ignore[arg-type]
    )


def test_first_seen_is_recorded_once_and_kept_across_cycles() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1"))], NOW)
    memory.update([obs(ws("ws-1"))], NOW + timedelta(hours=1))
    assert memory.first_seen("ws-1", "user-alice") == NOW
    assert memory.first_seen("ws-1", "user-bob") is None
    assert memory.first_seen("ws-2", "user-alice") is None


def test_sightings_count_cycles_not_appearances() -> None:
    memory = Memory()
    assert memory.sightings("ws-1", "user-alice") == 0
    # The same lock twice in one cycle (e.g. a repeated page) is still one sighting.
    memory.update([obs(ws("ws-1"), ws("ws-1"))], NOW)
    assert memory.sightings("ws-1", "user-alice") == 1
    memory.update([obs(ws("ws-1"))], NOW + timedelta(minutes=1))
    memory.update([obs(ws("ws-1"))], NOW + timedelta(minutes=2))
    assert memory.sightings("ws-1", "user-alice") == 3


def test_a_different_holder_is_a_new_lock() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1", ALICE))], NOW)
    memory.update([obs(ws("ws-1", ALICE))], NOW + timedelta(minutes=1))
    later = NOW + timedelta(hours=3)
    memory.update([obs(ws("ws-1", BOB))], later)
    assert memory.first_seen("ws-1", "user-bob") == later
    assert memory.sightings("ws-1", "user-bob") == 1
    # Alice's lock is gone: if she locks again it is a new lock with a new age.
    assert memory.first_seen("ws-1", "user-alice") is None


def test_a_released_lock_is_forgotten_after_a_complete_read() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1"))], NOW)
    memory.update([obs(ws("ws-1", holder=None))], NOW + timedelta(minutes=1))
    assert memory.first_seen("ws-1", "user-alice") is None
    memory.update([obs(ws("ws-1"))], NOW + timedelta(minutes=2))
    assert memory.first_seen("ws-1", "user-alice") == NOW + timedelta(minutes=2)


def test_an_unseen_lock_is_forgotten_when_its_organization_was_read_completely() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1"))], NOW)
    memory.update([obs()], NOW + timedelta(minutes=1))
    assert memory.first_seen("ws-1", "user-alice") is None


def test_an_incomplete_read_does_not_forget_locks_it_did_not_see() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1"), ws("ws-2"))], NOW)
    memory.update([obs(complete=False, error="page 2 failed")], NOW + timedelta(minutes=1))
    assert memory.first_seen("ws-1", "user-alice") == NOW
    assert memory.first_seen("ws-2", "user-alice") == NOW


def test_an_incomplete_read_still_forgets_a_lock_on_a_workspace_it_did_read() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1"), ws("ws-2"))], NOW)
    memory.update(
        [obs(ws("ws-1", holder=None), complete=False, error="page 2 failed")],
        NOW + timedelta(minutes=1),
    )
    assert memory.first_seen("ws-1", "user-alice") is None
    assert memory.first_seen("ws-2", "user-alice") == NOW


def test_a_complete_read_of_one_organization_keeps_the_locks_of_another() -> None:
    memory = Memory()
    memory.update(
        [obs(ws("ws-1", org="acme"), org="acme"), obs(ws("ws-9", org="beta"), org="beta")], NOW
    )
    memory.update(
        [obs(org="acme"), obs(org="beta", complete=False, error="timeout")],
        NOW + timedelta(minutes=1),
    )
    assert memory.first_seen("ws-1", "user-alice") is None
    assert memory.first_seen("ws-9", "user-alice") == NOW


def test_an_unreadable_workspace_keeps_its_age() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1"))], NOW)
    memory.update([obs(unreadable=frozenset({"ws-1"}))], NOW + timedelta(minutes=1))
    assert memory.first_seen("ws-1", "user-alice") == NOW


def test_locks_are_keyed_by_source() -> None:
    backend = backend_lock(
        "prod/terraform.tfstate", created=NOW, source=Source.DYNAMODB, store="tf-locks"
    )
    observation = Observation(
        source=Source.DYNAMODB, organization="tf-locks", server_now=NOW, backend_locks=(backend,)
    )
    memory = Memory()
    memory.update([observation], NOW)
    key = "tf-locks/prod/terraform.tfstate"
    assert memory.first_seen(key, backend.info.id, Source.DYNAMODB) == NOW
    assert memory.first_seen(key, backend.info.id) is None  # not a TFC lock
    # A complete TFC read does not touch DynamoDB locks.
    memory.update([obs(), observation], NOW + timedelta(minutes=1))
    assert memory.sightings(key, backend.info.id, Source.DYNAMODB) == 2


def test_state_survives_save_and_load(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    memory = Memory.load(path)
    memory.update([obs(ws("ws-1"), ws("team-ws", Holder(HolderType.TEAM, "team-x")))], NOW)
    memory.update(
        [obs(ws("ws-1"), ws("team-ws", Holder(HolderType.TEAM, "team-x")))],
        NOW + timedelta(minutes=1),
    )
    record = memory.begin_action(planned_action())
    assert record is not None
    memory.finish_action(record, Outcome.DONE)

    restored = Memory.load(path)
    assert restored.first_seen("ws-1", "user-alice") == NOW
    assert restored.first_seen("team-ws", "team-x") == NOW
    assert restored.sightings("ws-1", "user-alice") == 2
    assert restored.actions_in_window() == 1
    document = json.loads(Path(path).read_text())
    assert document["format"] == "tfc-watchdog-state"
    assert document["version"] == 2
    assert set(document) == {"format", "version", "locks", "actions", "notifications", "notices"}
    [action] = document["actions"]
    assert (action["action"], action["workspace_id"], action["outcome"]) == (
        "force_unlock",
        "ws-1",
        "done",
    )


def test_save_replaces_the_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    Memory.load(str(path)).save()
    memory = Memory.load(str(path))
    memory.update([obs(ws("ws-1"))], NOW)
    memory.save()
    memory.save()
    assert os.listdir(tmp_path) == ["state.json"]
    assert json.loads(path.read_text())["locks"]["tfc"]["ws-1"]["user-alice"]["sightings"] == 1


def test_a_failed_save_is_logged_not_raised_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "state.json"
    memory = Memory.load(str(path))
    memory.update([obs(ws("ws-1"))], NOW)
    with structlog.testing.capture_logs() as logs:
        assert memory.save() is False
    assert [e["event"] for e in logs if e["log_level"] == "error"] == [
        "could not write the state file"
    ]
    assert os.listdir(tmp_path) == []
    assert memory.first_seen("ws-1", "user-alice") == NOW


def test_save_without_a_path_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    memory = Memory.load(None)
    memory.update([obs(ws("ws-1"))], NOW)
    memory.save()
    assert os.listdir(tmp_path) == []


def test_a_missing_file_gives_an_empty_memory_and_says_so(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        memory = Memory.load(str(tmp_path / "nope.json"))
    assert len(memory) == 0
    assert any("not found" in e["event"] for e in logs)


def _v2(locks: str = "{}", actions: str = "[]") -> str:
    marker = '"format": "tfc-watchdog-state", "version": 2'
    return f'{{{marker}, "locks": {locks}, "actions": {actions}}}'


_LOCK = '"organization": "acme", "first_seen": "2024-06-01T12:00:00+00:00", "sightings": 1'


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(
            '{"format": "tfc-watchdog-state", "version": 99, "locks": {}, "actions": []}',
            id="unknown-version",
        ),
        pytest.param(_v2(locks="[]"), id="locks-not-object"),
        pytest.param(
            _v2(
                locks='{"tfc": {"ws-1": {"user-a": {"organization": "acme",'
                ' "first_seen": "2024-06-01T12:00:00", "sightings": 1,'
                ' "last_seen_local": "2024-06-01T12:00:00+00:00"}}}}'
            ),
            id="naive-timestamp",
        ),
        pytest.param(
            _v2(
                locks='{"tfc": {"ws-1": {"user-a": {"organization": "acme",'
                ' "first_seen": "2024-06-01T12:00:00+00:00",'
                ' "last_seen_local": "2024-06-01T12:00:00+00:00"}}}}'
            ),
            id="missing-sightings",
        ),
        pytest.param(
            _v2(locks='{"tfc": {"ws-1": {"user-a": {' + _LOCK + "}}}}"),
            id="missing-last-seen",
        ),
        pytest.param(_v2(locks='{"azurerm": {}}'), id="unknown-source"),
        pytest.param(_v2(actions="[42]"), id="bad-action"),
        pytest.param(
            _v2(
                actions='[{"id": "a", "action": "cancel", "source": "tfc", "workspace_id": "w",'
                ' "outcome": "exploded", "at_local": "2024-06-01T12:00:00+00:00"}]'
            ),
            id="unknown-outcome",
        ),
        pytest.param('{"version": 1, "locks": {}, "actions": [42]}', id="old-bad-action-time"),
    ],
)
def test_a_damaged_state_file_gives_an_empty_memory_and_a_warning(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with structlog.testing.capture_logs() as logs:
        memory = Memory.load(str(path))
    assert len(memory) == 0
    assert memory.actions_in_window(timedelta(days=365)) == 0
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert "lock ages restart" in warnings[0]["event"]
    assert warnings[0]["path"] == str(path)


# --- the state file path must be something this program wrote -------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(b'{"version": 99, "locks": {}, "actions": []}', id="no-marker"),
        pytest.param(b'{"format": "something-else", "version": 2}', id="other-marker"),
        pytest.param(b"dry_run: true\ntfc:\n  organizations: [acme]\n", id="a-yaml-config"),
        pytest.param(b"build-host-7\n", id="a-hostname"),
        pytest.param(b"\xff\xfe\x00garbage", id="binary"),
    ],
)
def test_a_file_this_program_did_not_write_is_refused_and_left_untouched(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    problem = check_state_file(str(path))
    assert problem is not None
    assert problem.startswith(f"state_file {path}: not a tfc-watchdog state file")
    assert "\n" not in problem
    with pytest.raises(StateFileRefusedError):
        Memory.load(str(path))
    assert path.read_bytes() == content


def test_a_special_file_or_a_directory_is_refused(tmp_path: Path) -> None:
    assert check_state_file("/dev/null") == (
        "state_file /dev/null: not a regular file; refusing to use it"
    )
    assert "not a regular file" in (check_state_file(str(tmp_path)) or "")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "not a regular file" in (check_state_file(str(fifo)) or "")
    link = tmp_path / "link.json"
    link.symlink_to(fifo)
    assert "not a regular file" in (check_state_file(str(link)) or "")
    with pytest.raises(StateFileRefusedError):
        Memory.load(str(link))


def test_a_special_file_that_appears_later_is_never_written_through(tmp_path: Path) -> None:
    link = tmp_path / "state.json"
    fifo = tmp_path / "fifo"  # a special file of the test's own, never a device of the host
    os.mkfifo(fifo)
    memory = Memory.load(str(link))  # missing at start-up: fine
    link.symlink_to(fifo)  # replaced by a link to a special file while running
    with structlog.testing.capture_logs() as logs:
        assert memory.save() is False
    assert link.is_symlink() and os.readlink(link) == str(fifo)
    assert [e["event"] for e in logs] == ["refusing to write the state file"]


@pytest.mark.parametrize("content", ["", "\n"])
def test_an_empty_file_may_be_used(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    assert check_state_file(str(path)) is None
    memory = Memory.load(str(path))
    assert len(memory) == 0
    assert memory.save() is True
    assert json.loads(path.read_text())["format"] == "tfc-watchdog-state"


def test_the_previous_format_is_read_with_ages_restarted_and_actions_kept(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "state.json"
    recent = (clock.wall() - timedelta(minutes=10)).isoformat()
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "locks": {"tfc": {"ws-1": {"user-alice": {**_OLD_LOCK}}}},
                "actions": [recent, (clock.wall() - timedelta(hours=3)).isoformat()],
            }
        )
    )
    assert check_state_file(str(path)) is None
    with structlog.testing.capture_logs() as logs:
        memory = Memory.load(str(path), clock=clock)
    assert len(memory) == 0  # it never said when each lock was last seen
    assert memory.actions_in_window() == 1
    assert any("previous format" in e["event"] for e in logs)
    memory.save()
    assert json.loads(path.read_text())["version"] == 2


_OLD_LOCK = {"organization": "acme", "first_seen": "2024-06-01T12:00:00+00:00", "sightings": 5}


# --- an observed age is only as long as the watchdog watched continuously -------------------

GAP = timedelta(minutes=2, seconds=30)  # allowed_gap(60s)


def sees(memory: Memory, at: datetime) -> None:
    """A cycle that reads alice's lock on ws-1 at `at` on the server's clock."""
    memory.update([obs(ws("ws-1"))], at, max_gap=GAP)


def watched(memory: Memory) -> tuple[datetime | None, int]:
    """Alice's lock on ws-1 as memory has it: when first seen, and in how many cycles."""
    return memory.first_seen("ws-1", "user-alice"), memory.sightings("ws-1", "user-alice")


def test_the_allowed_gap_is_two_intervals_and_a_little_slack() -> None:
    assert allowed_gap(timedelta(seconds=60)) == GAP
    assert allowed_gap(timedelta(minutes=5)) == timedelta(minutes=10, seconds=30)


def test_a_gap_longer_than_allowed_restarts_the_age_and_the_sightings() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    for minute in range(3):
        sees(memory, NOW + minute * M)
        clock.advance(M)
    assert watched(memory) == (NOW, 3)
    # The same holder, three hours later: released and taken again meanwhile, for all the
    # watchdog knows.
    clock.advance(3 * H)
    later = NOW + 3 * H + 3 * M
    with structlog.testing.capture_logs() as logs:
        sees(memory, later)
    assert watched(memory) == (later, 1)
    assert logs[0]["event"] == "lock not watched continuously; its observed age restarts"


def test_a_gap_within_the_allowed_one_keeps_the_age() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    sees(memory, NOW)
    clock.advance(GAP)
    sees(memory, NOW + GAP)
    assert watched(memory) == (NOW, 2)


def test_failed_reads_longer_than_the_gap_restart_the_age_without_a_state_file() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    sees(memory, NOW)
    sees(memory, NOW + M)
    for minute in range(2, 10):  # the reads fail: nothing is forgotten, nothing is seen
        clock.advance(M)
        memory.update([obs(complete=False)], NOW + minute * M, max_gap=GAP)
    assert watched(memory) == (NOW, 2)
    clock.advance(M)
    sees(memory, NOW + 10 * M)
    assert watched(memory) == (NOW + 10 * M, 1)


@pytest.mark.parametrize(
    "down",
    [
        pytest.param(3 * H, id="down-for-three-hours"),
        # `run --once` sees the lock; the lock is released; three hours pass on the server's
        # clock (the watchdog's own cannot tell a quick test from a long night); the same user
        # locks again. The next `run --once` must not see a three-hour-old lock.
        pytest.param(timedelta(seconds=5), id="seconds-on-the-watchdogs-clock"),
    ],
)
def test_a_restart_three_server_hours_later_restarts_the_age(
    tmp_path: Path, down: timedelta
) -> None:
    path = str(tmp_path / "state.json")
    clock = FakeClock()
    memory = Memory.load(path, clock=clock)
    sees(memory, NOW)
    memory.save()
    clock.advance(M)
    restarted = Memory.load(path, clock=clock)  # a quick restart keeps the age
    sees(restarted, NOW + M)
    assert watched(restarted) == (NOW, 2)
    restarted.save()
    clock.advance(down)
    again = Memory.load(path, clock=clock)
    sees(again, NOW + 3 * H)
    assert watched(again) == (NOW + 3 * H, 1)


def test_missed_cycles_across_hours_on_the_servers_clock_restart_the_age() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    sees(memory, NOW)
    clock.advance(timedelta(seconds=1))
    memory.update([obs(complete=False)], NOW + H, max_gap=GAP)
    clock.advance(timedelta(seconds=1))
    sees(memory, NOW + 3 * H)
    assert watched(memory) == (NOW + 3 * H, 1)


def test_an_unbroken_run_of_cycles_keeps_the_age_however_fast_the_servers_clock_runs() -> None:
    # The demo's simulator runs an hour a minute: the watchdog looked in every cycle, so the
    # lock was watched without a gap, and its age is the server's.
    clock = FakeClock()
    memory = Memory(clock=clock)
    for hour in range(3):
        sees(memory, NOW + hour * H)
        clock.advance(timedelta(seconds=1))
    assert watched(memory) == (NOW, 3)


def test_a_paused_process_is_a_gap_even_if_the_wall_clock_was_stepped_back() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    sees(memory, NOW)
    clock.advance(H)
    clock.step_wall(-H)  # the wall clock says no time passed
    sees(memory, NOW + H)
    assert watched(memory) == (NOW + H, 1)


def test_a_last_sighting_in_the_future_after_a_restart_is_a_gap(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    clock = FakeClock()
    memory = Memory.load(path, clock=clock)
    sees(memory, NOW)
    memory.save()
    clock.step_wall(-2 * H)  # stepped back while the process was down
    restored = Memory.load(path, clock=clock)
    sees(restored, NOW + M)
    assert watched(restored) == (NOW + M, 1)


# --- the action budget: every POST, recorded before it is sent, on the watchdog's clock -----


def sent(memory: Memory, count: int = 1) -> None:
    for _ in range(count):
        assert memory.begin_action(planned_action()) is not None


def test_actions_are_counted_in_the_window_asked_for() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    for minutes in (10, 40, 10, 10):  # sent at 0, 10, 50 and 60 minutes
        sent(memory)
        clock.advance(timedelta(minutes=minutes))
    # now = 70 minutes: the first one slid out of the hour
    assert memory.actions_in_window() == 3
    assert memory.actions_in_window(timedelta(minutes=10)) == 1
    assert memory.actions_in_window(timedelta(minutes=9)) == 0


def test_old_actions_are_pruned_but_the_last_hour_is_kept() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    sent(memory, 2)
    clock.advance(timedelta(hours=3))
    memory.update([], NOW)
    assert memory.actions_in_window(timedelta(days=1)) == 0
    sent(memory)
    clock.advance(timedelta(minutes=59))
    sent(memory)
    assert memory.actions_in_window() == 2


def test_the_action_window_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    clock = FakeClock()
    memory = Memory.load(path, clock=clock)
    for _ in range(3):
        sent(memory)
        clock.advance(timedelta(minutes=25))
    restored = Memory.load(path, clock=clock)
    assert restored.actions_in_window() == 2  # 75 and 50 minutes ago: one slid out


def test_an_intent_never_completed_counts_after_a_restart_as_unknown(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    memory = Memory.load(path)
    sent(memory)  # the process is killed before the answer is recorded
    assert json.loads(Path(path).read_text())["actions"][0]["outcome"] is None
    with structlog.testing.capture_logs() as logs:
        restored = Memory.load(path)
    assert restored.actions_in_window() == 1
    assert [r.outcome for r in restored.actions] == ["unknown"]
    assert [e["workspace_id"] for e in logs if e["log_level"] == "warning"] == ["ws-1"]


def test_a_wall_clock_step_forward_does_not_drop_the_budget() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    sent(memory, 2)
    clock.step_wall(timedelta(days=1))
    assert memory.actions_in_window() == 2


def test_a_wall_clock_step_forward_between_saves_does_not_drop_the_budget(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    clock = FakeClock()
    memory = Memory.load(path, clock=clock)
    sent(memory, 2)
    clock.step_wall(timedelta(days=1))
    memory.save()  # written as "just now" on the stepped clock
    assert Memory.load(path, clock=clock).actions_in_window() == 2


def test_a_budget_record_from_the_future_blocks_for_one_window_of_real_time(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "state.json")
    clock = FakeClock()
    clock.step_wall(timedelta(days=1))  # the clock ran a day ahead when these were sent
    memory = Memory.load(path, clock=clock)
    sent(memory, 2)
    clock.step_wall(-timedelta(days=1))  # corrected while the process was down
    restored = Memory.load(path, clock=clock)
    assert restored.actions_in_window() == 2  # counted as made now
    restored.save()
    clock.advance(timedelta(minutes=61))  # an hour of real time later they are out
    assert restored.actions_in_window() == 0
    assert Memory.load(path, clock=clock).actions_in_window() == 0


def test_the_servers_date_does_not_touch_the_budget() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    sent(memory, 2)
    memory.update([obs(ws("ws-1"))], NOW + timedelta(days=1))  # one list read dated +1 day
    assert memory.actions_in_window() == 2
    memory.update([obs(ws("ws-1"))], NOW)
    clock.advance(timedelta(minutes=61))
    assert memory.actions_in_window() == 0


def test_notification_records_survive_a_restart_and_a_damaged_section_costs_only_itself(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "state.json")
    memory = Memory(path)
    memory.note_notified("oncall|lock_stale|tfc|acme|ws-1|user-1", {"event": "lock_stale"})
    assert memory.save()
    assert Memory.load(path).notified() == {
        "oncall|lock_stale|tfc|acme|ws-1|user-1": {"event": "lock_stale"}
    }

    document = json.loads(Path(path).read_text())
    document["notifications"] = {"oncall|x": {"sent_at": 12}}
    document["actions"] = [
        {
            "id": "a1",
            "action": "force_unlock",
            "source": "tfc",
            "workspace_id": "ws-1",
            "outcome": "done",
            "at_local": datetime.now(UTC).isoformat(),
        }
    ]
    Path(path).write_text(json.dumps(document))
    damaged = Memory.load(path)
    assert damaged.notified() == {}
    assert damaged.actions_in_window() == 1  # the budget beside it is kept
