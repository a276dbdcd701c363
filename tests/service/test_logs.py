"""Logs: JSON lines on stderr, records about an order carry order_id and insurer, and personal data
(ID numbers, phone numbers) from payloads or insurer messages never reaches the output."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from service.logs import JsonFormatter, configure_logging
from service.scoring import ServingModel
from tests.service.conftest import Service, failure, run_worker, success

ID_NUMBER = "110101199003074578"
PHONE = "13812345678"
PII_MESSAGE = f"投保人身份证{ID_NUMBER}与手机号{PHONE}校验超时，系统繁忙，请稍后再试"


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The service's own logging set-up (configure_logging, DEBUG) with stderr replaced by a buffer."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, _logger_levels())
    configure_logging("DEBUG")
    yield stderr
    root.handlers[:], root.level = saved[0], saved[1]
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):  # configure_logging quiets some libraries: undo it
            logger.setLevel(saved[2].get(name, logging.NOTSET))


def _logger_levels() -> dict[str, int]:
    return {n: lg.level for n, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}


def lines(text: str) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(entry, dict) for entry in parsed)
    return parsed


def test_order_logs_are_json_with_order_and_insurer_and_no_personal_data(
    json_logs: io.StringIO, start_service: Any, serving_model: ServingModel
) -> None:
    svc: Service = start_service(retry_base_s=0.001, retry_max_s=0.002)
    payload = {"applicant": {"id_no": ID_NUMBER, "mobile": PHONE, "name": "张三"}, "premium": 1200}
    svc.insurer.script("LOG1", failure(PII_MESSAGE, code="E1001", status=503), success())
    assert svc.process("LOG1", payload).json()["state"] == "ASYNC_PROCESSING"
    svc.wait_until_due("LOG1")
    run_worker(svc, serving_model)
    assert svc.order("LOG1")["state"] == "SUCCEEDED"

    output = json_logs.getvalue()
    entries = lines(output)
    about_order = [e for e in entries if e.get("order_id") == "LOG1"]
    assert {e.get("state") for e in about_order} >= {"ASYNC_PROCESSING", "SUCCEEDED"}
    assert all(e["insurer"] == "acme" for e in about_order)
    assert all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    assert ID_NUMBER not in output
    assert PHONE not in output


def test_formatter_masks_messages_extras_and_tracebacks() -> None:
    logger = logging.getLogger("asyncgate.test")
    try:
        raise ValueError(f"bad id {ID_NUMBER}")
    except ValueError:
        record = logger.makeRecord(
            "asyncgate.test",
            logging.WARNING,
            __file__,
            1,
            "insurer said %s",
            (PII_MESSAGE,),
            sys.exc_info(),
            extra={"order_id": "LOG2", "insurer": "acme", "error_message": PII_MESSAGE, "attempt": 2},
        )
    text = JsonFormatter().format(record)
    assert "\n" not in text
    entry = json.loads(text)
    assert (entry["order_id"], entry["insurer"], entry["attempt"], entry["level"]) == ("LOG2", "acme", 2, "warning")
    assert "<ID_NUMBER>" in entry["msg"]
    assert "<PHONE>" in entry["error_message"]
    assert "ValueError" in entry["exc"]
    assert ID_NUMBER not in text
    assert PHONE not in text


def test_uvicorn_records_give_one_clean_msg_without_terminal_escapes(json_logs: io.StringIO) -> None:
    """uvicorn logs `Started server process [%d]` with `color_message` (the same text with ANSI escape
    codes) in extra: the line keeps one clean `msg` and no escape code."""
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 42, extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"}
    )
    line = json.loads(json_logs.getvalue().strip().splitlines()[-1])
    assert line["msg"] == "Started server process [42]"
    assert "color_message" not in line
    assert "\x1b" not in json_logs.getvalue()
