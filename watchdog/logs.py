"""Logging: structlog, JSON in containers, console on a TTY, and no secret in any line.

Other modules log with `structlog.get_logger(__name__)` and keyword fields:
`log.info("lock stale", organization=..., workspace=..., age="3h12m")`.

Redaction runs last before rendering, on every line from structlog and from the standard
library (httpx, uvicorn, apscheduler), after exceptions are turned into text, so a token
inside a traceback or an exception message is masked too. It masks:
- every registered secret (`add_secret`, e.g. the API token), wherever it appears;
- the value after `Authorization:` / `Bearer`, in any string;
- the value of any field named like a credential (authorization, token, password, ...).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping, Sequence
from typing import Any, Literal, TextIO

import structlog
from pydantic import SecretStr

from watchdog.report import printable

MASK = "***"
# Masking a very short string would shred ordinary words in every line; real tokens are long.
MIN_SECRET_LENGTH = 6
_MAX_DEPTH = 8

# Module state on purpose: the token is read after logging is configured, and every logger
# (including ones created before) must mask it from then on.
_secrets: set[str] = set()

_AUTH_VALUE = re.compile(r"(?i)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*)([\"']?)[^\"'\r\n]*")
_BEARER_VALUE = re.compile(r"(?i)(\bbearer\s+)[^\s\"',;)}\]]+")
_SENSITIVE_KEY = re.compile(
    r"(?i)^(?:(?:proxy[-_])?authorization|(?:api[-_]?)?token|password|secret|x-api-key)$"
)
_QUIET_LIBRARIES = {
    # One INFO line per HTTP request: a cycle over a large organization would drown the log.
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    # Prometheus scrapes every few seconds; access lines say nothing an operator needs.
    "uvicorn.access": logging.WARNING,
}
# Quiet unless the configured level is debug, where they help trace a cycle.
_QUIET_UNLESS_DEBUG = {
    # "Running job ..." and "... executed successfully" on every interval: most of the lines
    # a person would read at a 5 s interval, and nothing they need.
    "apscheduler": logging.WARNING,
    # "Found credentials in environment variables." on every client boto3 creates.
    "botocore.credentials": logging.WARNING,
}


def add_secret(value: str | SecretStr) -> None:
    """Mask `value` in every log line from now on (the API token, once it is read)."""
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    text = text.strip()
    if len(text) >= MIN_SECRET_LENGTH:
        _secrets.add(text)


def clear_secrets() -> None:
    """Forget registered secrets (tests)."""
    _secrets.clear()


def redact_text(text: str) -> str:
    """`text` with secrets, Authorization values and Bearer tokens masked."""
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _AUTH_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _BEARER_VALUE.sub(lambda m: f"{m.group(1)}{MASK}", text)


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth < _MAX_DEPTH:
        if isinstance(value, dict):
            return {
                key: MASK if _is_sensitive(key) else _scrub(item, depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [_scrub(item, depth + 1) for item in value]
    # Anything else is rendered through repr() (JSON fallback and console alike): mask that.
    text = repr(value)
    masked = redact_text(text)
    return value if masked == text else masked


def _is_sensitive(key: Any) -> bool:
    return isinstance(key, str) and bool(_SENSITIVE_KEY.match(key))


def redact_secrets(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets anywhere in the event (see module docstring)."""
    for key, value in list(event_dict.items()):
        event_dict[key] = MASK if _is_sensitive(key) else _scrub(value)
    return event_dict


def _renderer(
    log_format: Literal["auto", "json", "console"], stream: TextIO
) -> structlog.typing.Processor:
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    if log_format == "console" or (log_format == "auto" and is_tty):
        # plain_traceback: the exception is already text (format_exc_info, then redacted);
        # the pretty formatters would re-render it from exc_info, unredacted.
        console = structlog.dev.ConsoleRenderer(
            colors=is_tty, exception_formatter=structlog.dev.plain_traceback
        )

        def render(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> Any:
            # Values such as lock reasons and holder names come from the API: escape their
            # control characters (no forged lines, no raw ANSI on the terminal). JSON lines
            # escape them already; tracebacks keep their line breaks.
            for key, value in event_dict.items():
                if isinstance(value, str) and key not in ("exception", "stack"):
                    event_dict[key] = printable(value)
            return console(logger, name, event_dict)

        return render
    return structlog.processors.JSONRenderer(sort_keys=False)


def configure_logging(
    format: Literal["auto", "json", "console"] = "auto",  # shadows a builtin: the config key
    level: str = "info",
    secrets: Sequence[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Set up structlog and the standard library's logging (call again to reconfigure).

    format: auto = console on a TTY, JSON otherwise. level: debug, info, warning, error.
    secrets: strings to mask from the start (more later with `add_secret`).
    stream: where lines go; default stderr (stdout is for `scan` output).
    """
    out = stream if stream is not None else sys.stderr
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}")
    for secret in secrets:
        add_secret(secret)

    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    final: list[structlog.typing.Processor] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    renderer = _renderer(format, out)
    structlog.configure(
        processors=[*shared, *final, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        # Not cached: reconfiguring (tests, a reloaded log level) must reach every logger.
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *final,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_tfc_watchdog", False):
            root.removeHandler(old)
    handler._tfc_watchdog = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name, quiet_level in _QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(max(quiet_level, numeric_level))
    for name, quiet_level in _QUIET_UNLESS_DEBUG.items():
        at_debug = numeric_level <= logging.DEBUG
        logging.getLogger(name).setLevel(
            numeric_level if at_debug else max(quiet_level, numeric_level)
        )
