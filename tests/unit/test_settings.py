"""Environment overrides of process settings, and where the API token comes from."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from watchdog import logs
from watchdog.configload import (
    ENV_OVERRIDES,
    ConfigError,
    apply_env_overrides,
    load_policy,
    load_token,
)
from watchdog.policy import Policy

FILE = """\
dry_run: true
interval: 60s
listen: 0.0.0.0:9877
log: {format: json, level: info}
tfc: {organizations: [acme], address: https://app.terraform.io}
"""
TOKEN = "AbCdEfGhIjKlMn.atlasv1.not-a-real-token-0123456789"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(FILE)
    return path


@pytest.fixture(autouse=True)
def _forget_secrets() -> None:
    logs.clear_secrets()


def test_every_override_reaches_its_key(config: Path) -> None:
    p = load_policy(
        str(config),
        {
            "TFC_WATCHDOG_DRY_RUN": "false",
            "TFC_WATCHDOG_INTERVAL": "5m",
            "TFC_WATCHDOG_LISTEN": "127.0.0.1:9000",
            "TFC_WATCHDOG_STATE_FILE": "/var/lib/watchdog/state.json",
            "TFC_WATCHDOG_LOG_FORMAT": "CONSOLE",
            "TFC_WATCHDOG_LOG_LEVEL": "DEBUG",
            "TFC_WATCHDOG_ADDRESS": "https://tfe.example.com/",
        },
    )
    assert p.dry_run is False
    assert p.interval == timedelta(minutes=5)
    assert p.listen == "127.0.0.1:9000"
    assert p.state_file == "/var/lib/watchdog/state.json"
    assert (p.log.format, p.log.level) == ("console", "debug")
    assert p.tfc is not None
    assert p.tfc.address == "https://tfe.example.com"


def test_without_overrides_the_file_decides(config: Path) -> None:
    p = load_policy(str(config), {"TFC_WATCHDOG_PORT": "tcp://10.0.0.1:9877", "HOME": "/root"})
    assert p.dry_run is True
    assert p.interval == timedelta(seconds=60)


def test_an_empty_variable_counts_as_unset(config: Path) -> None:
    p = load_policy(str(config), {"TFC_WATCHDOG_DRY_RUN": "", "TFC_WATCHDOG_INTERVAL": "  "})
    assert p.dry_run is True
    assert p.interval == timedelta(seconds=60)


def test_an_override_creates_the_log_section_when_the_file_has_none(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("tfc: {organizations: [acme]}\n")
    assert load_policy(str(path), {"TFC_WATCHDOG_LOG_LEVEL": "warning"}).log.level == "warning"


def test_apply_env_overrides_reports_where_each_value_came_from() -> None:
    data: dict[str, object] = {"tfc": {"organizations": ["a"]}}
    origins, problems = apply_env_overrides(
        data, {"TFC_WATCHDOG_ADDRESS": "https://x.example", "TFC_WATCHDOG_DRY_RUN": "no"}
    )
    assert problems == []
    assert origins == {
        ("tfc", "address"): "TFC_WATCHDOG_ADDRESS",
        ("dry_run",): "TFC_WATCHDOG_DRY_RUN",
    }
    assert data == {
        "tfc": {"organizations": ["a"], "address": "https://x.example"},
        "dry_run": "no",
    }


def test_overrides_cover_only_process_settings() -> None:
    # The policy itself (rules, limits, protections, actions) only ever comes from the file.
    assert {path[0] for path in ENV_OVERRIDES.values()} <= {
        "dry_run",
        "interval",
        "listen",
        "state_file",
        "log",
        "tfc",
    }
    assert ("tfc", "address") in ENV_OVERRIDES.values()


# --- the token -------------------------------------------------------------------------------


def tfc_policy(token_file: Path | None = None) -> Policy:
    tfc: dict[str, object] = {"organizations": ["acme"]}
    if token_file is not None:
        tfc["token_file"] = str(token_file)
    return Policy.model_validate({"tfc": tfc})


def test_the_token_comes_from_the_environment() -> None:
    token = load_token(tfc_policy(), {"TFC_WATCHDOG_TOKEN": f"  {TOKEN}\n"})
    assert token.get_secret_value() == TOKEN
    assert TOKEN not in repr(token)
    assert TOKEN not in str(token)


def test_the_token_comes_from_the_token_file_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert load_token(tfc_policy(path), {}).get_secret_value() == TOKEN


def test_the_environment_wins_over_the_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("file-token-value")
    token = load_token(tfc_policy(path), {"TFC_WATCHDOG_TOKEN": TOKEN})
    assert token.get_secret_value() == TOKEN


def test_a_loaded_token_is_masked_in_logs_from_then_on() -> None:
    load_token(tfc_policy(), {"TFC_WATCHDOG_TOKEN": TOKEN})
    assert logs.redact_text(f"request failed with {TOKEN}") == "request failed with ***"


def test_no_token_at_all_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_token(tfc_policy(), {"TFC_WATCHDOG_TOKEN": "   "})
    assert info.value.lines == [
        "no API token: set env TFC_WATCHDOG_TOKEN or tfc.token_file (a mounted Secret)"
    ]


def test_an_empty_token_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("\n\n")
    with pytest.raises(ConfigError) as info:
        load_token(tfc_policy(path), {})
    assert info.value.lines == [f"tfc.token_file {path}: the file is empty"]


def test_a_missing_token_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(ConfigError) as info:
        load_token(tfc_policy(path), {})
    assert info.value.lines == [f"tfc.token_file {path}: cannot read the token: no such file"]


def test_a_token_file_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_token(tfc_policy(tmp_path), {})
    assert info.value.lines == [f"tfc.token_file {tmp_path}: cannot read the token: is a directory"]


def test_a_token_with_an_inner_line_break_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\nsecond-line\n")
    with pytest.raises(ConfigError) as info:
        load_token(tfc_policy(path), {})
    assert "must be one line" in str(info.value)
    assert TOKEN not in str(info.value)
    assert "second-line" not in str(info.value)
