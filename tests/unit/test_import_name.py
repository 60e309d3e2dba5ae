"""The PyPI package `watchdog` (filesystem events) installs into the same `watchdog/` folder:
with it in the environment, every command stops at once with one line saying what to do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import watchdog
from tests.support.process import run_captured
from watchdog.cli import main

PACKAGE = Path(watchdog.__file__).parent


def _foreign_dist_info(root: Path) -> None:
    """What `pip install watchdog` leaves for importlib.metadata to find."""
    dist_info = root / "watchdog-6.0.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: watchdog\nVersion: 6.0.0\n")


def _run(args: list[str], path: Path) -> subprocess.CompletedProcess[str]:
    # From `path`: the interpreter puts the working directory first on sys.path.
    return run_captured(
        [sys.executable, *args], cwd=path, env={**os.environ, "PYTHONPATH": str(path)}
    )


def test_with_the_pypi_watchdog_installed_every_command_exits_2_saying_what_to_do(
    tmp_path: Path,
) -> None:
    _foreign_dist_info(tmp_path)
    result = _run(["-m", "watchdog", "--version"], tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "`watchdog` 6.0.0" in line
    assert "pipx install tfc-watchdog" in line
    assert "venv" in line
    assert "container image" in line


def test_it_is_said_even_when_that_package_replaced_our_init(tmp_path: Path) -> None:
    # Installed after this one, it overwrote watchdog/__init__.py (its own is a license header).
    copy = tmp_path / "watchdog"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "simulator"))
    (copy / "__init__.py").write_text("# the filesystem-events package's __init__\n")
    _foreign_dist_info(tmp_path)
    probe = "import watchdog.cli as c; print(c.__file__); raise SystemExit(c.main(['scan']))"
    result = _run(["-c", probe], tmp_path)
    assert result.stdout.strip() == str(copy / "cli.py")  # the copy, not the source tree
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "pipx install tfc-watchdog" in result.stderr


def test_without_it_the_commands_run(capsys: pytest.CaptureFixture[str]) -> None:
    # The check is main's own first step, so this process (without that package) shows it.
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("tfc-watchdog ")
