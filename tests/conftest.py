"""Shared pytest setup. Fixtures live in tests/support/ modules, registered here."""

import pytest

pytest_plugins: list[str] = ["tests.support.moto", "tests.support.gcs", "tests.support.simulator"]


@pytest.fixture(autouse=True)
def _no_terminal_size_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child processes (`scan`, `demo`) take $COLUMNS for the terminal's width. GNU readline,
    once loaded (pytest-xdist's workers load it), exports COLUMNS=80 and LINES=24 without a
    terminal: every test starts without them, and one about the width sets its own."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
