"""The Starlette application: the API routes behind the middleware, plus `/_sim/`.

Where routes go: `/api/v2` endpoints of the workspaces and runs APIs are entries in
`api.ROUTES`; what the Terraform CLI's `cloud` block needs (discovery, state versions, blobs)
is in `terraform_api.API_ROUTES` / `ROOT_ROUTES`; the admin API is `admin.ROUTES`. Another API
family gets its own module with its own route list, mounted here. `Simulator` and `Settings`
live in core.py and are re-exported here, where callers have always found them.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount

from watchdog.simulator import admin, api, terraform_api
from watchdog.simulator.core import Settings, Simulator
from watchdog.simulator.middleware import SimulatorMiddleware

__all__ = ["Settings", "Simulator", "build_app"]


def build_app(simulator: Simulator) -> Starlette:
    app = Starlette(
        routes=[
            Mount("/api/v2", routes=api.ROUTES + terraform_api.API_ROUTES),
            Mount("/_sim", routes=admin.ROUTES),
            *terraform_api.ROOT_ROUTES,
        ],
        exception_handlers=api.EXCEPTION_HANDLERS,
    )
    app.state.sim = simulator
    app.add_middleware(SimulatorMiddleware, simulator=simulator)
    return app
