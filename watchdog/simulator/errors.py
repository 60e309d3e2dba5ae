"""API errors as the real service sends them: a JSON:API `errors` array
(docs/tfc-api.md, "Conventions")."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raised anywhere below the routes; the app turns it into an error response."""

    def __init__(self, status: int, title: str, detail: str | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": str(self.status), "title": self.title}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"errors": [error]}


def not_found() -> ApiError:
    """Also the answer for "exists but you may not see or do it" (docs/tfc-api.md,
    "Conventions")."""
    return ApiError(404, "not found")


def conflict(detail: str) -> ApiError:
    return ApiError(409, "conflict", detail)
