"""API keys: the ASYNCGATE_API_KEYS format, who may call what, and `serve` refusing an open address."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from service.api.auth import ApiKeys, ApiKeysError, Role, is_loopback, required_role
from tests.service.conftest import Service

READ_KEY = "r" * 24
WRITE_KEY = "w-0123456789abcdef"
ADMIN_KEY = "A" * 40
KEYS = f"{READ_KEY}:read, {WRITE_KEY}:write,{ADMIN_KEY}:ADMIN"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_parse_roles() -> None:
    keys = ApiKeys.parse(KEYS)
    assert [keys.role_of(k) for k in (READ_KEY, WRITE_KEY, ADMIN_KEY, "x" * 20)] == [
        Role.READ,
        Role.WRITE,
        Role.ADMIN,
        None,
    ]
    assert READ_KEY.encode() not in b"".join(keys.roles), "only digests are kept"


def test_names_are_given_or_derived_from_the_digest() -> None:
    keys = ApiKeys.parse(f"{READ_KEY}:read:ops-alice, {ADMIN_KEY}:admin")
    assert keys.name_of(READ_KEY) == "ops-alice" and keys.role_of(READ_KEY) is Role.READ
    derived = keys.name_of(ADMIN_KEY)
    assert derived is not None and re.fullmatch(r"key-[0-9a-f]{8}", derived) and derived == keys.name_of(ADMIN_KEY)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{READ_KEY}:read,", "entry 2 is empty"),
        (READ_KEY, "entry 1 is not KEY:ROLE"),
        ("short:read", "16 to 256 visible ASCII"),
        (f"{READ_KEY} x:read", "16 to 256 visible ASCII"),
        (f"{READ_KEY}:owner", "unknown role 'owner'"),
        (f"{READ_KEY}:read,{READ_KEY}:write", "entry 2 repeats an earlier key"),
        (f"{READ_KEY}:read:two words", "a name is 1 to 64 characters"),
        (f"{READ_KEY}:read:a:b", "is not KEY:ROLE or KEY:ROLE:NAME"),
    ],
)
def test_parse_refuses_bad_lists_without_echoing_keys(text: str, message: str) -> None:
    with pytest.raises(ApiKeysError, match=message) as caught:
        ApiKeys.parse(text)
    assert READ_KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", Role.READ),
        ("GET", "/openapi.json", Role.READ),
        ("GET", "/orders/X", Role.READ),
        ("POST", "/classify", Role.READ),
        ("POST", "/classify/batch", Role.READ),
        ("POST", "/process", Role.WRITE),
        ("POST", "/orders/X/requeue", Role.WRITE),
        ("DELETE", "/orders/X", Role.WRITE),
        ("POST", "/admin/model/reload", Role.ADMIN),
        ("GET", "/admin/drift", Role.ADMIN),
        ("GET", "/console/orders", None),  # the console checks the keys itself (its login cookie)
    ],
)
def test_required_role(method: str, path: str, role: Role | None) -> None:
    assert required_role(method, path) == role


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("api.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.fixture
def secured(start_service: Callable[..., Service]) -> Service:
    return start_service(api_keys=KEYS)


ORDER = {"order_id": "AUTH-1", "insurer": "acme", "operation": "underwrite", "payload": {"n": 1}}


def test_health_endpoints_stay_open(secured: Service) -> None:
    assert secured.client.get("/healthz").status_code == 200
    assert secured.client.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing API key: send the header 'Authorization: Bearer <key>'"),
        ({"Authorization": f"Basic {READ_KEY}"}, "the Authorization header must be 'Bearer <key>'"),
        ({"Authorization": "Bearer "}, "the Authorization header must be 'Bearer <key>'"),
        (bearer("n" * 20), "invalid API key"),
    ],
)
def test_missing_or_wrong_key_is_401(secured: Service, headers: dict[str, str], detail: str) -> None:
    for method, path, body in (("GET", "/orders", None), ("POST", "/process", ORDER), ("GET", "/docs", None)):
        response = secured.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert response.json() == {"detail": detail}
        assert response.headers["www-authenticate"] == "Bearer"
    assert secured.insurer.calls() == [], "nothing was called or written"


def test_read_key_reads_but_may_not_write(secured: Service) -> None:
    read = bearer(READ_KEY)
    assert secured.client.get("/orders", headers=read).status_code == 200
    assert secured.client.get("/metrics", headers=read).status_code == 200
    classify = {"insurer": "acme", "operation": "pay", "error_message": "系统繁忙"}
    assert secured.client.post("/classify", json=classify, headers=read).status_code == 200
    refused = secured.client.post("/process", json=ORDER, headers=read)
    assert refused.status_code == 403
    assert refused.json() == {"detail": "this key has the read role; POST /process needs write"}
    assert secured.client.post("/orders/AUTH-1/requeue", headers=read).status_code == 403
    assert secured.insurer.calls() == []
    assert secured.client.get("/orders/AUTH-1", headers=read).status_code == 404, "nothing was written"


def test_write_key_processes_and_admin_paths_need_admin(secured: Service) -> None:
    write = bearer(WRITE_KEY)
    answer = secured.client.post("/process", json=ORDER, headers=write)
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "SUCCEEDED"
    assert secured.client.get("/orders/AUTH-1", headers=write).status_code == 200
    assert secured.client.post("/admin/model/reload", headers=write).status_code == 403
    assert secured.client.post("/admin/model/reload", headers=bearer(ADMIN_KEY)).status_code != 403
    assert secured.client.post("/process", json=ORDER, headers=bearer(ADMIN_KEY)).status_code == 200


def test_openapi_documents_401_and_403_when_keys_are_set(secured: Service) -> None:
    spec = secured.client.get("/openapi.json", headers=bearer(READ_KEY)).json()
    assert {"401", "403"} <= set(spec["paths"]["/process"]["post"]["responses"])


def test_bad_key_list_fails_at_startup(start_service: Callable[..., Service]) -> None:
    with pytest.raises(ApiKeysError, match="entry 1"):
        start_service(api_keys="tooshort:write")


# -- `serve` ------------------------------------------------------------------------------------------


@pytest.fixture
def serve_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """`serve` with the model training and uvicorn replaced: records what uvicorn would have run."""
    import uvicorn

    import service.cli

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(service.cli, "ensure_default_model", lambda settings: None)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setattr("service.logs.configure_logging", lambda level: None)
    return calls


def _serve(*args: str, env: dict[str, str] | None = None) -> Any:
    from service.cli import app

    return CliRunner().invoke(app, ["serve", *args], env=env)


def test_serve_refuses_an_open_address_without_keys(serve_calls: list[dict[str, Any]]) -> None:
    result = _serve("--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "refusing to serve on 0.0.0.0 without API keys" in result.output
    assert serve_calls == []


def test_serve_takes_an_open_address_with_keys_or_insecure(
    serve_calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("ASYNCGATE_STATE_DIR", str(tmp_path))
    monkeypatch.setattr("service.app.create_app", lambda settings: None)
    assert _serve("--host", "0.0.0.0", "--insecure").exit_code == 0
    assert _serve("--host", "0.0.0.0", env={"ASYNCGATE_API_KEYS": f"{WRITE_KEY}:write"}).exit_code == 0
    assert [call["host"] for call in serve_calls] == ["0.0.0.0", "0.0.0.0"]


def test_serve_refuses_a_bad_key_list(serve_calls: list[dict[str, Any]]) -> None:
    result = _serve(env={"ASYNCGATE_API_KEYS": "short:write"})
    assert result.exit_code == 2
    assert "ASYNCGATE_API_KEYS entry 1" in result.output
