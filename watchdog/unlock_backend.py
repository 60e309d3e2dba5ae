"""`tfc-watchdog unlock --source dynamodb|s3|gcs STORE/STATE_PATH`: a person's delete of one
S3- or GCS-backend lock, through the act stage's gates (README "Commands").

The lock is read now and shown as Terraform's "Lock Info"; it is deleted only if its `Who:`
or lock ID is the one expected (`--expect-holder terraform:WHO`), its `Info` is not
protected (`protect.lock_reasons`, unless `--force-protected`) and its info is readable. It
is read once more after the confirmation and deleted only if it is the same lock (same Info,
ETag or generation), by act's own compare-and-delete (`BackendLockExecutor.perform`): a lock
another run took in between survives. The outcome is the daemon's audit line, counted.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from datetime import timedelta

from watchdog.act import BackendLockExecutor
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import (
    ActionKind,
    ActionResult,
    BackendLock,
    HolderType,
    Outcome,
    PlannedAction,
    Source,
    backend_holder,
)
from watchdog.policy import Policy
from watchdog.runtime import open_backend_sources
from watchdog.unlockoutcome import COMMAND, EXIT_USAGE, Refused, finish
from watchdog.workspaceref import holder_matches


def describe(lock: BackendLock) -> list[str]:
    info = lock.info
    where = f"{lock.store}/{lock.path}"
    if lock.problem is not None:
        return [f"{where}: locked, lock info unreadable ({lock.problem})"]
    return [
        f"{where}: locked by {info.who or '?'} since {info.created.isoformat()}",
        f"  Lock Info: ID {info.id}, Operation {info.operation}, Version {info.version}"
        + (f", Info {info.info}" if info.info else ""),
    ]


def gate(
    lock: BackendLock | None,
    where: str,
    policy: Policy,
    *,
    expect_holder: tuple[HolderType, str] | None,
    force_protected: bool,
) -> BackendLock:
    if lock is None:
        raise Refused(f"{where} is not locked")
    if lock.problem is not None:
        raise Refused(f"{where}: the lock info is unreadable ({lock.problem}); not deleting")
    info = lock.info
    if expect_holder is not None and not holder_matches(backend_holder(lock), expect_holder):
        kind, name = expect_holder
        raise Refused(
            f"{where} is held by terraform:{info.who} (lock {info.id}), not {kind.value}:{name}"
        )
    if not force_protected:
        # The daemon's protection of a backend lock: its `Info` text against lock_reasons.
        protection = policy.protect.reason_protection(info.info or None)
        if protection is not None:
            raise Refused(
                f"{where} is protected: {protection} (--force-protected to delete it anyway)"
            )
    return lock


async def unlock_backend_lock(
    policy: Policy,
    source: Source,
    store: str,
    path: str,
    *,
    expect_holder: tuple[HolderType, str] | None,
    reason: str | None,
    force_protected: bool,
    confirm: Callable[[str], bool],
    out: Callable[[str], None],
) -> int:
    metrics = Metrics()
    where = f"{store}/{path}"
    async with contextlib.AsyncExitStack() as stack:
        target = open_backend_sources(policy, metrics, stack).get(source)
        if target is None:
            print(
                f"tfc-watchdog unlock: the config lists no {source.value} lock store",
                file=sys.stderr,
            )
            return EXIT_USAGE
        first = await target.read_lock(store, path)
        if first is not None:
            for line in describe(first):
                out(line)
        lock = gate(
            first, where, policy, expect_holder=expect_holder, force_protected=force_protected
        )
        if not confirm(f"delete the lock {lock.info.id} of {lock.info.who} on {where}?"):
            raise Refused("not confirmed; nothing was sent")
        now = target.now()
        action = PlannedAction(
            kind=ActionKind.DELETE_LOCK,
            source=source,
            organization=store,
            workspace=path,
            workspace_id=where,
            rule=COMMAND,
            reason=f"{COMMAND}: {reason or 'no reason given'}",
            holder=backend_holder(lock),
            run_id=None,
            run_status=None,
            since=lock.info.created,
            age=max(timedelta(0), now - lock.info.created),
            threshold=timedelta(0),
            backend_lock=lock,
        )
        # The read that vouches for the lock is the last before the delete, which is
        # conditional on what it read.
        fresh = await target.read_lock(store, path)
        if fresh is None or fresh.token != lock.token or fresh.info != lock.info:
            change = "released" if fresh is None else f"now lock {fresh.info.id or '?'}"
            return finish(
                ActionResult(
                    action, Outcome.SKIPPED_CHANGED, f"the lock changed since it was read: {change}"
                ),
                metrics,
                out,
            )
        result = await BackendLockExecutor(target, Memory()).perform(action)
        return finish(result, metrics, out)
