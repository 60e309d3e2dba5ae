"""Shared pytest setup. Fixtures live in tests/support/ modules, registered here."""

pytest_plugins: list[str] = ["tests.support.moto", "tests.support.gcs", "tests.support.simulator"]
