"""What the unit tests build again and again: a fixed clock, people, a policy, a run.

One place, so that a change to the model (a new required field, a renamed one) is made once.
Each builder takes keyword overrides for what a test is about and fills the rest with values
that mean nothing in particular.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from watchdog import model
from watchdog.decide import Decision
from watchdog.memory import Memory
from watchdog.model import (
    ActionKind,
    Holder,
    HolderType,
    Observation,
    PlannedAction,
    Run,
    RunActions,
    Source,
    Workspace,
    WorkspacePermissions,
)
from watchdog.policy import Policy
from watchdog.report import CycleReport

# The time every unit test's world is observed at, or where its server's clock starts when a
# test moves it (a whole minute: ages print exactly); H and M are an hour and a minute of it.
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)

ORG = "acme"
# People who hold locks: two users and a team.
ALICE = Holder(HolderType.USER, "user-alice", "alice")
BOB = Holder(HolderType.USER, "user-bob", "bob")
PLATFORM = Holder(HolderType.TEAM, "team-platform", "platform")

# The TFC ladder, in order.
EVERY_RUNG = ["cancel", "force_cancel", "discard", "unlock", "force_unlock"]


def policy(**config: Any) -> Policy:
    """A valid policy over the organizations `acme` and `beta` (unless `tfc` is given),
    with `config`'s top-level keys on top."""
    return Policy.model_validate({"tfc": {"organizations": [ORG, "beta"]}, **config})


def run(
    status: str,
    age: timedelta,
    run_id: str = "run-1",
    *,
    cancelable: bool = False,
    force_cancelable: bool = False,
    discardable: bool = False,
    canceled_ago: timedelta | None = None,
    force_cancel_in: timedelta | None = None,
    **fields: Any,
) -> Run:
    """A run that entered `status` `age` before NOW (its status timestamp says so), created
    ten minutes before that. The flags set its `actions` unless `fields` give `actions`."""
    entered = NOW - age
    fields.setdefault(
        "actions",
        RunActions(
            is_cancelable=cancelable,
            is_force_cancelable=force_cancelable,
            is_discardable=discardable,
        ),
    )
    return Run(
        id=run_id,
        status=status,
        created_at=entered - 10 * M,
        status_timestamps={status.replace("_", "-") + "-at": entered},
        canceled_at=None if canceled_ago is None else NOW - canceled_ago,
        force_cancel_available_at=None if force_cancel_in is None else NOW + force_cancel_in,
        **fields,
    )


def locked_workspace(holder: Holder | None = ALICE, **fields: Any) -> Workspace:
    """ORG's workspace `ws-1` ("network") as TFC lists it when `holder` locked it through
    Terraform (unlocked when `holder` is None), with a token that may unlock and
    force-unlock it. `fields` override any of that or add the rest (a current run...)."""
    usual: dict[str, Any] = {
        "organization": ORG,
        "id": "ws-1",
        "name": "network",
        "locked_reason": "Locked by Terraform",
        "permissions": WorkspacePermissions(can_unlock=True, can_force_unlock=True),
    }
    return Workspace(locked=holder is not None, holder=holder, **(usual | fields))


def planned_action(kind: ActionKind = ActionKind.FORCE_UNLOCK, **fields: Any) -> PlannedAction:
    """What decide plans for alice's lock on `locked_workspace()`: held three hours, past a
    two-hour threshold; `kind` (force_unlock unless said) and `fields` as a test needs."""
    usual: dict[str, Any] = {
        "source": Source.TFC,
        "organization": ORG,
        "workspace": "network",
        "workspace_id": "ws-1",
        "rule": "defaults",
        "reason": "lock held by alice for 3h, threshold 2h",
        "holder": ALICE,
        "run_id": None,
        "run_status": None,
        "since": NOW - 3 * H,
        "age": 3 * H,
        "threshold": 2 * H,
    }
    return PlannedAction(kind=kind, **(usual | fields))


def delete_lock_action(lock: model.BackendLock, **fields: Any) -> PlannedAction:
    """delete_lock of the backend `lock` (held since its `created`, past a two-hour
    threshold), as decide plans it: the lock rides along for the compare-and-delete."""
    return planned_action(
        ActionKind.DELETE_LOCK,
        source=lock.source,
        organization=lock.store,
        workspace=lock.path,
        workspace_id=f"{lock.store}/{lock.path}",
        holder=None,
        reason="stale",
        since=lock.info.created,
        backend_lock=lock,
        **fields,
    )


def cycle_report(
    observation: Observation,
    decision: Decision,
    now: datetime,
    *,
    dry_run: bool = True,
    **extra: Any,
) -> CycleReport:
    """The report a cycle makes of one observation and its decision, as cycle.py does: the
    locks, findings, planned actions and restraints (and whatever `extra` adds)."""
    return CycleReport(
        generated_at=now,
        dry_run=dry_run,
        observations=(observation,),
        locks=decision.locks,
        findings=decision.findings,
        planned=decision.planned,
        restraints=decision.restraints,
        **extra,
    )


def backend_lock(
    path: str,
    *,
    created: datetime,
    source: model.Source = model.Source.S3,
    store: str = "tf-state",
    info_text: str = "",
) -> model.BackendLock:
    """ci@runner's lock 4f6a on the backend state `path`, taken at `created`. A lock file
    has its store's own time (S3's LastModified, GCS's object creation time: when it was
    written); a DynamoDB item has none."""
    info = model.TerraformLockInfo(
        id="4f6a",
        operation="OperationTypeApply",
        who="ci@runner",
        version="1.15.0",
        created=created,
        path=path,
        info=info_text,
    )
    stored = created if source in (model.Source.S3, model.Source.GCS) else None
    return model.BackendLock(
        source=source, store=store, path=path, info=info, token="etag", last_modified=stored
    )


def seen(memory: Memory, observations: list[Observation], ago: timedelta, cycles: int) -> None:
    """`memory` saw `observations` first `ago` before NOW, then again at NOW, `cycles`
    cycles in all."""
    memory.update(observations, NOW - ago)
    for _ in range(cycles - 1):
        memory.update(observations, NOW)


def run_holder(run: Run) -> Holder:
    """Who holds a lock that `run` took, as TFC names it: the run, by its id and status."""
    return Holder(HolderType.RUN, run.id, run.status)
