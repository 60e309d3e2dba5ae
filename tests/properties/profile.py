"""How many examples each hypothesis test runs: HYPOTHESIS_PROFILE=ci (default) or soak.

`@PROPERTY`, the safety properties: 300 examples in `ci`, 10,000 in `soak` (`make soak`).
`@FUZZ`, the fuzzing of what the API may send (the parser, the client, the typed page
path): 100 in `ci`, 3,000 in `soak`. A fuzz example is cheap to check but costly to generate
(nested JSON), and the corners that matter (JSON nested too deep, each odd value in each
slot of a page) have their own parametrized cases that run every time. No deadline:
machines are noisy, and the suite's time budget is kept by the size of the worlds, not by
per-example timing.

These are `@settings` applied to each test, not a globally loaded profile, so other
hypothesis tests in the same run (config properties) keep their own example counts. Unset
fields inherit from the active profile (e.g. Hypothesis's own `ci` profile on CI:
derandomized, no example database).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_EXAMPLES = {"ci": 300, "soak": 10_000}
_FUZZ_EXAMPLES = {"ci": 100, "soak": 3_000}
_NAME = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if _NAME not in _EXAMPLES:
    raise ValueError(f"HYPOTHESIS_PROFILE={_NAME!r}: the properties know {sorted(_EXAMPLES)}")

PROPERTY = settings(
    max_examples=_EXAMPLES[_NAME],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
FUZZ = settings(PROPERTY, max_examples=_FUZZ_EXAMPLES[_NAME])
