"""Operators' rules through the API: /admin/rules, and rules deciding /classify, /process and re-execution."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from service.rules import RuleBook
from service.scoring import ServingModel
from service.store import OrderStore
from tests.service.conftest import BUSY_MESSAGE, FINAL_MESSAGE, SMALL_RETRY, Service, busy, final, run_worker, success

READ_KEY = "rules-read-key-0123456789"
ADMIN_KEY = "rules-admin-key-0123456789"
PLAIN_ADMIN_KEY = "rules-admin2-key-0123456789"


def add(service: Service, **fields: Any) -> dict[str, Any]:
    body = {"decision": "final", "reason": "the insurer says so"} | fields
    response = service.client.post("/admin/rules", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def classify(service: Service, message: str = BUSY_MESSAGE, code: str | None = "E1001") -> dict[str, Any]:
    body = {"insurer": "acme", "operation": "underwrite", "error_code": code, "error_message": message}
    response = service.client.post("/classify", json=body)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def flush(service: Service) -> None:
    book: RuleBook = service.app.state.rules
    store: OrderStore = service.app.state.store
    book.flush(store)


def test_add_list_and_delete(service: Service) -> None:
    made = add(service, insurer="acme", error_code="E1001", category="insurer_busy", decision="async")
    assert made["rule_id"] >= 1 and made["created_by"] == "anonymous" and made["hits"] == 0
    assert {k: made[k] for k in ("insurer", "operation", "error_code", "message_contains", "decision")} == {
        "insurer": "acme",
        "operation": None,
        "error_code": "E1001",
        "message_contains": None,
        "decision": "async",
    }
    listed = service.client.get("/admin/rules").json()["rules"]
    assert [r["rule_id"] for r in listed] == [made["rule_id"]] and listed[0]["created_at"] == made["created_at"]
    assert service.client.delete(f"/admin/rules/{made['rule_id']}").status_code == 204
    assert service.client.get("/admin/rules").json() == {"rules": []}
    assert service.client.delete(f"/admin/rules/{made['rule_id']}").status_code == 404, "already removed"
    assert service.client.delete("/admin/rules/424242").status_code == 404
    history = service.client.get("/admin/rules/history").json()["changes"]
    assert [(c["action"], c["rule_id"], c["actor"]) for c in history] == [
        ("deleted", made["rule_id"], "anonymous"),
        ("created", made["rule_id"], "anonymous"),
    ]
    assert history[0]["rule"]["deleted_by"] == "anonymous"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decision": "later", "error_code": "E1", "reason": "r"}, "decision"),
        ({"decision": "async", "reason": "r", "error_code": None, "message_contains": None}, "message_contains"),
        ({"decision": "async", "error_code": "E1", "reason": ""}, "reason"),
        ({"decision": "final", "error_code": "E1", "reason": "r", "category": "timeout"}, "category"),
        ({"decision": "final", "error_code": "E1", "reason": "r", "category": "bogus"}, "category"),
        ({"decision": "final", "error_code": "E1", "reason": "r", "insurer": "x" * 200}, "insurer"),
    ],
)
def test_bad_rules_are_422_naming_the_field_and_write_nothing(
    service: Service, body: dict[str, Any], field: str
) -> None:
    response = service.client.post("/admin/rules", json=body)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", field]]
    assert service.client.get("/admin/rules").json() == {"rules": []}


def test_rules_need_the_admin_role_and_record_the_keys_name(start_service: Callable[..., Service]) -> None:
    keys = f"{READ_KEY}:read,{ADMIN_KEY}:admin:ops-alice,{PLAIN_ADMIN_KEY}:admin"
    service = start_service(api_keys=keys)
    body = {"error_code": "E1", "decision": "final", "reason": "r"}
    read = {"Authorization": f"Bearer {READ_KEY}"}
    assert service.client.post("/admin/rules", json=body, headers=read).status_code == 403
    assert service.client.get("/admin/rules", headers=read).status_code == 403
    assert service.client.delete("/admin/rules/1", headers=read).status_code == 403
    named = service.client.post("/admin/rules", json=body, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert named.status_code == 201 and named.json()["created_by"] == "ops-alice"
    plain = service.client.post(
        "/admin/rules", json=body | {"error_code": "E2"}, headers={"Authorization": f"Bearer {PLAIN_ADMIN_KEY}"}
    )
    assert plain.status_code == 201 and plain.json()["created_by"].startswith("key-")
    assert len(plain.json()["created_by"]) == len("key-") + 8 and PLAIN_ADMIN_KEY not in plain.text


def test_a_rule_decides_classify_and_is_explained_first(service: Service) -> None:
    before = classify(service)
    assert (before["async_eligible"], before["decided_by"], before["rule_id"]) == (True, "model", None)
    made = add(service, error_code="E1001", reason="E1001 is a hard stop at acme")
    after = classify(service)
    assert (after["async_eligible"], after["decided_by"], after["rule_id"]) == (False, "rule", made["rule_id"])
    assert after["probability"] == before["probability"], "the probability stays the model's"
    assert after["category"] is None, "flipped to final without a category: none"
    assert after["explanation"][0] == {
        "kind": "rule",
        "feature": f"rule:{made['rule_id']}",
        "weight": 0.0,
        "rule_id": made["rule_id"],
        "reason": "E1001 is a hard stop at acme",
        "model_async_eligible": True,
    }
    assert after["explanation"][1:] == before["explanation"]
    items = [
        {"insurer": "acme", "operation": "pay", "error_code": c, "error_message": BUSY_MESSAGE} for c in ("E1001", "X")
    ]
    results = service.client.post("/classify/batch", json={"items": items}).json()["results"]
    assert [r["decided_by"] for r in results] == ["rule", "model"]


def test_hits_are_counted_after_a_flush(service: Service) -> None:
    made = add(service, message_contains="系统繁忙")
    for _ in range(3):
        classify(service)
    classify(service, message=FINAL_MESSAGE)
    assert service.client.get("/admin/rules").json()["rules"][0]["hits"] == 0, "flushed periodically, not per request"
    flush(service)
    assert service.client.get("/admin/rules").json()["rules"][0]["hits"] == 3
    assert made["rule_id"] == service.client.get("/admin/rules").json()["rules"][0]["rule_id"]


def test_process_records_the_rules_decision_on_the_attempt(service: Service) -> None:
    made = add(service, insurer="acme", error_code="E1001", reason="busy at acme means closed")
    service.insurer.script("R1", busy())
    body = service.process("R1").json()
    assert (body["state"], body["next_action"]) == ("FAILED", "return_failure"), "the model alone says async"
    assert (body["failure"]["decided_by"], body["failure"]["rule_id"]) == ("rule", made["rule_id"])
    attempt = service.order("R1")["attempts"][0]
    assert (attempt["decided_by"], attempt["rule_id"], attempt["async_eligible"]) == ("rule", made["rule_id"], False)
    assert attempt["explanation"][0]["kind"] == "rule" and attempt["explanation"][0]["reason"] == made["reason"]
    service.insurer.script("R2", busy())
    other = service.process("R2", insurer="beta").json()
    assert (other["state"], other["failure"]["decided_by"]) == ("ASYNC_PROCESSING", "model"), "insurer must match"


def test_a_rule_made_after_the_first_call_decides_the_reexecution(
    start_service: Callable[..., Service], serving_model: ServingModel
) -> None:
    service = start_service(**SMALL_RETRY)
    service.insurer.script("R3", busy(), busy(), success())
    assert service.process("R3").json()["state"] == "ASYNC_PROCESSING"
    made = add(service, message_contains="稍后再试", reason="stop retrying these")
    service.wait_until_due("R3")
    run_worker(service, serving_model)  # a worker process of its own: it loads the rules from the database
    order = service.order("R3")
    assert order["state"] == "FAILED" and len(service.insurer.calls("R3")) == 2
    first, second = order["attempts"]
    assert (first["decided_by"], first["rule_id"]) == ("model", None)
    assert (second["decided_by"], second["rule_id"], second["async_eligible"]) == ("rule", made["rule_id"], False)


def test_a_rule_can_keep_a_final_failure_async(start_service: Callable[..., Service]) -> None:
    service = start_service(**SMALL_RETRY)
    add(service, error_code="E2001", decision="async", category="pending_unknown", reason="acme answers late")
    service.insurer.script("R4", final())
    body = service.process("R4").json()
    assert (body["state"], body["failure"]["category"], body["failure"]["decided_by"]) == (
        "ASYNC_PROCESSING",
        "pending_unknown",
        "rule",
    )


def test_a_second_app_on_the_same_database_sees_a_new_rule_within_five_seconds(
    start_service: Callable[..., Service],
) -> None:
    here = start_service()
    there = start_service()  # same settings: the same SQLite file, its own RuleBook and poll (default 1 s)
    assert classify(there)["decided_by"] == "model"
    made = add(here, error_code="E1001")
    assert classify(here)["rule_id"] == made["rule_id"], "the process that made it applies it at once"
    started = time.monotonic()
    while classify(there)["decided_by"] != "rule":
        assert time.monotonic() - started < 5.0, "the other process did not see the rule within 5 s"
        time.sleep(0.05)
    assert here.client.delete(f"/admin/rules/{made['rule_id']}").status_code == 204
    started = time.monotonic()
    while classify(there)["decided_by"] != "model":
        assert time.monotonic() - started < 5.0, "the other process did not drop the rule within 5 s"
        time.sleep(0.05)
