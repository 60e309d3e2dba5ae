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

from watchdog import TOKEN_ENV
from watchdog.configload import load_policy, load_token
from watchdog.daemon import Daemon
from watchdog.metrics import Metrics
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
    daemon._runtime = SimpleNamespace(tfc_client=client)  # type: ignore[assignment]
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
