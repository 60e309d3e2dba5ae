"""Undo what a test did to logging: structlog's configuration, the registered secrets and the
handlers `configure_logging` added to the root logger, or quiet structlog for a while."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from watchdog import logs


def undo_logging() -> None:
    """Back to what a fresh process has, so later tests log where they expect."""
    logs.clear_secrets()
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_tfc_watchdog", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.WARNING)


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Only critical lines while it lasts (thousands of generated examples would otherwise
    print a warning each); structlog's configuration is restored afterwards."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        yield
    finally:
        structlog.configure(**saved)
