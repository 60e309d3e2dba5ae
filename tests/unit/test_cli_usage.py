"""CLI usage errors: unknown flags, missing arguments and missing files exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.daemon import run_cli
from watchdog.cli import main

USAGE_ERRORS = [
    ["--no-such-flag"],
    ["frobnicate"],
    [],
    ["run", "--no-such-flag"],
    ["run", "--once=yes"],
    ["scan", "--output", "yaml"],
    ["scan", "--bogus"],
    ["check-config", "--bogus"],
    ["check-config", "a.yaml", "b.yaml"],
    ["simulator", "--port", "eighty"],
    ["simulator", "--rate-limit"],
    ["demo", "--enforce"],
]


@pytest.mark.parametrize("argv", USAGE_ERRORS, ids=[" ".join(a) or "(none)" for a in USAGE_ERRORS])
def test_a_bad_command_line_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: tfc-watchdog" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "scan"])
def test_a_missing_config_file_exits_2_with_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    assert main([command, "--config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["run", "scan"])
def test_no_config_at_all_exits_2(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TFC_WATCHDOG_CONFIG", raising=False)
    assert main([command]) == 2
    assert "no config file" in capsys.readouterr().err


def test_check_config_of_a_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["check-config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "Traceback" not in err


def test_the_real_process_gives_usage_errors_without_traceback(tmp_path: Path) -> None:
    unknown = run_cli("run", "--frobnicate")
    assert unknown.returncode == 2
    assert "unrecognized arguments: --frobnicate" in unknown.stderr
    missing = run_cli("run", "--config", str(tmp_path / "nope.yaml"), token="t")
    assert missing.returncode == 2
    for result in (unknown, missing):
        assert "Traceback" not in result.stderr + result.stdout
