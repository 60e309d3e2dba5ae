"""The bearer token of an HTTP API client (TFC, GitLab): rotatable, and every token it has
sent redacted from the texts it reports."""

from __future__ import annotations


class BearerToken:
    """The token sent now (`current`) and the tokens it replaced.

    A rotated Secret (`rotate`) takes effect from the next request on; a request already sent
    keeps the old token, and an error text of that request may quote it, so replaced tokens
    stay redacted for the life of the client.
    """

    def __init__(self, token: str) -> None:
        self.current = token
        self._retired: list[str] = []

    def rotate(self, token: str) -> bool:
        """Make `token` current; False (nothing changes) when it is empty or already current."""
        if not token or token == self.current:
            return False
        if self.current and self.current not in self._retired:
            self._retired.append(self.current)
        self.current = token
        return True

    def redact(self, text: str) -> str:
        """`text` with every token this client has sent replaced by `***`."""
        for secret in (self.current, *self._retired):
            if secret:
                text = text.replace(secret, "***")
        return text
