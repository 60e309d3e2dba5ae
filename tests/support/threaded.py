"""Serve an app under uvicorn in a thread of the test process (the simulators' servers)."""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn


def local_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a free port, for uvicorn to serve on."""
    # IPPROTO_TCP named: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # sockets that say they are TCP; without it every response whose headers and body
    # are two writes stalls on the client's delayed ACK (about 40 ms on Linux).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def serve_in_thread(server: uvicorn.Server, sock: socket.socket, what: str) -> threading.Thread:
    """Run `server` on `sock` in a daemon thread, returned once it serves. One that has not
    started within 15 s is told to exit and `RuntimeError` names `what`."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            thread.join(timeout=15)
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.01)
    return thread
