"""The chart README's values table, generated from values.yaml comments the helm-docs way.

helm-docs (https://github.com/norwoodj/helm-docs) is a Go binary that neither PyPI, Debian
nor npm ships, so this repository cannot install it from its own files; this module follows
its rules for the values table instead, so that the README reads as helm-docs writes it and
helm-docs itself could take over:

- A key is documented by the comment lines right above it that start with `# --`; the
  following `#` lines continue the description (joined with a space). `# @default -- TEXT`
  replaces the default shown.
- A documented map or non-empty list gets one row with its whole value; below it, only keys
  with their own `# --` comment get rows. Every other leaf (and empty map or list) gets a
  row, described or not.
- Key: the dotted path (`a.b`, `a[0]`; a key with a dot or a space in quotes). Type: bool,
  int, float, string, list or object. Default: the value as compact JSON in backticks (map
  keys sorted, `<`, `>`, `&` escaped, as Go's encoding/json writes them); a null value shows
  `nil`. A description that starts with `(type)` sets the type (needed for a null value,
  which is a string otherwise).
- Rows sorted by key.

`python -m tests.chart.helm_docs` (`make chart-docs`) rewrites the table between the markers
in helm/tfc-watchdog/README.md; tests/chart/test_chart_readme.py fails when it is stale.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "tfc-watchdog"
BEGIN = "<!-- BEGIN VALUES TABLE: generated from values.yaml by `make chart-docs` -->"
END = "<!-- END VALUES TABLE -->"

_DOC_START = re.compile(r"^\s*#\s+--\s*(.*)$")
_DEFAULT = re.compile(r"^\s*#\s+@default\s+--\s*(.*)$")
_CONTINUATION = re.compile(r"^\s*#(\s?)(.*)$")
_TYPE_PREFIX = re.compile(r"^\((.*?)\)\s*(.*)$")
# helm-docs' type names, by the exact type yaml.safe_load gives (so a bool is a bool, not the
# int it subclasses); a map, or anything else, is an object.
_TYPE_NAMES: dict[type, str] = {
    bool: "bool",
    int: "int",
    float: "float",
    str: "string",
    list: "list",
}


@dataclass(frozen=True)
class Doc:
    description: str
    default: str | None


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    description: str


def _doc_above(lines: list[str], mark: yaml.Mark) -> Doc | None:
    """The helm-docs description in the comment block right above the key at `mark`."""
    line_index = mark.line
    if lines[line_index][: mark.column].strip() not in ("", "-"):
        return None  # not the first key on its line (a flow mapping): the comment is not its
    block: list[str] = []
    i = line_index - 1
    while i >= 0 and lines[i].lstrip().startswith("#"):
        block.insert(0, lines[i])
        i -= 1
    starts = [n for n, line in enumerate(block) if _DOC_START.match(line)]
    if not starts:
        return None
    block = block[starts[-1] :]
    first = _DOC_START.match(block[0])
    assert first is not None
    description = first.group(1)
    default = None
    for line in block[1:]:
        if match := _DEFAULT.match(line):
            default = match.group(1)
        elif match := _CONTINUATION.match(line):
            description += " " + match.group(2)
    return Doc(description.strip(), default)


def _go_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Go's encoding/json escapes these three for HTML; helm-docs shows what Go writes.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _row(key: str, value: Any, doc: Doc | None) -> Row:
    description = doc.description if doc else ""
    type_name = "string" if value is None else _TYPE_NAMES.get(type(value), "object")
    if match := _TYPE_PREFIX.match(description):
        type_name, description = match.group(1), match.group(2)
    default = "`nil`" if value is None else f"`{_go_json(value)}`"
    if doc and doc.default is not None:
        default = doc.default
    return Row(key, type_name, default, description)


def _child_key(prefix: str, key: str) -> str:
    escaped = f'"{key}"' if "." in key or " " in key else key
    return f"{prefix}.{escaped}" if prefix else escaped


def _rows_at(
    node: yaml.Node,
    value: Any,
    prefix: str,
    lines: list[str],
    *,
    doc: Doc | None,
    undocumented: bool,
) -> list[Row]:
    children: list[tuple[str, yaml.Node, yaml.Node, Any]] = []
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            children.append((_child_key(prefix, key), key_node, value_node, value[key]))
    elif isinstance(node, yaml.SequenceNode):
        for index, item_node in enumerate(node.value):
            children.append((f"{prefix}[{index}]", item_node, item_node, value[index]))
    else:
        return [_row(prefix, value, doc)] if (undocumented or doc) else []
    if not children:
        return [_row(prefix, value, doc)] if prefix and (undocumented or doc) else []
    rows = []
    if doc:
        rows.append(_row(prefix, value, doc))
        undocumented = False
    for key, key_node, value_node, child in children:
        child_doc = _doc_above(lines, key_node.start_mark)
        rows.extend(
            _rows_at(value_node, child, key, lines, doc=child_doc, undocumented=undocumented)
        )
    return rows


def value_rows(values_yaml: str) -> list[Row]:
    root = yaml.compose(values_yaml, Loader=yaml.SafeLoader)
    values = yaml.safe_load(values_yaml)
    if root is None:
        return []
    rows = _rows_at(root, values, "", values_yaml.splitlines(), doc=None, undocumented=True)
    return sorted(rows, key=lambda row: row.key.encode())


def values_table(values_yaml: str) -> str:
    lines = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for row in value_rows(values_yaml):
        cells = (row.key, row.type, row.default, row.description)
        # A `|` would end the cell early and shift every column after it.
        if any("|" in cell for cell in cells):
            raise ValueError(f"{row.key}: a `|` in the table breaks it; add `# @default -- ...`")
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def with_table(readme: str, values_yaml: str) -> str:
    """The README with the table between the markers replaced by a fresh one."""
    head, begin, rest = readme.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the chart README needs the markers {BEGIN!r} and {END!r}")
    return f"{head}{BEGIN}\n{values_table(values_yaml)}\n{END}{tail}"


def main() -> int:
    readme = CHART / "README.md"
    updated = with_table(readme.read_text(), (CHART / "values.yaml").read_text())
    if updated != readme.read_text():
        readme.write_text(updated)
        print(f"updated {readme.relative_to(CHART.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
