"""BearerToken: what the TFC and GitLab clients send and redact across a token rotation."""

from __future__ import annotations

from watchdog.sources.bearer import BearerToken


def test_rotation_keeps_every_sent_token_redacted() -> None:
    token = BearerToken("first")
    assert token.rotate("second")
    assert token.rotate("third")
    assert token.current == "third"
    assert token.redact("first second third fourth") == "*** *** *** fourth"


def test_an_empty_or_current_token_changes_nothing() -> None:
    token = BearerToken("first")
    assert not token.rotate("")
    assert not token.rotate("first")
    assert token.current == "first"
    assert token.redact("first") == "***"


def test_an_empty_initial_token_redacts_nothing() -> None:
    # A client built before the token file was read: "" must not turn every gap into ***.
    token = BearerToken("")
    assert token.redact("no secret here") == "no secret here"
    assert token.rotate("late")
    assert token.redact("late, then ''") == "***, then ''"
