"""A real `moto_server` on 127.0.0.1 for tests of the S3-backend sources (and Terraform).

`moto_server` (session scope) starts one server for the whole run; `moto_aws` (per test)
resets its state and sets fake AWS credentials in the environment, so every test starts
with no tables and no buckets. `dynamodb` and `s3` (per test) are boto3 clients on it with
Terraform's lock table `TABLE` and the state bucket `BUCKET` created.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest

from tests.support.daemon import free_port
from tests.support.tools import require

T = TypeVar("T")

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
_START_TIMEOUT = 30.0

# The one S3 backend the tests lock: its DynamoDB lock table, its bucket, and its state.
TABLE = "terraform-locks"
BUCKET = "tf-state"
STATE_KEY = "prod/app.tfstate"
STATE_PATH = f"{BUCKET}/{STATE_KEY}"


@dataclass(frozen=True)
class MotoServer:
    port: int
    endpoint_url: str
    region: str = REGION
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def reset(self) -> None:
        """Drop every table, bucket and object."""
        url = f"{self.endpoint_url}/moto-api/reset"
        request = urllib.request.Request(url, method="POST")  # noqa: S310 (http to loopback)
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()


def found(binary: T | None, what: str) -> T:
    """The fake server's `binary`; where it is missing, a skip (locally) or a failure (in CI)
    that names `what`."""
    require(binary is not None, what)
    assert binary is not None
    return binary


def _moto_binary() -> str | None:
    beside_python = Path(sys.executable).with_name("moto_server")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("moto_server")


def _wait_ready(probe_url: str, process: subprocess.Popen[bytes], *, name: str) -> None:
    """Poll `probe_url` until the fake server `name` answers; fail at once if it exits."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(probe_url, timeout=2) as response:  # noqa: S310
                response.read()
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer within {_START_TIMEOUT:.0f}s")


@contextmanager
def serving(
    command: list[str],
    log_path: Path,
    probe_url: str,
    *,
    name: str,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run the fake server `command` (output to `log_path`) until the block ends, once
    `probe_url` answers. Shared by the moto and fake-gcs-server fixtures."""
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_ready(probe_url, process, name=name)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    binary = found(_moto_binary(), "the `moto_server` binary (moto[server])")
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    server = MotoServer(port=port, endpoint_url=f"http://127.0.0.1:{port}")
    command = [binary, "-H", "127.0.0.1", "-p", str(port)]
    probe = f"{server.endpoint_url}/moto-api/"
    with serving(command, log_path, probe, name="moto_server", env=env):
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials only; no shared config or instance metadata can leak in."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def moto_aws(moto_server: MotoServer, aws_env: None) -> MotoServer:
    """The shared moto server, emptied, with fake credentials in the environment."""
    moto_server.reset()
    return moto_server


@pytest.fixture
def dynamodb(moto_aws: MotoServer) -> Iterator[Any]:
    """A DynamoDB client with Terraform's lock table `TABLE` created (key `LockID`)."""
    client = boto3.client(
        "dynamodb", region_name=moto_aws.region, endpoint_url=moto_aws.endpoint_url
    )
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield client
    client.close()


@pytest.fixture
def s3(moto_aws: MotoServer) -> Iterator[Any]:
    """An S3 client with the state bucket `BUCKET` created."""
    client = boto3.client("s3", region_name=moto_aws.region, endpoint_url=moto_aws.endpoint_url)
    client.create_bucket(Bucket=BUCKET)
    yield client
    client.close()


def table_items(dynamodb: Any) -> dict[str, dict[str, Any]]:
    """Every item of the lock table by its `LockID`, read consistently."""
    items = dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return {item["LockID"]["S"]: item for item in items}
