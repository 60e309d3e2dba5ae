"""The ops server of the real daemon on a bad day: a flood of idle connections past its
open-file limit, a taken port, and methods /metrics does not serve.

The flood test lowers the daemon's RLIMIT_NOFILE to 256 (in the child only) and opens 300
connections that never send a request: the cap and the header deadline keep descriptors
for the cycle, /healthz answers meanwhile, and the log stays small.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import base_config, child_env, run_cli, running_daemon, write_config
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer

pytestmark = pytest.mark.e2e

FD_LIMIT = 256
IDLE_CONNECTIONS = 300


def _lower_fd_limit() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def _cycles(base: str) -> int:
    try:
        text = httpx.get(f"{base}/metrics", timeout=2).text
    except httpx.HTTPError:
        return -1
    for line in text.splitlines():
        if line.startswith("tfc_watchdog_cycle_duration_seconds_count"):
            return int(float(line.split()[-1]))
    return 0


def _healthz(base: str) -> int | str:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


@contextlib.contextmanager
def _idle_connections(address: tuple[str, int], count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that never send a byte (non-blocking connects: all at once)."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(address)
            opened.append(sock)
        yield opened
    finally:
        for sock in opened:
            sock.close()


def test_idle_connections_past_the_fd_limit_leave_healthz_and_the_cycle_running(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = base_config(simulator.url, interval=0.5)
    config["log"] = {"format": "json", "level": "info"}
    path = write_config(tmp_path / "config.yaml", config)
    log_path = tmp_path / "daemon.log"
    base = f"http://{config['listen']}"
    host, port = config["listen"].rsplit(":", 1)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "watchdog", "run", "--config", str(path)],
            env=child_env(ADMIN_TOKEN),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_lower_fd_limit,  # only setrlimit: safe before exec
        )
    try:
        deadline = time.monotonic() + 30
        while _healthz(base) != 200:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        size_before = log_path.stat().st_size
        flood_started = time.monotonic()
        with _idle_connections((host, int(port)), IDLE_CONNECTIONS):
            time.sleep(1.0)  # the flood is accepted (and, past the cap, shed)
            cycles_before = _cycles(base)
            answers = []
            for _ in range(4):
                answers.append(_healthz(base))
                time.sleep(0.5)
            # The cycle keeps its descriptors: two more cycles complete during the flood.
            wait_until = time.monotonic() + 8
            while (cycles_after := _cycles(base)) < cycles_before + 2:
                if time.monotonic() > wait_until:
                    break
                time.sleep(0.2)
        size_after = log_path.stat().st_size
        flood_seconds = time.monotonic() - flood_started
    finally:
        process.terminate()
        code = process.wait(30)
    grown = size_after - size_before
    flood_lines = log_path.read_bytes()[size_before:size_after].decode().splitlines()
    server_lines = [line for line in flood_lines if '"logger": "asyncio"' in line]
    server_lines += [line for line in flood_lines if '"logger": "uvicorn.error"' in line]
    assert answers == [200] * 4, answers
    assert cycles_after >= cycles_before + 2, (cycles_before, cycles_after)
    assert not [line for line in flood_lines if "Too many open files" in line]
    # The one warning about the cap; the rest is the cycles' ordinary lines.
    assert len(server_lines) <= 2, server_lines
    assert grown < 100_000, f"the log grew by {grown} bytes during the flood"
    assert code == 0
    print(
        f"flood: {IDLE_CONNECTIONS} idle connections at RLIMIT_NOFILE {FD_LIMIT}: /healthz "
        f"{answers}, cycles {cycles_before} -> {cycles_after}, log +{grown} bytes "
        f"in {flood_seconds:.1f} s"
    )


def test_metrics_answers_get_and_head_and_405_otherwise(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "config.yaml", base_config(simulator.url, interval=5))
    with running_daemon(path, ADMIN_TOKEN) as daemon:
        assert daemon.get("/metrics").status_code == 200
        head = httpx.head(f"{daemon.ops_url}/metrics", timeout=5)
        assert head.status_code == 200 and head.content == b""
        for method in ("POST", "PUT", "DELETE"):
            response = httpx.request(method, f"{daemon.ops_url}/metrics", timeout=5)
            assert response.status_code == 405, method


def test_a_taken_ops_port_exits_1_with_one_line_and_no_traceback(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        config = base_config(simulator.url, listen=listen)
        config["log"] = {"format": "json", "level": "info"}
        path = write_config(tmp_path / "config.yaml", config)
        result = run_cli("run", "--config", str(path), token=ADMIN_TOKEN)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert listen in lines[0] and "in use" in lines[0]
    assert result.stdout == ""
    # Nothing was read or done: the port is checked before the first cycle.
    assert simulator.requests() == []
