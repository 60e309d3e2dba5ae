"""The TFC API the client and source unit tests answer with respx: its address, the token
the client sends, the `Date` every answer carries, and a sleep that never waits."""

from __future__ import annotations

import asyncio

ADDRESS = "https://localhost:8443"
BASE = f"{ADDRESS}/api/v2"
TOKEN = "sEcReT.atlasv1.tokenvalue"
# Every API response carries `Date`; a read without it is refused before its body is read.
DATE = "Tue, 03 Mar 2026 10:00:00 GMT"
DATED = {"Date": DATE}


async def no_wait(_seconds: float) -> None:
    """A client's sleep that lets the event loop turn but never waits."""
    await asyncio.sleep(0)
