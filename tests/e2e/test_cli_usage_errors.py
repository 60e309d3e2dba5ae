"""The commands a person or a CI job types against the real simulator (`wait`, `unlock`): a
usage error exits 2 with one line that says what is wrong, before any request (each command's
own `main`, in this process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.incli import clean_logging, run_main
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("clean_logging")]
__all__ = ["clean_logging"]  # a fixture, used by name


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("wait", ["network"], "'network' is not <organization>/<workspace>"),
        ("wait", ["demo/x", "--interval", "100ms"], "--interval '100ms'"),
        ("wait", ["demo/x", "--interval", "0.5"], "at least 1s"),
        ("wait", ["demo/x", "--timeout", "soon"], "--timeout 'soon'"),
        ("unlock", ["legacy-network", "--yes"], "is not <organization>/<workspace>"),
        (
            "unlock",
            ["--source", "s3", "terraform-state", "--yes"],
            "'terraform-state' is not <table or bucket>/<state path>",
        ),
        (
            "unlock",
            ["demo/legacy-network", "--yes", "--expect-holder", "bob"],
            "is not user:NAME",
        ),
        ("unlock", ["demo/legacy-network"], "stdin is not a terminal to confirm on: pass --yes"),
    ],
)
def test_usage_errors_exit_2_with_one_line_and_send_nothing(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cli_config: Path,
    simulator: SimulatorServer,
    command: str,
    args: list[str],
    message: str,
) -> None:
    simulator.reset_requests()
    code, _, err = run_main(
        capsys, monkeypatch, command, "--config", str(cli_config), *args, token=ADMIN_TOKEN
    )
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert simulator.requests() == []
