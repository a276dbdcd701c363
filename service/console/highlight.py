"""The message with its explanation spans marked: `<mark>` by sign, the span's weight as its title.

A `text` item's `span` (docs/contract.md §7) is a word or phrase found in the message after NFKC and
case-folding; the console shows the original message, so each character is folded on its own and the
folded text keeps, per character, where it came from. Spans are marked where they occur (the
strongest first; a later span never overlaps an earlier mark); everything else is escaped.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from markupsafe import Markup, escape


def _folded_with_origins(message: str) -> tuple[str, list[int]]:
    """The NFKC + case-folded message and, per folded character, the index of its original character."""
    folded: list[str] = []
    origins: list[int] = []
    for index, char in enumerate(message):
        piece = unicodedata.normalize("NFKC", char).casefold()
        folded.append(piece)
        origins.extend([index] * len(piece))
    return "".join(folded), origins


def span_marks(message: str, explanation: Iterable[Mapping[str, Any]]) -> list[tuple[int, int, float]]:
    """(start, end, weight) ranges of the original message covered by the text spans, without overlaps."""
    folded, origins = _folded_with_origins(message)
    taken: list[tuple[int, int, float]] = []
    for item in explanation:
        span = item.get("span") if isinstance(item, Mapping) else None
        if not isinstance(span, str) or not span or item.get("kind", "text") != "text":
            continue
        weight = float(item.get("weight") or 0.0)
        at = folded.find(span)
        while at != -1:
            start, end = origins[at], origins[at + len(span) - 1] + 1
            if all(end <= s or e <= start for s, e, _ in taken):
                taken.append((start, end, weight))
            at = folded.find(span, at + len(span))
    return sorted(taken)


def highlight(message: str | None, explanation: Any) -> Markup:
    """The message, escaped, with each explanation span in `<mark class="span-pos|span-neg">`."""
    if not message:
        return Markup("")
    items = explanation if isinstance(explanation, list) else []
    out: list[str] = []
    cursor = 0
    for start, end, weight in span_marks(message, items):
        out.append(str(escape(message[cursor:start])))
        css = "span-pos" if weight > 0 else "span-neg"
        title = f"{weight:+.3f} (towards {'async' if weight > 0 else 'final'})"
        out.append(f'<mark class="{css}" title="{escape(title)}">{escape(message[start:end])}</mark>')
        cursor = end
    out.append(str(escape(message[cursor:])))
    return Markup("".join(out))
