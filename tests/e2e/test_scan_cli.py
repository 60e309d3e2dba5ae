"""`scan` as a person reads it, against the real simulator over HTTP: a failed read is said
once, and the output never claims there are no locks when nothing could be read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.daemon import base_config, run_cli, write_config
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer

pytestmark = pytest.mark.e2e


def test_a_rejected_token_is_reported_once_and_nothing_is_claimed(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    config = write_config(tmp_path / "watchdog.yaml", base_config(simulator.url))

    table = run_cli("scan", "--config", str(config), token="not-a-demo-token")

    assert table.returncode == 1, table.stderr
    both = table.stdout + table.stderr
    assert both.count("HTTP 401: unauthorized") == 1, both
    assert "could not read tfc demo" in table.stderr
    assert "check TFC_WATCHDOG_TOKEN" in table.stderr
    assert "No locked workspaces" not in table.stdout
    assert "Nothing could be read" in table.stdout

    as_json = run_cli("scan", "--config", str(config), "--output", "json", token="not-a-demo-token")
    assert as_json.returncode == 1
    document = json.loads(as_json.stdout)
    [source] = document["sources"]
    assert source["error"] is not None
    assert document["errors"] == [f"could not read tfc demo: {source['error']}"]
    assert as_json.stderr.count("HTTP 401: unauthorized") == 1, as_json.stderr


@pytest.mark.parametrize("columns", [120, 150])
def test_scan_of_the_demo_organization_fits_the_terminal_width(
    tmp_path: Path, simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    # $COLUMNS is what a terminal's width looks like to a child process without a tty.
    monkeypatch.setenv("COLUMNS", str(columns))
    config = write_config(tmp_path / "watchdog.yaml", base_config(simulator.url))
    result = run_cli("scan", "--config", str(config), token=ADMIN_TOKEN)
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    too_wide = [
        line
        for line in lines
        if len(line) > columns and not line.startswith("  terraform force-unlock")
    ]
    assert too_wide == [], result.stdout
    assert any(line.startswith("WORKSPACE") and "LOCK REASON" in line for line in lines) or any(
        line.startswith("  lock reason: ") for line in lines
    ), result.stdout
