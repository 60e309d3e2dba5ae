"""`tfc-watchdog unlock`: the on-call engineer's force-unlock of one workspace, through the
same gates as the daemon's act stage (README "Commands").

A person decided, so `dry_run` and the action budgets do not apply; everything else does, on
a fresh read: the lock's holder must be the one the person expects (`--expect-holder`), a
lock held by a run is refused (only ending the run clears it: the message says how), a
protected workspace is refused unless `--force-protected`, the token must have the
permission, and no state version may be pending. The gates are act.py's own functions
(`missing_permission`, `state_upload_check`, `TfcExecutor.perform`) and the policy's
protection; the workspace is read again right before the POST, since force-unlock has no
holder condition. The outcome is written as the daemon's audit line (`action`, with
`initiated_by: unlock command`), and counted in this process's `tfc_watchdog_actions_total`
by the same call as the daemon's (a one-shot command is not scraped: the audit line is the
record). The daemon's `state_file` is read (when the watchdog first saw the lock) and never
written: the daemon rewrites it whole each cycle, so a second writer's record would be lost.

Exit codes: 0 unlocked; 1 API error; 2 usage or config error; 4 refused by a gate (one
line says why).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import datetime, timedelta

from pydantic import SecretStr

from watchdog.act import TfcExecutor, missing_permission, state_upload_check
from watchdog.configload import configure_logs, load_or_report
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import (
    ActionKind,
    ActionResult,
    Holder,
    HolderType,
    Outcome,
    PlannedAction,
    Source,
    Workspace,
)
from watchdog.policy import Policy
from watchdog.report import printable
from watchdog.runtime import tfc_client
from watchdog.sources.errors import SourceError
from watchdog.sources.tfc.client import TfcError
from watchdog.sources.tfc.source import _HINTS as HINTS
from watchdog.sources.tfc.source import TfcSource
from watchdog.unlock_backend import unlock_backend_lock
from watchdog.unlockoutcome import (
    COMMAND,
    EXIT_API_FAILURE,
    EXIT_REFUSED,
    EXIT_USAGE,
    ApiFailure,
    Refused,
    finish,
)
from watchdog.workspaceref import (
    describe_lock,
    holder_matches,
    parse_holder,
    parse_workspace_ref,
)


def gate(
    workspace: Workspace,
    policy: Policy,
    identity: Holder | None,
    *,
    expect_holder: tuple[HolderType, str] | None,
    force_protected: bool,
) -> ActionKind:
    """The rung a person may use on this read of the workspace, or Refused saying why."""
    where = f"{workspace.organization}/{workspace.name}"
    holder = workspace.holder
    if not workspace.locked:
        raise Refused(f"{where} is not locked")
    if holder is None:
        raise Refused(f"{where} is locked by a holder the API did not name; not unlocking")
    if expect_holder is not None and not holder_matches(holder, expect_holder):
        kind, name = expect_holder
        raise Refused(f"{where} is held by {holder.label()}, not {kind.value}:{name}")
    if holder.type is HolderType.RUN:
        raise Refused(f"{where} is held by run {holder.id}: {end_run_advice(workspace)}")
    if not force_protected:
        unchecked = policy.unchecked(workspace)
        if unchecked:
            raise Refused(
                f"{where}: {'; '.join(unchecked)}: protection cannot be checked "
                "(--force-protected to unlock anyway)"
            )
        protection = policy.protect.workspace_protection(
            workspace
        ) or policy.protect.reason_protection(workspace.locked_reason)
        if protection is not None:
            raise Refused(
                f"{where} is protected: {protection} (--force-protected to unlock anyway)"
            )
    own = identity is not None and identity.type == holder.type and identity.id == holder.id
    return ActionKind.UNLOCK if own else ActionKind.FORCE_UNLOCK


def end_run_advice(workspace: Workspace) -> str:
    """How a person ends the run that holds the lock (the run's own page or the API)."""
    run = workspace.current_run
    run_id = workspace.holder.id if workspace.holder else "?"
    if run is not None and run.id == run_id and run.phase_group == "waiting":
        verb = "discard"
    elif run is not None and run.id == run_id and run.canceled_at is not None:
        verb = "force-cancel"
    else:
        verb = "cancel"
    return (
        f"{verb} the run instead (its page in the UI, or POST /api/v2/runs/{run_id}/actions/"
        f"{verb}); the lock goes with it"
    )


def planned(
    workspace: Workspace, kind: ActionKind, reason: str, *, since: datetime, now: datetime
) -> PlannedAction:
    run = workspace.current_run
    return PlannedAction(
        kind=kind,
        source=Source.TFC,
        organization=workspace.organization,
        workspace=workspace.name,
        workspace_id=workspace.id,
        rule=COMMAND,
        reason=reason,
        holder=workspace.holder,
        run_id=run.id if run else None,
        run_status=run.status if run else None,
        since=since,
        age=max(timedelta(0), now - since),
        threshold=timedelta(0),
    )


class Unlocker:
    """One `unlock`: read, gate, confirm, check state uploads, re-read, one POST."""

    def __init__(
        self,
        source: TfcSource,
        policy: Policy,
        metrics: Metrics,
        *,
        confirm: Callable[[str], bool],
        out: Callable[[str], None],
    ) -> None:
        self._source = source
        self._policy = policy
        self._metrics = metrics
        self._confirm = confirm
        self._out = out

    async def run(
        self,
        organization: str,
        name: str,
        *,
        expect_holder: tuple[HolderType, str] | None,
        reason: str | None,
        force_protected: bool,
    ) -> int:
        workspace = await self._source.read_workspace_by_name(organization, name)
        identity = await self._source.identity()
        memory = Memory.load(self._policy.state_file)  # read only: the daemon owns it
        for line in describe_lock(workspace, memory, self._source.now()):
            self._out(line)

        def check(read: Workspace) -> ActionKind:
            return gate(
                read,
                self._policy,
                identity,
                expect_holder=expect_holder,
                force_protected=force_protected,
            )

        kind = check(workspace)
        holder = workspace.holder
        assert holder is not None  # gate refuses a lock without a holder
        now = self._source.now()
        since = memory.first_seen(workspace.id, holder.id) or now
        text = reason or "no reason given"
        action = planned(workspace, kind, f"{COMMAND}: {text}", since=since, now=now)
        missing = missing_permission(action, workspace)
        if missing:
            return self._finish(
                ActionResult(action, Outcome.FORBIDDEN, f"the token lacks {missing}")
            )
        verb = kind.value.replace("_", "-")
        question = f"{verb} {organization}/{name}, held by {holder.label()}?"
        if not self._confirm(question):
            raise Refused("not confirmed; nothing was sent")
        verdict = await state_upload_check(self._source, workspace.organization, workspace.name)
        if verdict.outcome is not None:
            detail = verdict.detail.replace("; retrying next cycle", "; try again shortly")
            result = ActionResult(action, verdict.outcome, detail, retry_later=verdict.retry_later)
            return self._finish(result)
        # Force-unlock removes whatever lock is there: the read that vouches for the holder
        # must be the last request before the POST (as in the act stage).
        fresh = await self._source.read_workspace(workspace.id, workspace.organization)
        try:
            fresh_kind = check(fresh)
        except Refused as exc:
            return self._finish(ActionResult(action, Outcome.SKIPPED_CHANGED, str(exc)))
        if fresh.holder != holder or fresh_kind is not kind:
            fresh_holder = fresh.holder.label() if fresh.holder else "none"
            change = f"holder {holder.label()} -> {fresh_holder}"
            return self._finish(ActionResult(action, Outcome.SKIPPED_CHANGED, change))
        missing = missing_permission(action, fresh)
        if missing:
            return self._finish(
                ActionResult(action, Outcome.FORBIDDEN, f"the token lacks {missing}")
            )
        # The daemon's own POST and its reading of the answer; the memory is not touched
        # by `perform` (the daemon owns the state file).
        result = await TfcExecutor(self._source, memory).perform(action)
        return self._finish(result)

    def _finish(self, result: ActionResult) -> int:
        return finish(result, self._metrics, self._out)


async def unlock(
    policy: Policy,
    token: SecretStr,
    organization: str,
    name: str,
    *,
    expect_holder: tuple[HolderType, str] | None,
    reason: str | None,
    force_protected: bool,
    confirm: Callable[[str], bool],
    out: Callable[[str], None],
) -> int:
    metrics = Metrics()
    async with tfc_client(policy, token, metrics) as client:
        source = TfcSource(client, [organization], metrics)
        unlocker = Unlocker(source, policy, metrics, confirm=confirm, out=out)
        return await unlocker.run(
            organization,
            name,
            expect_holder=expect_holder,
            reason=reason,
            force_protected=force_protected,
        )


def ask_on_terminal(question: str) -> bool:
    """A y/N question on the terminal (only asked when stdin is one)."""
    answer = input(f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def main(args: argparse.Namespace) -> int:
    name = "unlock"
    target: tuple[str, str] | None
    if args.source != "tfc":
        store, slash, path = args.workspace.partition("/")
        target = (store, path) if slash and store and path else None
        shape = "<table or bucket>/<state path>"
    else:
        target = parse_workspace_ref(args.workspace)
        shape = "<organization>/<workspace>"
    if target is None:
        print(f"tfc-watchdog {name}: {args.workspace!r} is not {shape}", file=sys.stderr)
        return EXIT_USAGE
    expect: tuple[HolderType, str] | None = None
    if args.expect_holder is not None:
        expect = parse_holder(args.expect_holder)
        if expect is None:
            print(
                f"tfc-watchdog {name}: --expect-holder {args.expect_holder!r} is not "
                "user:NAME, team:NAME, run:ID or terraform:WHO",
                file=sys.stderr,
            )
            return EXIT_USAGE
    if not args.yes and not sys.stdin.isatty():
        print(
            f"tfc-watchdog {name}: stdin is not a terminal to confirm on: pass --yes",
            file=sys.stderr,
        )
        return EXIT_USAGE
    loaded = load_or_report(args.config, name)
    if isinstance(loaded, int):
        return loaded
    policy, token = loaded
    if args.source == "tfc" and (policy.tfc is None or token is None):
        print(f"{args.config}: `unlock` needs `tfc` in the config", file=sys.stderr)
        return EXIT_USAGE
    configure_logs(policy, token)

    def confirm(question: str) -> bool:
        return True if args.yes else ask_on_terminal(question)

    def out(line: str) -> None:
        print(printable(line), flush=True)

    organization, workspace = target
    try:
        if args.source != "tfc":
            return asyncio.run(
                unlock_backend_lock(
                    policy,
                    Source(args.source),
                    organization,
                    workspace,
                    expect_holder=expect,
                    reason=args.reason,
                    force_protected=args.force_protected,
                    confirm=confirm,
                    out=out,
                )
            )
        assert token is not None
        return asyncio.run(
            unlock(
                policy,
                token,
                organization,
                workspace,
                expect_holder=expect,
                reason=args.reason,
                force_protected=args.force_protected,
                confirm=confirm,
                out=out,
            )
        )
    except Refused as exc:
        print(printable(f"tfc-watchdog {name}: refused: {exc}"), file=sys.stderr)
        return EXIT_REFUSED
    except ApiFailure as exc:
        print(printable(f"tfc-watchdog {name}: {exc}"), file=sys.stderr)
        return EXIT_API_FAILURE
    except (TfcError, SourceError) as exc:
        # The hints name the token and `tfc.*` settings: a backend store's error is said as is.
        line = api_error(exc) if args.source == "tfc" else str(exc)
        print(printable(f"tfc-watchdog {name}: {line}"), file=sys.stderr)
        return EXIT_API_FAILURE


def api_error(exc: TfcError | SourceError) -> str:
    """The error with what the on-call engineer can do about it, as `scan` says it."""
    hint = HINTS.get(exc.reason)
    if exc.reason == "not_found":
        hint = "no such workspace, or the token may not read it (the API answers 404 for both)"
    return f"{exc} ({hint})" if hint else str(exc)
