"""JSON values as orjson (our one JSON encoder: stored payloads, results, event documents, answers) takes
them, from whatever Python's json.loads accepted: one walk, each caller choosing what a string becomes.

json.loads accepts what orjson refuses: integers beyond 64 bits, unpaired surrogates (from an escape
like "\\udc00"), NaN and Infinity. `encodable` turns the first into their digits (a string) and the
last into None (what orjson writes for them), and passes every string and object key through `text`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

#: The integers orjson encodes.
ORJSON_INTS: Final = range(-(2**63), 2**64)


def encodable(value: Any, *, text: Callable[[str], str], max_depth: int | None = None, depth: int = 0) -> Any:
    """`value` with every string (and object key) through `text`, integers outside ORJSON_INTS as their
    digits, non-finite floats as None, lists for tuples; containers deeper than `max_depth` read "…"."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return value if value - value == 0 else None  # NaN and ±Infinity are not JSON
    if isinstance(value, int):
        return value if value in ORJSON_INTS else str(value)
    if isinstance(value, Mapping | list | tuple) and max_depth is not None and depth >= max_depth:
        return "…"
    if isinstance(value, Mapping):
        return {text(str(k)): encodable(v, text=text, max_depth=max_depth, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encodable(v, text=text, max_depth=max_depth, depth=depth + 1) for v in value]
    return value
