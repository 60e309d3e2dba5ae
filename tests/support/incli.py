"""Run a `tfc-watchdog` command's own `main` in this process (cheaper than a subprocess),
with the logging it configures undone afterwards so later tests log where they expect."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.logstate import undo_logging
from watchdog.cli import main


@pytest.fixture
def clean_logging() -> Iterator[None]:
    yield
    undo_logging()


def run_main(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    token: str,
) -> tuple[int, str, str]:
    """`tfc-watchdog ARGS` with $TFC_WATCHDOG_TOKEN set: (exit code, stdout, stderr)."""
    monkeypatch.setenv("TFC_WATCHDOG_TOKEN", token)
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err
