"""Every workspaces page of a simulated organization, recorded as the simulator serves them.

For what reads real pages without a server: the typed page tests and the parse benchmark.
"""

from __future__ import annotations

import httpx

from watchdog.simulator.app import Simulator, build_app
from watchdog.sources.tfc.source import INCLUDE


async def workspace_pages(simulator: Simulator, organization: str) -> list[httpx.Response]:
    """The pages, in order, as the source asks for them (100 a page, its `include`), read
    through the simulator's ASGI app with the organization's admin token."""
    responses: list[httpx.Response] = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(simulator)),
        base_url="http://sim/api/v2",
        headers={"Authorization": f"Bearer {organization}-admin-token"},
    ) as client:
        number: int | None = 1
        while number is not None:
            response = await client.get(
                f"/organizations/{organization}/workspaces",
                params={"page[size]": "100", "include": INCLUDE, "page[number]": number},
            )
            response.raise_for_status()
            responses.append(response)
            number = response.json()["meta"]["pagination"]["next-page"]
    return responses
