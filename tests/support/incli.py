"""Run a `tfc-watchdog` command's own `main` in this process (cheaper than a subprocess),
with the logging it configures undone afterwards so later tests log where they expect."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from watchdog import logs
from watchdog.cli import main


@pytest.fixture
def clean_logging() -> Iterator[None]:
    yield
    logs.clear_secrets()
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_tfc_watchdog", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.WARNING)


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
