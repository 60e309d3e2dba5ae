"""`tfc-watchdog unlock` against the real simulator over HTTP: each gate, the exit codes, the
audit line, and what reached the server (the command's code runs in this process: its
`main` is what `python -m watchdog unlock` calls)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import base_config, write_config
from tests.support.incli import clean_logging, run_main
from tests.support.simulator import ADMIN_TOKEN, READ_TOKEN, USER_TOKEN, SimulatorServer

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("clean_logging")]
__all__ = ["clean_logging"]  # a fixture, used by name

LOG = {"format": "json", "level": "info"}


def posts(sim: SimulatorServer) -> list[str]:
    return [r["path"] for r in sim.requests() if r["method"] == "POST"]


def audit_lines(err: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "action"]


Unlock = Callable[..., tuple[int, str, str]]


@pytest.fixture
def unlock(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cli_config: Path
) -> Unlock:
    """`tfc-watchdog unlock --config CONFIG ARGS` (CONFIG: `cli_config` unless given):
    (exit code, stdout, stderr). dry_run stays true in the config: a person's unlock is not a
    preview, whatever the daemon's mode."""

    def run(
        *args: str, token: str = ADMIN_TOKEN, config: Path = cli_config
    ) -> tuple[int, str, str]:
        return run_main(capsys, monkeypatch, "unlock", "--config", str(config), *args, token=token)

    return run


def test_a_stale_user_lock_is_force_unlocked_once_and_audited(
    unlock: Unlock,
    simulator: SimulatorServer,
) -> None:
    simulator.reset_requests()
    code, out, err = unlock(
        "demo/legacy-network",
        "--expect-holder",
        "user:bob",
        "--reason",
        "bob's laptop died mid-apply",
        "--yes",
    )

    assert code == 0, err
    assert "demo/legacy-network: locked by user:bob" in out
    assert "force-unlock: demo/legacy-network is unlocked" in out
    assert simulator.workspace("legacy-network")["locked"] is False
    ws_id = simulator.workspace("legacy-network")["id"]
    assert posts(simulator) == [f"/api/v2/workspaces/{ws_id}/actions/force-unlock"]
    paths = [r["path"] for r in simulator.requests()]
    # The pending-state check, then the re-read that vouches for the holder, then the POST.
    assert paths[-3:] == [
        "/api/v2/state-versions",
        f"/api/v2/workspaces/{ws_id}",
        f"/api/v2/workspaces/{ws_id}/actions/force-unlock",
    ]
    [line] = audit_lines(err)
    assert line["outcome"] == "done"
    assert line["action"] == "force_unlock"
    assert line["holder"] == "user:bob"
    assert line["initiated_by"] == "unlock command"
    assert line["dry_run"] is False
    assert "bob's laptop died mid-apply" in line["reason"]


def test_the_token_users_own_lock_is_unlocked_not_forced(
    unlock: Unlock,
    simulator: SimulatorServer,
) -> None:
    simulator.lock("terraform-local", USER_TOKEN)
    simulator.reset_requests()
    code, _out, err = unlock("demo/terraform-local", "--yes", token=USER_TOKEN)
    assert code == 0, err
    assert posts(simulator)[-1].endswith("/actions/unlock")
    assert audit_lines(err)[0]["action"] == "unlock"


@pytest.mark.parametrize(
    ("target", "flags", "token", "why"),
    [
        ("demo/legacy-network", ["--expect-holder", "user:alice"], ADMIN_TOKEN, "not user:alice"),
        ("demo/terraform-local", [], ADMIN_TOKEN, "is not locked"),
        ("demo/payments-prod", [], ADMIN_TOKEN, "cancel the run instead"),
        ("demo/prod-core", [], ADMIN_TOKEN, "is protected: workspace has protected tag"),
        ("demo/legacy-network", [], READ_TOKEN, "the token lacks can-force-unlock"),
    ],
    ids=["other-holder", "not-locked", "run-held", "protected", "no-permission"],
)
def test_each_gate_refuses_with_exit_4_one_line_and_no_post(
    unlock: Unlock,
    tmp_path: Path,
    simulator: SimulatorServer,
    target: str,
    flags: list[str],
    token: str,
    why: str,
) -> None:
    config = write_config(
        tmp_path / "watchdog.yaml",
        base_config(simulator.url, log=LOG, protect={"tags": ["protected"]}),
    )
    before = simulator.workspace(target.split("/")[1])["locked"]
    simulator.reset_requests()
    code, _, err = unlock(target, *flags, "--yes", token=token, config=config)

    assert code == 4, err
    [refusal] = [line for line in err.splitlines() if not line.startswith("{")]
    assert refusal.startswith("tfc-watchdog unlock: refused: ")
    assert why in refusal
    assert posts(simulator) == []
    assert simulator.workspace(target.split("/")[1])["locked"] is before


def test_force_protected_unlocks_a_protected_workspace(
    unlock: Unlock,
    simulator: SimulatorServer,
) -> None:
    # prod-core's lock reason ("maintenance: do not unlock") is protected by the defaults.
    code, _, err = unlock("demo/prod-core", "--yes")
    assert code == 4 and "protect.lock_reasons" in err, err
    code, _, err = unlock("demo/prod-core", "--yes", "--force-protected")
    assert code == 0, err
    assert simulator.workspace("prod-core")["locked"] is False


def test_a_pending_state_upload_refuses_the_unlock(
    unlock: Unlock,
    simulator: SimulatorServer,
) -> None:
    simulator.add_state_version("legacy-network", "bob")
    simulator.reset_requests()
    code, _, err = unlock("demo/legacy-network", "--yes")
    assert code == 4, err
    assert "state upload pending (1 state version(s) not finalized)" in err
    assert posts(simulator) == []
    [line] = audit_lines(err)
    assert line["outcome"] == "failed" and line["retry_later"] is True


def test_a_holder_change_between_the_reads_is_not_unlocked(
    unlock: Unlock,
    monkeypatch: pytest.MonkeyPatch,
    simulator: SimulatorServer,
) -> None:
    def swap_holder(question: str) -> bool:
        # While the person reads the question, bob releases and alice takes the lock.
        simulator.unlock("legacy-network")
        simulator.lock("legacy-network", "alice")
        return True

    monkeypatch.setattr("watchdog.unlock.ask_on_terminal", swap_holder)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    simulator.reset_requests()
    code, _, err = unlock("demo/legacy-network")
    assert code == 4, err
    assert "holder user:bob -> user:alice" in err
    assert posts(simulator) == []
    assert simulator.workspace("legacy-network")["holder"]["name"] == "alice"


def test_declining_on_the_terminal_sends_nothing(
    unlock: Unlock,
    monkeypatch: pytest.MonkeyPatch,
    simulator: SimulatorServer,
) -> None:
    questions: list[str] = []
    monkeypatch.setattr(
        "watchdog.unlock.ask_on_terminal", lambda q: questions.append(q) is not None
    )
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    simulator.reset_requests()
    code, _, err = unlock("demo/legacy-network")
    assert code == 4, err
    assert questions == ["force-unlock demo/legacy-network, held by user:bob?"]
    assert "not confirmed" in err
    assert posts(simulator) == []


def test_an_api_error_exits_1_with_one_line(
    unlock: Unlock,
    simulator: SimulatorServer,
) -> None:
    code, _, err = unlock("demo/legacy-network", "--yes", token="not-a-demo-token")
    assert code == 1
    assert err.startswith("tfc-watchdog unlock: ") and err.count("\n") == 1, err
    assert "HTTP 401" in err and "check TFC_WATCHDOG_TOKEN" in err
    assert "not-a-demo-token" not in err
    assert simulator.workspace("legacy-network")["locked"] is True
