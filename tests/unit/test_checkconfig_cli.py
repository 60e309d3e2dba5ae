"""`tfc-watchdog check-config`: exit codes, the summary, the schema, usage errors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from watchdog.cli import main
from watchdog.configload import ENV_OVERRIDES

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's or CI's own TFC_WATCHDOG_* must not change what these tests see.
    for variable in ENV_OVERRIDES:
        monkeypatch.delenv(variable, raising=False)


def test_a_valid_file_prints_ok_and_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{EXAMPLE}: ok",
        "organizations: acme; rules: 2; actions allowed: none (report only); dry-run: on",
    ]
    assert err == ""


def test_the_summary_says_when_the_file_may_act(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "dry_run: false\ntfc: {organizations: [acme, beta]}\n"
        "s3_backend: {dynamodb_tables: [locks]}\nrules: [{id: a, actions: [cancel]}]\n"
    )
    monkeypatch.setenv("TFC_WATCHDOG_INTERVAL", "2m")
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "organizations: acme, beta; s3 backend: locks; rules: 1; actions allowed: cancel; "
        "dry-run: OFF, these actions will be sent where a rule allows; "
        "env overrides: TFC_WATCHDOG_INTERVAL"
    )


def test_the_summary_names_the_allowed_rungs_in_ladder_order_and_what_dry_run_means(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "tfc: {organizations: [acme]}\ndefaults: {actions: [force_unlock]}\n"
        "rules: [{id: a, actions: [discard, cancel]}, {id: b, actions: []}]\n"
    )
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "organizations: acme; rules: 2; actions allowed: cancel, discard, force_unlock; "
        "dry-run: on, nothing will be sent"
    )


def test_an_s3_backend_without_boto3_is_valid_but_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def without_boto3(name: str, package: str | None = None) -> Any:
        return None if name == "boto3" else real_find_spec(name, package)

    # This machine has boto3 (a dev extra); hide it as a plain install would lack it.
    monkeypatch.setattr(importlib.util, "find_spec", without_boto3)
    path = tmp_path / "c.yaml"
    path.write_text("s3_backend: {dynamodb_tables: [locks]}\n")
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: ok")
    assert err == (
        f"{path}: warning: s3_backend needs boto3, which is not installed here "
        "(`run` and `scan` would exit 2): pip install 'tfc-watchdog[s3]'\n"
    )


def test_an_invalid_file_prints_its_lines_to_stderr_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("interval: soon\ntfc: {organizations: []}\n")
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}:1: interval: 'soon' is not a duration; use e.g. 90s, 30m, 2h, 1d, 2h30m "
        "or plain seconds",
        f"{path}:2: tfc.organizations: list at least one organization to watch",
    ]


def test_an_environment_override_is_checked_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TFC_WATCHDOG_LISTEN", "nowhere")
    assert main(["check-config", str(EXAMPLE)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "env TFC_WATCHDOG_LISTEN: 'nowhere': expected host:port such as 0.0.0.0:9877"
    ]


def test_schema_prints_a_json_schema_with_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["additionalProperties"] is False
    assert schema["properties"]["dry_run"]["description"].startswith("Report what would be done")
    assert "s3_backend" in schema["properties"]


def test_no_file_and_no_schema_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: tfc-watchdog check-config")
    assert "FILE is required" in err


def test_an_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check-config", "--frobnicate", str(EXAMPLE)])
    assert info.value.code == 2
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


def test_the_installed_module_runs_check_config_end_to_end(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "watchdog", "check-config", str(EXAMPLE), str(missing)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Two files is a usage error from argparse, not a traceback.
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "watchdog", "check-config", str(EXAMPLE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (ok.returncode, ok.stdout.splitlines()[0]) == (0, f"{EXAMPLE}: ok")
    gone = subprocess.run(
        [sys.executable, "-m", "watchdog", "check-config", str(missing)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (gone.returncode, gone.stderr) == (2, f"{missing}: cannot read: no such file\n")


@pytest.fixture
def without_google_cloud_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide google-cloud-storage (a dev extra here) as a plain install lacks it."""
    real_find_spec = importlib.util.find_spec

    def without_google(name: str, package: str | None = None) -> Any:
        # As on a plain install: no `google` namespace package at all, so find_spec raises
        # for the dotted name instead of returning None.
        if name.startswith("google."):
            raise ModuleNotFoundError(f"No module named {name.split('.')[0]!r}")
        return real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_google)


@pytest.mark.usefixtures("without_google_cloud_storage")
def test_a_gcs_backend_without_google_cloud_storage_is_valid_but_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("gcs_backend: {buckets: [{bucket: tf-state, prefix: prod/}]}\n")
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1].startswith("gcs backend: tf-state; rules: 0")
    assert err == (
        f"{path}: warning: gcs_backend needs google-cloud-storage, which is not installed here "
        "(`run` and `scan` would exit 2): pip install 'tfc-watchdog[gcs]'\n"
    )


@pytest.mark.usefixtures("without_google_cloud_storage")
def test_run_and_scan_refuse_a_gcs_backend_without_google_cloud_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from watchdog.daemon import load_or_report

    path = tmp_path / "c.yaml"
    path.write_text("gcs_backend: {buckets: [{bucket: tf-state}]}\n")

    assert load_or_report(str(path), "scan") == 2
    assert capsys.readouterr().err == (
        f"{path}: gcs_backend needs google-cloud-storage, which is not installed: "
        "pip install 'tfc-watchdog[gcs]'\n"
    )
