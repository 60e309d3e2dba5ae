"""The simulator's GitLab part (`watchdog.simulator.gitlab`) served for tests.

`GitLabServer()` runs `build_gitlab_app` under uvicorn on 127.0.0.1:<free port> in a thread
(its own `Date` header off: the world's clock supplies it). One project, `infra/network`
(id 42), and three tokens: Terraform's (user `ci-runner`, Maintainer: it locks and writes),
the watchdog's (`watchdog-bot`, Maintainer: it may unlock) and a Developer's (reads only).
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from tests.support.threaded import local_socket, serve_in_thread
from watchdog.simulator.gitlab import GitLabWorld, Member, build_gitlab_app

PROJECT = "infra/network"
PROJECT_ID = 42
TERRAFORM_USER = "ci-runner"
TERRAFORM_TOKEN = "glpat-terraform-token-0001"
WATCHDOG_USER = "watchdog-bot"
WATCHDOG_TOKEN = "glpat-watchdog-token-0002"
DEVELOPER_TOKEN = "glpat-developer-token-0003"


def gitlab_world() -> GitLabWorld:
    return GitLabWorld(
        projects={PROJECT: PROJECT_ID},
        members={
            TERRAFORM_TOKEN: Member(TERRAFORM_USER, "maintainer"),
            WATCHDOG_TOKEN: Member(WATCHDOG_USER, "maintainer"),
            DEVELOPER_TOKEN: Member("dev", "developer"),
        },
    )


class GitLabServer:
    def __init__(self, world: GitLabWorld | None = None) -> None:
        self.world = world or gitlab_world()
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def __enter__(self) -> GitLabServer:
        import uvicorn

        sock = local_socket()
        self._socket = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            build_gitlab_app(self.world),
            log_level="error",
            date_header=False,
            server_header=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        try:
            self._thread = serve_in_thread(self._server, sock, "the GitLab simulator")
        except RuntimeError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._socket is not None:
            self._socket.close()

    def state_address(self, name: str, project: str | int = PROJECT_ID) -> str:
        """What Terraform's http backend `address` is for state `name`."""
        return f"{self.url}/api/v4/projects/{project}/terraform/state/{name}"
