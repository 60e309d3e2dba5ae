"""`/metrics` with the per-lock series rendered once per cycle, not once per scrape.

prometheus_client formats every sample on every scrape; on a 2-core machine that is about
100 ms for the 2,000 series of 1,000 locked workspaces (benchmarks/RESULTS.md), against a
50 ms budget. Those series change only when `Metrics.publish_locks()` runs (once per cycle),
so their text is rendered by the library's own encoder on the first scrape after a publish
and reused; everything else (counters that move during a cycle) is rendered fresh. The
output is the library's, byte for byte per family; only the families' order differs (the
per-lock families come last), which Prometheus does not care about.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, make_asgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from watchdog.metrics import Metrics

import gzip

_EOF = b"# EOF\n"  # OpenMetrics ends with this line; only the last part may carry it


class ListingRegistry(CollectorRegistry):
    """A registry that remembers its collectors, so a view can leave some of them out."""

    def __init__(self) -> None:
        super().__init__()
        self.collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        self.collectors.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        self.collectors.remove(collector)


class _View:
    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


class MetricsExposition:
    """The ASGI app of `/metrics` (content negotiation and gzip as prometheus_client's)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._fallback = make_asgi_app(registry=metrics.registry)
        self._cache: dict[str, bytes] = {}
        self._version = -1
        # The formats scrapers asked for, so prerender() knows which to prepare.
        self._encoders: dict[str, Callable[[Any], bytes]] = {}

    def _refresh(self) -> Sequence[Collector]:
        cached: Sequence[Collector] = self._metrics.per_lock_collectors()
        if self._version != self._metrics.locks_version:
            self._cache.clear()
            self._version = self._metrics.locks_version
        return cached

    def prerender(self) -> None:
        """Render the per-lock families for every format scraped so far, right after a cycle
        published them, so no scrape pays for it (with 1,000 locked workspaces the first
        scrape after a cycle otherwise takes ~70 ms on a 2-core machine)."""
        if not isinstance(self._metrics.registry, ListingRegistry):
            return
        cached = self._refresh()
        for content_type, encoder in self._encoders.items():
            if content_type not in self._cache:
                self._cache[content_type] = encoder(_View(cached))

    def render(self, accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        registry = self._metrics.registry
        if not isinstance(registry, ListingRegistry):
            return encoder(registry), content_type
        self._encoders[content_type] = encoder
        cached = self._refresh()
        tail = self._cache.get(content_type)
        if tail is None:
            tail = self._cache[content_type] = encoder(_View(cached))
        head = encoder(_View(c for c in registry.collectors if c not in cached))
        if head.endswith(_EOF):
            head = head[: -len(_EOF)]
        return head + tail, content_type

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
            output = gzip.compress(output)
            response_headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": output})
