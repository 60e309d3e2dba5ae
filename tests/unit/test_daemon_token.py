"""The daemon's token re-read: a changed `tfc.token_file` reaches the client's next request;
an unchanged, invalid or env-supplied token changes nothing, and no log line carries it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import structlog

from tests.support.gitlab import (
    DEVELOPER_TOKEN,
    PROJECT,
    TERRAFORM_USER,
    WATCHDOG_TOKEN,
    WATCHDOG_USER,
    gitlab_world,
)
from watchdog import GITLAB_TOKEN_ENV, TOKEN_ENV
from watchdog.configload import load_policy, load_token
from watchdog.daemon import Daemon
from watchdog.metrics import Metrics
from watchdog.model import Source
from watchdog.report import CycleReport
from watchdog.simulator.gitlab import GitLabWorld, build_gitlab_app
from watchdog.sources.errors import SourceError
from watchdog.sources.gitlab.client import GitLabClient
from watchdog.sources.gitlab.source import GitLabStateSource
from watchdog.sources.tfc.client import TfcClient

OLD = "oLdToKeN.atlasv1.first"
NEW = "nEwToKeN.atlasv1.second"
DATE = "Tue, 03 Mar 2026 10:00:00 GMT"


def daemon_with_client(tmp_path: Path, sent: list[str]) -> tuple[Daemon, TfcClient, Path]:
    token_file = tmp_path / "token"
    token_file.write_text(OLD + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        "tfc: {address: 'http://127.0.0.1:9', organizations: [acme], "
        f"token_file: '{token_file}'}}\n"
    )
    policy = load_policy(str(config), {})
    daemon = Daemon(policy, load_token(policy, {}), config)

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["Authorization"])
        return httpx.Response(200, json={"data": []}, headers={"Date": DATE})

    client = TfcClient(
        address="http://127.0.0.1:9",
        token=OLD,
        metrics=Metrics(),
        transport=httpx.MockTransport(answer),
        requests_per_second=1000.0,
    )
    # Only the client is looked at by the re-read.
    daemon._runtime = SimpleNamespace(tfc_client=client, gitlab_client=None)  # type: ignore[assignment]
    return daemon, client, token_file


def no_token_in(logs: list[dict[str, Any]]) -> None:
    text = json.dumps(logs, default=str)
    assert OLD not in text
    assert NEW not in text


async def test_a_changed_file_is_used_from_the_next_request(tmp_path: Path) -> None:
    sent: list[str] = []
    daemon, client, token_file = daemon_with_client(tmp_path, sent)
    async with client:
        with structlog.testing.capture_logs() as logs:
            assert daemon._refresh_token(trigger="file_changed") is False
            await client.get("/ping", endpoint="GET /ping")
            token_file.write_text(NEW + "\n")
            assert daemon._refresh_token(trigger="file_changed") is True
            await client.get("/ping", endpoint="GET /ping")
            # Read once: the same content is not picked up again.
            assert daemon._refresh_token(trigger="unauthorized") is False
    assert sent == [f"Bearer {OLD}", f"Bearer {NEW}"]
    (line,) = [entry for entry in logs if entry["event"] == "token_reloaded"]
    assert line["trigger"] == "file_changed"
    assert line["token_file"] == str(token_file)
    no_token_in(logs)


async def test_an_invalid_new_file_keeps_the_current_token_and_is_said_once(
    tmp_path: Path,
) -> None:
    sent: list[str] = []
    daemon, client, token_file = daemon_with_client(tmp_path, sent)
    async with client:
        with structlog.testing.capture_logs() as logs:
            token_file.write_text(f"{NEW} {NEW}\n")
            assert daemon._refresh_token(trigger="file_changed") is False
            assert daemon._refresh_token(trigger="file_changed") is False
            token_file.unlink()
            assert daemon._refresh_token(trigger="unauthorized") is False
            await client.get("/ping", endpoint="GET /ping")
    assert sent == [f"Bearer {OLD}"]
    rejected = [entry for entry in logs if entry["event"] == "token_reload_rejected"]
    assert len(rejected) == 2  # the bad content, then the missing file; each once
    assert "one line" in rejected[0]["errors"][0]
    assert "cannot read the token" in rejected[1]["errors"][0]
    no_token_in(logs)


async def test_a_token_from_the_environment_is_never_re_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, OLD)
    sent: list[str] = []
    daemon, client, token_file = daemon_with_client(tmp_path, sent)
    async with client:
        token_file.write_text(NEW + "\n")
        assert daemon._refresh_token(trigger="unauthorized") is False
        await client.get("/ping", endpoint="GET /ping")
    assert sent == [f"Bearer {OLD}"]


# --- the GitLab token: the same re-read, through the same path --------------------------------


def gitlab_daemon(tmp_path: Path, world: GitLabWorld) -> tuple[Daemon, GitLabStateSource, Path]:
    """A daemon watching only GitLab, its token in `gitlab.token_file`, whose GitLab client
    talks to the simulator's GitLab app in-process."""
    token_file = tmp_path / "gitlab-token"
    token_file.write_text(DEVELOPER_TOKEN + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"gitlab: {{address: 'http://gitlab.test', projects: [{PROJECT}], "
        f"token_file: '{token_file}'}}\n"
    )
    policy = load_policy(str(config), {})
    daemon = Daemon(policy, None, config)
    client = GitLabClient(
        address="http://gitlab.test",
        token=DEVELOPER_TOKEN,
        metrics=Metrics(),
        transport=httpx.ASGITransport(app=build_gitlab_app(world)),
    )
    source = GitLabStateSource(client, [PROJECT], Metrics())
    daemon._runtime = SimpleNamespace(tfc_client=None, gitlab_client=client)  # type: ignore[assignment]
    return daemon, source, token_file


def principals(world: GitLabWorld) -> list[str | None]:
    return [r["principal"] for r in world.requests()]


async def test_a_rotated_gitlab_token_file_is_used_from_the_next_request(tmp_path: Path) -> None:
    world = gitlab_world()
    world.put_lock(PROJECT, "prod", TERRAFORM_USER, "lock-1")
    daemon, source, token_file = gitlab_daemon(tmp_path, world)
    with structlog.testing.capture_logs() as logs:
        assert daemon._refresh_token(trigger="file_changed") is False
        (before,) = await source.observe()
        token_file.write_text(WATCHDOG_TOKEN + "\n")
        # GitLab revokes the old token: only the new one may read from now on.
        world.members.pop(DEVELOPER_TOKEN)
        assert daemon._refresh_token(trigger="file_changed") is True
        (after,) = await source.observe()
        assert daemon._refresh_token(trigger="unauthorized") is False
    await source.aclose()
    assert before.complete and after.complete, after.error
    assert principals(world) == ["dev", WATCHDOG_USER]
    (line,) = [entry for entry in logs if entry["event"] == "token_reloaded"]
    assert line["source"] == "gitlab"
    assert line["token_file"] == str(token_file)
    text = json.dumps(logs, default=str)
    assert DEVELOPER_TOKEN not in text and WATCHDOG_TOKEN not in text


async def test_a_refused_gitlab_token_reruns_the_cycle_with_the_rotated_file(
    tmp_path: Path,
) -> None:
    """The 401 path: the cycle's GitLab read was refused, the file now holds a new token,
    so the cycle runs again at once with it."""
    world = gitlab_world()
    daemon, source, token_file = gitlab_daemon(tmp_path, world)
    world.members.pop(DEVELOPER_TOKEN)  # revoked before the kubelet updated the file

    cycles: list[CycleReport] = []

    async def run_cycle(policy: object) -> CycleReport:
        observations = tuple(await source.observe())
        if len(cycles) == 0:
            token_file.write_text(WATCHDOG_TOKEN + "\n")
        report = SimpleNamespace(observations=observations)
        cycles.append(report)  # type: ignore[arg-type]
        return report  # type: ignore[return-value]

    runtime = SimpleNamespace(
        runner=SimpleNamespace(run_cycle=run_cycle), tfc_client=None, gitlab_client=source.client
    )
    daemon._runtime = runtime  # type: ignore[assignment]
    report = await daemon._run_cycle(runtime)  # type: ignore[arg-type]
    await source.aclose()
    assert len(cycles) == 2
    (first,) = cycles[0].observations
    assert first.source is Source.GITLAB and first.error_reason == "unauthorized"
    (second,) = report.observations
    assert second.complete, second.error
    assert principals(world) == [None, WATCHDOG_USER]


async def test_a_gitlab_token_from_the_environment_is_never_re_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(GITLAB_TOKEN_ENV, DEVELOPER_TOKEN)
    world = gitlab_world()
    daemon, source, token_file = gitlab_daemon(tmp_path, world)
    token_file.write_text(WATCHDOG_TOKEN + "\n")
    assert daemon._refresh_token(trigger="unauthorized") is False
    await source.observe()
    await source.aclose()
    assert principals(world) == ["dev"]


async def test_the_gitlab_client_redacts_a_retired_token_too() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        # A server that echoes the old token back in its error.
        return httpx.Response(500, text=f"bad token {DEVELOPER_TOKEN}")

    client = GitLabClient(
        address="http://gitlab.test",
        token=DEVELOPER_TOKEN,
        metrics=Metrics(),
        transport=httpx.MockTransport(answer),
    )
    client.set_token(WATCHDOG_TOKEN)
    with pytest.raises(SourceError) as caught:
        await client.unlock(PROJECT, "prod")
    await client.aclose()
    assert seen == [f"Bearer {WATCHDOG_TOKEN}"]
    assert DEVELOPER_TOKEN not in str(caught.value)
    assert "***" in str(caught.value)
