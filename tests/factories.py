"""Small factories shared by tests: failure rows, frames and tiny trained models."""

from __future__ import annotations

import random
from typing import Any

import pandas as pd

from model.classifier import FailureClassifier, build_classifier

ASYNC_MESSAGES = [
    ("系统繁忙，请稍后再试", "insurer_busy"),
    ("java.net.SocketTimeoutException: Read timed out", "timeout"),
    ("dial tcp 10.0.0.8:443: connect: connection refused", "connection"),
    ("请求过于频繁，请稍后重试", "throttling"),
    ("System busy, please try again later", "insurer_busy"),
    ("交易处理中，请稍后查询", "pending_unknown"),
    ("Lock wait timeout exceeded; try restarting transaction", "lock_contention"),
]
FINAL_MESSAGES = [
    ("身份证号码格式不正确", "validation"),
    ("余额不足", "payment_declined"),
    ("签名验证失败", "auth_config"),
    ("该保单已存在，请勿重复投保", "duplicate_or_closed"),
    ("invalid id number", "validation"),
    ("产品已停售", "product_unavailable"),
    ("被保人年龄不符合投保要求", "underwriting_decline"),
]


def failure_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "insurer": "acme",
        "operation": "underwrite",
        "error_code": "E1001",
        "error_message": "系统繁忙，请稍后再试",
        "http_status": 503,
        "latency_ms": 1840.0,
    }
    row.update(overrides)
    return row


def toy_frame(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A small labelled frame with both classes, categories, missing values and noise in ids."""
    rng = random.Random(seed)
    records = []
    for _ in range(rows):
        eligible = rng.random() < 0.35
        message, category = rng.choice(ASYNC_MESSAGES if eligible else FINAL_MESSAGES)
        records.append(
            {
                "insurer": rng.choice(["acme", "beta", "gamma", "delta"]),
                "operation": rng.choice(["underwrite", "pay", "issue_policy"]),
                "error_code": rng.choice([None, "E1001", "SYSTEMERROR", "ACQ.SYSTEM_ERROR", "-1"]),
                "error_message": f"{message} order P{rng.randint(10**9, 10**10)}",
                "http_status": rng.choice([None, 200, 400, 500, 503]),
                "latency_ms": rng.choice([None, rng.uniform(5, 300), rng.uniform(3000, 3010)]),
                "async_eligible": int(eligible),
                "category": category,
            }
        )
    frame = pd.DataFrame(records)
    frame["http_status"] = frame["http_status"].astype("Int64")
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    return frame


def toy_classifier(rows: int = 3000, seed: int = 0) -> FailureClassifier:
    frame = toy_frame(rows, seed)
    return build_classifier(toy_params(seed)).fit(frame, frame["async_eligible"], frame["category"])


def toy_params(seed: int = 0) -> dict[str, Any]:
    """Model parameters for toy frames: min_df 1, since a toy frame has only 14 distinct messages and
    min_df counts distinct normalized messages."""
    return {"random_state": seed, "min_df": 1}
