"""Every broken config gives its expected one-line message naming the file and key path.

Each file in configs/broken/ starts with `# expect: <fragment>`; loading it must fail with
exactly one problem line, starting with the file's path, containing the fragment.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tests.support.daemon import child_env
from tests.support.process import run_captured
from tests.support.tools import require_binary
from watchdog.cli import main
from watchdog.configload import ConfigError, load_policy
from watchdog.policy import Policy

BROKEN = Path(__file__).parent / "configs" / "broken"
CASES = sorted(BROKEN.glob("*.yaml"))
VALID = "tfc: {organizations: [acme]}\n"


def expected_fragment(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), f"{path.name} has no `# expect:` first line"
    return first.removeprefix("# expect: ")


def load_errors(path: Path | str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_policy(str(path), environ or {})
    return info.value.lines


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 32


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_broken_config_gives_its_one_expected_line(path: Path) -> None:
    lines = load_errors(path)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}:"), lines[0]
    assert expected_fragment(path) in lines[0]


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert load_errors(tmp_path) == [f"{tmp_path}: is a directory, not a config file"]


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert load_errors(missing) == [f"{missing}: cannot read: no such file"]


def test_a_file_that_fails_to_read_is_refused() -> None:
    # Reading /proc/self/mem from offset 0 fails with EIO, for root too: a real read error.
    assert load_errors("/proc/self/mem") == ["/proc/self/mem: cannot read: input/output error"]


def test_a_file_without_read_permission_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(VALID)
    path.chmod(0o000)
    if os.geteuid() != 0:
        assert load_errors(path) == [f"{path}: cannot read: permission denied"]
        return
    # Root reads any file whatever its mode (CAP_DAC_OVERRIDE). Rather than pretend, run the
    # real CLI as root without the two capabilities that bypass file permissions.
    setpriv = require_binary("setpriv")
    drop = "--bounding-set=-dac_override,-dac_read_search"
    result = run_captured(
        [setpriv, drop, sys.executable, "-m", "watchdog", "check-config", path],
        env=child_env(token=None),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"{path}: cannot read: permission denied"]


def test_a_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(VALID + "# padding\n" * 200_000)
    assert load_errors(path) == [f"{path}: larger than 1 MiB: is this the config file?"]


def test_many_problems_are_all_reported_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "dry_run: maybe\n"
        "tfc:\n"
        "  organizations: [acme]\n"
        "  token: s3cr3t-value\n"
        "rules:\n"
        "  - id: a\n"
        "    actions: [nuke]\n"
        "  - id: a\n"
    )
    lines = load_errors(path)
    assert lines == [
        f"{path}:1: dry_run: expected true or false, got 'maybe'",
        f"{path}:4: tfc.token: the token never goes in the config file: "
        "use env TFC_WATCHDOG_TOKEN or tfc.token_file",
        f"{path}:7: rules[0].actions[0]: unknown action 'nuke'; valid actions: "
        "cancel, force_cancel, discard, unlock, force_unlock, delete_lock",
        f"{path}:8: rules[1].id: duplicate rule id 'a': rules[0] already uses it",
    ]


def test_a_token_value_never_appears_in_any_message(tmp_path: Path) -> None:
    secret = "AbCdEfGhIjKlMn.atlasv1.SECRETSECRETSECRETSECRET"
    path = tmp_path / "c.yaml"
    path.write_text(
        f"tfc:\n  organizations: [acme]\n  token: {secret}\n  address: {secret}\n"
        f"rules:\n  - id: {secret}\n"
    )
    lines = load_errors(path)
    assert len(lines) == 3
    assert not any(secret in line or "SECRET" in line for line in lines)


def test_a_yaml_error_does_not_quote_the_source_line(tmp_path: Path) -> None:
    # PyYAML's own message prints the offending line, which may be a pasted token.
    path = tmp_path / "c.yaml"
    path.write_text("tfc:\n  organizations: [acme]\n  token: SECRET-VALUE: more: x\n")
    lines = load_errors(path)
    assert len(lines) == 1
    assert "YAML syntax error" in lines[0]
    assert "SECRET" not in lines[0]


def test_yaml_anchors_and_merge_keys_are_allowed(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        VALID + "x-common: &common {lock_stale_after: 1h, actions: []}\n"
        "rules:\n  - {id: a, <<: *common}\n  - {<<: *common, id: b, lock_stale_after: 2h}\n"
    )
    # The x-common key is unknown: that is reported, but the merge keys themselves are fine.
    valid = ", ".join(Policy.model_fields)
    assert load_errors(path) == [f"{path}:2: x-common: unknown key; valid keys here: {valid}"]


def test_a_billion_laughs_file_fails_fast(tmp_path: Path) -> None:
    lines = ["tfc: {organizations: [acme]}", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "c.yaml"
    path.write_text("\n".join(lines) + "\n")
    errors = load_errors(path)
    assert len(errors) == 9
    assert all("unknown key" in line for line in errors)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TFC_WATCHDOG_INTERVAL", "soon", "env TFC_WATCHDOG_INTERVAL: 'soon' is not a duration"),
        ("TFC_WATCHDOG_DRY_RUN", "perhaps", "env TFC_WATCHDOG_DRY_RUN: expected true or false"),
        ("TFC_WATCHDOG_LISTEN", "0.0.0.0:0", "env TFC_WATCHDOG_LISTEN: '0.0.0.0:0': port must"),
        ("TFC_WATCHDOG_LOG_LEVEL", "loud", "env TFC_WATCHDOG_LOG_LEVEL: 'loud' is not one of"),
        ("TFC_WATCHDOG_LOG_FORMAT", "xml", "env TFC_WATCHDOG_LOG_FORMAT: 'xml' is not one of"),
        ("TFC_WATCHDOG_ADDRESS", "tfe.local", "env TFC_WATCHDOG_ADDRESS: 'tfe.local' is not an"),
    ],
)
def test_a_bad_environment_override_names_the_variable(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(VALID)
    lines = load_errors(path, {variable: value})
    assert len(lines) == 1
    assert lines[0].startswith(expected), lines[0]


def test_an_address_override_without_a_tfc_section_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("s3_backend: {dynamodb_tables: [locks]}\n")
    assert load_errors(path, {"TFC_WATCHDOG_ADDRESS": "https://tfe.example.com"}) == [
        "env TFC_WATCHDOG_ADDRESS: sets tfc.address, but the config has no tfc section"
    ]


@pytest.mark.parametrize(
    "name",
    [
        "token_in_tfc",
        "yaml_syntax_error",
        "rule_ids_duplicate",
        "not_a_mapping_list",
        # RE2 would also write its own complaint to stderr: still exactly one line.
        "regex_backreference",
        "regex_lookahead",
    ],
)
def test_the_cli_exits_2_with_one_line_per_error_and_no_traceback(
    name: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # In this process, which is cheaper: capfd reads file descriptors 1 and 2, so it sees what
    # a C extension writes there as a child process's pipes would, and an exception that
    # escaped `main` would fail the test. (The installed command's own exit codes and stderr:
    # test_checkconfig_cli.py.)
    for variable in [v for v in os.environ if v.startswith("TFC_WATCHDOG_")]:
        monkeypatch.delenv(variable)  # the caller's own overrides
    path = BROKEN / f"{name}.yaml"
    assert main(["check-config", str(path)]) == 2
    out, err = capfd.readouterr()
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1
    assert expected_fragment(path) in lines[0]


def _models() -> list[type[BaseModel]]:
    from watchdog import policy

    return [
        value
        for value in vars(policy).values()
        if isinstance(value, type) and issubclass(value, BaseModel) and value is not BaseModel
    ]


# --- anything at all: a Policy or ConfigError lines, never another exception -----------------


def _problems(path: Path) -> list[str] | None:
    """None when the file is valid, else its problem lines; any other exception escapes."""
    try:
        load_policy(str(path), {})
    except ConfigError as exc:
        return exc.lines
    return None


_FIELD_NAMES = sorted(
    {name for model in (Policy, *_models()) for name in model.model_fields} | {"token", "x", "<<"}
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["2h", "0s", "-1m", "acme", "cancel", "[", "(?i)x(", "0.0.0.0:1"]),
)
_documents = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.integers(0, 3), inner, max_size=5),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_documents)
def test_any_yaml_document_gives_a_policy_or_config_error_lines(document: object) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_text(yaml.safe_dump(document))
        lines = _problems(path)
    assert lines is None or lines
    assert all(line.startswith(str(path)) and "\n" not in line for line in lines or [])


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_give_a_policy_or_config_error_lines(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_bytes(raw)
        lines = _problems(path)
    assert lines is None or lines
    assert all(line.startswith(str(path)) and "\n" not in line for line in lines or [])
