"""Operators' rules in the console: the Rules page, pinning a failure group, removing, access, and the timeline."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlencode

from tests.service.conftest import BUSY_MESSAGE, Service, busy
from tests.service.console.test_pages import _seed

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
READ_KEY = "rules-console-read-0123456789"
ADMIN_KEY = "rules-console-admin-0123456789"


def post_rule(service: Service, **fields: str) -> object:
    return service.client.post("/console/rules", content=urlencode(fields), headers=FORM, follow_redirects=False)


def login(service: Service, key: str) -> None:
    answer = service.client.post("/console/login", content=f"key={key}", headers=FORM, follow_redirects=False)
    assert answer.status_code == 303


def test_pin_from_the_form_then_remove(service: Service) -> None:
    made = post_rule(service, decision="final", insurer="acme", error_code="E1001", message_contains="", reason="stop")
    assert made.status_code == 303 and made.headers["location"] == "/console/rules?created=1"  # type: ignore[attr-defined]
    page = service.client.get("/console/rules?created=1")
    assert page.status_code == 200 and "Rule 1 added." in page.text
    assert re.search(r'data-rule="1">.*?E1001.*?stop', page.text, flags=re.S)
    assert 'class="danger remove-rule"' in page.text, "open console: changes allowed"
    body = {"insurer": "acme", "operation": "pay", "error_code": "E1001", "error_message": BUSY_MESSAGE}
    assert service.client.post("/classify", json=body).json()["rule_id"] == 1, "this process applies it at once"
    history = service.client.get("/admin/rules/history").json()["changes"]
    assert history[0]["actor"] == "anonymous"
    removed = service.client.post("/console/rules/1/remove", follow_redirects=False)
    assert removed.status_code == 303 and removed.headers["location"] == "/console/rules?removed=1"
    assert 'id="no-rules"' in service.client.get("/console/rules").text
    assert service.client.post("/console/rules/1/remove").status_code == 404


def test_a_bad_rule_is_shown_with_the_fields_at_fault(service: Service) -> None:
    answer = post_rule(service, decision="async", error_code="", message_contains="", reason="")
    assert answer.status_code == 422  # type: ignore[attr-defined]
    errors = re.findall(r'class="notice error rule-error">([^<]*)<', answer.text)  # type: ignore[attr-defined]
    assert any(e.startswith("message_contains:") for e in errors) and any(e.startswith("reason:") for e in errors)
    assert service.client.get("/admin/rules").json() == {"rules": []}


def test_cross_site_pins_are_refused(service: Service) -> None:
    answer = service.client.post(
        "/console/rules",
        content=urlencode({"decision": "final", "error_code": "E1", "reason": "r"}),
        headers=FORM | {"Sec-Fetch-Site": "cross-site"},
    )
    assert answer.status_code == 403
    assert service.client.get("/admin/rules").json() == {"rules": []}


def test_failures_page_offers_a_pin_form_per_group(service: Service) -> None:
    _seed(service)
    page = service.client.get("/console/failures").text
    forms = re.findall(r'<form method="post" action="/console/rules" class="pin-form">', page)
    groups = re.findall(r'<tr class="[^"]*" data-disagrees=', page)
    assert forms and len(forms) == len(groups)


def test_rules_need_an_admin_key_and_record_its_name(start_service: Callable[..., Service]) -> None:
    service = start_service(api_keys=f"{READ_KEY}:read,{ADMIN_KEY}:admin:ops-bob")
    _seed(service)
    login(service, READ_KEY)
    page = service.client.get("/console/rules")
    assert page.status_code == 200 and "needs an admin key" in page.text and 'id="add-rule"' not in page.text
    assert 'class="pin-form"' not in service.client.get("/console/failures").text
    refused = post_rule(service, decision="final", error_code="E1", reason="r")
    assert refused.status_code == 403  # type: ignore[attr-defined]
    login(service, ADMIN_KEY)
    assert post_rule(service, decision="final", error_code="E1", reason="r").status_code == 303  # type: ignore[attr-defined]
    assert "by ops-bob" in service.client.get("/console/rules").text


def test_the_timeline_says_which_rule_decided(service: Service) -> None:
    post_rule(service, decision="final", error_code="E1001", reason="acme closes these")
    service.insurer.script("T1", busy())
    assert service.process("T1").json()["state"] == "FAILED"
    page = service.client.get("/console/orders/T1").text
    assert re.search(r"decided by rule 1</a>\s*\(acme closes these\)", page)
    assert 'title="rule:1"' not in page, "the rule's item is not drawn as a weight bar"
