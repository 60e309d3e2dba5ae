"""The image installs only hash-locked distributions, resolved from pyproject.toml for the
image's Python, and says which commit it was built from.

The lock is checked offline against pyproject.toml, not re-resolved: a fresh resolution
against the index would fail this test whenever any dependency publishes a release, which
says nothing about this repository. What it proves is that the lock pins every requirement
of pyproject.toml, and nothing that pyproject.toml no longer asks for, within its ranges,
each with hashes; `make lock` regenerates it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.chart.render import REPO
from tests.chart.test_chart_image import DOCKERFILE, _args, _base_images, _instructions
from tests.support.process import make, run_captured

PYPROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())
IMAGE_LOCK = REPO / "requirements" / "image.txt"
BUILD_LOCK = REPO / "requirements" / "build.txt"
BUILD_IN = REPO / "requirements" / "build.in"
MAKEFILE = (REPO / "Makefile").read_text()
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _entries(text: str) -> dict[str, dict[str, Any]]:
    """name -> {version, hashes, via}, from a `--generate-hashes` requirements file."""
    entries: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    in_via = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if match := _PIN.match(raw):
            current = {"version": match.group(2), "hashes": [], "via": set()}
            entries[canonicalize_name(match.group(1))] = current
            in_via = False
        elif current is not None and line.startswith("--hash="):
            current["hashes"].append(line.removeprefix("--hash=").rstrip(" \\"))
        elif current is not None and line.startswith("# via"):
            rest = line.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                current["via"].add(rest)
        elif current is not None and in_via and line.startswith("#   "):
            current["via"].add(line.removeprefix("#").strip())
        elif not line.startswith("#"):
            raise AssertionError(f"not an exact, hashed pin: {raw!r}")
    return entries


def _image_requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    names = project["dependencies"] + extras["s3"] + extras["gcs"]
    return [Requirement(r) for r in names]


@pytest.mark.parametrize("lock", [IMAGE_LOCK, BUILD_LOCK], ids=lambda p: p.name)
def test_every_locked_distribution_is_an_exact_pin_with_sha256_hashes(lock: Path) -> None:
    entries = _entries(lock.read_text())
    assert entries
    for name, entry in entries.items():
        assert entry["hashes"], f"{name} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in entry["hashes"]), name


def test_the_image_lock_pins_what_pyproject_requires_within_its_ranges() -> None:
    entries = _entries(IMAGE_LOCK.read_text())
    for requirement in _image_requirements():
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{requirement} is missing from {IMAGE_LOCK.name}: make lock"
        assert requirement.specifier.contains(entries[name]["version"], prereleases=True), (
            f"{IMAGE_LOCK.name} pins {name}=={entries[name]['version']} outside {requirement}: "
            "make lock"
        )


def test_the_image_lock_has_no_direct_requirement_that_pyproject_dropped() -> None:
    entries = _entries(IMAGE_LOCK.read_text())
    direct = {
        name for name, entry in entries.items() if any("pyproject.toml" in v for v in entry["via"])
    }
    assert direct == {canonicalize_name(r.name) for r in _image_requirements()}


def test_the_build_lock_pins_the_build_backend_pyproject_names() -> None:
    wanted = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    listed = [
        Requirement(line)
        for line in BUILD_IN.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(map(str, listed)) == sorted(map(str, wanted)), "build.in follows pyproject"
    entries = _entries(BUILD_LOCK.read_text())
    for requirement in wanted:
        pinned = entries[canonicalize_name(requirement.name)]["version"]
        assert requirement.specifier.contains(pinned), (requirement, pinned)


def test_the_dockerfile_installs_only_from_the_locks() -> None:
    runs = [rest for keyword, rest in _instructions() if keyword == "RUN"]
    installs = [
        part.strip()
        for run in runs
        for part in run.split("&&")
        if re.search(r"\bpip\b.*\binstall\b", part)
    ]
    assert any("--require-hashes -r requirements/image.txt" in i for i in installs)
    assert any("--require-hashes -r requirements/build.txt" in i for i in installs)
    for install in installs:
        # Every other install is the project's own wheel, without any dependency.
        assert "--require-hashes" in install or ("--no-deps" in install and ".whl" in install)
    wheels = [part for run in runs for part in run.split("&&") if "pip wheel" in part]
    assert wheels
    # An isolated build would fetch an unlocked build backend.
    assert all("--no-build-isolation" in w and "--no-deps" in w for w in wheels)
    copies = [rest for keyword, rest in _instructions() if keyword == "COPY"]
    assert any("requirements/image.txt" in c and "requirements/build.txt" in c for c in copies)
    rules = (REPO / ".dockerignore").read_text().splitlines()
    assert "!requirements/image.txt" in rules
    assert "!requirements/build.txt" in rules


def test_make_lock_resolves_for_the_python_of_the_base_image() -> None:
    lock_python = re.search(r"^LOCK_PYTHON\s*=\s*(\S+)", MAKEFILE, re.MULTILINE)
    assert lock_python, "the Makefile names the Python the lock is resolved for"
    assert "--python-version $(LOCK_PYTHON)" in MAKEFILE
    for image in _base_images():
        tag = image.split("@")[0].partition(":")[2]
        assert tag.startswith(f"{lock_python.group(1)}-"), (image, lock_python.group(1))


def test_ci_runs_the_tests_on_the_python_of_the_image() -> None:
    """The image's Python is the one the suite runs on in CI (.ci/run runs `make test`)."""
    tag = _base_images()[-1].split("@")[0].partition(":")[2]
    image_python = tuple(int(p) for p in tag.split("-")[0].split("."))
    if os.environ.get("CI") != "true":
        pytest.skip(f"checked in CI; the image runs Python {'.'.join(map(str, image_python))}")
    assert sys.version_info[:2] == image_python


def test_a_pinned_base_image_digest_is_a_full_sha256() -> None:
    image = _args()["PYTHON_IMAGE"]
    if "@" in image:
        assert re.fullmatch(r"[^@\s]+:[^@\s]+@sha256:[0-9a-f]{64}", image), image
    # Where the digest comes from: the Makefile asks the registry, nobody types it.
    assert "docker buildx imagetools inspect" in MAKEFILE
    assert "make base-image-digest" in DOCKERFILE


def test_the_image_says_which_commit_it_was_built_from() -> None:
    labels = " ".join(rest for keyword, rest in _instructions() if keyword == "LABEL")
    assert 'org.opencontainers.image.revision="${REVISION}"' in labels
    runtime_args = DOCKERFILE.split("AS runtime", 1)[1]
    assert re.search(r"^ARG REVISION\b", runtime_args, re.MULTILINE)
    dry_run = make("-n", "image", "ENGINE=docker", "IMAGE=registry.example.com/w:1")
    assert dry_run.returncode == 0, dry_run.stderr
    head = run_captured(["git", "rev-parse", "HEAD"], cwd=REPO).stdout.strip()
    expected = head if re.fullmatch(r"[0-9a-f]{40}", head) else "unknown"
    assert f"--build-arg REVISION={expected} " in dry_run.stdout


def _make_base_image_digest(tmp_path: Path, docker_script: str) -> subprocess.CompletedProcess[str]:
    """`make base-image-digest` with a stand-in `docker` that answers as `docker_script` says."""
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\n" + docker_script)
    docker.chmod(0o755)
    path = f"{tmp_path}:{os.environ['PATH']}"
    return make("-s", "base-image-digest", env={**os.environ, "PATH": path})


def test_make_base_image_digest_prints_the_line_to_paste(tmp_path: Path) -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    index = f'{{"schemaVersion":2,"digest":"{digest}","size":1}}'
    result = _make_base_image_digest(
        tmp_path, f'[ "$2" = version ] && exit 0\n[ "$3" = inspect ] && echo \'{index}\'\n'
    )
    assert result.returncode == 0, result.stderr
    base = _args()["PYTHON_IMAGE"].split("@")[0]
    assert result.stdout == f"ARG PYTHON_IMAGE={base}@{digest}\n"


def test_make_base_image_digest_fails_in_one_line_without_buildx_or_a_digest(
    tmp_path: Path,
) -> None:
    no_buildx = _make_base_image_digest(tmp_path, "exit 1\n")
    assert no_buildx.returncode != 0
    assert "needs docker with the buildx plugin" in no_buildx.stderr
    no_digest = _make_base_image_digest(tmp_path, "echo '{}'\n")
    assert no_digest.returncode != 0
    assert "no sha256 digest" in no_digest.stderr
    assert "Traceback" not in no_digest.stderr
    assert no_digest.stdout == ""
