"""The canonical form a manifest signature covers (RFC 8785): checked against the RFC's own examples, so that
firmware canonicalising with another RFC 8785 implementation gets the same bytes."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.canonical import NotCanonical, canonical_bytes


def test_canonical_bytes_match_rfc_8785():
    """The RFC's own examples (section 3.2.2 and appendix B) and its UTF-16 key order (section 3.2.3)."""
    src = r'''{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
               "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}'''
    want = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
            '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonical_bytes(json.loads(src)) == want.encode()
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    got = json.loads(canonical_bytes({k: 0 for k in keys}))
    assert list(got) == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    for x, text in [(0.0, "0"), (-0.0, "0"), (1.0, "1"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
                    (1e-7, "1e-7"), (1e-6, "0.000001"), (5e-324, "5e-324"), (-1.5e-10, "-1.5e-10"),
                    (1.7976931348623157e308, "1.7976931348623157e+308"), (0.1041666641831398, "0.1041666641831398"),
                    (9007199254740992, "9007199254740992"), (10 ** 21, "1e+21"), (2 ** 60, "1152921504606847000")]:
        assert canonical_bytes(x) == text.encode(), x
    assert canonical_bytes(2 ** 53 + 1) == canonical_bytes(2 ** 53)  # numbers are doubles, as in JavaScript
    for bad in (float("nan"), 10 ** 400, "\ud800", {1: 2}):
        with pytest.raises(NotCanonical):
            canonical_bytes(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 300, 10 ** 300) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=12)


@settings(max_examples=200, deadline=None, database=None)
@given(json_values, st.sampled_from([None, 1, 4]), st.booleans())
def test_any_reserialisation_has_the_same_canonical_bytes(value, indent, ascii_only):
    """Whatever a copy does to the layout (indent, escapes, key order), the canonical bytes stay; the
    canonical form is its own canonical form; and it reads back as the same value, every number as the same
    double."""
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only, sort_keys=ascii_only)
    once = canonical_bytes(json.loads(text))
    assert once == canonical_bytes(value) == canonical_bytes(json.loads(once))
    assert _doubles(json.loads(once)) == _doubles(value)


def _doubles(v):
    if isinstance(v, dict):
        return {k: _doubles(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_doubles(x) for x in v]
    return float(v) + 0.0 if isinstance(v, (int, float)) and not isinstance(v, bool) else v
