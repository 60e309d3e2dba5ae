"""`tfc-watchdog demo`: the whole story on one machine, in under a minute.

Starts the simulator on the demo scenario with its clock running 60 times faster than real
time (one real second is one simulated minute), then the real daemon in enforce mode with a
one-second interval, and prints a readable timeline of what the daemon reports in its logs
and what changes in the simulated organization:

- the stale user lock on `legacy-network` is found, watched for two cycles, and force-unlocked
  once it is past its rule's `lock_stale_after` of observation;
- the apply stuck for 7 h on `payments-prod` is cancelled, then force-cancelled after the
  cool-off because its process ignores the cancel, and the run queued behind it starts;
- the run on `billing-staging` waiting two days for confirmation is discarded;
- the young lock on `web-dev` and the protected `prod-core` are left alone, with why.

Both processes are the real ones (`python -m watchdog simulator` and `python -m watchdog
run`), talking HTTP on 127.0.0.1, so the demo exercises exactly what a deployment does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from watchdog import TOKEN_ENV
from watchdog.report import DEFAULT_WIDTH

TIME_SCALE = 60.0  # simulated seconds per real second
DEADLINE_SECONDS = 50.0
# The simulator's well-known demo token (a team with admin on every workspace), not a secret.
TOKEN = "demo-admin-token"  # noqa: S105

# Ends the demo early once every expected step has happened (dry-run: as far as it goes).
EXPECTED_DRY_RUN = {
    ("discard", "billing-staging"),
    ("cancel", "payments-prod"),
    ("force_unlock", "legacy-network"),
}
EXPECTED = {
    ("discard", "billing-staging"),
    ("cancel", "payments-prod"),
    ("force_cancel", "payments-prod"),
    ("force_unlock", "legacy-network"),
}

VERBS = {
    "cancel": "cancelled the stuck run",
    "force_cancel": "force-cancelled the run (it ignored the cancel)",
    "discard": "discarded the run waiting for a human",
    "unlock": "unlocked its own stale lock",
    "force_unlock": "force-unlocked the stale lock",
}


def demo_config(simulator_url: str, listen: str, *, dry_run: bool) -> dict[str, Any]:
    """The policy the demo runs: every rung enabled, a short staleness for CLI leftovers."""
    return {
        "dry_run": dry_run,
        "interval": "1s",
        "listen": listen,
        "log": {"format": "json", "level": "info"},
        # Every workspace every 2 s, only those with an active run in the cycles between.
        "tfc": {
            "address": simulator_url,
            "organizations": ["demo"],
            "timeout": "10s",
            "full_scan_interval": "2s",
        },
        "limits": {"max_actions_per_cycle": 3, "max_actions_per_hour": 20},
        "protect": {
            "tags": ["protected"],
            "lock_reasons": ["(?i)maintenance", "(?i)do.?not.?unlock"],
        },
        "defaults": {
            "lock_stale_after": "2h",
            "run_stuck_after": {"applying": "6h", "waiting": "24h"},
            "actions": ["cancel", "force_cancel", "discard", "unlock", "force_unlock"],
        },
        "rules": [
            {
                "id": "cli-leftovers",
                "match": {"workspaces": ["legacy-*"]},
                "lock_stale_after": "10m",
                "actions": ["cancel", "force_cancel", "discard", "unlock", "force_unlock"],
            }
        ],
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Timeline:
    """Prints lines stamped with real and simulated elapsed time."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.start = time.monotonic()

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.start
        simulated = int(elapsed * TIME_SCALE)
        hours, rest = divmod(simulated, 3600)
        stamp = f"[{elapsed:5.1f}s | sim +{hours}h{rest // 60:02d}m]"
        # Continuation lines start under the text after the 9-column label (FOUND, ACTED, ...).
        indent = " " * (len(stamp) + 1 + 9)
        lines = textwrap.wrap(
            f"{stamp} {text}",
            width=max(_width(), len(indent) + 40),
            subsequent_indent=indent,
            break_on_hyphens=False,
        )
        print("\n".join(lines), file=self.out, flush=True)


def _width() -> int:
    """The terminal's width ($COLUMNS first), as `scan` uses it; 120 when not a terminal."""
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _pump(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def _wait_until_up(url: str, process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"the {what} exited early:\n{output}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the {what} did not start within 20 s")


class Story:
    """Turns daemon log events and simulator state changes into timeline lines."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.done: set[tuple[str, str]] = set()
        # workspace -> {"cancel: done": times}, in the order they first happened
        self.outcomes: dict[str, dict[str, int]] = {}
        self.left_alone: dict[str, str] = {}
        self.announced: set[tuple[str, str]] = set()
        self.runs: dict[str, str | None] = {}
        self.other: list[str] = []  # daemon output that is not a JSON log event

    def event(self, event: dict[str, Any]) -> None:
        name = event.get("event", "")
        workspace = str(event.get("workspace", ""))
        say = self.timeline.say
        if name == "finding" and event.get("kind") in {"lock_stale", "run_stuck", "run_waiting"}:
            if (event["kind"], workspace) not in self.announced:
                self.announced.add((event["kind"], workspace))
                say(f"FOUND    {workspace}: {event.get('reason')}")
        elif name == "finding" and event.get("kind") == "lock_held":
            # Run-held locks are told by their run's finding; user/team locks start here.
            if str(event.get("holder", "")).startswith("run:"):
                return
            if ("held", workspace) not in self.announced:
                self.announced.add(("held", workspace))
                say(f"seen     {workspace}: {event.get('reason')}")
        elif name == "not_acting":
            reason = str(event.get("reason", ""))
            if self.left_alone.get(workspace) != reason:
                self.left_alone[workspace] = reason
                say(f"WAIT     {workspace}: {reason}")
        elif name == "action" or name.startswith("would "):
            action, outcome = str(event.get("action")), str(event.get("outcome"))
            seen = self.outcomes.setdefault(workspace, {})
            seen[f"{action}: {outcome}"] = seen.get(f"{action}: {outcome}", 0) + 1
            if outcome == "done":
                self.done.add((action, workspace))
                say(f"ACTED    {workspace}: {VERBS.get(action, action)} ({event.get('reason')})")
            elif outcome == "dry_run":
                if (action, workspace) not in self.done:  # it would, every cycle: say it once
                    say(f"WOULD    {action} {workspace} ({event.get('reason')})")
                self.done.add((action, workspace))
            else:
                detail = event.get("detail") or event.get("reason")
                say(f"{outcome.upper():8} {action} {workspace}: {detail}")
        elif name == "finding_cleared" and event.get("kind") == "lock_held":
            say(f"CLEARED  {workspace}: the lock is gone")
        elif name.startswith("DRY-RUN") or name.startswith("ENFORCING"):
            say(name)

    def state(self, state: dict[str, Any]) -> None:
        """Notice runs that start on their own (the run queued behind a cleared lock)."""
        for ws in state.get("organizations", {}).get("demo", []):
            run = ws.get("current_run") or {}
            run_id = run.get("id")
            before = self.runs.get(ws["name"], run_id)
            self.runs[ws["name"]] = run_id
            if run_id and before and run_id != before:
                self.timeline.say(
                    f"STARTED  {ws['name']}: the queued run {run_id} is now {run.get('status')}"
                )
                self.done.add(("queued_run_started", ws["name"]))


def _summary(story: Story, state: dict[str, Any], out: IO[str]) -> None:
    rows = []
    interesting = {"payments-prod", "billing-staging", "legacy-network", "web-dev", "prod-core"}
    interesting |= set(story.outcomes) | set(story.left_alone)
    for ws in state.get("organizations", {}).get("demo", []):
        if ws["name"] not in interesting:
            continue
        holder = ws.get("holder") or {}
        run = ws.get("current_run") or {}
        now = (
            "locked by " + str(holder.get("name") or holder.get("id"))
            if ws["locked"]
            else ("unlocked")
        )
        if run:
            now += f", run {run.get('status')}"
        did = "; ".join(
            text if times == 1 else f"{text} (x{times})"
            for text, times in story.outcomes.get(ws["name"], {}).items()
        ) or ("left alone: " + story.left_alone.get(ws["name"], "nothing to do"))
        rows.append((ws["name"], did, now))
    header = ("WORKSPACE", "WHAT THE WATCHDOG DID", "NOW")
    width = [max(len(r[i]) for r in [*rows, header]) for i in range(3)]
    # The middle column gives way to fit the terminal: its text wraps within the row.
    width[1] = max(30, min(width[1], _width() - width[0] - width[2] - 4))
    print("\nSummary", file=out)
    for name, did, now in [header, *rows]:
        parts = textwrap.wrap(did, width=width[1], break_on_hyphens=False) or [""]
        cells = [(name, parts[0], now), *(("", part, "") for part in parts[1:])]
        for row in cells:
            line = "  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True))
            print(line.rstrip(), file=out)


def main(args: argparse.Namespace) -> int:
    out = sys.stdout
    dry_run = bool(getattr(args, "dry_run", False))
    sim_port, ops_port = _free_port(), _free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    ops_url = f"http://127.0.0.1:{ops_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFC_WATCHDOG_")}
    timeline = Timeline(out)
    print(
        "tfc-watchdog demo: a simulated HCP Terraform organization `demo`, the clock running\n"
        f"{int(TIME_SCALE)}x (1 s = 1 simulated minute), the watchdog "
        f"{'in DRY-RUN' if dry_run else 'ENFORCING'} every second.\n",
        file=out,
        flush=True,
    )
    simulator_args = [sys.executable, "-m", "watchdog", "simulator", "--port", str(sim_port)]
    simulator_args += ["--time-scale", str(TIME_SCALE)]
    with (
        tempfile.TemporaryDirectory(prefix="tfc-watchdog-demo-") as tmp,
        _process(simulator_args, env) as simulator,
    ):
        _wait_until_up(f"{sim_url}/_sim/clock", simulator, "simulator")
        config_path = Path(tmp) / "config.yaml"
        config = demo_config(sim_url, f"127.0.0.1:{ops_port}", dry_run=dry_run)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        print(f"simulator  {sim_url}/api/v2   (state: {sim_url}/_sim/state)", file=out)
        print(f"watchdog   {ops_url}/metrics   {ops_url}/locks", file=out)
        print(f"config     {config_path}\n", file=out, flush=True)

        daemon_env = {**env, TOKEN_ENV: TOKEN}
        daemon_args = [sys.executable, "-m", "watchdog", "run", "--config", str(config_path)]
        story = Story(timeline)
        lines: queue.Queue[str] = queue.Queue()
        with _process(daemon_args, daemon_env) as daemon:
            assert daemon.stdout is not None
            threading.Thread(target=_pump, args=(daemon.stdout, lines), daemon=True).start()
            deadline = time.monotonic() + DEADLINE_SECONDS
            last_poll = 0.0
            while time.monotonic() < deadline and daemon.poll() is None:
                try:
                    line = lines.get(timeout=0.2)
                except queue.Empty:
                    line = ""
                if line:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        story.other.append(line.rstrip())  # not a log event: a crash, say
                    else:
                        if isinstance(event, dict):
                            story.event(event)
                if time.monotonic() - last_poll > 0.5:
                    last_poll = time.monotonic()
                    with contextlib.suppress(httpx.HTTPError, ValueError):
                        story.state(httpx.get(f"{sim_url}/_sim/state", timeout=2).json())
                finished = story.done >= EXPECTED and any(
                    kind == "queued_run_started" for kind, _ in story.done
                )
                if not dry_run and finished:
                    timeline.say("every stale lock and stuck run is dealt with; stopping")
                    break
                if dry_run and story.done >= EXPECTED_DRY_RUN:
                    timeline.say("every step the watchdog would take is shown; stopping")
                    break
            failed = daemon.poll() is not None
        state = httpx.get(f"{sim_url}/_sim/state", timeout=5).json()
    _summary(story, state, out)
    if failed:
        print("\nthe watchdog exited unexpectedly:", file=sys.stderr)
        for line in story.other[-20:]:
            print(f"  {line}", file=sys.stderr)
        return 1
    missing = sorted((EXPECTED_DRY_RUN if dry_run else EXPECTED) - story.done)
    if missing:
        print(f"\nnot every step happened before the deadline: {missing}", file=sys.stderr)
        return 1
    return 0
