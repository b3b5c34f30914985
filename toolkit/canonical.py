"""The canonical bytes of a JSON value (RFC 8785, JSON Canonicalization Scheme): what a signature covers.

A signature over ``manifest.json`` must survive a copy that re-indents it or reorders its keys, and must
be checkable by firmware in C++ as well as here, so the signed bytes are not the file but a standard form
of its content: object keys sorted by their UTF-16 code units, no whitespace, strings escaped as
ECMAScript's JSON.stringify does, numbers as ECMAScript prints a double (``1.0`` and ``1`` are the same
number, ``1e21`` is ``1e+21``), UTF-8. RFC 8785 has implementations in most languages; the tests check
this one against the RFC's own examples. As there, a number is a double: two integers beyond 2**53 that
round to the same double have the same bytes (restnet writes none; a file's size is checked on disk).
"""
from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any


class NotCanonical(ValueError):
    """A value RFC 8785 cannot represent (non-finite, beyond a double's range, a lone surrogate)."""


def canonical_bytes(value: Any) -> bytes:
    """``value`` (parsed JSON: dict, list, str, int, float, bool, None) in RFC 8785 form, UTF-8."""
    try:
        return "".join(_parts(value)).encode("utf-8")
    except UnicodeEncodeError as err:
        raise NotCanonical(f"a string holds a lone surrogate ({err.reason}); it is not Unicode text") from None
    except RecursionError:
        raise NotCanonical("nested too deeply to canonicalise") from None


def _parts(value: Any):
    if value is None or isinstance(value, bool):
        yield json.dumps(value)
    elif isinstance(value, str):
        yield json.dumps(value, ensure_ascii=False)  # escapes exactly \" \\ \b \f \n \r \t and \u00xx
    elif isinstance(value, int):  # RFC 8785 reads every number as a double: an integer as its nearest one
        try:
            yield number(float(value))
        except OverflowError:
            raise NotCanonical(f"an integer of {len(str(abs(value)))} digits is beyond the range of a double") from None
    elif isinstance(value, float):
        yield number(value)
    elif isinstance(value, list):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ","
            yield from _parts(item)
        yield "]"
    elif isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise NotCanonical("an object key is not text")
        yield "{"
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be"))):
            if i:
                yield ","
            yield json.dumps(key, ensure_ascii=False)
            yield ":"
            yield from _parts(value[key])
        yield "}"
    else:
        raise NotCanonical(f"{type(value).__name__} is not a JSON value")


def number(x: float) -> str:
    """A double as ECMAScript's Number.prototype.toString writes it (RFC 8785, section 3.2.2.3)."""
    if not math.isfinite(x):
        raise NotCanonical(f"{x} is not a JSON number")
    if x == 0:
        return "0"  # -0 too
    # repr gives the shortest digit string that reads back as x, the digits ECMAScript uses too.
    _, digits, exp = Decimal(repr(abs(x))).normalize().as_tuple()
    s = "".join(map(str, digits))
    k, n = len(s), exp + len(s)  # x = 0.s * 10**n
    if k <= n <= 21:
        text = s + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{s[:n]}.{s[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + s
    else:
        e = n - 1
        text = (s if k == 1 else f"{s[0]}.{s[1:]}") + ("e+" if e > 0 else "e-") + str(abs(e))
    return ("-" if x < 0 else "") + text
