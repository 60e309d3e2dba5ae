"""Injected faults: how the watchdog is shown the API's bad days.

A fault matches requests by a regex on the path (`re.search`) and optionally a method, fires
with a probability, and lasts for `count` firings or until cleared. Kinds:

- `status`       answer `status` (e.g. 500, 502, 503, 429) with a JSON:API error body; a 429
                 carries `X-RateLimit-Reset: 0.5` unless `headers` says otherwise
- `latency`      wait `latency_ms` first, then answer normally (combines with other faults)
- `malformed`    200 with a body that is not JSON
- `truncated`    the real answer's headers, half its body, then the connection closes
- `content_type` the real answer with `Content-Type: text/html`
- `drop`         the connection closes before any body is sent (clients see a protocol error)
- `redirect`     302 to `Location: https://login.example.invalid/` (an SSO or proxy redirect);
                 the request does not reach the API
- `html`         200 `text/html` "Request blocked by WAF" page (a proxy in the way); the
                 request does not reach the API
- `trickle`      the real answer, its body sent `rate_bps` bytes per second (default 200)
- `no_date`      the real answer without the `Date` header

Lists that lie (on a list endpoint; on any other answer they change nothing but `deep_json`):

- `repeat_page`   every page after the first answers with page 1's body (a cache or proxy
                  ignoring the query string); page 1 itself is answered normally
- `endless_pages` the real answer without `total-pages`/`total-count` and with a
                  `next-page` after every page, however far the client walks
- `absurd_total`  the real answer promising `total-pages` 10,000,000 and `total-count`
                  1,000,000,000
- `deep_json`     200 with a JSON:API body whose `data` is 5,000 nested lists

Any fault may add or replace response headers with `headers` (`{"X-RateLimit-Reset": "3"}`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

FaultKind = Literal[
    "status",
    "latency",
    "malformed",
    "truncated",
    "content_type",
    "drop",
    "redirect",
    "html",
    "trickle",
    "no_date",
]
# One list of names: the Literal is the source, so the two cannot drift apart.
KINDS: tuple[FaultKind, ...] = get_args(FaultKind)

# Lists that lie: the middleware answers these in `_list_fault`.
ListFaultKind = Literal["repeat_page", "endless_pages", "absurd_total", "deep_json"]
LIST_KINDS: tuple[ListFaultKind, ...] = get_args(ListFaultKind)


@dataclass
class Fault:
    id: int
    kind: FaultKind | ListFaultKind
    path: str = ".*"
    method: str | None = None
    status: int = 500
    probability: float = 1.0
    latency_ms: float = 0.0
    # Response headers to add or replace (names are case-insensitive).
    headers: dict[str, str] = field(default_factory=dict)
    # `trickle`: body bytes per second.
    rate_bps: float = 200.0
    # Firings left; None = until cleared.
    count: int | None = None
    fired: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS + LIST_KINDS:
            known = ", ".join(KINDS + LIST_KINDS)
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {known}")
        self._pattern = re.compile(self.path)
        if not isinstance(self.headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise ValueError("fault headers must be an object of strings")
        if not self.rate_bps > 0:
            raise ValueError("rate_bps must be positive")
        if self.method:
            self.method = self.method.upper()

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and bool(self._pattern.search(path))

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "path": self.path,
            "method": self.method,
            "status": self.status,
            "probability": self.probability,
            "latency_ms": self.latency_ms,
            "headers": dict(self.headers),
            "rate_bps": self.rate_bps,
            "count": self.count,
            "fired": self.fired,
        }


class Faults:
    def __init__(self, seed: int = 1) -> None:
        self._faults: list[Fault] = []
        self._next_id = 1
        self._rng = random.Random(seed)

    def add(self, spec: dict[str, Any]) -> Fault:
        allowed = {
            "kind",
            "path",
            "method",
            "status",
            "probability",
            "latency_ms",
            "headers",
            "rate_bps",
            "count",
        }
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        fault = Fault(id=self._next_id, **spec)
        self._next_id += 1
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def describe(self) -> list[dict[str, Any]]:
        return [fault.describe() for fault in self._faults]

    def fire(self, method: str, path: str) -> list[Fault]:
        """The faults that fire for this request (their counts are consumed)."""
        fired: list[Fault] = []
        for fault in list(self._faults):
            if not fault.matches(method, path) or self._rng.random() >= fault.probability:
                continue
            fault.fired += 1
            fired.append(fault)
            if fault.count is not None and fault.fired >= fault.count:
                self._faults.remove(fault)
        return fired
