"""The chart README (published with the chart) and the Chart.yaml metadata Artifact Hub reads."""

from __future__ import annotations

import re
import tarfile
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.chart import helm_docs
from tests.chart.render import CHART, REPO

README = CHART / "README.md"
CHART_YAML: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())


def test_the_values_table_is_current() -> None:
    readme = README.read_text()
    fresh = helm_docs.with_table(readme, (CHART / "values.yaml").read_text())
    assert fresh == readme, "the chart README's values table is out of date: make chart-docs"


def test_every_value_in_the_table_is_described() -> None:
    rows = helm_docs.value_rows((CHART / "values.yaml").read_text())
    assert len(rows) > 50
    undescribed = [row.key for row in rows if not row.description]
    assert not undescribed, f"give these a `# --` comment in values.yaml: {undescribed}"
    keys = {row.key for row in rows}
    for key in ("image.repository", "config.tfc.organizations", "token.existingSecret"):
        assert key in keys


def test_the_generator_follows_helm_docs_rules() -> None:
    values = textwrap.dedent(
        """\
        # -- A documented map: one row with its whole value; its children stay hidden
        # unless they have their own comment.
        # @default -- see values.yaml
        big:
          hidden: 1
          # -- Shown although its parent is documented.
          shown: "a<b"
        undocumented:
          leaf: true
          empty: {}
        # A plain comment documents nothing.
        plain: 1.5
        # -- (int) A null value takes its type from the description.
        nothing: null
        # -- A list, whole; "a.b" keys are quoted.
        list: [{x: 1}]
        dotted:
          # -- A key with a dot.
          a.b: x
        """
    )
    table = helm_docs.values_table(values).splitlines()
    assert table[:2] == [
        "| Key | Type | Default | Description |",
        "|-----|------|---------|-------------|",
    ]
    assert table[2:] == [
        "| big | object | see values.yaml | A documented map: one row with its whole value; its"
        " children stay hidden unless they have their own comment. |",
        '| big.shown | string | `"a\\u003cb"` | Shown although its parent is documented. |',
        '| dotted."a.b" | string | `"x"` | A key with a dot. |',
        '| list | list | `[{"x":1}]` | A list, whole; "a.b" keys are quoted. |',
        "| nothing | int | `nil` | A null value takes its type from the description. |",
        "| plain | float | `1.5` |  |",
        "| undocumented.empty | object | `{}` |  |",
        "| undocumented.leaf | bool | `true` |  |",
    ]


def test_a_pipe_in_a_cell_is_refused_rather_than_breaking_the_table() -> None:
    with pytest.raises(ValueError, match=r"^x: a `\|`"):
        helm_docs.values_table("# -- a | b\nx: 1\n")


def test_the_readme_and_icon_are_packaged_with_the_chart(tmp_path: Path) -> None:
    archive = helm.package(str(CHART), destination=str(tmp_path))
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        assert "tfc-watchdog/README.md" in names
        assert "tfc-watchdog/icon.svg" in names
        packaged = tar.extractfile("tfc-watchdog/README.md")
        assert packaged is not None
        assert packaged.read().decode() == README.read_text()


def test_the_icon_url_names_a_file_of_this_repository_that_is_an_svg() -> None:
    match = re.fullmatch(
        r"https://raw\.githubusercontent\.com/tfc-watchdog/tfc-watchdog/main/(.+)",
        CHART_YAML["icon"],
    )
    assert match, CHART_YAML["icon"]
    icon = REPO / match.group(1)
    # The repository's own file, not untrusted input.
    assert ET.parse(icon).getroot().tag == "{http://www.w3.org/2000/svg}svg"  # noqa: S314


def test_artifacthub_images_name_the_image_make_image_builds() -> None:
    images = yaml.safe_load(CHART_YAML["annotations"]["artifacthub.io/images"])
    assert images == [{"name": "tfc-watchdog", "image": f"tfc-watchdog:{CHART_YAML['appVersion']}"}]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^IMAGE\s*\?=\s*tfc-watchdog:", makefile, re.MULTILINE)
