"""How many examples each safety property runs: HYPOTHESIS_PROFILE=ci (default) or soak.

`ci`: 300 examples per property. `soak`: 10,000 (`make soak`). No deadline:
machines are noisy, and the suite's time budget is kept by the size of the worlds, not by
per-example timing.

These are `@settings` applied to each property (`@PROPERTY`), not a globally loaded profile,
so other hypothesis tests in the same run (parser fuzzing, config properties) keep their own
example counts. Unset fields inherit from the active profile (e.g. Hypothesis's own `ci`
profile on CI: derandomized, no example database).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_EXAMPLES = {"ci": 300, "soak": 10_000}
_NAME = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if _NAME not in _EXAMPLES:
    raise ValueError(f"HYPOTHESIS_PROFILE={_NAME!r}: the properties know {sorted(_EXAMPLES)}")

PROPERTY = settings(
    max_examples=_EXAMPLES[_NAME],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
