"""signed-form: the signature over sorted parameters, every row of its mapping (a fake transport), its
insurers-file options, and both sides at once: the adapter against the simulator's /signed routes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from service.gateway import (
    CallResult,
    HttpxTransport,
    InsurerGateway,
    InsurerRegistry,
    InsurersFileError,
    MaybeReceived,
    NotSent,
    QueryResult,
    load_insurers,
)
from service.gateway.signed_form import SignedFormAdapter, SignKey, sign, signed, signing_string, verify
from service.simulator import create_simulator_app
from service.simulator.signed import SIM_SIGN_KEY
from tests.service.gateway.helpers import Sent, answer, make_insurer, raising, run_call, run_query

KEY = "k3y-for-tests"
ADAPTER = SignedFormAdapter()


def insurer(**options: Any) -> Any:
    kept = ADAPTER.check_options({"sign_key": KEY, **options})
    return make_insurer(adapter="signed-form", options=kept)


def form(status: int, params: dict[str, str], *, key: str = KEY, sign_type: str = "HMAC-SHA256") -> Any:
    body = urlencode(signed(params, key.encode(), sign_type))
    return lambda sent: answer(status, body, "application/x-www-form-urlencoded")


# -- the signature ----------------------------------------------------------------------------------


def test_the_signing_string_sorts_names_and_skips_sign_and_empty_values() -> None:
    params = {"b": "2", "a": "1", "sign": "X", "empty": "", "c": "三"}
    assert signing_string(params) == "a=1&b=2&c=三"


def test_hmac_sha256_and_md5_signatures_are_the_published_constructions() -> None:
    params = {"order_id": "P1", "app_id": "asyncgate", "sign_type": "HMAC-SHA256"}
    text = b"app_id=asyncgate&order_id=P1&sign_type=HMAC-SHA256"
    assert sign(params, b"key", "HMAC-SHA256") == hmac.new(b"key", text, hashlib.sha256).hexdigest().upper()
    md5_params = {**params, "sign_type": "MD5"}
    md5_text = b"app_id=asyncgate&order_id=P1&sign_type=MD5&key=key"
    assert sign(md5_params, b"key", "MD5") == hashlib.md5(md5_text, usedforsecurity=False).hexdigest().upper()
    with pytest.raises(ValueError, match="sign_type"):
        sign(params, b"key", "SHA1")


def test_verify_refuses_a_changed_value_another_key_and_no_signature() -> None:
    good = signed({"order_id": "P1", "amount": "100"}, b"key", "HMAC-SHA256")
    assert verify(good, b"key")
    assert not verify({**good, "amount": "101"}, b"key")
    assert not verify(good, b"other")
    assert not verify({k: v for k, v in good.items() if k != "sign"}, b"key")
    assert not verify({**good, "sign_type": "NONE"}, b"key")


# -- the call and the query (fake transport) --------------------------------------------------------


def test_call_sends_a_signed_form_with_the_payload_as_biz_content() -> None:
    seen: list[Sent] = []

    def handler(sent: Sent) -> Any:
        seen.append(sent)
        return form(200, {"result_code": "SUCCESS", "biz_content": '{"policy_no":"X1"}'})(sent)

    payload = {"b": 2, "a": {"name": "张三"}}
    result = run_call(handler, insurer=insurer(app_id="market-7"), payload=payload, adapter=ADAPTER)
    (sent,) = seen
    assert (sent.method, sent.url) == ("POST", "http://insurer.test/api/underwrite")
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded; charset=utf-8"
    assert sent.headers["Idempotency-Key"] == "P2026112400001:underwrite"
    assert sent.body is not None
    params = dict(parse_qsl(sent.body.decode()))
    assert verify(params, KEY.encode()), "the request is signed with the insurer's key"
    assert (params["app_id"], params["order_id"], params["operation"]) == ("market-7", "P2026112400001", "underwrite")
    assert json.loads(params["biz_content"]) == payload
    assert params["sign_type"] == "HMAC-SHA256" and len(params["nonce_str"]) == 32
    assert (result.outcome, result.data, result.http_status) == ("success", {"policy_no": "X1"}, 200)


def test_md5_is_used_when_the_insurer_says_so() -> None:
    seen: list[Sent] = []

    def handler(sent: Sent) -> Any:
        seen.append(sent)
        return form(200, {"result_code": "SUCCESS"}, sign_type="MD5")(sent)

    result = run_call(handler, insurer=insurer(sign_type="MD5"), adapter=ADAPTER)
    assert seen[0].body is not None
    assert dict(parse_qsl(seen[0].body.decode()))["sign_type"] == "MD5"
    assert (result.outcome, result.data) == ("success", {})


def test_a_signed_fail_is_the_insurers_failure() -> None:
    result = run_call(
        form(200, {"result_code": "FAIL", "err_code": "ID_INVALID", "err_msg": "身份证号码格式不正确"}),
        insurer=insurer(),
        adapter=ADAPTER,
    )
    assert (result.outcome, result.error_code, result.error_message) == (
        "failure",
        "ID_INVALID",
        "身份证号码格式不正确",
    )


@pytest.mark.parametrize("result_code", ["SUCCESS", "FAIL"])
def test_an_answer_with_a_bad_signature_is_a_failure_saying_so(result_code: str) -> None:
    result = run_call(
        form(200, {"result_code": result_code, "err_code": "E1"}, key="not-the-key"), insurer=insurer(), adapter=ADAPTER
    )
    assert (result.outcome, result.error_code, result.http_status, result.data) == ("failure", None, 200, None)
    assert result.error_message is not None
    assert "bad or missing signature" in result.error_message and f"result_code={result_code}" in result.error_message


def test_an_answer_without_signature_is_not_trusted() -> None:
    result = run_call(
        lambda s: answer(200, "result_code=SUCCESS&biz_content=%7B%7D", "text/plain"),
        insurer=insurer(),
        adapter=ADAPTER,
    )
    assert result.outcome == "failure" and "signature" in (result.error_message or "")


def test_a_flat_json_answer_is_read_too() -> None:
    params = signed({"result_code": "FAIL", "err_code": "E9", "err_msg": "系统繁忙"}, KEY.encode(), "HMAC-SHA256")
    result = run_call(lambda s: answer(503, json.dumps(params, ensure_ascii=False)), insurer=insurer(), adapter=ADAPTER)
    assert (result.outcome, result.error_code, result.error_message, result.http_status) == (
        "failure",
        "E9",
        "系统繁忙",
        503,
    )


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (502, "<html>502 Bad Gateway</html>", "unknown"),
        (504, "<html>504</html>", "unknown"),
        (500, "Internal Server Error", "failure"),
        (200, "result_code=MAYBE", "failure"),
    ],
)
def test_answers_outside_the_protocol_follow_generic_json(status: int, body: str, outcome: str) -> None:
    result = run_call(lambda s: answer(status, body, "text/html"), insurer=insurer(), adapter=ADAPTER)
    assert (result.outcome, result.error_message, result.http_status) == (outcome, body, status)


def test_a_signed_success_on_a_5xx_is_not_a_success() -> None:
    result = run_call(form(500, {"result_code": "SUCCESS"}), insurer=insurer(), adapter=ADAPTER)
    assert result.outcome == "failure"


@pytest.mark.parametrize(
    ("exc", "outcome"), [(NotSent("ConnectError", "refused"), "failure"), (MaybeReceived("ReadTimeout"), "unknown")]
)
def test_no_answer_is_as_in_generic_json(exc: Exception, outcome: str) -> None:
    result = run_call(raising(exc), insurer=insurer(), adapter=ADAPTER)
    assert (result.outcome, result.http_status) == (outcome, None)


def test_query_states() -> None:
    done = run_query(
        form(200, {"result_code": "SUCCESS", "trade_state": "COMPLETED", "biz_content": '{"p":1}'}),
        insurer=insurer(),
        adapter=ADAPTER,
    )
    assert (done.completed, done.data) == (True, {"p": 1})
    missing = run_query(
        form(200, {"result_code": "SUCCESS", "trade_state": "NOT_FOUND"}), insurer=insurer(), adapter=ADAPTER
    )
    assert missing.completed is False
    forged = run_query(
        form(200, {"result_code": "SUCCESS", "trade_state": "COMPLETED"}, key="x"), insurer=insurer(), adapter=ADAPTER
    )
    assert forged.completed is None and "signature" in (forged.error_message or "")
    failed = run_query(form(200, {"result_code": "FAIL", "err_code": "BUSY"}), insurer=insurer(), adapter=ADAPTER)
    assert failed.completed is None
    lost = run_query(raising(MaybeReceived("ReadTimeout")), insurer=insurer(), adapter=ADAPTER)
    assert (lost.completed, lost.error_message) == (None, "ReadTimeout: timed out")


def test_query_posts_a_signed_form_to_the_query_path() -> None:
    seen: list[Sent] = []

    def handler(sent: Sent) -> Any:
        seen.append(sent)
        return form(200, {"result_code": "SUCCESS", "trade_state": "NOT_FOUND"})(sent)

    run_query(handler, insurer=insurer(), order_id="P:1", operation="pay", adapter=ADAPTER)
    assert (seen[0].method, seen[0].url) == ("POST", "http://insurer.test/api/pay/query")
    assert seen[0].body is not None
    params = dict(parse_qsl(seen[0].body.decode()))
    assert verify(params, KEY.encode()) and params["order_id"] == "P:1" and "biz_content" not in params


# -- the insurers file ------------------------------------------------------------------------------


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "insurers.toml"
    path.write_text('[insurers.sf]\nbase_url = "http://h/signed"\nadapter = "signed-form"\n' + body)
    return path


def test_the_key_may_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_KEY", "from-env")
    config = load_insurers(write(tmp_path, 'sign_key_env = "SF_KEY"\nsign_type = "MD5"\n'))["sf"]
    assert config.options["sign_key"] == SignKey("from-env")
    assert config.options["sign_type"] == "MD5"
    assert "from-env" not in repr(config), "the key never shows in a repr"


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ("", ["'sf'", "exactly one of 'sign_key' and 'sign_key_env'"]),
        ('sign_key = "a"\nsign_key_env = "B"\n', ["exactly one"]),
        ('sign_key_env = "SF_UNSET_KEY"\n', ["'SF_UNSET_KEY'", "not set"]),
        ('sign_key = ""\n', ["'sign_key' must be a non-empty string"]),
        ('sign_key = "a"\nsign_type = "SHA1"\n', ["'sign_type'", "'SHA1'"]),
        ('sign_key = "a"\nsecret = "b"\n', ["unknown key", "'secret'", "'sign_key_env'"]),
    ],
)
def test_bad_options_fail_the_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, fragments: list[str]
) -> None:
    monkeypatch.delenv("SF_UNSET_KEY", raising=False)
    with pytest.raises(InsurersFileError) as caught:
        load_insurers(write(tmp_path, body))
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_options_survive_a_registry_rebuilt_from_configs() -> None:
    first = InsurerRegistry.from_mapping({"sf": {"base_url": "http://h", "adapter": "signed-form", "sign_key": "s"}})
    again = InsurerRegistry.from_mapping({"sf": first["sf"]})
    assert again["sf"].options == first["sf"].options


# -- against the simulator's signed side ------------------------------------------------------------


def against_simulator(
    steps: Any, *, sim_key: str = SIM_SIGN_KEY, key: str = SIM_SIGN_KEY, sign_type: str = "HMAC-SHA256"
) -> Any:
    app = create_simulator_app(scenario="fast", sign_key=sim_key)
    registry = InsurerRegistry.from_mapping(
        {"sf": {"base_url": "http://sim/signed", "adapter": "signed-form", "sign_key": key, "sign_type": sign_type}}
    )

    async def main() -> Any:
        async with app.router.lifespan_context(app):
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
            async with client:
                return await steps(InsurerGateway(registry, HttpxTransport(client))), app.state.ledger.snapshot()

    return asyncio.run(main())


@pytest.mark.parametrize("sign_type", ["HMAC-SHA256", "MD5"])
def test_call_then_query_against_the_simulator(sign_type: str) -> None:
    async def steps(gw: InsurerGateway) -> tuple[QueryResult, CallResult, CallResult, QueryResult]:
        before = await gw.query("sf", "S1", "underwrite")
        done = await gw.call("sf", "S1", "underwrite", {"amount": 100})
        again = await gw.call("sf", "S1", "underwrite", {"amount": 100})
        return before, done, again, await gw.query("sf", "S1", "underwrite")

    (before, done, again, after), ledger = against_simulator(steps, sign_type=sign_type)
    assert before.completed is False
    assert done.outcome == "success" and done.data is not None and done.data["order_id"] == "S1"
    assert again.data == done.data, "the Idempotency-Key replays the completion"
    assert (after.completed, after.data) == (True, done.data)
    assert ledger["completions"] == {"S1:underwrite": 1}


def test_the_simulators_scripts_play_on_the_signed_side() -> None:
    async def steps(gw: InsurerGateway) -> list[CallResult]:
        payload = {"sim": {"script": ["insurer_busy", "html_502", "success"]}}
        return [await gw.call("sf", "S2", "pay", payload) for _ in range(3)]

    (busy, page, ok), _ = against_simulator(steps)
    assert busy.outcome == "failure" and busy.error_message and busy.http_status is not None
    assert (page.outcome, page.http_status) == ("unknown", 502)
    assert ok.outcome == "success"


def test_a_request_signed_with_the_wrong_key_is_refused_definitively() -> None:
    async def steps(gw: InsurerGateway) -> CallResult:
        return await gw.call("sf", "S3", "pay", {})

    result, ledger = against_simulator(steps, key="wrong-key")
    # the simulator signs its refusal with its own key, which is not ours: the adapter says so too
    assert result.outcome == "failure" and "signature" in (result.error_message or "")
    assert ledger["calls"] == 0 and ledger["completions"] == {}


def test_a_refusal_signed_with_the_shared_key_carries_the_sign_error() -> None:
    app = create_simulator_app(scenario="fast")

    async def main() -> httpx.Response:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
                bad = {**signed({"order_id": "S4", "operation": "pay", "biz_content": "{}"}, b"x", "HMAC-SHA256")}
                return await client.post(
                    "/signed/pay", content=urlencode(bad), headers={"Content-Type": "application/x-www-form-urlencoded"}
                )

    response = asyncio.run(main())
    params = dict(parse_qsl(response.text))
    assert response.status_code == 400
    assert (params["result_code"], params["err_code"]) == ("FAIL", "SIGN_ERROR")
    assert verify(params, SIM_SIGN_KEY.encode()), "the simulator signs its answers"
