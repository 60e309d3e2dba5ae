"""Logs a person reads: the scheduler's per-job lines and botocore's credential notices stay
out unless the level is debug, and the daemon's `starting` line is one short line."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from watchdog.configload import load_policy
from watchdog.daemon import Daemon
from watchdog.logs import configure_logging

CHATTY = [
    ("apscheduler.executors.default", 'Running job "cycle" (scheduled at ...)'),
    ("apscheduler.executors.default", 'Job "cycle" executed successfully'),
    ("botocore.credentials", "Found credentials in environment variables."),
]


@pytest.mark.parametrize(("logger", "message"), CHATTY)
def test_chatty_library_lines_are_quiet_at_info(logger: str, message: str) -> None:
    stream = io.StringIO()
    configure_logging("console", "info", stream=stream)
    logging.getLogger(logger).info(message)
    logging.getLogger(logger).warning("still said: %s", "a warning")
    text = stream.getvalue()
    assert message not in text
    assert "still said: a warning" in text


@pytest.mark.parametrize(("logger", "message"), CHATTY)
def test_chatty_library_lines_are_back_at_debug(logger: str, message: str) -> None:
    stream = io.StringIO()
    configure_logging("console", "debug", stream=stream)
    logging.getLogger(logger).info(message)
    assert message in stream.getvalue()


CONFIG = """
tfc: {address: 'https://tfe.example.com', organizations: [acme, beta]}
s3_backend:
  dynamodb_tables: [terraform-locks]
  lockfile_buckets: [{bucket: tf-state, prefix: prod/}]
interval: 30s
state_file: /var/lib/tfc-watchdog/state.json
rules:
  - {id: stale-users, match: {workspaces: ["*"]}, lock_stale_after: 2h, actions: [force_unlock]}
"""


def test_the_starting_line_is_one_short_line_and_the_settings_are_at_debug(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    daemon = Daemon(load_policy(str(path), {}), None, path)
    stream = io.StringIO()
    configure_logging("console", "info", stream=stream)
    daemon._log_startup()
    [starting] = [line for line in stream.getvalue().splitlines() if "starting" in line]
    assert len(starting) < 400, starting
    for fact in (
        "dry_run=True",
        "interval=30s",
        "tfc https://tfe.example.com acme,beta",
        "dynamodb terraform-locks",
        "s3 tf-state/prod/",
        "rules=stale-users",
    ):
        assert fact in starting, starting
    assert "settings" not in stream.getvalue()

    stream = io.StringIO()
    configure_logging("console", "debug", stream=stream)
    daemon._log_startup()
    assert "max_actions_per_hour" in stream.getvalue()
