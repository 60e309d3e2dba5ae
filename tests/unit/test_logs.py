"""Logging: JSON or console, UTC timestamps, and no secret in any rendered line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from tests.support.logstate import undo_logging
from watchdog import logs
from watchdog.logs import MASK, add_secret, configure_logging, redact_secrets, redact_text

TOKEN = "AbCdEfGhIjKlMn.atlasv1.not-a-real-token-0123456789"


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    logs.clear_secrets()
    yield
    undo_logging()


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# --- the redaction processor alone ------------------------------------------------------------


def test_a_registered_secret_is_masked_everywhere_in_an_event() -> None:
    add_secret(TOKEN)
    event = {
        "event": f"calling with {TOKEN}",
        "nested": {"deeper": [f"x{TOKEN}y", ("tuple", TOKEN)]},
        "count": 3,
    }
    out = redact_secrets(None, "info", event)
    assert TOKEN not in repr(out)
    assert out["event"] == f"calling with {MASK}"
    assert out["nested"] == {"deeper": [f"x{MASK}y", ["tuple", MASK]]}
    assert out["count"] == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def", f"Authorization: {MASK}"),
        ("headers={'authorization': 'Basic dXNlcjpw'}", f"headers={{'authorization': '{MASK}'}}"),
        ('{"Authorization": "Bearer x"}', f'{{"Authorization": "{MASK}"}}'),
        ("sent bearer abc123 to the API", f"sent bearer {MASK} to the API"),
        ("Proxy-Authorization=xyz", f"Proxy-Authorization={MASK}"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_authorization_and_bearer_values_are_masked_in_any_string(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_credential_named_fields_are_masked_whatever_their_value() -> None:
    event = {"event": "x", "headers": {"Authorization": "anything"}, "token": "t0ken-value"}
    out = redact_secrets(None, "info", event)
    assert out["headers"] == {"Authorization": MASK}
    assert out["token"] == MASK


def test_an_object_whose_repr_holds_a_secret_is_replaced_by_its_masked_repr() -> None:
    add_secret(TOKEN)

    class Request:
        def __repr__(self) -> str:
            return f"<Request token={TOKEN}>"

    out = redact_secrets(
        None, "info", {"event": "x", "request": Request(), "when": datetime.now(UTC)}
    )
    assert out["request"] == f"<Request token={MASK}>"
    assert isinstance(out["when"], datetime)  # untouched when nothing needs masking


def test_short_strings_are_not_registered_as_secrets() -> None:
    add_secret("abc")
    assert redact_text("abc abc") == "abc abc"


def test_capture_sees_keyword_fields_and_redaction_applies_in_the_chain() -> None:
    add_secret(TOKEN)
    with capture_logs(processors=[redact_secrets]) as captured:
        structlog.get_logger("watchdog.test").warning(
            "unlock failed", workspace="app", detail=f"401 for {TOKEN}"
        )
    assert captured == [
        {
            "event": "unlock failed",
            "workspace": "app",
            "detail": f"401 for {MASK}",
            "log_level": "warning",
        }
    ]


# --- real rendering ---------------------------------------------------------------------------


def test_json_lines_carry_level_iso_utc_timestamp_and_fields() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    structlog.get_logger("watchdog.test").info("lock stale", workspace="app", age="3h12m")
    [line] = json_lines(stream)
    assert line["event"] == "lock stale"
    assert (line["level"], line["workspace"], line["age"]) == ("info", "app", "3h12m")
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() is not None
    assert stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_the_level_filters_lines() -> None:
    stream = io.StringIO()
    configure_logging("json", "warning", stream=stream)
    log = structlog.get_logger("watchdog.test")
    log.info("hidden")
    log.warning("shown")
    assert [line["event"] for line in json_lines(stream)] == ["shown"]


def test_auto_format_is_json_off_a_tty_and_console_on_one() -> None:
    plain, tty = io.StringIO(), TtyStream()
    configure_logging("auto", "info", stream=plain)
    structlog.get_logger().info("hello", n=1)
    configure_logging("auto", "info", stream=tty)
    structlog.get_logger().info("hello", n=1)
    assert json_lines(plain)[0]["event"] == "hello"
    console = tty.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(console)
    assert "hello" in console
    assert "\x1b[" in console  # colours on a terminal


def test_secrets_given_at_configuration_and_later_are_masked_in_rendered_lines() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", secrets=["first-secret-value"], stream=stream)
    add_secret(TOKEN)
    structlog.get_logger().info(
        "request",
        url="https://x/api",
        note="first-secret-value",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    text = stream.getvalue()
    assert "first-secret-value" not in text
    assert TOKEN not in text
    assert json_lines(stream)[0]["headers"] == {"Authorization": MASK}


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_secret_inside_an_exception_is_masked(log_format: str) -> None:
    stream = io.StringIO()
    configure_logging(log_format, "info", secrets=[TOKEN], stream=stream)  # type: ignore[arg-type]
    try:
        raise RuntimeError(f"header Authorization: Bearer {TOKEN} rejected")
    except RuntimeError:
        structlog.get_logger().exception("cycle failed")
    text = stream.getvalue()
    assert "RuntimeError" in text
    assert "Traceback" in text
    assert TOKEN not in text
    assert "atlasv1" not in text


def test_standard_library_loggers_are_rendered_and_masked_too() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", secrets=[TOKEN], stream=stream)
    logging.getLogger("apscheduler.scheduler").warning("job failed: %s", TOKEN)
    logging.getLogger("httpx").info("HTTP Request: GET https://x 200")  # too chatty: quieted
    [line] = json_lines(stream)
    assert line["event"] == f"job failed: {MASK}"
    assert (line["level"], line["logger"]) == ("warning", "apscheduler.scheduler")


def test_configuring_twice_does_not_duplicate_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", "info", stream=first)
    configure_logging("json", "info", stream=second)
    logging.getLogger("some.lib").warning("once")
    structlog.get_logger().warning("once too")
    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["once", "once too"]


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("json", "chatty", stream=io.StringIO())
