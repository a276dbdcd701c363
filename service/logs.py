"""Structured JSON logs on stderr, one object per line, with personal data masked.

Every record about an order carries `order_id` and `insurer` (passed as `extra=`); the message, the
traceback and every string in the extra fields (also inside dicts and lists) go through
`mask_personal_data`, so ID numbers, phones, cards, e-mails and names never reach logs.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import orjson

from model.privacy import mask_personal_data

#: Record attributes that are not fields of a line. uvicorn adds `color_message` (the message again, with
#: terminal escape codes) to its records: `msg` already says it, cleanly.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_personal_data(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _masked(value)
        if record.exc_info:
            entry["exc"] = mask_personal_data(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=lambda other: mask_personal_data(str(other))).decode()


def _masked(value: Any) -> Any:
    """`value` with every string in it masked, through dicts, lists and tuples (keys too)."""
    if isinstance(value, str):
        return mask_personal_data(value)
    if isinstance(value, dict):
        return {_masked(k) if isinstance(k, str) else k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
