"""Skip a test whose external tool is missing, visibly, but never in CI.

CI (`CI=true`, set by .ci/run) installs every tool; a missing one there is a failure, so a
green CI can never hide tests that silently did not run.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(available: bool, what: str) -> None:
    """Skip (locally) or fail (in CI) when `what` is not available."""
    if available:
        return
    message = f"{what} is not available on this machine"
    if in_ci():
        pytest.fail(f"{message}; .ci/run must install it", pytrace=False)
    pytest.skip(message)


def require_binary(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"the `{name}` binary")
    assert path is not None
    return path
