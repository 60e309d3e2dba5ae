"""The two usual ways of reading the same information, for comparison with the watchdog.

- `exporter_walk`: what the common TFC Prometheus exporters do: walk the organization's
  workspace list one page after another at the API's default page size (20), with the same
  includes the watchdog uses so both learn the same facts (lock holder, current run). No
  client-side rate limit: on a 429 it waits the server's X-RateLimit-Reset and retries, as
  go-tfe does.
- `per_workspace`: list the workspaces, then list each workspace's runs
  (`GET /workspaces/:id/runs`), an endpoint limited to 30 requests per *minute*. Run for a
  bounded sample only; the full cycle is estimated from the measured pace (see `estimate`).

Both are bounded in requests and in time, and talk to 127.0.0.1 only.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx

JSONAPI = "application/vnd.api+json"
MAX_RETRIES = 20


@dataclass
class Walk:
    requests: int = 0
    rate_limited: int = 0
    wall_s: float = 0.0
    pages: int = 0
    items: int = 0
    complete: bool = False  # False: stopped at the sample bound (figures then extrapolated)
    total_pages: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _client(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url + "/api/v2",
        headers={"Authorization": f"Bearer {token}", "Accept": JSONAPI},
        timeout=30,
    )


def _get(client: httpx.Client, walk: Walk, path: str, params: dict[str, str]) -> dict[str, Any]:
    for _ in range(MAX_RETRIES):
        walk.requests += 1
        response = client.get(path, params=params)
        if response.status_code == 429:
            walk.rate_limited += 1
            reset = float(response.headers.get("X-RateLimit-Reset", "1"))
            time.sleep(min(max(reset, 0.05), 60.0))
            continue
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document
    raise RuntimeError(f"{path}: still rate limited after {MAX_RETRIES} tries")


def exporter_walk(
    base_url: str, token: str, organization: str, *, max_pages: int, deadline_s: float
) -> Walk:
    walk = Walk()
    start = time.perf_counter()
    with _client(base_url, token) as client:
        page: int | None = 1
        while page is not None and walk.pages < max_pages:
            if time.perf_counter() - start > deadline_s:
                break
            document = _get(
                client,
                walk,
                f"/organizations/{organization}/workspaces",
                {
                    "page[number]": str(page),
                    "page[size]": "20",
                    "include": "current_run,locked_by",
                },
            )
            walk.pages += 1
            walk.items += len(document["data"])
            pagination = document["meta"]["pagination"]
            walk.total_pages = pagination["total-pages"]
            page = pagination["next-page"]
        walk.complete = page is None
    walk.wall_s = time.perf_counter() - start
    return walk


@dataclass
class PerWorkspace:
    list_pages: int
    list_wall_s: float
    sampled: int  # workspaces whose run list was read
    runs_requests: int
    runs_rate_limited: int
    runs_wall_s: float
    burst: int  # run lists answered before the first 429
    burst_wall_s: float
    steady_interval_s: float  # seconds per run list after the burst

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def per_workspace(
    base_url: str, token: str, organization: str, *, sample: int, deadline_s: float
) -> PerWorkspace:
    """List page 1 of the workspaces (100), then read the runs of `sample` of them."""
    walk = Walk()
    with _client(base_url, token) as client:
        start = time.perf_counter()
        document = _get(
            client,
            walk,
            f"/organizations/{organization}/workspaces",
            {"page[number]": "1", "page[size]": "100"},
        )
        list_wall = time.perf_counter() - start
        ids = [item["id"] for item in document["data"]][:sample]
        runs = Walk()
        start = time.perf_counter()
        burst: int | None = None
        burst_end = start
        for index, workspace_id in enumerate(ids):
            if time.perf_counter() - start > deadline_s:
                ids = ids[:index]
                break
            seen_429, before = runs.rate_limited, time.perf_counter()
            _get(client, runs, f"/workspaces/{workspace_id}/runs", {"page[size]": "1"})
            if burst is None and runs.rate_limited > seen_429:
                burst, burst_end = index, before
        end = time.perf_counter()
    if burst is None:
        burst, burst_end = len(ids), end
    after = len(ids) - burst
    return PerWorkspace(
        list_pages=walk.pages or 1,
        list_wall_s=list_wall,
        sampled=len(ids),
        runs_requests=runs.requests,
        runs_rate_limited=runs.rate_limited,
        runs_wall_s=end - start,
        burst=burst,
        burst_wall_s=burst_end - start,
        steady_interval_s=(end - burst_end) / after if after > 0 else 0.0,
    )


def estimate_per_workspace(
    measured: PerWorkspace, workspaces: int, list_page_s: float
) -> dict[str, float]:
    """A full per-workspace cycle for `workspaces`, from the sample's measured pace.

    Listing: ceil(N/100) pages at `list_page_s` each (the watchdog's measured pace per page).
    Runs: the burst the run-list bucket allowed, at the burst's measured pace, then one run
    list per measured steady interval, each with the 429s the sample saw per workspace.
    """
    pages = math.ceil(workspaces / 100)
    burst = min(measured.burst, workspaces)
    after = workspaces - burst
    burst_pace = measured.burst_wall_s / max(1, measured.burst)
    limited_per_ws = measured.runs_rate_limited / max(1, measured.sampled - measured.burst)
    rate_limited = round(after * limited_per_ws)
    return {
        "requests": pages + workspaces + rate_limited,
        "rate_limited": rate_limited,
        "wall_s": pages * list_page_s + burst * burst_pace + after * measured.steady_interval_s,
    }
