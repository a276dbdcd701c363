"""Personal data stays out of the logs on every path this issue added or touched: extras nested in
dicts and lists, objects logged by their text, and the circuit breaker's and the worker's lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable

from service.logs import JsonFormatter
from service.scoring import ServingModel
from tests.service.conftest import Service, failure, run_worker, success
from tests.service.test_logs import ID_NUMBER, PHONE, json_logs, lines

__all__ = ["json_logs"]  # the fixture, imported for pytest

CARD = "6222 0212 3456 7890 123"
EMAIL = "zhang.san@example.com.cn"


class Opaque:
    def __str__(self) -> str:
        return f"holder {ID_NUMBER}"


def test_nested_extras_and_objects_are_masked() -> None:
    record = logging.getLogger("asyncgate.test").makeRecord(
        "asyncgate.test",
        logging.INFO,
        __file__,
        1,
        "payload seen",
        (),
        None,
        extra={
            "payload": {"applicant": {"id_no": ID_NUMBER, "contacts": [PHONE, EMAIL]}, f"card {CARD}": 1},
            "pair": ("name=张三", 3),
            "object": Opaque(),
        },
    )
    text = JsonFormatter().format(record)
    for secret in (ID_NUMBER, PHONE, CARD, EMAIL, "张三"):
        assert secret not in text
    entry = json.loads(text)
    assert entry["payload"]["applicant"]["contacts"] == ["<PHONE>", "<EMAIL>"]
    assert entry["payload"]["card <CARD>"] == 1
    assert entry["pair"] == ["name=<NAME>", 3]
    assert entry["object"] == "holder <ID_NUMBER>"


def test_breaker_and_worker_paths_log_no_personal_data(
    json_logs: io.StringIO, start_service: Callable[..., Service], serving_model: ServingModel
) -> None:
    service = start_service(
        insurer_guard="breaker",
        breaker_window=3,
        breaker_failures=2,
        breaker_cooldown_s=60.0,
        retry_base_s=0.001,
        retry_max_s=0.002,
    )
    message = f"投保人 name=张三 手机 {PHONE} 卡 {CARD} 邮箱 {EMAIL} 系统繁忙，请稍后再试"
    payload = {"applicant": {"id_no": ID_NUMBER, "mobile": PHONE, "name": "张三", "email": EMAIL}}
    for n in range(2):
        service.insurer.script(f"PII-{n}", failure(message, code="E1001", status=503), success())
        assert service.process(f"PII-{n}", payload).json()["state"] == "ASYNC_PROCESSING"
    skipped = service.process("PII-SKIP", payload).json()
    assert skipped["failure"]["outcome"] == "skipped"
    for n in range(2):
        service.wait_until_due(f"PII-{n}")
    run_worker(service, serving_model)
    output = json_logs.getvalue()
    entries = lines(output)
    assert any("closed → open" in e["msg"] for e in entries), "the breaker logged"
    assert any(e.get("order_id") == "PII-SKIP" for e in entries)
    for secret in (ID_NUMBER, PHONE, CARD, EMAIL, "张三"):
        assert secret not in output, secret
