"""Memory: first-seen lock times, sightings, the action window, and the state file."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from watchdog.memory import Memory
from watchdog.model import (
    BackendLock,
    Holder,
    HolderType,
    Observation,
    Source,
    TerraformLockInfo,
    Workspace,
)

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
ALICE = Holder(HolderType.USER, "user-alice", "alice")
BOB = Holder(HolderType.USER, "user-bob", "bob")


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
        server_now=T0,
        workspaces=workspaces,
        complete=complete,
        **kw,  # type: ignore[arg-type]
    )


def test_first_seen_is_recorded_once_and_kept_across_cycles() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1"))], T0)
    memory.update([obs(ws("ws-1"))], T0 + timedelta(hours=1))
    assert memory.first_seen("ws-1", "user-alice") == T0
    assert memory.first_seen("ws-1", "user-bob") is None
    assert memory.first_seen("ws-2", "user-alice") is None


def test_sightings_count_cycles_not_appearances() -> None:
    memory = Memory()
    assert memory.sightings("ws-1", "user-alice") == 0
    # The same lock twice in one cycle (e.g. a repeated page) is still one sighting.
    memory.update([obs(ws("ws-1"), ws("ws-1"))], T0)
    assert memory.sightings("ws-1", "user-alice") == 1
    memory.update([obs(ws("ws-1"))], T0 + timedelta(minutes=1))
    memory.update([obs(ws("ws-1"))], T0 + timedelta(minutes=2))
    assert memory.sightings("ws-1", "user-alice") == 3


def test_a_different_holder_is_a_new_lock() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1", ALICE))], T0)
    memory.update([obs(ws("ws-1", ALICE))], T0 + timedelta(minutes=1))
    later = T0 + timedelta(hours=3)
    memory.update([obs(ws("ws-1", BOB))], later)
    assert memory.first_seen("ws-1", "user-bob") == later
    assert memory.sightings("ws-1", "user-bob") == 1
    # Alice's lock is gone: if she locks again it is a new lock with a new age.
    assert memory.first_seen("ws-1", "user-alice") is None


def test_a_released_lock_is_forgotten_after_a_complete_read() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1"))], T0)
    memory.update([obs(ws("ws-1", holder=None))], T0 + timedelta(minutes=1))
    assert memory.first_seen("ws-1", "user-alice") is None
    memory.update([obs(ws("ws-1"))], T0 + timedelta(minutes=2))
    assert memory.first_seen("ws-1", "user-alice") == T0 + timedelta(minutes=2)


def test_an_unseen_lock_is_forgotten_when_its_organization_was_read_completely() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1"))], T0)
    memory.update([obs()], T0 + timedelta(minutes=1))
    assert memory.first_seen("ws-1", "user-alice") is None


def test_an_incomplete_read_does_not_forget_locks_it_did_not_see() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1"), ws("ws-2"))], T0)
    memory.update([obs(complete=False, error="page 2 failed")], T0 + timedelta(minutes=1))
    assert memory.first_seen("ws-1", "user-alice") == T0
    assert memory.first_seen("ws-2", "user-alice") == T0


def test_an_incomplete_read_still_forgets_a_lock_on_a_workspace_it_did_read() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1"), ws("ws-2"))], T0)
    memory.update(
        [obs(ws("ws-1", holder=None), complete=False, error="page 2 failed")],
        T0 + timedelta(minutes=1),
    )
    assert memory.first_seen("ws-1", "user-alice") is None
    assert memory.first_seen("ws-2", "user-alice") == T0


def test_a_complete_read_of_one_organization_keeps_the_locks_of_another() -> None:
    memory = Memory()
    memory.update(
        [obs(ws("ws-1", org="acme"), org="acme"), obs(ws("ws-9", org="beta"), org="beta")], T0
    )
    memory.update(
        [obs(org="acme"), obs(org="beta", complete=False, error="timeout")],
        T0 + timedelta(minutes=1),
    )
    assert memory.first_seen("ws-1", "user-alice") is None
    assert memory.first_seen("ws-9", "user-alice") == T0


def test_an_unreadable_workspace_keeps_its_age() -> None:
    memory = Memory()
    memory.update([obs(ws("ws-1"))], T0)
    memory.update([obs(unreadable=frozenset({"ws-1"}))], T0 + timedelta(minutes=1))
    assert memory.first_seen("ws-1", "user-alice") == T0


def test_locks_are_keyed_by_source() -> None:
    info = TerraformLockInfo(
        id="lock-uuid",
        operation="OperationTypeApply",
        who="ci@runner",
        version="1.9.0",
        created=T0,
        path="prod/terraform.tfstate",
    )
    backend = BackendLock(
        source=Source.DYNAMODB,
        store="tf-locks",
        path="prod/terraform.tfstate",
        info=info,
        token="raw",
    )
    observation = Observation(
        source=Source.DYNAMODB, organization="tf-locks", server_now=T0, backend_locks=(backend,)
    )
    memory = Memory()
    memory.update([observation], T0)
    key = "tf-locks/prod/terraform.tfstate"
    assert memory.first_seen(key, "lock-uuid", Source.DYNAMODB) == T0
    assert memory.first_seen(key, "lock-uuid") is None  # not a TFC lock
    # A complete TFC read does not touch DynamoDB locks.
    memory.update([obs(), observation], T0 + timedelta(minutes=1))
    assert memory.sightings(key, "lock-uuid", Source.DYNAMODB) == 2


def test_state_survives_save_and_load(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    memory = Memory.load(path)
    memory.update([obs(ws("ws-1"), ws("team-ws", Holder(HolderType.TEAM, "team-x")))], T0)
    memory.update(
        [obs(ws("ws-1"), ws("team-ws", Holder(HolderType.TEAM, "team-x")))],
        T0 + timedelta(minutes=1),
    )
    memory.record_action(T0 + timedelta(minutes=1))
    memory.save()

    restored = Memory.load(path)
    assert restored.first_seen("ws-1", "user-alice") == T0
    assert restored.first_seen("team-ws", "team-x") == T0
    assert restored.sightings("ws-1", "user-alice") == 2
    assert restored.actions_since(T0) == 1
    document = json.loads(Path(path).read_text())
    assert document["version"] == 1
    assert set(document) == {"version", "locks", "actions"}


def test_save_replaces_the_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old content")
    memory = Memory.load(str(path))
    memory.update([obs(ws("ws-1"))], T0)
    memory.save()
    memory.save()
    assert os.listdir(tmp_path) == ["state.json"]
    assert json.loads(path.read_text())["locks"]["tfc"]["ws-1"]["user-alice"]["sightings"] == 1


def test_a_failed_save_is_logged_not_raised_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "state.json"
    memory = Memory.load(str(path))
    memory.update([obs(ws("ws-1"))], T0)
    with structlog.testing.capture_logs() as logs:
        memory.save()
    assert [e["event"] for e in logs if e["log_level"] == "error"] == [
        "could not write the state file"
    ]
    assert os.listdir(tmp_path) == []
    assert memory.first_seen("ws-1", "user-alice") == T0


def test_save_without_a_path_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    memory = Memory.load(None)
    memory.update([obs(ws("ws-1"))], T0)
    memory.save()
    assert os.listdir(tmp_path) == []


def test_a_missing_file_gives_an_empty_memory_and_says_so(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        memory = Memory.load(str(tmp_path / "nope.json"))
    assert len(memory) == 0
    assert any("not found" in e["event"] for e in logs)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param("[]", id="not-an-object"),
        pytest.param('{"version": 99, "locks": {}, "actions": []}', id="unknown-version"),
        pytest.param('{"version": 1, "locks": [], "actions": []}', id="locks-not-object"),
        pytest.param(
            '{"version": 1, "locks": {"tfc": {"ws-1": {"user-a": {"organization": "acme",'
            ' "first_seen": "2024-06-01T12:00:00", "sightings": 1}}}}, "actions": []}',
            id="naive-timestamp",
        ),
        pytest.param(
            '{"version": 1, "locks": {"tfc": {"ws-1": {"user-a": {"organization": "acme",'
            ' "first_seen": "2024-06-01T12:00:00+00:00"}}}}, "actions": []}',
            id="missing-sightings",
        ),
        pytest.param('{"version": 1, "locks": {"gcs": {}}, "actions": []}', id="unknown-source"),
        pytest.param('{"version": 1, "locks": {}, "actions": [42]}', id="bad-action-time"),
        pytest.param(b"\xff\xfe\x00garbage", id="binary"),
    ],
)
def test_a_corrupt_file_gives_an_empty_memory_and_a_warning(
    tmp_path: Path, content: str | bytes
) -> None:
    path = tmp_path / "state.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with structlog.testing.capture_logs() as logs:
        memory = Memory.load(str(path))
    assert len(memory) == 0
    assert memory.actions_since(T0 - timedelta(days=365)) == 0
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert "lock ages restart" in warnings[0]["event"]
    assert warnings[0]["path"] == str(path)


def test_actions_are_counted_in_the_window_asked_for() -> None:
    memory = Memory()
    for minutes in (0, 10, 50, 70):
        memory.record_action(T0 + timedelta(minutes=minutes))
    now = T0 + timedelta(minutes=70)
    assert memory.actions_since(now - timedelta(hours=1)) == 3
    assert memory.actions_since(now) == 1
    assert memory.actions_since(now + timedelta(seconds=1)) == 0


def test_old_actions_are_pruned_but_the_last_hour_is_kept() -> None:
    memory = Memory()
    memory.record_action(T0)
    memory.record_action(T0 + timedelta(minutes=30))
    memory.update([], T0 + timedelta(hours=3))
    assert memory.actions_since(T0 - timedelta(days=1)) == 0
    memory.record_action(T0 + timedelta(hours=3))
    memory.record_action(T0 + timedelta(hours=3, minutes=59))
    assert memory.actions_since(T0 + timedelta(hours=2, minutes=59)) == 2


def test_the_action_window_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    memory = Memory.load(path)
    for minutes in (0, 5, 20):
        memory.record_action(T0 + timedelta(minutes=minutes))
    memory.save()
    restored = Memory.load(path)
    assert restored.actions_since(T0 + timedelta(minutes=1)) == 2
