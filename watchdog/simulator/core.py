"""The simulator's mutable whole: the world, its settings, rate limiter, faults, request log.

One object so that the admin API can swap the world (load a scenario) without restarting the
server, and tests can inspect it in-process. The routes reach it as `request.app.state.sim`
and the middleware holds it; neither is imported here, so this module sits below all of them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from watchdog.simulator.faults import Faults
from watchdog.simulator.ratelimit import RateLimiter
from watchdog.simulator.scenario import Loaded
from watchdog.simulator.state import World

REQUEST_LOG_SIZE = 100_000
# Settings.current_run_filter's values.
CURRENT_RUN_FILTER_MODES = ("apply", "ignore", "reject_list", "reject", "empty")


@dataclass
class Settings:
    # Requests per second per principal (docs/tfc-api.md, "Rate limits": 30 on HCP;
    # TFE's admin setting).
    rate_limit: float = 30.0
    # The run-list endpoints' limit, per minute per principal (docs/tfc-api.md, "Rate limits").
    run_list_per_minute: float = 30.0
    # Added to every /api/v2 request.
    latency_ms: float = 0.0
    # Response headers go-tfe reads at start-up (docs/tfc-api.md, "Tokens and headers").
    api_version: str = "2.6"
    app_name: str = "HCP Terraform"
    # Seconds sent as `X-Terraform-Snapshot-Interval` on the state-version answers Terraform
    # reads (>= 1.5 then uploads intermediate snapshots during a long apply); 0: not sent.
    snapshot_interval: float = 0.0
    # How the workspace list answers `filter[current-run][status]`, to show the watchdog a
    # server that gets it wrong: `apply` (a status or a comma list of statuses, as the
    # API's OpenAPI spec documents), `ignore` (answers as if it were not there),
    # `reject_list` (400 for a comma list; one status is applied), `reject` (400 for any
    # value, as a server that does not know the parameter), `empty` (no workspace
    # matches, as an unknown value does on the real API).
    current_run_filter: str = "apply"


class Simulator:
    def __init__(self, world: World, settings: Settings | None = None) -> None:
        self.world = world
        self.settings = settings or Settings()
        self.limiter = RateLimiter()
        self.faults = Faults()
        self.request_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    @classmethod
    def from_scenario(cls, loaded: Loaded, settings: Settings | None = None) -> Simulator:
        sim = cls(loaded.world, settings)
        sim.settings.app_name = loaded.server.app_name
        sim.settings.api_version = loaded.server.api_version
        return sim

    def replace_world(self, loaded: Loaded) -> None:
        """Load a new scenario; the clock's speed carries over, limits and faults reset."""
        loaded.world.clock.time_scale = self.world.clock.time_scale
        self.world = loaded.world
        self.settings.app_name = loaded.server.app_name
        self.settings.api_version = loaded.server.api_version
        self.limiter.reset()
        self.faults.clear()
