"""JSON:API documents and the list conventions every `/api/v2` endpoint shares.

The media type, the error body, and pagination (`page[number]`, `page[size]`, at most 100 a
page; `meta.pagination` and `links`): see docs/tfc-api.md, "Conventions" and "Pagination".
Routes of any API family build their answers with these; nothing here knows the world.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import Response

from watchdog.simulator.errors import ApiError

JSONAPI = "application/vnd.api+json"
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


def number(value: float) -> str:
    """A header number as the API writes it: `30`, not `30.0`."""
    return str(int(value)) if float(value).is_integer() else str(value)


def document(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status, headers=headers, media_type=JSONAPI
    )


def error(exc: ApiError) -> Response:
    return document(exc.body(), exc.status)


def _int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return default


def _page(request: Request) -> tuple[int, int]:
    page_number = max(1, _int(request, "page[number]", 1))
    size = min(MAX_PAGE_SIZE, max(1, _int(request, "page[size]", DEFAULT_PAGE_SIZE)))
    return page_number, size


def csv(request: Request, name: str) -> list[str]:
    return [part.strip() for part in request.query_params.get(name, "").split(",") if part.strip()]


_PAGE_KEYS = ("page[number]", "page[size]")


def _links(
    request: Request, number: int, size: int, last: int | None, has_next: bool
) -> dict[str, Any]:
    # What `request.url.include_query_params(...)` gives, with the URL parsed once instead
    # of once per link (it was most of a small page's server time).
    url = request.url
    kept = urlencode(
        [(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k not in _PAGE_KEYS]
    )
    prefix = f"{url.replace(query='')}?{kept}&" if kept else f"{url.replace(query='')}?"

    def at(page: int) -> str:
        return prefix + urlencode([("page[number]", str(page)), ("page[size]", str(size))])

    links: dict[str, Any] = {
        "self": at(number),
        "first": at(1),
        "prev": at(number - 1) if number > 1 else None,
        "next": at(number + 1) if has_next else None,
    }
    if last is not None:
        links["last"] = at(last)
    return links


def paginate(
    request: Request, items: list[str], totals: bool = True
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """(page of items, meta.pagination, links): with totals, or without (org runs list)."""
    number, size = _page(request)
    start = (number - 1) * size
    page = items[start : start + size]
    total_pages = max(1, -(-len(items) // size))
    has_next = start + size < len(items)
    pagination: dict[str, Any] = {
        "current-page": number,
        "page-size": size,
        "prev-page": number - 1 if number > 1 else None,
        "next-page": number + 1 if has_next else None,
    }
    if totals:
        pagination |= {"total-pages": total_pages, "total-count": len(items)}
    links = _links(request, number, size, total_pages if totals else None, has_next)
    return page, {"pagination": pagination}, links
