from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from overnight.domain.hashing import canonical_json, content_hash, sha256_hex

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["é", None]}) == '{"a":["é",null],"b":1}'


def test_known_digest() -> None:
    assert sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=6))
def test_key_order_never_changes_the_hash(value: dict[str, Any]) -> None:
    reordered = dict(reversed(list(value.items())))
    assert content_hash(reordered) == content_hash(value)
