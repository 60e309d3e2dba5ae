"""`tfc-watchdog wait` against the real simulator over HTTP: the lines a CI log shows, the
exit codes, and how few requests it makes (the command's own `main`, in this process)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.incli import clean_logging, run_main
from tests.support.simulator import ADMIN_TOKEN, USER_TOKEN, SimulatorServer
from watchdog import workspaceref

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("clean_logging")]
__all__ = ["clean_logging"]  # a fixture, used by name


Wait = Callable[..., tuple[int, list[str], str]]


@pytest.fixture
def wait(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cli_config: Path
) -> Wait:
    """`tfc-watchdog wait --config CLI_CONFIG ARGS`: (exit code, stdout lines, stderr)."""

    def run(*args: str, token: str = ADMIN_TOKEN) -> tuple[int, list[str], str]:
        code, out, err = run_main(
            capsys, monkeypatch, "wait", "--config", str(cli_config), *args, token=token
        )
        return code, out.splitlines(), err

    return run


def on_first_report(monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    """Run `change` right after `wait` has printed its first read (deterministic, no timer)."""
    real = workspaceref.describe_lock
    calls: list[int] = []

    def describe(*args: Any) -> list[str]:
        lines = real(*args)
        if not calls:
            change()
        calls.append(1)
        return lines

    monkeypatch.setattr("watchdog.wait.describe_lock", describe)


def reads(sim: SimulatorServer) -> list[str]:
    return [r["path"] for r in sim.requests() if r["method"] == "GET"]


def test_a_free_workspace_exits_0_at_once(
    wait: Wait,
    simulator: SimulatorServer,
) -> None:
    simulator.reset_requests()
    code, lines, err = wait("demo/terraform-local")
    assert code == 0, err
    assert lines == ["demo/terraform-local: not locked"]
    assert reads(simulator) == ["/api/v2/organizations/demo/workspaces/terraform-local"]


def test_a_release_ends_the_wait_with_exit_0(
    wait: Wait,
    monkeypatch: pytest.MonkeyPatch,
    simulator: SimulatorServer,
) -> None:
    on_first_report(monkeypatch, lambda: simulator.unlock("legacy-network"))
    code, lines, err = wait("demo/legacy-network", "--interval", "1s", "--timeout", "1m")
    assert code == 0, err
    assert lines[0].startswith("demo/legacy-network: locked by user:bob since unknown"), lines
    assert lines[-1] == "demo/legacy-network: unlocked"


def test_a_new_holder_is_said_once_and_the_timeout_names_it(
    wait: Wait,
    monkeypatch: pytest.MonkeyPatch,
    simulator: SimulatorServer,
) -> None:
    def swap() -> None:
        simulator.unlock("legacy-network")
        simulator.lock("legacy-network", "alice", reason="Locked by Terraform")

    on_first_report(monkeypatch, swap)
    simulator.reset_requests()
    code, lines, err = wait("demo/legacy-network", "--interval", "1s", "--timeout", "3s")
    assert code == 3, err
    assert [line for line in lines if "locked by" in line and "since" in line] == [
        lines[0],
        next(line for line in lines if "locked by user:alice" in line),
    ], lines
    assert lines[-1] == "demo/legacy-network: timed out after 3s, still locked by user:alice"
    # One workspace, read slowly: the first read by name, then about one per interval.
    assert 2 <= len(reads(simulator)) <= 5, reads(simulator)


def test_allow_own_accepts_the_token_users_own_lock(
    wait: Wait,
    simulator: SimulatorServer,
) -> None:
    simulator.lock("terraform-local", USER_TOKEN)
    code, lines, err = wait("demo/terraform-local", "--allow-own", token=USER_TOKEN)
    assert code == 0, err
    assert lines[-1] == "demo/terraform-local: held by the token's own user (user:operator)"

    code, lines, err = wait("demo/terraform-local", "--timeout", "1s", token=USER_TOKEN)
    assert code == 3, err
    assert lines[-1].endswith("still locked by user:operator")


def test_an_api_error_exits_1_with_one_line(
    wait: Wait,
    simulator: SimulatorServer,
) -> None:
    code, lines, err = wait("demo/no-such-workspace")
    assert code == 1
    assert lines == []
    assert err.startswith("tfc-watchdog wait: ") and err.count("\n") == 1, err
    assert "HTTP 404" in err and "no such workspace" in err
