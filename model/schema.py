"""The failure record: the columns every part of asyncgate agrees on, and the failure categories.

A failure record is one failed synchronous call to an insurer or partner. Training rows (CSV,
docs/contract.md §5) and /classify requests map to the same record; nothing else is a feature.
"""

from __future__ import annotations

from typing import Final

#: Input fields of a failure record, in CSV column order (docs/contract.md §5).
FEATURE_COLUMNS: Final = ("insurer", "operation", "error_code", "error_message", "http_status", "latency_ms")
#: The label: 1 when the failure is async-eligible (execute again later), else 0.
LABEL_COLUMN: Final = "async_eligible"
#: Optional column with the failure category; trains the category head when present.
CATEGORY_COLUMN: Final = "category"
REQUIRED_COLUMNS: Final = (*FEATURE_COLUMNS, LABEL_COLUMN)

#: What a wrong decision costs: a failure wrongly returned as final (a customer lost) costs this many
#: times one wrongly held async (a needless re-execution). The threshold, the gate and the reports use it.
COST_RATIO: Final = 5.0

OPERATIONS: Final = (
    "underwrite",
    "pay",
    "issue_policy",
    "query",
    "cancel",
    "refund",
    "claim",
    "verify_identity",
    "notify",
    "other",
)

#: Failure categories and whether a failure of that category is async-eligible.
CATEGORIES: Final[dict[str, bool]] = {
    # the insurer's or the network's fault: keep the order, execute the same call again later
    "timeout": True,  # client timeout, gateway timeout
    "connection": True,  # refused, reset, DNS, SSL handshake, no route
    "throttling": True,  # rate limit, quota, 429, 请求过于频繁
    "insurer_busy": True,  # system error / busy / internal error, 系统繁忙
    "maintenance": True,  # maintenance window, service paused, 系统维护
    "dependency": True,  # upstream, database, RPC, message queue failure inside the insurer
    "pending_unknown": True,  # result pending or unknown, 处理中, please query later
    "lock_contention": True,  # concurrent processing, lock wait, deadlock, order being processed
    # definitive: return the reason now
    "validation": False,  # field format, missing parameter, out of range
    "identity_mismatch": False,  # name vs ID number, phone, real-name verification failed
    "underwriting_decline": False,  # age, occupation, health answers, region, sum insured
    "duplicate_or_closed": False,  # duplicate policy, order already paid / completed / closed
    "payment_declined": False,  # insufficient balance, card declined, limit exceeded
    "auth_config": False,  # signature, credential, permission, certificate pinning, configuration
    "product_unavailable": False,  # product, plan or channel not on sale
}

ASYNC_CATEGORIES: Final = tuple(name for name, eligible in CATEGORIES.items() if eligible)
FINAL_CATEGORIES: Final = tuple(name for name, eligible in CATEGORIES.items() if not eligible)
