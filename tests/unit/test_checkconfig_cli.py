"""`tfc-watchdog check-config`: exit codes, the summary, the schema, usage errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import run_cli
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


@pytest.mark.parametrize(
    ("config", "env", "summary"),
    [
        pytest.param(
            "dry_run: false\ntfc: {organizations: [acme, beta]}\n"
            "s3_backend: {dynamodb_tables: [locks]}\nrules: [{id: a, actions: [cancel]}]\n",
            {"TFC_WATCHDOG_INTERVAL": "2m"},
            "organizations: acme, beta; s3 backend: locks; rules: 1; actions allowed: cancel; "
            "dry-run: OFF, these actions will be sent where a rule allows; "
            "env overrides: TFC_WATCHDOG_INTERVAL",
            id="when-the-file-may-act",
        ),
        pytest.param(
            "tfc: {organizations: [acme]}\ndefaults: {actions: [force_unlock]}\n"
            "rules: [{id: a, actions: [discard, cancel]}, {id: b, actions: []}]\n",
            {},
            "organizations: acme; rules: 2; actions allowed: cancel, discard, force_unlock; "
            "dry-run: on, nothing will be sent",
            id="the-allowed-rungs-in-ladder-order-and-what-dry-run-means",
        ),
    ],
)
def test_the_summary_says_what_is_watched_and_whether_the_file_may_act(
    config: str,
    env: dict[str, str],
    summary: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    path = tmp_path / "c.yaml"
    path.write_text(config)
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == summary


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


def test_two_files_is_a_usage_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(SystemExit) as info:
        main(["check-config", str(EXAMPLE), str(missing)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: {missing}" in err
    assert "Traceback" not in err


def test_the_installed_module_runs_check_config_end_to_end(tmp_path: Path) -> None:
    # The real command in a child process: its exit codes, and nothing else on its stderr.
    ok = run_cli("check-config", str(EXAMPLE))
    assert (ok.returncode, ok.stdout.splitlines()[0]) == (0, f"{EXAMPLE}: ok")
    missing = tmp_path / "missing.yaml"
    gone = run_cli("check-config", str(missing))
    assert (gone.returncode, gone.stderr) == (2, f"{missing}: cannot read: no such file\n")


def hide_package(monkeypatch: pytest.MonkeyPatch, top: str) -> None:
    """Hide the package `top` (a dev extra on this machine) from find_spec as a plain install
    lacks it: None for the package itself; for a module inside it find_spec raises, as
    importing the missing parent does (`google.cloud.storage` without any `google`)."""
    real_find_spec = importlib.util.find_spec

    def without(name: str, package: str | None = None) -> Any:
        if name == top:
            return None
        if name.startswith(f"{top}."):
            raise ModuleNotFoundError(f"No module named {top!r}")
        return real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without)


@pytest.mark.parametrize(
    ("package", "config", "summary", "warning"),
    [
        pytest.param(
            "boto3",
            "s3_backend: {dynamodb_tables: [locks]}",
            "s3 backend: locks; rules: 0",
            "s3_backend needs boto3, which is not installed here "
            "(`run` and `scan` would exit 2): pip install 'tfc-watchdog[s3]'",
            id="s3",
        ),
        pytest.param(
            "google",
            "gcs_backend: {buckets: [{bucket: tf-state, prefix: prod/}]}",
            "gcs backend: tf-state; rules: 0",
            "gcs_backend needs google-cloud-storage, which is not installed here "
            "(`run` and `scan` would exit 2): pip install 'tfc-watchdog[gcs]'",
            id="gcs",
        ),
    ],
)
def test_a_backend_without_its_extra_is_valid_but_warned_about(
    package: str,
    config: str,
    summary: str,
    warning: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hide_package(monkeypatch, package)
    path = tmp_path / "c.yaml"
    path.write_text(config + "\n")
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"{path}: ok"
    assert out.splitlines()[1].startswith(summary)
    assert err == f"{path}: warning: {warning}\n"


def test_run_and_scan_refuse_a_gcs_backend_without_google_cloud_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from watchdog.daemon import load_or_report

    hide_package(monkeypatch, "google")
    path = tmp_path / "c.yaml"
    path.write_text("gcs_backend: {buckets: [{bucket: tf-state}]}\n")

    assert load_or_report(str(path), "scan") == 2
    assert capsys.readouterr().err == (
        f"{path}: gcs_backend needs google-cloud-storage, which is not installed: "
        "pip install 'tfc-watchdog[gcs]'\n"
    )
