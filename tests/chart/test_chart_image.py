"""deploy/Dockerfile, parsed (no container engine runs here)."""

from __future__ import annotations

import json
import re
import tomllib

import yaml

from tests.chart.render import REPO

DOCKERFILE = (REPO / "deploy" / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _args() -> dict[str, str]:
    return dict(
        rest.split("=", 1) for keyword, rest in _instructions() if keyword == "ARG" and "=" in rest
    )


def _base_images() -> list[str]:
    args = _args()
    images = []
    for keyword, rest in _instructions():
        if keyword == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image))
    return images


def test_multi_stage_build_copies_the_venv_into_the_runtime_stage() -> None:
    assert len(_base_images()) >= 2
    copies = [rest for keyword, rest in _instructions() if keyword == "COPY"]
    assert any(c.startswith("--from=build") and "/opt/venv" in c for c in copies)


def test_base_images_are_pinned_slim_python_never_latest() -> None:
    for image in _base_images():
        name, _, tag = image.split("@")[0].partition(":")
        assert name == "python"
        assert tag
        assert tag != "latest"
        assert "slim" in tag
        assert tuple(int(p) for p in tag.split("-")[0].split(".")[:2]) >= (3, 11)


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for keyword, rest in _instructions() if keyword == "USER"]
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) == 10001


def test_entrypoint_and_cmd_are_exec_form() -> None:
    instructions = dict(_instructions())
    assert json.loads(instructions["ENTRYPOINT"]) == ["tfc-watchdog"]
    assert json.loads(instructions["CMD"]) == [
        "run",
        "--config",
        "/etc/tfc-watchdog/config.yaml",
    ]


def test_exposes_the_ops_port_and_compiles_bytecode_at_build() -> None:
    instructions = _instructions()
    assert ("EXPOSE", "9877") in instructions
    assert "compileall" in DOCKERFILE
    assert any(k == "LABEL" and "org.opencontainers.image.source" in r for k, r in instructions)


def test_the_build_context_is_limited_to_what_the_image_needs() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    assert "!watchdog/" in rules
    assert "!pyproject.toml" in rules


def test_the_version_is_written_once_in_pyproject() -> None:
    # The image label comes from a build argument `make image` reads from pyproject.toml, and
    # the chart's appVersion (the image tag it runs) must name that same version.
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((REPO / "helm" / "tfc-watchdog" / "Chart.yaml").read_text())
    assert chart["appVersion"] == version
    assert _args()["VERSION"] == "unknown"  # no second copy of the number in the Dockerfile
    assert 'org.opencontainers.image.version="${VERSION}"' in DOCKERFILE
    makefile = (REPO / "Makefile").read_text()
    assert "--build-arg VERSION=$(VERSION)" in makefile
    assert "VERSION := $(shell sed -n 's/^version = " in makefile
