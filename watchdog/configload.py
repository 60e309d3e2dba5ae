"""Read the config file: YAML -> environment overrides -> `Policy`, or one line per problem.

Every problem becomes one line naming the file, the line when known, and the key path
(`config.yaml:12: rules[1].match.workspaces[0]: ...`), because that line is what an on-call
engineer reads when the daemon refuses to start. Nothing here ever prints a value from a
`token` key, and a user error never escapes as anything but `ConfigError`.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import string
import sys
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from watchdog import CONFIG_ENV, GITLAB_TOKEN_ENV, TOKEN_ENV, logs
from watchdog.memory import check_state_file
from watchdog.model import ActionKind
from watchdog.policy import Policy

# A config file is a few kilobytes; a huge one is the wrong file (a state file, a log).
MAX_CONFIG_BYTES = 1024 * 1024
MAX_LINES = 40

# (noqa: a message about the token, not a token)
TOKEN_MESSAGE = f"the token never goes in the config file: use env {TOKEN_ENV} or tfc.token_file"
# HCP Terraform / TFE tokens look like `<14 chars>.atlasv1.<many chars>`.
_TOKEN_VALUE = re.compile(r"[A-Za-z0-9]{8,}\.atlasv1\.[A-Za-z0-9_-]{16,}")
_REDACTED = "<redacted>"
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + string.punctuation)


class ConfigError(Exception):
    """A config the watchdog refuses. `lines`: one human line per problem."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


def load_policy(path: str, environ: Mapping[str, str] = os.environ) -> Policy:
    """Read, override from `environ` (see ENV_OVERRIDES) and validate the config file."""
    text = _read_text(path)
    data, key_lines = _parse_yaml(path, text)
    if data is None:
        raise ConfigError(
            [
                f"{path}: the file is empty: expected settings such as "
                "`tfc: {organizations: [acme]}` (see config.example.yaml)"
            ]
        )
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{path}:1: the top level must be a mapping of keys (dry_run: ..., tfc: ...), "
                f"not {_kind(data)}"
            ]
        )
    problems = list(_strip_secrets_and_bad_keys(path, data, key_lines))
    problems.extend(_duplicate_rule_ids(path, data, key_lines))
    origins, env_problems = apply_env_overrides(data, environ)
    problems.extend((0, line) for line in env_problems)
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems.extend(
            _format_error(path, err, key_lines, origins)
            for err in exc.errors()
            # A redacted token-like value is already reported; its follow-up errors are noise.
            if err.get("input") != _REDACTED
        )
    if problems or policy is None:
        # dict.fromkeys: a duplicate id is found both here and by the model; say it once.
        ordered = dict.fromkeys(line for _, line in sorted(problems, key=lambda p: p[0]))
        raise ConfigError(_limit(list(ordered)))
    return policy


def configure_logs(
    policy: Policy, token: SecretStr | None = None, level: str | None = None
) -> None:
    """Logging as the config says (`log.format`, and `log.level` unless a command's own
    `level`), with the API token masked from the first line on."""
    logs.configure_logging(
        policy.log.format,
        level or policy.log.level,
        secrets=[token.get_secret_value()] if token else [],
    )


def load_or_report(path: str | None, command: str) -> tuple[Policy, SecretStr | None] | int:
    """Load the config and token for `command` (`run`, `scan`), or print one line per
    problem to stderr and return exit code 2."""
    if not path:
        print(
            f"tfc-watchdog {command}: no config file: pass --config FILE or set {CONFIG_ENV}",
            file=sys.stderr,
        )
        return 2
    try:
        policy = load_policy(path)
        token = load_token(policy) if policy.tfc is not None else None
        if policy.gitlab is not None:
            load_gitlab_token(policy)  # checked now: a missing token is exit 2, not a cycle
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 2
    problem = check_state_file(policy.state_file) if policy.state_file else None
    if problem is not None:
        print(f"{path}: {problem}", file=sys.stderr)
        return 2
    for section, package, extra in missing_extras(policy):
        print(
            f"{path}: {section} needs {package}, which is not installed: "
            f"pip install 'tfc-watchdog[{extra}]'",
            file=sys.stderr,
        )
        return 2
    return policy, token


# The optional extras a config section needs: (section, module, its package, the extra).
_EXTRAS = (
    ("s3_backend", "boto3", "boto3", "s3"),
    ("gcs_backend", "google.cloud.storage", "google-cloud-storage", "gcs"),
)


def missing_extras(policy: Policy) -> list[tuple[str, str, str]]:
    """(section, package, extra) of each configured section whose extra is not installed:
    `run` and `scan` refuse such a config, `check-config` warns about it."""
    return [
        (section, package, extra)
        for section, module, package, extra in _EXTRAS
        if getattr(policy, section) is not None and not _installed(module)
    ]


def _installed(module: str) -> bool:
    """Whether `module` can be imported (without importing it); a dotted name whose parent
    package is missing is not installed (find_spec raises for it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# --- environment overrides ------------------------------------------------------------------
# Process settings from the environment: which `TFC_WATCHDOG_*` variables override which keys.
#
# Only process settings can be overridden (the policy itself, rules and limits, lives in the
# file, so a reviewed file is what acts). An empty variable counts as unset, because templated
# manifests often render unset values as empty strings.
#
# | variable                  | key          |
# |---------------------------|--------------|
# | TFC_WATCHDOG_DRY_RUN      | dry_run      |
# | TFC_WATCHDOG_INTERVAL     | interval     |
# | TFC_WATCHDOG_LISTEN       | listen       |
# | TFC_WATCHDOG_STATE_FILE   | state_file   |
# | TFC_WATCHDOG_LOG_FORMAT   | log.format   |
# | TFC_WATCHDOG_LOG_LEVEL    | log.level    |
# | TFC_WATCHDOG_ADDRESS      | tfc.address  |
#
# Also read, never overriding a key: TFC_WATCHDOG_TOKEN (the API token, see `load_token`),
# TFC_WATCHDOG_GITLAB_TOKEN (see `load_gitlab_token`) and TFC_WATCHDOG_CONFIG (the file: the
# default of `--config`, see `cli`).
#
# Why a table and not pydantic-settings' env source: its sources validate a value into the
# field and lose which variable supplied it, and they read `os.environ` only. Here the raw
# string is put into the file's data before validation, so the one validation path gives the
# same checks and an error can name the variable (`env TFC_WATCHDOG_INTERVAL: ...`); tests
# pass their own environment. Unknown `TFC_WATCHDOG_*` variables are ignored on purpose:
# Kubernetes injects service links such as TFC_WATCHDOG_PORT for a Service of that name.

ENV_OVERRIDES: Mapping[str, tuple[str, ...]] = {
    "TFC_WATCHDOG_DRY_RUN": ("dry_run",),
    "TFC_WATCHDOG_INTERVAL": ("interval",),
    "TFC_WATCHDOG_LISTEN": ("listen",),
    "TFC_WATCHDOG_STATE_FILE": ("state_file",),
    "TFC_WATCHDOG_LOG_FORMAT": ("log", "format"),
    "TFC_WATCHDOG_LOG_LEVEL": ("log", "level"),
    "TFC_WATCHDOG_ADDRESS": ("tfc", "address"),
}

# Sections an override may create when the file leaves them out (all their keys default).
_CREATABLE_SECTIONS = frozenset({"log"})


def apply_env_overrides(
    data: dict[str, Any], environ: Mapping[str, str]
) -> tuple[dict[tuple[str, ...], str], list[str]]:
    """Put every set override into `data` (the file's parsed mapping), in place.

    Returns (origins, problems): origins maps each overridden key path to its variable, so
    validation errors on it can name the variable; problems are error lines
    (`env VAR: ...`) for overrides that have nowhere to go.
    """
    origins: dict[tuple[str, ...], str] = {}
    problems: list[str] = []
    for variable, loc in ENV_OVERRIDES.items():
        value = environ.get(variable, "")
        if not value.strip():
            continue
        parent: Any = data
        for part in loc[:-1]:
            if not isinstance(parent, dict):
                break
            if parent.get(part) is None and part in _CREATABLE_SECTIONS:
                parent[part] = {}
            elif parent.get(part) is None:
                problems.append(
                    f"env {variable}: sets {'.'.join(loc)}, but the config has no {part} section"
                )
                parent = None
                break
            parent = parent[part]
        # A malformed section (`log: 5`) is left alone: validation reports it against the file.
        if isinstance(parent, dict):
            parent[loc[-1]] = value.strip()
            origins[loc] = variable
    return origins, problems


def token_file_in_use(policy: Policy, environ: Mapping[str, str] = os.environ) -> str | None:
    """The token file the daemon reads, or None: env TFC_WATCHDOG_TOKEN wins over the file
    (and an environment cannot change under a running process, so nothing is re-read)."""
    if environ.get(TOKEN_ENV, "").strip() or policy.tfc is None:
        return None
    return policy.tfc.token_file


def load_token(policy: Policy, environ: Mapping[str, str] = os.environ) -> SecretStr:
    """The TFC API token: env TFC_WATCHDOG_TOKEN, else the file `tfc.token_file`.

    Surrounding whitespace (a trailing newline in a mounted Secret) is stripped. The token is
    registered with `logs.add_secret` so no log line can carry it.
    """
    return _load_token(
        TOKEN_ENV,
        token_file_in_use(policy, environ),
        environ,
        what="API token",
        setting="tfc.token_file",
    )


def load_gitlab_token(policy: Policy, environ: Mapping[str, str] = os.environ) -> SecretStr:
    """The GitLab token: env TFC_WATCHDOG_GITLAB_TOKEN, else the file `gitlab.token_file`;
    checked and registered with the log redaction like the TFC token."""
    return _load_token(
        GITLAB_TOKEN_ENV,
        gitlab_token_file_in_use(policy, environ),
        environ,
        what="GitLab token",
        setting="gitlab.token_file",
    )


def _load_token(
    env: str, token_file: str | None, environ: Mapping[str, str], *, what: str, setting: str
) -> SecretStr:
    """The token in env `env`, else in `token_file` (the file setting `setting` names, None
    when unset or when the environment wins)."""
    from_env = environ.get(env, "").strip()
    if from_env:
        return _checked_token(from_env, f"env {env}")
    if token_file is None:
        raise ConfigError([f"no {what}: set env {env} or {setting} (a mounted Secret)"])
    return read_token_file(token_file, origin=setting)


def gitlab_token_file_in_use(policy: Policy, environ: Mapping[str, str] = os.environ) -> str | None:
    """Like `token_file_in_use`, for the GitLab token: env TFC_WATCHDOG_GITLAB_TOKEN wins."""
    if environ.get(GITLAB_TOKEN_ENV, "").strip() or policy.gitlab is None:
        return None
    return policy.gitlab.token_file


def read_token_file(path: str, *, origin: str = "tfc.token_file") -> SecretStr:
    """The token in `path` (`tfc.token_file`), checked like at start-up: read again by the
    daemon when the file changes (a rotated Secret)."""
    origin = f"{origin} {path}"
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read(64 * 1024).strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{origin}: cannot read the token: {_os_reason(exc)}"]) from None
    if not token:
        raise ConfigError([f"{origin}: the file is empty"])
    return _checked_token(token, origin)


def _checked_token(token: str, origin: str) -> SecretStr:
    # A newline or space inside would end up in the Authorization header, and httpx's error
    # for an invalid header value quotes the header, token included.
    if any(char not in _TOKEN_CHARS for char in token):
        raise ConfigError(
            [
                f"{origin}: the token contains spaces, line breaks or non-ASCII characters; "
                "it must be one line"
            ]
        )
    logs.add_secret(token)
    return SecretStr(token)


# --- reading and parsing --------------------------------------------------------------------


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a config file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {_os_reason(exc)}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: larger than 1 MiB: is this the config file?"])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (bad byte at offset {exc.start})"]) from None


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        # `<<: *anchor` merge keys may legitimately be overridden by a later local key.
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue
        key = loader.construct_object(key_node)
        if key in first_line:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} appears twice in one mapping (first on line {first_line[key]})",
                key_node.start_mark,
            )
        first_line[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(path: str, text: str) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    """The document, and the line of every key path (for messages)."""
    try:
        # The reader checks characters in its constructor: it must be inside the try.
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        raise ConfigError([_reader_error_line(path, exc)]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        key_lines: dict[tuple[str | int, ...], int] = {}
        _record_lines(node, (), key_lines, set())
        return loader.construct_document(node), key_lines
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_error_line(path, exc)]) from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError([_reader_error_line(path, exc)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: YAML error: {' '.join(str(exc).split())}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: YAML nested too deeply"]) from None
    finally:
        loader.dispose()


def _reader_error_line(path: str, exc: yaml.reader.ReaderError) -> str:
    return (
        f"{path}: YAML syntax error: character #x{exc.character:04x} at position "
        f"{exc.position} is not allowed"
    )


def _yaml_error_line(path: str, exc: yaml.MarkedYAMLError) -> str:
    # str(exc) would quote the offending source line, which could be a pasted token.
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem and exc.context_mark and exc.context_mark is not mark:
        problem += f" ({exc.context} on line {exc.context_mark.line + 1})"
    return f"{where}: YAML syntax error: {problem}"


def _record_lines(
    node: yaml.Node,
    loc: tuple[str | int, ...],
    out: dict[tuple[str | int, ...], int],
    seen: set[int],
) -> None:
    out.setdefault(loc, node.start_mark.line + 1)
    # Aliases reuse nodes; visiting each once keeps a "billion laughs" file cheap.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key_loc = (*loc, key_node.value)
                out.setdefault(key_loc, key_node.start_mark.line + 1)
                _record_lines(value_node, key_loc, out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*loc, index), out, seen)


# --- checks before validation ---------------------------------------------------------------


def _strip_secrets_and_bad_keys(
    path: str, data: dict[str, Any], key_lines: Mapping[tuple[str | int, ...], int]
) -> Iterator[tuple[int, str]]:
    """Remove `token` keys and token-like values (so nothing later can echo them) and report
    them; report keys that are not names."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    seen: set[int] = set()
    while stack:
        loc, value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            for key in list(value):
                child_loc = (*loc, str(key))
                line = _line_of(child_loc, key_lines)
                if not isinstance(key, str):
                    yield line, _line(path, line, loc, f"key {key!r} is not a name")
                    del value[key]
                elif key.strip().lower() == "token":
                    yield line, _line(path, line, child_loc, TOKEN_MESSAGE)
                    del value[key]
                elif isinstance(value[key], str) and _TOKEN_VALUE.search(value[key]):
                    yield (
                        line,
                        _line(path, line, child_loc, "looks like an API token: " + TOKEN_MESSAGE),
                    )
                    value[key] = _REDACTED
                else:
                    stack.append((child_loc, value[key]))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                child_loc = (*loc, index)
                if isinstance(item, str) and _TOKEN_VALUE.search(item):
                    line = _line_of(child_loc, key_lines)
                    yield (
                        line,
                        _line(path, line, child_loc, "looks like an API token: " + TOKEN_MESSAGE),
                    )
                    value[index] = _REDACTED
                else:
                    stack.append((child_loc, item))


def _duplicate_rule_ids(
    path: str, data: dict[str, Any], key_lines: Mapping[tuple[str | int, ...], int]
) -> Iterator[tuple[int, str]]:
    """The model finds duplicate ids only once every rule is valid; say it in the same run."""
    rules = data.get("rules")
    if not isinstance(rules, list):
        return
    first: dict[str, int] = {}
    for index, rule in enumerate(rules):
        rule_id = rule.get("id") if isinstance(rule, dict) else None
        if not isinstance(rule_id, str):
            continue
        if rule_id in first:
            loc = ("rules", index, "id")
            line = _line_of(loc, key_lines)
            message = f"duplicate rule id {rule_id!r}: rules[{first[rule_id]}] already uses it"
            yield line, _line(path, line, loc, message)
        else:
            first[rule_id] = index


# --- pydantic errors as lines ---------------------------------------------------------------


def _format_error(
    path: str,
    err: ErrorDetails,
    key_lines: Mapping[tuple[str | int, ...], int],
    origins: Mapping[tuple[str, ...], str],
) -> tuple[int, str]:
    loc: tuple[str | int, ...] = _without_union_tags(tuple(err["loc"]))
    ctx = err.get("ctx") or {}
    if err["type"] == "duplicate_rule_id" and "index" in ctx:
        loc = (*loc, int(ctx["index"]), "id")
    message = _message(err, loc)
    for origin_loc, variable in origins.items():
        if loc[: len(origin_loc)] == origin_loc:
            return 0, f"env {variable}: {message}"
    # A whole-file problem (no key path) has no meaningful line.
    line = _line_of(loc, key_lines) if loc else 0
    return line, _line(path, line, loc, message)


def _without_union_tags(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """pydantic names the branch of a tagged union in the error path (`applying.adaptive.max`);
    the file has no such key, so the line names the key the author wrote (`applying.max`)."""
    return tuple(
        part
        for index, part in enumerate(loc)
        if not (
            part in ("adaptive", "duration")
            and index > 0
            and loc[index - 1] in ("planning", "applying")
        )
    )


def _line(path: str, line: int, loc: Sequence[str | int], message: str) -> str:
    where = f"{path}:{line}" if line else path
    key = key_path(loc)
    return f"{where}: {key}: {message}" if key else f"{where}: {message}"


def _line_of(loc: tuple[str | int, ...], key_lines: Mapping[tuple[str | int, ...], int]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in key_lines:
            return key_lines[loc[:end]]
    return 0


def key_path(loc: Sequence[str | int]) -> str:
    """('rules', 1, 'match', 'workspaces', 0) -> 'rules[1].match.workspaces[0]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: ErrorDetails, loc: tuple[str | int, ...]) -> str:
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "string_type":
        return f"expected a string, got {_kind(value)}"
    if kind in {"bool_type", "bool_parsing"}:
        return f"expected true or false, got {_show(value)}"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return f"expected a whole number, got {_show(value)}"
    if kind in {"float_type", "float_parsing"}:
        return f"expected a number, got {_show(value)}"
    if kind in {"tuple_type", "list_type"}:
        return f"expected a list, got {_kind(value)}"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"expected a mapping (key: value), got {_kind(value)}"
    if kind == "enum" and "actions" in loc:
        valid = ", ".join(action.value for action in ActionKind)
        return f"unknown action {_show(value)}; valid actions: {valid}"
    if kind in {"enum", "literal_error"}:
        return f"{_show(value)} is not one of {ctx.get('expected', '')}".rstrip()
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        return err["msg"].replace("Input should be", "must be") + f", got {_show(value)}"
    return err["msg"].replace("Input should be", "must be")


def _unknown_key(loc: tuple[str | int, ...]) -> str:
    key = str(loc[-1])
    names = _field_names(loc[:-1])
    # A key that exists, spelled exactly so, elsewhere is a better hint than a look-alike
    # here (`organizations` at the top level belongs under tfc, it is not `notifications`).
    elsewhere = [key_path(p) for p in _all_field_paths(Policy, ()) if p[-1] == key]
    if elsewhere:
        return f"unknown key here; it belongs under {elsewhere[0]}"
    close = difflib.get_close_matches(key.replace("-", "_").lower(), names, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; valid keys here: {', '.join(names)}" if names else "unknown key"


def _field_names(loc: tuple[str | int, ...]) -> list[str]:
    model: type[BaseModel] | None = Policy
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field else None
    return list(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model inside `X | None`, `tuple[X, ...]`, `Annotated[X, ...]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in {typing.Union, types.UnionType, tuple, list, typing.Annotated}:
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found:
                return found
    return None


def _all_field_paths(model: type[BaseModel], loc: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        yield (*loc, name)
        inner = _model_in(field.annotation)
        if inner:
            yield from _all_field_paths(inner, (*loc, name))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, int | float):
        return f"the number {value}"
    return type(value).__name__


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict | list | tuple) or value is None:
        return _kind(value)
    return repr(value)


def _limit(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_LINES:
        return lines
    return [*lines[:MAX_LINES], f"... and {len(lines) - MAX_LINES} more problems"]
