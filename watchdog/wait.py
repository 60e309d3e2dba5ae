"""`tfc-watchdog wait`: wait in CI until a workspace is unlocked, instead of a blind retry
loop of `terraform plan` (README "Waiting for a lock in CI").

It reads the one workspace every `--interval` (at least 1 s; the client's rate limiter is
set to one request a second as well, so nothing here can burst), prints once who holds
the lock since when, then one line per change, and exits:

- 0 when the workspace is unlocked, or, with `--allow-own`, locked by the token's own user
  (the caller's own earlier step holds it);
- 3 when `--timeout` passes first (measured on this machine's monotonic clock: it is the
  CI job's time that runs out), the holder in the last line;
- 1 on an API error (the client has already retried what it may), 2 on a usage or config
  error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from datetime import timedelta

from pydantic import SecretStr

from watchdog.configload import configure_logs, load_or_report
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import Holder, Workspace, format_duration
from watchdog.policy import Policy, parse_duration
from watchdog.report import printable
from watchdog.runtime import tfc_client
from watchdog.sources.errors import SourceError
from watchdog.sources.tfc.client import TfcError
from watchdog.sources.tfc.source import TfcSource
from watchdog.unlock import api_error
from watchdog.workspaceref import describe_lock, holder_text, parse_workspace_ref

EXIT_FREE, EXIT_API_FAILURE, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3
MIN_INTERVAL = timedelta(seconds=1)


def _state(workspace: Workspace) -> tuple[bool, Holder | None]:
    """What a change is: locked or not, and by whom."""
    return workspace.locked, workspace.holder if workspace.locked else None


def _own(workspace: Workspace, identity: Holder | None) -> bool:
    holder = workspace.holder
    return (
        workspace.locked
        and holder is not None
        and identity is not None
        and (identity.type, identity.id) == (holder.type, holder.id)
    )


async def wait_until_free(
    source: TfcSource,
    organization: str,
    name: str,
    *,
    patience: timedelta,
    interval: timedelta,
    allow_own: bool,
    memory: Memory | None,
    out: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
) -> int:
    deadline = clock() + patience.total_seconds()
    identity = await source.identity() if allow_own else None
    workspace = await source.read_workspace_by_name(organization, name)
    where = f"{organization}/{name}"
    for line in describe_lock(workspace, memory, source.now()):
        out(line)
    seen = _state(workspace)
    if not workspace.locked:
        return EXIT_FREE
    while True:
        if not workspace.locked:
            out(f"{where}: unlocked")
            return EXIT_FREE
        if allow_own and _own(workspace, identity):
            out(f"{where}: held by the token's own user ({holder_text(workspace.holder)})")
            return EXIT_FREE
        remaining = deadline - clock()
        if remaining <= 0:
            out(
                f"{where}: timed out after {format_duration(patience)}, still locked by "
                f"{holder_text(workspace.holder)}"
            )
            return EXIT_TIMEOUT
        await asyncio.sleep(min(interval.total_seconds(), remaining))
        workspace = await source.read_workspace(workspace.id, workspace.organization)
        state = _state(workspace)
        if state != seen and workspace.locked:
            # A new holder: said once, with since when as far as anyone can tell.
            for line in describe_lock(workspace, memory, source.now()):
                out(line)
        seen = state


async def wait(
    policy: Policy,
    token: SecretStr,
    organization: str,
    name: str,
    *,
    patience: timedelta,
    interval: timedelta,
    allow_own: bool,
    out: Callable[[str], None],
) -> int:
    metrics = Metrics()
    # The sleep between reads sets the pace; the limiter is the floor under it (one request
    # a second), not a second wait of a whole interval on top of the sleep.
    rate = 1 / MIN_INTERVAL.total_seconds()
    async with tfc_client(policy, token, metrics, requests_per_second=rate) as client:
        source = TfcSource(client, [organization], metrics)
        return await wait_until_free(
            source,
            organization,
            name,
            patience=patience,
            interval=interval,
            allow_own=allow_own,
            memory=Memory.load(policy.state_file),  # read only: the daemon owns it
            out=out,
        )


def _duration(text: str, option: str) -> timedelta | str:
    try:
        return parse_duration(text)
    except ValueError as exc:
        return f"{option} {text!r}: {exc}"


def main(args: argparse.Namespace) -> int:
    name = "wait"
    problems: list[str] = []
    target = parse_workspace_ref(args.workspace)
    if target is None:
        problems.append(f"{args.workspace!r} is not <organization>/<workspace>")
    timeout = _duration(args.timeout, "--timeout")
    interval = _duration(args.interval, "--interval")
    for value in (timeout, interval):
        if isinstance(value, str):
            problems.append(value)
    if isinstance(interval, timedelta) and interval < MIN_INTERVAL:
        problems.append(f"--interval {args.interval!r}: at least 1s (one workspace, read slowly)")
    if problems:
        for problem in problems:
            print(printable(f"tfc-watchdog {name}: {problem}"), file=sys.stderr)
        return EXIT_USAGE
    assert target is not None
    assert isinstance(timeout, timedelta)
    assert isinstance(interval, timedelta)
    loaded = load_or_report(args.config, name)
    if isinstance(loaded, int):
        return loaded
    policy, token = loaded
    if policy.tfc is None or token is None:
        print(f"{args.config}: `wait` needs `tfc` in the config", file=sys.stderr)
        return EXIT_USAGE
    # The lines on stdout are the output; logs only when something is wrong.
    configure_logs(policy, token, "error")

    def out(line: str) -> None:
        print(printable(line), flush=True)

    organization, workspace = target
    try:
        return asyncio.run(
            wait(
                policy,
                token,
                organization,
                workspace,
                patience=timeout,
                interval=interval,
                allow_own=args.allow_own,
                out=out,
            )
        )
    except (TfcError, SourceError) as exc:
        print(printable(f"tfc-watchdog {name}: {api_error(exc)}"), file=sys.stderr)
        return EXIT_API_FAILURE
