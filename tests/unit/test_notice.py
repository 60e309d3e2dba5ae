"""A rule's `notice`: the first action on a lock waits until a notice given for that very
lock (same holder, same run) is `notice` old on the server's clock; a new holder or a
release lapses it. decide is pure: the notice is recorded by the cycle (here, by hand)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.support.builders import NOW, H, M
from watchdog.decide import decide, plan_for_workspace
from watchdog.memory import Memory
from watchdog.model import (
    ActionKind,
    BackendLock,
    Holder,
    HolderType,
    Observation,
    Source,
    TerraformLockInfo,
    Workspace,
)
from watchdog.policy import Policy


def policy(notice: str | None) -> Policy:
    defaults: dict[str, object] = {"lock_stale_after": "1h", "actions": ["force_unlock"]}
    if notice is not None:
        defaults["notice"] = notice
    return Policy.model_validate({"tfc": {"organizations": ["acme"]}, "defaults": defaults})


def locked(holder: str = "bob") -> Workspace:
    return Workspace(
        organization="acme",
        id="ws-net",
        name="network-prod",
        locked=True,
        locked_reason="Locked by Terraform",
        holder=Holder(HolderType.USER, f"user-{holder}", holder),
    )


def watched(memory: Memory, workspace: Workspace, until: datetime) -> Observation:
    """The lock seen every 10 minutes from 2 hours before `until`."""
    observation = Observation(Source.TFC, "acme", until, workspaces=(workspace,))
    when = until - 120 * M
    while when <= until:
        memory.update([Observation(Source.TFC, "acme", when, workspaces=(workspace,))], when)
        when += 10 * M
    return observation


def plan_for(rules: Policy, memory: Memory, now: datetime) -> object:
    """What act.py's re-read would plan for the locked workspace at `now`."""
    return plan_for_workspace(
        locked(), organization_complete=True, policy=rules, memory=memory, now=now, identity=None
    )


def test_without_notice_a_stale_lock_is_planned_at_once() -> None:
    memory = Memory()
    observation = watched(memory, locked(), NOW)
    decision = decide([observation], policy(None), memory, NOW)
    assert [a.kind for a in decision.planned] == [ActionKind.FORCE_UNLOCK]
    assert decision.notices == ()
    assert decision.locks[0].action_at is None


def test_a_notice_first_then_the_action_once_the_period_has_passed() -> None:
    memory = Memory()
    rules = policy("30m")
    observation = watched(memory, locked(), NOW)

    first = decide([observation], rules, memory, NOW)
    assert first.planned == ()
    [notice] = first.notices
    assert notice.new and notice.action.kind is ActionKind.FORCE_UNLOCK
    assert notice.action_at == NOW + 30 * M
    assert first.locks[0].action_at == NOW + 30 * M
    assert any("notice given" in r.reason for r in first.restraints)

    memory.note_notice("ws-net", notice.holder_id, notice.run_id, NOW)
    later = NOW + 29 * M
    waiting = decide([watched(memory, locked(), later)], rules, memory, later)
    assert waiting.planned == ()
    assert [n.new for n in waiting.notices] == [False]
    assert plan_for(rules, memory, later) is None

    due = NOW + 30 * M
    acting = decide([watched(memory, locked(), due)], rules, memory, due)
    assert [a.kind for a in acting.planned] == [ActionKind.FORCE_UNLOCK]
    assert acting.notices == ()
    # act.py's re-read plans the same action under the same notice.
    assert plan_for(rules, memory, due) is not None


def test_a_new_holder_needs_a_new_notice_and_a_release_lapses_the_old_one() -> None:
    memory = Memory()
    rules = policy("30m")
    observation = watched(memory, locked("bob"), NOW)
    [notice] = decide([observation], rules, memory, NOW).notices
    memory.note_notice("ws-net", notice.holder_id, notice.run_id, NOW)

    # Bob released, alice took it: bob's notice does not cover alice's lock.
    later = NOW + 31 * M
    alice = watched(memory, locked("alice"), later)
    memory.prune_notices([alice])
    assert memory.notice_at("ws-net", "user-bob", "") is None
    decision = decide([alice], rules, memory, later)
    assert decision.planned == ()
    assert [n.new for n in decision.notices] == [True]


def test_an_incomplete_read_keeps_the_notice() -> None:
    memory = Memory()
    memory.note_notice("ws-net", "user-bob", "", NOW)
    memory.prune_notices([Observation(Source.TFC, "acme", NOW, complete=False)])
    assert memory.notice_at("ws-net", "user-bob", "") == NOW
    unlocked = Observation(Source.TFC, "acme", NOW, workspaces=(), listed_ids=frozenset({"ws-net"}))
    memory.prune_notices([unlocked])
    assert memory.notice_at("ws-net", "user-bob", "") is None


def test_notices_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    memory = Memory(path)
    memory.note_notice("ws-net", "user-bob", "", NOW)
    assert memory.save()
    assert Memory.load(path).notice_at("ws-net", "user-bob", "") == NOW


# --- backend locks (S3 `.tflock` objects here; DynamoDB, GCS and GitLab share the ladder) ---

BUCKET = "tf-state"
STATE = f"{BUCKET}/prod/app.tfstate"
KEY = f"{BUCKET}/{STATE}"  # what memory knows the lock by: the store, then the lock's path


def backend_policy(notice: str | None) -> Policy:
    defaults: dict[str, object] = {"lock_stale_after": "1h", "actions": ["delete_lock"]}
    if notice is not None:
        defaults["notice"] = notice
    return Policy.model_validate(
        {"s3_backend": {"lockfile_buckets": [{"bucket": BUCKET}]}, "defaults": defaults}
    )


def tflock(lock_id: str = "lock-1") -> BackendLock:
    """A `.tflock` object taken (and stored by S3) three hours before NOW."""
    taken = NOW - 3 * H
    info = TerraformLockInfo(
        id=lock_id,
        operation="OperationTypeApply",
        who="runner@ci-42",
        version="1.15.5",
        created=taken,
        path=STATE,
    )
    return BackendLock(Source.S3, BUCKET, STATE, info, token='"etag-1"', last_modified=taken)


def bucket_read(memory: Memory, lock: BackendLock | None, until: datetime) -> Observation:
    """The bucket read every 10 minutes over the 20 minutes before `until` (sightings enough)."""
    locks = () if lock is None else (lock,)
    when = until - 20 * M
    while when <= until:
        memory.update([Observation(Source.S3, BUCKET, when, backend_locks=locks)], when)
        when += 10 * M
    return Observation(Source.S3, BUCKET, until, backend_locks=locks)


def test_without_notice_a_stale_backend_lock_is_deleted_at_once() -> None:
    memory = Memory()
    decision = decide([bucket_read(memory, tflock(), NOW)], backend_policy(None), memory, NOW)
    assert [a.kind for a in decision.planned] == [ActionKind.DELETE_LOCK]
    assert decision.notices == ()
    assert decision.locks[0].action_at is None


def test_a_backend_lock_gets_its_notice_before_it_is_deleted() -> None:
    memory = Memory()
    rules = backend_policy("30m")

    first = decide([bucket_read(memory, tflock(), NOW)], rules, memory, NOW)
    assert first.planned == ()
    [notice] = first.notices
    assert notice.new and notice.action.kind is ActionKind.DELETE_LOCK
    assert (notice.action.workspace_id, notice.holder_id) == (KEY, "lock-1")
    assert notice.action_at == NOW + 30 * M
    assert first.locks[0].action_at == NOW + 30 * M
    assert any("notice given" in r.reason for r in first.restraints)

    memory.note_notice(notice.action.workspace_id, notice.holder_id, notice.run_id, NOW)
    later = NOW + 29 * M
    read = bucket_read(memory, tflock(), later)
    memory.prune_notices([read])
    waiting = decide([read], rules, memory, later)
    assert waiting.planned == ()
    assert [n.new for n in waiting.notices] == [False]
    assert waiting.locks[0].action_at == NOW + 30 * M

    due = NOW + 30 * M
    read = bucket_read(memory, tflock(), due)
    memory.prune_notices([read])
    acting = decide([read], rules, memory, due)
    assert [a.kind for a in acting.planned] == [ActionKind.DELETE_LOCK]
    assert acting.notices == ()


def test_a_new_lock_id_or_a_release_lapses_a_backend_notice() -> None:
    memory = Memory()
    rules = backend_policy("30m")
    [notice] = decide([bucket_read(memory, tflock("lock-1"), NOW)], rules, memory, NOW).notices
    memory.note_notice(notice.action.workspace_id, notice.holder_id, notice.run_id, NOW)

    # lock-1 released, another run took the state's lock: lock-1's notice does not cover it.
    later = NOW + 31 * M
    other = bucket_read(memory, tflock("lock-2"), later)
    memory.prune_notices([other])
    assert memory.notice_at(KEY, "lock-1", "") is None
    decision = decide([other], rules, memory, later)
    assert decision.planned == ()
    assert [(n.new, n.holder_id) for n in decision.notices] == [(True, "lock-2")]

    # A notice for a lock the bucket no longer holds lapses; a partial read keeps it.
    memory.note_notice(KEY, "lock-2", "", later)
    memory.prune_notices([Observation(Source.S3, BUCKET, later, complete=False)])
    assert memory.notice_at(KEY, "lock-2", "") == later
    memory.prune_notices([Observation(Source.S3, BUCKET, later)])
    assert memory.notice_at(KEY, "lock-2", "") is None
