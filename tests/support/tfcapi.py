"""The TFC API the client and source unit tests answer with respx: its address, the token
the client sends, the `Date` every answer carries, and a client made for it."""

from __future__ import annotations

import asyncio
from typing import Any

from watchdog.metrics import Metrics
from watchdog.sources.tfc.client import TfcClient

ADDRESS = "https://localhost:8443"
BASE = f"{ADDRESS}/api/v2"
TOKEN = "sEcReT.atlasv1.tokenvalue"
# Every API response carries `Date`; a read without it is refused before its body is read.
DATE = "Tue, 03 Mar 2026 10:00:00 GMT"
DATED = {"Date": DATE}


async def no_wait(_seconds: float) -> None:
    """A client's sleep that lets the event loop turn but never waits."""
    await asyncio.sleep(0)


def respx_client(metrics: Metrics, **options: Any) -> TfcClient:
    """A TfcClient for ADDRESS with TOKEN, as the respx tests want it unless `options` say
    otherwise: no CA bundle loaded (respx answers before any TLS; loading the system bundle
    was ~50 ms a client, nine tenths of a fuzz example's time), a rate far above any test's,
    no jitter, and sleeps that never wait."""
    defaults: dict[str, Any] = {
        "verify": False,
        "requests_per_second": 10_000.0,
        "jitter": lambda: 0.0,
        "sleep": no_wait,
    }
    return TfcClient(address=ADDRESS, token=TOKEN, metrics=metrics, **(defaults | options))
