"""Console log lines (a terminal, or `log.format: console`) escape control characters of the
values they print: a lock reason is written by any API user and must not forge log lines or
drive the terminal. JSON lines keep the value exact (JSON escapes it)."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from watchdog.logs import configure_logging

REASON = "deploy\nFAKE level=info event=all_clear\x1b[2J\u202e"
# structlog's console renderer repr()s a value with whitespace, but prints one without raw,
# and never escapes the event itself: an ESC sequence there reached the terminal.
BARE = "eve\x1b[2J\x1b]0;pwned\x07"


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream", [io.StringIO(), TtyStream()], ids=["console", "terminal"])
def test_console_lines_escape_control_characters_of_values(stream: io.StringIO) -> None:
    configure_logging("console", "info", stream=stream)
    log = structlog.get_logger()
    log.warning("finding", reason=REASON, holder=BARE)
    log.info(f"would force_unlock acme/{BARE}")
    text = stream.getvalue()
    assert text.count("\n") == 2, text
    for raw in ("\x1b[2J", "\x1b]0", "\x07", "\u202e", "\r"):
        assert raw not in text, (raw, text)
    assert "eve\\x1b[2J\\x1b]0;pwned\\x07" in text


def test_console_tracebacks_keep_their_lines() -> None:
    stream = io.StringIO()
    configure_logging("console", "info", stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger().exception("cycle_failed")
    assert "Traceback (most recent call last):\n" in stream.getvalue()


def test_json_lines_keep_the_value_exact() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    structlog.get_logger().warning("finding", reason=REASON)
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["reason"] == REASON
