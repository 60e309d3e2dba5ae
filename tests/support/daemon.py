"""Run the real `tfc-watchdog` process in end-to-end tests.

`DaemonProcess` writes a config file, starts `python -m watchdog run` (or `scan`) as a child
process with the token in its environment, collects its JSON log lines, and stops it with
SIGTERM. Tests then assert on what reached the simulator and on the daemon's own output.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.process import run_captured

# How long a wait may take before it is a hang: a guard, never a timing assertion. Generous,
# because the suite runs on several workers per core and a passing wait costs nothing extra.
GUARD = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def base_config(simulator_url: str, **overrides: Any) -> dict[str, Any]:
    """A config for the demo organization against the simulator, with a fast interval."""
    config: dict[str, Any] = {
        "dry_run": True,
        "interval": "1s",
        "listen": f"127.0.0.1:{free_port()}",
        "log": {"format": "json", "level": "debug"},
        # Every workspace read every cycle: the stories change locks between cycles of a
        # second and expect the next cycle to see them (two-tier polling has its own tests).
        "tfc": {
            "address": simulator_url,
            "organizations": ["demo"],
            "timeout": "5s",
            "full_scan_interval": 0,
        },
    }
    config.update(overrides)
    return config


def force_unlock_one(
    simulator_url: str, ca_file: Path, *, workspace: str, stale_after: str, **overrides: Any
) -> dict[str, Any]:
    """`base_config` over HTTPS (tfc.ca_bundle) where only `workspace` may be acted on: its
    lock is force-unlocked once it is `stale_after` old; every other lock is only reported."""
    return base_config(
        simulator_url,
        tfc={
            "address": simulator_url,
            "organizations": ["demo"],
            "timeout": "5s",
            "ca_bundle": str(ca_file),
            "full_scan_interval": 0,
        },
        defaults={"lock_stale_after": "1h", "actions": []},
        rules=[
            {
                "id": "terraform-cli",
                "match": {"workspaces": [workspace]},
                "lock_stale_after": stale_after,
                "actions": ["force_unlock"],
            }
        ],
        **overrides,
    )


def child_env(token: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFC_WATCHDOG_")}
    if token is not None:
        env["TFC_WATCHDOG_TOKEN"] = token
    env.update(extra or {})
    return env


class DaemonProcess:
    def __init__(self, config_path: Path, token: str | None, *, once: bool = False) -> None:
        self.config_path = config_path
        self.config = yaml.safe_load(config_path.read_text())
        args = [sys.executable, "-m", "watchdog", "run", "--config", str(config_path)]
        if once:
            args.append("--once")
        self.process = subprocess.Popen(
            args,
            env=child_env(token),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        # Each line parsed once, as it arrives: the waits below look at the events ten times
        # a second, and parsing every line again each time grew with the length of a test.
        self._events: list[dict[str, Any]] = []
        # One client for every poll of the ops server: building an httpx client loads the CA
        # bundle (~25 ms of CPU), which a poll ten times a second would pay each time.
        self._http = httpx.Client(timeout=5)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        # Closed here, at EOF: an unclosed pipe is a ResourceWarning, and warnings fail tests.
        with self.process.stdout:
            for raw in self.process.stdout:
                line = raw.rstrip("\n")
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                # The event before the line: a reader of `lines` then finds it in `events()`.
                if isinstance(event, dict):
                    self._events.append(event)
                self.lines.append(line)

    @property
    def ops_url(self) -> str:
        return f"http://{self.config['listen']}"

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Parsed JSON log events (optionally only those whose `event` is `name`)."""
        return [event for event in list(self._events) if name is None or event.get("event") == name]

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = GUARD, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.process.poll() is not None:
                raise AssertionError(
                    f"daemon exited ({self.process.returncode}) while waiting for {what}:\n"
                    + "\n".join(self.lines[-40:])
                )
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(self.lines[-40:]))

    def wait_for_event(self, name: str, timeout: float = GUARD, **fields: Any) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for event in self.events(name):
                if all(event.get(k) == v for k, v in fields.items()):
                    return event
            return None

        result: dict[str, Any] = self.wait_for(find, timeout, f"event {name} {fields}")
        return result

    def cycles_completed(self) -> int:
        try:
            text = self._http.get(f"{self.ops_url}/metrics", timeout=2).text
        except httpx.HTTPError:
            return 0
        for line in text.splitlines():
            if line.startswith("tfc_watchdog_cycle_duration_seconds_count"):
                return int(float(line.split()[-1]))
        return 0

    def wait_cycles(self, count: int, timeout: float = GUARD) -> None:
        """Wait until `count` more cycles than now have completed."""
        target = self.cycles_completed() + count
        self.wait_for(lambda: self.cycles_completed() >= target, timeout, f"{count} cycles")

    def get(self, path: str) -> httpx.Response:
        return self._http.get(f"{self.ops_url}{path}")

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        self._http.close()
        return code

    def wait_exit(self, timeout: float = 60.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout=5)
        self._http.close()
        return code


@contextmanager
def running_daemon(
    config_path: Path, token: str | None, *, ready: bool = True
) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(config_path, token)
    try:
        if ready:
            daemon.wait_for(
                lambda: _ok(daemon, "/readyz"), timeout=GUARD, what="the daemon to become ready"
            )
        yield daemon
    finally:
        daemon.stop()


def _ok(daemon: DaemonProcess, path: str) -> bool:
    try:
        return daemon.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def run_cli(
    *args: str, token: str | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """`python -m watchdog ARGS` in a child process with `child_env(token)`."""
    return run_captured(
        [sys.executable, "-m", "watchdog", *args], env=child_env(token), timeout=timeout
    )
