"""Token files that rotate under a running daemon (a mounted Kubernetes Secret).

Each API token the daemon reads from a file (`tfc.token_file`, `gitlab.token_file`) is one
`RotatingToken`; the daemon asks each to `refresh` before every cycle and after a cycle in
which its API refused the token (401). A token taken from the environment is never re-read (a
process's environment cannot change), so it gets no `RotatingToken` at all.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import structlog

from watchdog.configload import ConfigError, read_token_file
from watchdog.model import Source

log = structlog.get_logger(__name__)


def file_digest(path: Path) -> str | None:
    """The content's hash, None when the file cannot be read. The content is compared, not
    the mtime: Kubernetes updates a Secret or ConfigMap volume by swapping a symlink."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class TokenUser(Protocol):
    """An API client whose token can change between requests (TfcClient, GitLabClient)."""

    def set_token(self, token: str) -> None: ...


class RotatingToken:
    """One token file and the token in use from it."""

    def __init__(self, source: Source, path: str, *, origin: str, current: str | None) -> None:
        self.source = source
        self.path = path
        self.origin = origin  # the config key, for error lines: `gitlab.token_file`
        self._current = current
        self._digest = file_digest(Path(path))

    def __repr__(self) -> str:  # never the token
        return f"RotatingToken({self.source.value}, {self.path!r})"

    def refresh(self, client: TokenUser | None, *, trigger: str) -> bool:
        """Re-read the file when its content changed and hand a new token to `client`; True
        when a new token is in use from the next request on. An unreadable or invalid file
        keeps the current token and is said once per content."""
        if client is None:
            return False
        digest = file_digest(Path(self.path))
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            token = read_token_file(self.path, origin=self.origin).get_secret_value()
        except ConfigError as exc:
            log.error(
                "token_reload_rejected",
                source=self.source.value,
                errors=exc.lines,
                note="the previous token stays in use",
            )
            return False
        if token == self._current:
            return False
        client.set_token(token)
        self._current = token
        # Never the token itself: read_token_file registered it with the log redaction too.
        log.info("token_reloaded", source=self.source.value, token_file=self.path, trigger=trigger)
        return True
