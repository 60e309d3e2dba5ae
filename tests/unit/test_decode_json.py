"""The client's JSON decoding (orjson, then json): the same bodies accepted, the same values.

Response decoding moved from httpx's `response.json()` (the json module) to orjson
for speed. These pin that nothing else changed: whatever json accepted is accepted with the
same value, and whatever it refused is still a ValueError (so BadResponseError upstream).

One known difference: orjson (3.10+) reads an integer literal beyond 64 bits as the nearest
float where json gives an int. No API field is such an integer, and every integer the client
reads (`total-pages`, `next-page`, `total-count`) is type-checked, so such a value reads as
malformed instead of, say, a list of 2**64 pages.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.sources.tfc.client import decode_json

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson refuses those, json does not
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _beyond_64_bits_as_float(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return float(value)
    if isinstance(value, list):
        return [_beyond_64_bits_as_float(item) for item in value]
    if isinstance(value, dict):
        return {key: _beyond_64_bits_as_float(item) for key, item in value.items()}
    return value


def _as_json(value: Any) -> str:
    # NaN != NaN: compare what the two decoders produced by writing it back out.
    return json.dumps(_beyond_64_bits_as_float(value))


def _same_as_json_module(body: bytes) -> None:
    try:
        expected = json.loads(body)
    except ValueError:
        with pytest.raises(ValueError):  # noqa: PT011 - any ValueError is BadResponseError
            decode_json(body)
        return
    assert _as_json(decode_json(body)) == _as_json(expected)


@settings(max_examples=300)
@given(values, st.sampled_from(["utf-8", "utf-16", "utf-32"]), st.booleans())
def test_every_document_json_reads_decodes_to_the_same_value(
    value: Any, encoding: str, ascii_only: bool
) -> None:
    _same_as_json_module(json.dumps(value, ensure_ascii=ascii_only).encode(encoding))


@settings(max_examples=300)
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_arbitrary_bytes_decode_exactly_when_json_would(body: bytes) -> None:
    _same_as_json_module(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": NaN, "b": -Infinity}',
        b'{"n": 123456789012345678901234567890}',
        b'"\\ud800"',  # a lone surrogate
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
        b'{"a": 1, "a": 2}',
        b"",
        b"{",
        b"<html>",
    ],
)
def test_the_known_differences_of_orjson_fall_back_to_json(body: bytes) -> None:
    _same_as_json_module(body)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"a": ' * 5000 + b"1" + b"}" * 5000,
        b'{"data": ' + b"[" * 1100 + b"]" * 1100 + b"}",
        # orjson refuses NaN; json, reached next, must refuse the depth with a ValueError too.
        b'{"x": NaN, "y": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
    ids=["lists", "objects", "just-beyond-orjson", "nan-then-deep"],
)
def test_a_body_nested_too_deeply_is_a_value_error_not_a_recursion_error(body: bytes) -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        decode_json(body)
