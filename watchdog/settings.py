"""Process settings from the environment: which `TFC_WATCHDOG_*` variables override which keys.

Only process settings can be overridden (the policy itself, rules and limits, lives in the
file, so a reviewed file is what acts). An empty variable counts as unset, because templated
manifests often render unset values as empty strings.

| variable                  | key          |
|---------------------------|--------------|
| TFC_WATCHDOG_DRY_RUN      | dry_run      |
| TFC_WATCHDOG_INTERVAL     | interval     |
| TFC_WATCHDOG_LISTEN       | listen       |
| TFC_WATCHDOG_STATE_FILE   | state_file   |
| TFC_WATCHDOG_LOG_FORMAT   | log.format   |
| TFC_WATCHDOG_LOG_LEVEL    | log.level    |
| TFC_WATCHDOG_ADDRESS      | tfc.address  |

Also read, never overriding a key: TFC_WATCHDOG_TOKEN (the API token, see
`configload.load_token`), TFC_WATCHDOG_GITLAB_TOKEN (`configload.load_gitlab_token`)
and TFC_WATCHDOG_CONFIG (the file, see `cli`).

Why a table and not pydantic-settings' env source: its sources validate a value into the
field and lose which variable supplied it, and they read `os.environ` only. Here the raw
string is put into the file's data before validation, so the one validation path gives the
same checks and an error can name the variable (`env TFC_WATCHDOG_INTERVAL: ...`); tests
pass their own environment. Unknown `TFC_WATCHDOG_*` variables are ignored on purpose:
Kubernetes injects service links such as TFC_WATCHDOG_PORT for a Service of that name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TOKEN_ENV = "TFC_WATCHDOG_TOKEN"  # noqa: S105 - the variable name, not a token
CONFIG_ENV = "TFC_WATCHDOG_CONFIG"
GITLAB_TOKEN_ENV = "TFC_WATCHDOG_GITLAB_TOKEN"  # noqa: S105 - the variable name, not a token

ENV_OVERRIDES: Mapping[str, tuple[str, ...]] = {
    "TFC_WATCHDOG_DRY_RUN": ("dry_run",),
    "TFC_WATCHDOG_INTERVAL": ("interval",),
    "TFC_WATCHDOG_LISTEN": ("listen",),
    "TFC_WATCHDOG_STATE_FILE": ("state_file",),
    "TFC_WATCHDOG_LOG_FORMAT": ("log", "format"),
    "TFC_WATCHDOG_LOG_LEVEL": ("log", "level"),
    "TFC_WATCHDOG_ADDRESS": ("tfc", "address"),
}

# Sections an override may create when the file leaves them out (all their keys default).
_CREATABLE_SECTIONS = frozenset({"log"})


def apply_env_overrides(
    data: dict[str, Any], environ: Mapping[str, str]
) -> tuple[dict[tuple[str, ...], str], list[str]]:
    """Put every set override into `data` (the file's parsed mapping), in place.

    Returns (origins, problems): origins maps each overridden key path to its variable, so
    validation errors on it can name the variable; problems are error lines
    (`env VAR: ...`) for overrides that have nowhere to go.
    """
    origins: dict[tuple[str, ...], str] = {}
    problems: list[str] = []
    for variable, loc in ENV_OVERRIDES.items():
        value = environ.get(variable, "")
        if not value.strip():
            continue
        parent: Any = data
        for part in loc[:-1]:
            if not isinstance(parent, dict):
                break
            if parent.get(part) is None and part in _CREATABLE_SECTIONS:
                parent[part] = {}
            elif parent.get(part) is None:
                problems.append(
                    f"env {variable}: sets {'.'.join(loc)}, but the config has no {part} section"
                )
                parent = None
                break
            parent = parent[part]
        # A malformed section (`log: 5`) is left alone: validation reports it against the file.
        if isinstance(parent, dict):
            parent[loc[-1]] = value.strip()
            origins[loc] = variable
    return origins, problems
