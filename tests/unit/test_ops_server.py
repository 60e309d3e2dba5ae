"""The ops server's guards, on the real uvicorn server in this process: a header deadline, a
connection cap that keeps room for probes, rate-limited error logs, /metrics read-only, and
a taken port reported as an OSError (the daemon turns it into one line and exit 1).

Short deadlines here (a fraction of a second) keep the tests fast; the daemon's values are
the module's constants.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import uvicorn

from watchdog.metrics import Metrics
from watchdog.reporting import Health, Reporter
from watchdog.server import (
    GuardedH11Protocol,
    RateLimitedLog,
    bind_listener,
    build_app,
    connection_limit,
)


def _app() -> object:
    reporter = Reporter(Metrics())
    reporter.health = Health(ready=True, last_success_monotonic=time.monotonic())
    return build_app(reporter=reporter, interval=lambda: timedelta(seconds=60))


@contextlib.contextmanager
def _server(*, max_connections: int = 64, header_timeout: float = 0.5) -> Iterator[str]:
    """The ops app under uvicorn with the guarded protocol, in a thread; yields host:port."""
    protocol = type(
        "TestProtocol",
        (GuardedH11Protocol,),
        {"max_connections": max_connections, "header_timeout": header_timeout},
    )
    sock = bind_listener("127.0.0.1:0")
    config = uvicorn.Config(
        _app(),  # type: ignore[arg-type]
        log_config=None,
        access_log=False,
        lifespan="off",
        http=protocol,
        backlog=64,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        host, port = sock.getsockname()[:2]
        yield f"{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _connect(address: str) -> socket.socket:
    host, port = address.split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes `sock` (EOF or reset) within `within` seconds; whatever
    else arrives meanwhile (the rest of a response) is read and dropped."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(4096) == b"":
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
    return False


def test_a_client_that_never_sends_headers_is_closed_after_the_header_deadline() -> None:
    with _server(header_timeout=0.5) as address, _connect(address) as idle:
        started = time.monotonic()
        assert _closed_by_server(idle, within=5)
        assert 0.4 < time.monotonic() - started < 3


def test_trickled_header_bytes_do_not_extend_the_deadline() -> None:
    with _server(header_timeout=0.8) as address, _connect(address) as slow:
        started = time.monotonic()
        closed = False
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            if _closed_by_server(slow, within=0.1):
                closed = True
                break
        assert closed, "a client trickling its headers kept the connection open"
        assert time.monotonic() - started < 3


def test_keep_alive_works_and_the_deadline_rearms_after_each_response() -> None:
    with _server(header_timeout=0.6) as address:
        with httpx.Client(base_url=f"http://{address}") as client:
            for _ in range(3):
                assert client.get("/healthz").status_code == 200
                time.sleep(0.2)  # shorter than the deadline: the connection is reused
        with _connect(address) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            answered = time.monotonic()
            # Closed by the header deadline, well before uvicorn's 5 s keep-alive timeout.
            assert _closed_by_server(sock, within=4)
            assert time.monotonic() - answered < 2


def test_past_the_cap_the_longest_waiting_connection_is_closed_and_a_probe_gets_in() -> None:
    with _server(max_connections=4, header_timeout=30) as address:
        idle = [_connect(address) for _ in range(4)]
        time.sleep(0.2)
        try:
            # A fifth connection with a real request: the oldest idle one makes room.
            response = httpx.get(f"http://{address}/healthz", timeout=5)
            assert response.status_code == 200
            assert _closed_by_server(idle[0], within=2)
            assert not _closed_by_server(idle[-1], within=0.2)
        finally:
            for sock in idle:
                sock.close()


def test_metrics_answers_get_and_head_only() -> None:
    with _server() as address, httpx.Client(base_url=f"http://{address}") as client:
        assert client.get("/metrics").status_code == 200
        head = client.head("/metrics")
        assert head.status_code == 200 and head.content == b""
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            response = client.request(method, "/metrics")
            assert response.status_code == 405, method
            assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


def test_a_taken_port_is_an_oserror_not_an_exit() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            bind_listener(f"127.0.0.1:{port}")


def test_the_connection_cap_leaves_most_file_descriptors_to_the_cycle() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 4 <= connection_limit() <= max(4, soft // 4)


def test_rate_limited_log_lets_one_line_through_per_interval_and_counts_the_rest() -> None:
    # An interval far longer than the loop below takes however loaded the machine; then
    # shortened to nothing, as if it had passed (no sleeping, no timing).
    limiter = RateLimitedLog(interval=600.0)

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)

    accept = "socket.accept() out of system resource\nsocket: <fd=6>"
    passed = [limiter.filter(record(accept)) for _ in range(10_000)]
    assert passed.count(True) == 1
    assert limiter.suppressed_total == 9_999
    assert limiter.filter(record("another message"))  # counted per message
    limiter.interval = 0.0
    after = record(accept)
    assert limiter.filter(after)
    assert "9999 more like this" in after.getMessage()
