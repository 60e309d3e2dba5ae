"""Token rotation, end to end: the real daemon reads its token from `tfc.token_file` (a
mounted Secret) and the real simulator accepts one token at a time, the way HCP Terraform
does once an old token is revoked. The daemon must pick up the rotated file without a
restart, and what reaches the server must be the new token.

Tokens map to principals in the simulator (`world.tokens`), and its request log records the
principal each request authenticated as (None when the token was refused): the old token is
the demo's organization token, the new one a fresh token of the `owners` team.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import base_config, free_port, running_daemon, write_config
from tests.support.gitlab import DEVELOPER_TOKEN, WATCHDOG_TOKEN, WATCHDOG_USER, GitLabServer
from tests.support.gitlab import PROJECT as GITLAB_PROJECT
from tests.support.simulator import ADMIN_TOKEN, ORG_TOKEN, SimulatorServer

pytestmark = pytest.mark.e2e

NEW_TOKEN = "demo-rotated-token"
OLD_PRINCIPAL = "demo organization token"
NEW_PRINCIPAL = "owners"


def rotate(path: Path, token: str) -> None:
    """Replace the file in one step, as the kubelet's symlink swap does."""
    staging = path.with_name(path.name + ".new")
    staging.write_text(token + "\n")
    os.replace(staging, path)


def accept_new_token(simulator: SimulatorServer) -> None:
    world = simulator.simulator.world
    world.tokens[NEW_TOKEN] = world.tokens[ADMIN_TOKEN]


def revoke(simulator: SimulatorServer, token: str) -> None:
    simulator.simulator.world.tokens.pop(token, None)


def config_with_token_file(tmp_path: Path, simulator: SimulatorServer, **overrides: Any) -> Path:
    config = base_config(simulator.url, **overrides)
    config["tfc"]["token_file"] = str(tmp_path / "token")
    return write_config(tmp_path / "config.yaml", config)


def test_a_rotated_token_file_is_used_by_the_next_cycle(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(ORG_TOKEN + "\n")
    config = config_with_token_file(tmp_path, simulator)
    # No TFC_WATCHDOG_TOKEN in the daemon's environment: the file is the only source.
    with running_daemon(config, None) as daemon:
        assert {r["principal"] for r in simulator.requests()} == {OLD_PRINCIPAL}

        accept_new_token(simulator)
        rotate(token_file, NEW_TOKEN)
        revoke(simulator, ORG_TOKEN)
        event = daemon.wait_for_event("token_reloaded", timeout=10)
        assert event["trigger"] == "file_changed"
        assert event["token_file"] == str(token_file)

        simulator.reset_requests()
        daemon.wait_cycles(2, timeout=15)
        seen = simulator.requests()
        assert seen, "no request reached the simulator after the rotation"
        # Every request after the rotation authenticated with the new token; none was
        # refused (the old token would have been).
        assert {r["principal"] for r in seen} == {NEW_PRINCIPAL}
        assert {r["status"] for r in seen} == {200}
        assert daemon.get("/readyz").status_code == 200
    for token in (ORG_TOKEN, NEW_TOKEN):
        assert not [line for line in daemon.lines if token in line]


def test_a_401_rereads_the_token_file_and_retries_the_cycle_at_once(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    # The old token is already revoked when the daemon starts its only scheduled cycle (the
    # next one is an hour away); the Secret is rotated while that cycle's first request is
    # on its way (held by a one-shot latency fault), after the daemon last looked at the file.
    token_file = tmp_path / "token"
    token_file.write_text(ORG_TOKEN + "\n")
    revoke(simulator, ORG_TOKEN)
    accept_new_token(simulator)
    simulator.inject_fault("latency", latency_ms=1500, count=1)
    config = config_with_token_file(tmp_path, simulator, interval="1h")
    with running_daemon(config, None, ready=False) as daemon:
        daemon.wait_for(lambda: not simulator.faults(), timeout=15, what="the first request")
        rotate(token_file, NEW_TOKEN)

        event = daemon.wait_for_event("token_reloaded", timeout=10)
        assert event["trigger"] == "unauthorized"
        daemon.wait_for(
            lambda: daemon.get("/readyz").status_code == 200,
            timeout=10,
            what="the retried cycle to succeed",
        )
        seen = simulator.requests()
        refused = [r for r in seen if r["status"] == 401]
        accepted = [r for r in seen if r["principal"] == NEW_PRINCIPAL]
        assert refused, "the old token was never refused"
        assert {r["principal"] for r in refused} == {None}
        assert accepted and {r["status"] for r in accepted} == {200}
        # The retry came after the refusal, well before the next scheduled cycle.
        assert min(r["received"] for r in accepted) >= max(r["finished"] for r in refused)


def test_a_rotated_gitlab_token_file_is_used_by_the_next_cycle(tmp_path: Path) -> None:
    """The same rotation for `gitlab.token_file`, against the simulator's GitLab app: the
    old token (a Developer's) is revoked, the file now holds the watchdog bot's."""
    token_file = tmp_path / "gitlab-token"
    token_file.write_text(DEVELOPER_TOKEN + "\n")
    with GitLabServer() as gitlab:
        config = write_config(
            tmp_path / "config.yaml",
            {
                "interval": 0.5,
                "listen": f"127.0.0.1:{free_port()}",
                "log": {"format": "json", "level": "info"},
                "gitlab": {
                    "address": gitlab.url,
                    "projects": [GITLAB_PROJECT],
                    "token_file": str(token_file),
                    "timeout": "5s",
                },
            },
        )
        with running_daemon(config, None) as daemon:
            assert {r["principal"] for r in gitlab.world.requests()} == {"dev"}

            rotate(token_file, WATCHDOG_TOKEN)
            gitlab.world.members.pop(DEVELOPER_TOKEN)
            event = daemon.wait_for_event("token_reloaded", timeout=10)
            assert event["source"] == "gitlab"
            assert event["token_file"] == str(token_file)

            seen = len(gitlab.world.requests())
            daemon.wait_cycles(2, timeout=15)
            after = gitlab.world.requests()[seen:]
            assert after, "no request reached GitLab after the rotation"
            assert {r["principal"] for r in after} == {WATCHDOG_USER}
            assert {r["status"] for r in after} == {200}
    for token in (DEVELOPER_TOKEN, WATCHDOG_TOKEN):
        assert not [line for line in daemon.lines if token in line]
