"""Rule baselines, written the way a team without ML would: the bar the model has to clear.

- `status_rule`: async when HTTP 429 or 5xx, or the message is a timeout/connection exception.
- `keyword_rule`: async when the message or code contains a retry keyword (timeout, busy, 系统繁忙, ...).
"""

from __future__ import annotations

import re
from typing import Final

import numpy as np
import pandas as pd

_NETWORK: Final = re.compile(
    r"timed? ?out|timeout|connection (?:refused|reset|closed|aborted)|connect(?:ion)? ?error|"
    r"econnreset|econnrefused|etimedout|broken pipe|no route to host|socket|unreachable",
    re.IGNORECASE,
)
_KEYWORDS: Final = re.compile(
    r"timeout|timed out|busy|try again|retry|later|unavailable|overload|too many requests|rate limit|throttl|"
    r"maintenance|temporar|internal error|system error|systemerror|system_error|server error|"
    r"超时|繁忙|稍后|重试|系统异常|系统错误|服务不可用|暂不可用|限流|频繁|维护|网络异常|处理中",
    re.IGNORECASE,
)


def _messages(frame: pd.DataFrame) -> pd.Series:
    return frame["error_message"].fillna("").astype(str)


def status_rule(frame: pd.DataFrame) -> np.ndarray:
    status = pd.to_numeric(frame["http_status"], errors="coerce")
    by_status = ((status == 429) | (status >= 500)).fillna(False).to_numpy(dtype=bool)
    by_exception = _messages(frame).str.contains(_NETWORK).to_numpy(dtype=bool)
    return (by_status | by_exception).astype(np.int64)


def keyword_rule(frame: pd.DataFrame) -> np.ndarray:
    text = _messages(frame) + " " + frame["error_code"].fillna("").astype(str)
    return text.str.contains(_KEYWORDS).to_numpy(dtype=bool).astype(np.int64)


BASELINES: Final = {"status_rule": status_rule, "keyword_rule": keyword_rule}
