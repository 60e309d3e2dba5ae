"""A local HTTP receiver for notification tests: apprise's `json://127.0.0.1:PORT/path` and
`mmost://127.0.0.1:PORT/token` post here, and the tests read what arrived (no mock of
apprise: the real library sends real requests).

`mode`: "ok" (200), "error" (500), "hang" (holds each request until `release()` or the
server stops, then 200). `in_flight` counts requests received and not yet answered.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Mode = Literal["ok", "error", "hang"]


@dataclass(frozen=True)
class Received:
    path: str
    body: dict[str, Any]


class Receiver:
    def __init__(self) -> None:
        self.mode: Mode = "ok"
        self.received: list[Received] = []
        self.in_flight = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"raw": raw.decode("utf-8", "replace")}
                with receiver._lock:
                    receiver.received.append(Received(self.path, body))
                    receiver.in_flight += 1
                    mode = receiver.mode
                try:
                    if mode == "hang":
                        receiver._release.wait(timeout=60)
                    status = 500 if mode == "error" else 200
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def json_url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def mattermost_url(self, token: str) -> str:
        return f"mmost://127.0.0.1:{self.port}/{token}"

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.received]

    def titles(self) -> list[str]:
        return [str(b.get("title", "")) for b in self.bodies()]

    def release(self) -> None:
        self._release.set()

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    try:
        yield server
    finally:
        server.stop()
