"""The README's `helm install` renders as written: its `--set` flags are read from the README
itself (with Helm's own `--set` parser, through helm-python-sdk) and rendered with the chart,
so a README edit or a chart change that breaks the documented install fails here."""

from __future__ import annotations

import itertools
import re
import shlex
from typing import Any

import helm_python as helm

from tests.chart.render import REPO, container, kinds, merged, pod_spec, render

README = REPO / "README.md"
FENCE = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _deploy_section() -> str:
    text = README.read_text()
    start = text.index("## Deploy to Kubernetes")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _commands() -> list[list[str]]:
    """The shell commands of the section's `sh` blocks, continuation lines joined."""
    commands = []
    for block in FENCE.findall(_deploy_section()):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                commands.append(shlex.split(line))
    return commands


def _install() -> tuple[list[str], dict[str, Any]]:
    installs = [c for c in _commands() if c[:2] == ["helm", "install"]]
    assert len(installs) == 1, f"expected one `helm install` in the README, found {installs}"
    words = installs[0]
    values: dict[str, Any] = {}
    for flag, value in itertools.pairwise(words):
        if flag == "--set":
            values = merged(values, helm.parse_set_string(value))
    return words, values


def test_the_readme_install_renders_what_it_promises() -> None:
    words, values = _install()
    assert words[3] == "./helm/tfc-watchdog"
    namespace = words[words.index("-n") + 1]
    docs = render(values, release=words[2], namespace=namespace)
    assert {"Deployment", "ServiceMonitor", "PrometheusRule"} <= set(kinds(docs))
    image = container(docs)["image"]
    assert image == f"{values['image']['repository']}:{values['image']['tag']}"
    secrets = [v for v in pod_spec(docs)["volumes"] if "secret" in v]
    assert [v["secret"]["secretName"] for v in secrets] == [values["token"]["existingSecret"]]


def test_the_readme_creates_the_secret_and_namespace_the_install_names() -> None:
    words, values = _install()
    namespace = words[words.index("-n") + 1]
    commands = _commands()
    assert ["kubectl", "create", "namespace", namespace] in commands
    created = [c for c in commands if c[:5] == ["kubectl", "-n", namespace, "create", "secret"]]
    assert created and created[0][6] == values["token"]["existingSecret"]
    # The image the install names is the one the README builds and pushes.
    image = f"{values['image']['repository']}:{values['image']['tag']}"
    assert any(c[:2] == ["make", "image"] and f"IMAGE={image}" in c for c in commands)
    assert ["docker", "push", image] in commands
