"""Masking personal data (ID numbers, phone numbers, bank cards, e-mails, names in key=value form).

Used wherever failure text leaves the order store: logs, exported training data.
"""

from __future__ import annotations

import re
from typing import Final

_PATTERNS: Final = (
    (
        re.compile(
            r"(?<![0-9A-Za-z])\d{6}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx](?![0-9A-Za-z])"
        ),
        "<ID_NUMBER>",
    ),
    # mainland mobile numbers, also written in groups: +86 138-1234-5678, 138 1234 5678
    (re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}(?!\d)"), "<PHONE>"),
    (re.compile(r"(?<!\d)(?:\d[ -]?){15,18}\d(?!\d)"), "<CARD>"),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<EMAIL>"),
    (
        re.compile(
            r"((?:name|holder|insured|applicant|姓名|被保人|投保人|持卡人|户名)[\"']?\s*[:=：]\s*[\"']?)"
            # a Latin name may go on for two more capitalised words ("John Smith")
            r"([A-Z][a-z]+(?: [A-Z][a-z]+){1,2}(?![\w])|[^\s,，;；\"'}]{1,32})",
            re.IGNORECASE,
        ),
        r"\1<NAME>",
    ),
)


def mask_personal_data(text: str) -> str:
    """The text with ID numbers, phones, card numbers, e-mails and labelled names replaced by tags."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
