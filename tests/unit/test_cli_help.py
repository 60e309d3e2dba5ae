"""`--help` of every subcommand: a description, the exit codes, where the token and the
config come from, the simulator's defaults and demo tokens."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from watchdog.cli import DEMO_TOKENS, build_parser

REPO = Path(__file__).resolve().parents[2]
DEMO_SCENARIO = REPO / "watchdog" / "simulator" / "scenarios" / "demo.yaml"


def help_of(command: str) -> str:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub: argparse.ArgumentParser = subparsers.choices[command]
    return sub.format_help()


@pytest.mark.parametrize("command", ["run", "scan", "unlock", "check-config", "demo", "simulator"])
def test_every_subcommand_has_a_description(command: str) -> None:
    text = help_of(command)
    description = text.split("\n\n")[1]
    assert not description.startswith(("options:", "positional")), text
    assert len(description.split()) >= 10, text
    assert all(len(line) <= 80 for line in text.splitlines()), text


def test_scan_help_lists_its_exit_codes_and_output_formats() -> None:
    text = help_of("scan")
    for line in ("0  nothing stale", "1  a source could not be read", "2  usage or config", "3  "):
        assert line in text, text
    assert "json: the /locks document" in " ".join(text.split())


@pytest.mark.parametrize("command", ["run", "scan", "unlock", "wait"])
def test_run_and_scan_name_the_token_and_the_config_variable(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TFC_WATCHDOG_CONFIG", raising=False)
    text = " ".join(help_of(command).split())
    assert "$TFC_WATCHDOG_TOKEN" in text
    assert "default: $TFC_WATCHDOG_CONFIG, unset now" in text
    monkeypatch.setenv("TFC_WATCHDOG_CONFIG", "/etc/tfc-watchdog/config.yaml")
    text = " ".join(help_of(command).split())
    assert "default: $TFC_WATCHDOG_CONFIG, now /etc/tfc-watchdog/config.yaml" in text


def test_check_config_help_explains_file() -> None:
    assert "FILE        the YAML config file to check" in help_of("check-config")


def test_simulator_help_shows_defaults_and_the_demo_tokens() -> None:
    text = help_of("simulator")
    assert "(default: 8080)" in text
    assert "(default: 127.0.0.1)" in text
    for token in DEMO_TOKENS:
        assert token in text


def test_the_demo_tokens_in_the_help_are_the_demo_scenario_s() -> None:
    scenario = yaml.safe_load(DEMO_SCENARIO.read_text())
    text = yaml.safe_dump(scenario)
    for token in DEMO_TOKENS:
        assert token in text
