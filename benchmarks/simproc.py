"""The simulator in its own process (`python -m watchdog simulator --workspaces N ...`), on
127.0.0.1 only, with the few `/_sim/` admin calls the benchmark needs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class SimulatorProcess:
    def __init__(
        self,
        workspaces: int,
        *,
        locked: str = "1%",
        organization: str = "bench",
        rate_limit: float = 30.0,
        latency_ms: float = 0.0,
        start_timeout: float = 600.0,
    ) -> None:
        self.organization = organization
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.command = [
            sys.executable,
            "-m",
            "watchdog",
            "simulator",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workspaces",
            str(workspaces),
            "--locked",
            locked,
            "--organization",
            organization,
            "--rate-limit",
            f"{rate_limit:g}",
            "--latency-ms",
            f"{latency_ms:g}",
        ]
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin: httpx.Client | None = None

    def token(self, kind: str) -> str:
        """The generated organization's tokens: admin (team), org, read, user."""
        return f"{self.organization}-{kind}-token"

    def __enter__(self) -> SimulatorProcess:
        self._proc = subprocess.Popen(
            self.command,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._admin = httpx.Client(base_url=self.url + "/_sim", timeout=120)
        deadline = time.monotonic() + self._start_timeout
        while True:
            if self._proc.poll() is not None:
                error = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"simulator exited {self._proc.returncode}: {error[-2000:]}")
            try:
                self._admin.get("/clock").raise_for_status()
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError("the simulator did not start in time") from None
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=10)
            if self._proc.stderr is not None:
                self._proc.stderr.close()
            self._proc = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self._admin is not None
        response = self._admin.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def settings(self, **values: float) -> Any:
        return self._call("POST", "/settings", json=values)

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def requests(self) -> list[dict[str, Any]]:
        body = self._call("GET", "/requests")
        entries = body["requests"] if isinstance(body, dict) else body
        assert isinstance(entries, list)
        return entries


def summarize(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of a request log: total, 429s, and by route (ids folded into `:id`)."""
    routes: Counter[str] = Counter()
    for entry in entries:
        routes[f"{entry['method']} {_template(entry['path'])}"] += 1
    return {
        "total": len(entries),
        "rate_limited": sum(1 for e in entries if e.get("status") == 429),
        "routes": dict(routes),
    }


def _template(path: str) -> str:
    parts = path.split("/")
    for index, part in enumerate(parts):
        if part.startswith(("ws-", "run-")):
            parts[index] = ":id"
        elif index >= 1 and parts[index - 1] == "organizations" and part:
            parts[index] = ":org"
    return "/".join(parts)
