"""decide() for S3-backend locks (DynamoDB items, .tflock objects): lock states, findings,
the delete_lock rung and its guards, rules by state path, and each store's own clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from watchdog.decide import Decision, decide, plan_for_backend_lock
from watchdog.memory import Memory
from watchdog.model import (
    ActionKind,
    BackendLock,
    FindingKind,
    Holder,
    HolderType,
    Observation,
    Source,
    TerraformLockInfo,
    Workspace,
)
from watchdog.policy import Policy
from watchdog.sources.lockinfo import unparsed_lock_info

# The AWS clock; the TFC clock of the same cycle is deliberately far away from it.
AWS_NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
TFC_NOW = AWS_NOW + timedelta(days=30)
H = timedelta(hours=1)
TABLE = "terraform-locks"
BUCKET = "tf-state"
PATH = f"{BUCKET}/prod/app.tfstate"


def policy(**config: Any) -> Policy:
    document: dict[str, Any] = {
        "s3_backend": {"dynamodb_tables": [TABLE], "lockfile_buckets": [{"bucket": BUCKET}]},
        "defaults": {"lock_stale_after": "2h", "actions": ["delete_lock"]},
    }
    document.update(config)
    return Policy.model_validate(document)


def info(age: timedelta, lock_id: str = "lock-1", **kw: Any) -> TerraformLockInfo:
    fields: dict[str, Any] = {
        "id": lock_id,
        "operation": "OperationTypeApply",
        "who": "runner@ci-42",
        "version": "1.15.5",
        "created": AWS_NOW - age,
        "path": PATH,
    }
    fields.update(kw)
    return TerraformLockInfo(**fields)


def table_lock(age: timedelta, path: str = PATH, **kw: Any) -> BackendLock:
    lock_info = info(age, path=path, **kw)
    return BackendLock(Source.DYNAMODB, TABLE, path, lock_info, token=f"raw:{lock_info.id}")


def file_lock(
    age: timedelta, path: str = PATH, *, stored_ago: timedelta | None = None, **kw: Any
) -> BackendLock:
    """A `.tflock` object; S3 stored it when its `Created` says unless `stored_ago` is given."""
    lock_info = info(age, path=path, **kw)
    last_modified = lock_info.created if stored_ago is None else AWS_NOW - stored_ago
    return BackendLock(
        Source.S3, BUCKET, path, lock_info, token='"etag-1"', last_modified=last_modified
    )


def observed(*locks: BackendLock, complete: bool = True, now: datetime = AWS_NOW) -> Observation:
    source = locks[0].source if locks else Source.DYNAMODB
    store = locks[0].store if locks else TABLE
    return Observation(
        source=source,
        organization=store,
        server_now=now,
        backend_locks=locks,
        complete=complete,
        error=None if complete else "read failed",
    )


def remembered(
    *observations: Observation, cycles: int = 2, watched: timedelta = timedelta(minutes=15)
) -> Memory:
    """Watched for the last `watched` (on the cycle's clock, TFC_NOW; longer than
    limits.backend_lock_min_observed, 10m, by default) in one-minute cycles without a gap;
    `cycles=1`: seen once, `watched` ago."""
    memory = Memory()
    if cycles == 1:
        memory.update(observations, TFC_NOW - watched)
        return memory
    steps = max(cycles - 1, int(watched / timedelta(minutes=1)))
    for step in range(steps + 1):
        memory.update(observations, TFC_NOW - watched + step * (watched / steps))
    return memory


def decided(observation: Observation, config: Policy | None = None, **watch: Any) -> Decision:
    """decide() on `observation` (under `config`, else `policy()`) once it was watched as
    `remembered(observation, **watch)` says."""
    return decide([observation], config or policy(), remembered(observation, **watch), TFC_NOW)


def test_a_table_lock_is_reported_with_its_lock_info_and_the_stores_age() -> None:
    lock = table_lock(3 * H)
    decision = decided(observed(lock))

    (state,) = decision.locks
    assert state.source is Source.DYNAMODB
    assert state.organization == TABLE
    assert state.workspace == PATH
    assert state.workspace_id == f"{TABLE}/{PATH}"
    assert state.holder == Holder(HolderType.TERRAFORM, "lock-1", "runner@ci-42")
    assert state.lock_id == "lock-1"
    assert state.since == AWS_NOW - 3 * H
    # The store's clock, not the (month later) TFC clock passed as `now`.
    assert state.age == 3 * H
    assert state.age_source == "lock_info"
    assert state.stale
    assert state.lock_info == lock.info


def test_a_stale_lock_gives_held_and_stale_findings_naming_who_and_operation() -> None:
    decision = decided(observed(table_lock(3 * H)))

    kinds = [f.kind for f in decision.findings]
    assert kinds == [FindingKind.LOCK_HELD, FindingKind.LOCK_STALE]
    stale = decision.findings[1]
    assert "terraform:runner@ci-42 (OperationTypeApply)" in stale.reason
    assert "lock ID lock-1" in stale.reason
    assert "threshold 2h" in stale.reason
    assert stale.threshold == 2 * H
    assert stale.source is Source.DYNAMODB
    assert stale.organization == TABLE


@pytest.mark.parametrize(
    ("make_lock", "source", "store"),
    [(table_lock, Source.DYNAMODB, TABLE), (file_lock, Source.S3, BUCKET)],
    ids=["dynamodb-item", "lockfile"],
)
def test_a_stale_lock_seen_twice_is_planned_for_delete_under_its_store_with_the_observed_lock(
    make_lock: Callable[[timedelta], BackendLock], source: Source, store: str
) -> None:
    lock = make_lock(3 * H)
    decision = decided(observed(lock))

    (action,) = decision.planned
    assert action.kind is ActionKind.DELETE_LOCK
    assert action.source is source
    assert action.organization == store
    assert action.workspace == PATH
    assert action.workspace_id == f"{store}/{PATH}"
    assert action.backend_lock == lock
    assert action.age == 3 * H
    assert action.threshold == 2 * H
    assert action.run_id is None


def test_a_lock_seen_in_only_one_cycle_is_not_deleted_yet() -> None:
    decision = decided(observed(table_lock(3 * H)), cycles=1)

    assert decision.planned == ()
    (restraint,) = decision.restraints
    assert "seen with this ID in 1 cycle(s), 2 needed" in restraint.reason


def test_a_lock_replaced_by_another_run_starts_its_sightings_again() -> None:
    old = observed(table_lock(3 * H, lock_id="lock-1"))
    new = observed(table_lock(3 * H, lock_id="lock-2"))
    memory = remembered(old)
    memory.update([new], TFC_NOW)

    decision = decide([new], policy(), memory, TFC_NOW)

    assert decision.planned == ()


def test_a_young_lock_is_reported_and_restrained_without_its_age() -> None:
    decision = decided(observed(table_lock(30 * timedelta(minutes=1))))

    assert [f.kind for f in decision.findings] == [FindingKind.LOCK_HELD]
    assert not decision.locks[0].stale
    assert decision.planned == ()
    (restraint,) = decision.restraints
    assert restraint.reason.startswith("young lock: lock lock-1 of tf-state/prod/app.tfstate")
    assert "30m" not in restraint.reason  # no ages: logged once, not every cycle


def test_delete_lock_is_off_unless_the_rule_allows_it() -> None:
    observation = observed(table_lock(3 * H))
    report_only = policy(defaults={"lock_stale_after": "2h", "actions": []})

    decision = decided(observation, report_only)

    assert decision.locks[0].stale
    assert decision.planned == ()
    assert decision.restraints == ()


def test_an_unparsable_lock_is_reported_and_never_planned() -> None:
    broken = BackendLock(
        Source.DYNAMODB,
        TABLE,
        PATH,
        unparsed_lock_info(AWS_NOW - 30 * H),
        token="{not json",
        problem="lock info is not JSON",
    )
    observation = observed(broken)
    memory = remembered(observation)

    decision = decide([observation], policy(), memory, TFC_NOW)

    (state,) = decision.locks
    assert not state.stale
    assert state.lock_info is None
    assert state.reason == "unreadable lock info: lock info is not JSON"
    (finding,) = decision.findings
    assert finding.kind is FindingKind.LOCK_HELD
    assert "never acted on" in finding.reason
    assert decision.planned == ()
    assert (
        plan_for_backend_lock(
            broken, complete=True, policy=policy(), memory=memory, now=AWS_NOW + 99 * H
        )
        is None
    )


def test_an_incomplete_store_read_plans_nothing_even_for_a_stale_lock() -> None:
    complete = observed(table_lock(3 * H))
    memory = remembered(complete)
    partial = replace(complete, complete=False, error="Scan failed halfway")

    decision = decide([partial], policy(), memory, TFC_NOW)

    assert decision.locks[0].stale
    assert decision.planned == ()
    assert "store read incomplete" in decision.restraints[0].reason


def test_rules_match_backend_locks_by_source_and_state_path() -> None:
    prod = table_lock(3 * H, path=f"{BUCKET}/prod/app.tfstate")
    dev = table_lock(3 * H, path=f"{BUCKET}/dev/app.tfstate", lock_id="lock-dev")
    observation = observed(prod, dev)
    config = policy(
        rules=[
            # TFC matchers never apply to S3-backend locks.
            {"id": "tfc-everything", "match": {"workspaces": ["*"]}, "actions": []},
            {
                "id": "prod-report-only",
                "match": {"sources": ["dynamodb"], "paths": ["tf-state/prod/*"]},
                "actions": [],
            },
            {"id": "s3-files", "match": {"sources": ["s3"]}, "lock_stale_after": "10h"},
        ]
    )

    decision = decided(observation, config)

    rules = {lock.workspace: lock.rule for lock in decision.locks}
    assert rules == {prod.path: "prod-report-only", dev.path: "defaults"}
    assert [a.workspace for a in decision.planned] == [dev.path]


def test_a_protected_info_text_keeps_the_lock() -> None:
    decision = decided(observed(table_lock(3 * H, info="maintenance window, do not unlock")))

    assert decision.locks[0].stale
    assert decision.planned == ()
    assert decision.restraints[0].reason.startswith("protected:")


def test_each_store_is_aged_by_its_own_clock() -> None:
    lock = table_lock(3 * H)
    # The same lock read from a store whose clock is two hours behind: one hour old there.
    behind = observed(lock, now=AWS_NOW - 2 * H)

    decision = decided(behind)

    assert decision.locks[0].age == H
    assert not decision.locks[0].stale
    assert decision.planned == ()


def test_overlapping_prefixes_report_and_plan_a_lock_once() -> None:
    lock = file_lock(5 * H)
    first, second = observed(lock), observed(lock)

    decision = decide([first, second], policy(), remembered(first, second), TFC_NOW)

    assert len(decision.locks) == 1
    assert len(decision.planned) == 1


def test_tfc_and_backend_locks_are_decided_together_oldest_first() -> None:
    tfc_policy = policy(
        tfc={"organizations": ["acme"]},
        defaults={"lock_stale_after": "2h", "actions": ["force_unlock", "delete_lock"]},
    )
    alice = Holder(HolderType.USER, "user-alice", "alice")
    workspace = Workspace(organization="acme", id="ws-1", name="app", locked=True, holder=alice)
    tfc = Observation(Source.TFC, "acme", TFC_NOW, workspaces=(workspace,), total_workspaces=1)
    backend = observed(table_lock(30 * H))
    memory = Memory()
    memory.update([tfc, backend], TFC_NOW - 3 * H)
    memory.update([tfc, backend], TFC_NOW)

    decision = decide([tfc, backend], tfc_policy, memory, TFC_NOW)

    assert [(a.source, a.kind) for a in decision.planned] == [
        (Source.DYNAMODB, ActionKind.DELETE_LOCK),
        (Source.TFC, ActionKind.FORCE_UNLOCK),
    ]
    tfc_lock = next(lock for lock in decision.locks if lock.source is Source.TFC)
    assert tfc_lock.age == 3 * H  # the TFC clock, as before


# --- `Created` is the writer's clock: a server clock must agree ------------------------------

M = timedelta(minutes=1)


def test_a_table_lock_with_an_old_created_is_not_deleted_before_it_was_watched_long_enough() -> (
    None
):
    # A CI runner with a clock 3h slow took this lock a minute ago: `Created` says 3h.
    observation = observed(table_lock(3 * H))
    memory = remembered(observation, watched=M)

    decision = decide([observation], policy(), memory, TFC_NOW)

    assert decision.planned == ()
    (state,) = decision.locks
    # Reported as what it claims, saying whose clock that is; never acted on.
    assert (state.age, state.age_source) == (3 * H, "lock_info")
    held, stale = decision.findings
    assert "(age from Created)" in held.reason
    assert "by Created, the writer's clock; not yet observed" in stale.reason
    (restraint,) = decision.restraints
    assert "not yet observed for limits.backend_lock_min_observed 10m" in restraint.reason
    assert (
        plan_for_backend_lock(
            observation.backend_locks[0],
            complete=True,
            policy=policy(),
            memory=memory,
            now=AWS_NOW,
        )
        is None
    )
    # Watched without a gap for longer than the minimum: now it is stale, and deleted.
    memory = remembered(observation, watched=11 * M)
    assert [a.kind for a in decide([observation], policy(), memory, TFC_NOW).planned] == [
        ActionKind.DELETE_LOCK
    ]


def test_the_minimum_observation_is_a_setting() -> None:
    observation = observed(table_lock(3 * H))
    config = policy(limits={"backend_lock_min_observed": "30m"})
    assert decided(observation, config, watched=15 * M).planned == ()
    assert decided(observation, config, watched=31 * M).planned


def test_a_lock_file_is_aged_from_s3s_last_modified_when_created_is_older() -> None:
    # Created 3h ago by a slow client clock; S3 stored the object a minute ago.
    lock = file_lock(3 * H, stored_ago=M)
    decision = decided(observed(lock), watched=15 * M)

    assert decision.planned == ()
    (state,) = decision.locks
    assert (state.since, state.age, state.age_source) == (AWS_NOW - M, M, "last_modified")
    assert state.stale is False
    assert "(age from LastModified)" in decision.findings[0].reason


def test_a_lock_file_is_aged_from_created_when_it_is_the_younger() -> None:
    # The client's clock is a little fast: Created is after S3's LastModified.
    lock = file_lock(3 * H, stored_ago=3 * H + 2 * M)
    decision = decided(observed(lock))

    (state,) = decision.locks
    assert (state.age, state.age_source, state.stale) == (3 * H, "lock_info", True)
    assert [a.kind for a in decision.planned] == [ActionKind.DELETE_LOCK]


# --- GCS .tflock objects ----------------------------------------------------------------------


def gcs_lock(
    age: timedelta, *, stored_ago: timedelta, generation: str = "1796026249562492"
) -> BackendLock:
    """A gcs-backend `.tflock` object: its lock ID is the generation; GCS's timeCreated is
    `stored_ago` before the store's clock."""
    path = f"{BUCKET}/prod/default.tfstate"
    lock_info = info(age, lock_id=generation, path=f"gs://{BUCKET}/prod/default.tflock")
    return BackendLock(
        Source.GCS, BUCKET, path, lock_info, token=generation, last_modified=AWS_NOW - stored_ago
    )


def gcs_policy(**config: Any) -> Policy:
    document: dict[str, Any] = {
        "gcs_backend": {"buckets": [{"bucket": BUCKET, "prefix": "prod/"}]},
        "defaults": {"lock_stale_after": "2h", "actions": []},
        "rules": [
            {
                "id": "gcs-prod",
                "match": {"sources": ["gcs"], "paths": [f"{BUCKET}/prod/*"]},
                "actions": ["delete_lock"],
            }
        ],
    }
    document.update(config)
    return Policy.model_validate(document)


def test_a_gcs_lock_file_is_aged_from_time_created_when_created_is_older() -> None:
    # Created 3h ago by a slow client clock; GCS stored this generation a minute ago.
    lock = gcs_lock(3 * H, stored_ago=M)
    decision = decided(observed(lock), gcs_policy())

    assert decision.planned == ()
    (state,) = decision.locks
    assert (state.since, state.age, state.age_source, state.stale) == (
        AWS_NOW - M,
        M,
        "last_modified",
        False,
    )
    assert "(age from timeCreated)" in decision.findings[0].reason


def test_a_stale_gcs_lock_gets_delete_lock_by_its_rule_with_the_generation_as_lock_id() -> None:
    lock = gcs_lock(3 * H, stored_ago=3 * H)
    decision = decided(observed(lock), gcs_policy())

    (state,) = decision.locks
    assert (state.source, state.rule, state.lock_id, state.stale) == (
        Source.GCS,
        "gcs-prod",
        "1796026249562492",
        True,
    )
    (action,) = decision.planned
    assert (action.kind, action.source, action.backend_lock) == (
        ActionKind.DELETE_LOCK,
        Source.GCS,
        lock,
    )


def test_a_rule_for_s3_paths_does_not_match_a_gcs_lock_on_the_same_path() -> None:
    lock = gcs_lock(3 * H, stored_ago=3 * H)
    observation = observed(lock)
    config = gcs_policy(
        rules=[
            {
                "id": "s3-prod",
                "match": {"sources": ["s3"], "paths": [f"{BUCKET}/prod/*"]},
                "actions": ["delete_lock"],
            }
        ]
    )

    decision = decided(observation, config)

    assert [state.rule for state in decision.locks] == ["defaults"]
    assert decision.planned == ()
