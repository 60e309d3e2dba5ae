"""`/metrics` with the per-lock series rendered once per report, not once per scrape.

prometheus_client formats every sample on every scrape; on a 2-core machine that is about
100 ms for the 2,000 series of 1,000 locked workspaces (benchmarks/RESULTS.md), against a
50 ms budget. Those series describe the last report only (`metrics.LockSeries`, a custom
collector over one immutable `LockPicture`), so their text is rendered by the library's own
encoder once per picture and format, and reused by every scrape until the next report; the
live metrics (counters that move during a cycle) are rendered fresh. The output is the
library's, byte for byte per family; the per-lock families come last.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, make_asgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted

from watchdog.metrics import LockPicture, Metrics

_EOF = b"# EOF\n"  # OpenMetrics ends with this line; only the last part may carry it

Encoder = Callable[[CollectorRegistry], bytes]

GZIP_LEVEL = 6


class MetricsExposition:
    """The ASGI app of `/metrics` (content negotiation and gzip as prometheus_client's)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._fallback = make_asgi_app(registry=metrics.registry)
        # The per-lock families alone, for the library's encoders (they take a registry).
        self._lock_series = CollectorRegistry()
        self._lock_series.register(metrics.lock_series)
        # Rendered per-lock text by content type, for the picture it was rendered from.
        self._picture: LockPicture | None = None
        self._cache: dict[str, bytes] = {}
        # The formats scrapers asked for, so prerender() knows which to prepare.
        self._encoders: dict[str, Encoder] = {}

    def _tail(self, content_type: str, encoder: Encoder) -> bytes:
        picture = self._metrics.lock_series.picture
        if picture is not self._picture:
            self._cache.clear()
            self._picture = picture
        tail = self._cache.get(content_type)
        if tail is None:
            tail = self._cache[content_type] = encoder(self._lock_series)
        return tail

    def prerender(self) -> None:
        """Render the per-lock families for every format scraped so far, right after a report
        was published, so no scrape pays for it (with 1,000 locked workspaces the first
        scrape after a cycle otherwise takes ~70 ms on a 2-core machine)."""
        for content_type, encoder in self._encoders.items():
            self._tail(content_type, encoder)

    def render(self, accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        self._encoders[content_type] = encoder
        head = encoder(self._metrics.live)
        if head.endswith(_EOF):
            head = head[: -len(_EOF)]
        return head + self._tail(content_type, encoder), content_type

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        params = parse_qs(scope.get("query_string", b"").decode("utf8"))
        if "name[]" in params:  # a filtered scrape: rare, let the library do it
            await self._fallback(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value for name, value in scope["headers"]}
        accept = headers.get("accept", b"").decode("latin-1")
        output, content_type = self.render(accept)
        response_headers = [(b"content-type", content_type.encode())]
        if gzip_accepted(headers.get("accept-encoding", b"").decode("latin-1")):
            # zlib's default level, not gzip's 9 (prometheus_client's): on the 270 KB of
            # 1,000 locked workspaces level 9 takes 3 ms per scrape on a quiet 2-core
            # machine (11 ms loaded) for 3% fewer bytes, level 6 1.5 ms
            # (benchmarks/RESULTS.md).
            output = gzip.compress(output, compresslevel=GZIP_LEVEL)
            response_headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": output})
