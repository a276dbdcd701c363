"""`signed-form`: form-encoded calls signed over sorted parameters, as many insurers and payment channels
speak (docs/adapters.md, "signed-form"); the simulator serves it under /signed (service/simulator/).

The call: `POST {base_url}/{operation}`, `Content-Type: application/x-www-form-urlencoded; charset=utf-8`,
`Idempotency-Key: {order_id}:{operation}`, parameters::

    app_id, order_id, operation, biz_content (the payload as compact JSON, keys sorted),
    timestamp (UTC, YYYYMMDDHHMMSS), nonce_str (32 hex), sign_type (HMAC-SHA256 | MD5), sign

The query: `POST {base_url}/{operation}/query` with app_id, order_id, operation, timestamp, nonce_str,
sign_type, sign. An answer (any status) is form-encoded or a flat JSON object::

    result_code SUCCESS | FAIL; err_code, err_msg (FAIL); biz_content (JSON data, SUCCESS);
    trade_state COMPLETED | NOT_FOUND (query); nonce_str, sign_type, sign

Signing (requests and answers alike): every parameter but `sign` whose value is not empty, sorted by
name, joined as `k1=v1&k2=v2` (raw values, not URL-encoded), UTF-8; HMAC-SHA256 -> HMAC(key, string),
MD5 -> MD5(string + "&key=" + key); upper-case hex. The key: `sign_key` in the insurers file, or the
environment variable named by `sign_key_env` (read once, when the file is loaded).

An answer maps to a CallResult like this (a call without an answer as in generic-json)::

    2xx, signature good, result_code SUCCESS    -> success, data = biz_content (an object; {} if absent)
    signature good, result_code FAIL            -> failure, error_code = err_code, error_message = err_msg
    result_code present, signature bad/missing  -> failure, error_code None, error_message says the
                                                   answer's signature does not verify (with what it said)
    anything else: 502/504 -> unknown, other -> failure with the body text (generic-json's rows)

The query: signature good + SUCCESS + trade_state COMPLETED -> True (data = biz_content), SUCCESS +
NOT_FOUND -> False, anything else (FAIL, a bad signature, no protocol, no answer) -> None.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import parse_qsl, urlencode

from service.gateway.adapters import (
    GATEWAY_STATUSES,
    MAX_MESSAGE_CHARS,
    CallResult,
    Outcome,
    QueryResult,
    answer_text,
    call_without_answer,
    idempotency_key,
    path_segment,
    send,
)
from service.gateway.transport import Answer, HttpTransport, TransportError

if TYPE_CHECKING:
    from service.gateway.registry import InsurerConfig

SignType = Literal["HMAC-SHA256", "MD5"]
SIGN_TYPES: Final[tuple[SignType, ...]] = ("HMAC-SHA256", "MD5")
FORM_TYPE: Final = "application/x-www-form-urlencoded"
DEFAULT_APP_ID: Final = "asyncgate"


class SignKey:
    """A signing key that never shows itself in a repr, a log line or an error."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value.encode("utf-8")

    def __repr__(self) -> str:
        return "SignKey(***)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SignKey) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(SignKey)


def signing_string(params: Mapping[str, str]) -> str:
    """`k1=v1&k2=v2...`: every parameter but `sign` with a non-empty value, sorted by name."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")


def sign(params: Mapping[str, str], key: bytes, sign_type: str) -> str:
    """The upper-case hex signature of `params` (ValueError for an unknown sign_type)."""
    text = signing_string(params).encode("utf-8")
    if sign_type == "HMAC-SHA256":
        return hmac.new(key, text, hashlib.sha256).hexdigest().upper()
    if sign_type == "MD5":
        return hashlib.md5(text + b"&key=" + key, usedforsecurity=False).hexdigest().upper()
    raise ValueError(f"unknown sign_type {sign_type!r}; known: {list(SIGN_TYPES)}")


def verify(params: Mapping[str, str], key: bytes) -> bool:
    """Whether `params` carry a good signature of their own sign_type (constant-time comparison)."""
    given, sign_type = params.get("sign", ""), params.get("sign_type", "")
    if not given or sign_type not in SIGN_TYPES:
        return False
    return hmac.compare_digest(given.upper(), sign(params, key, sign_type))


def signed(params: Mapping[str, str], key: bytes, sign_type: str) -> dict[str, str]:
    """`params` with nonce_str (when absent), sign_type and sign added."""
    out = {**params, "sign_type": sign_type}
    out.setdefault("nonce_str", secrets.token_hex(16))
    out["sign"] = sign(out, key, sign_type)
    return out


def parse_params(answer: Answer) -> dict[str, str] | None:
    """The answer's parameters (form-encoded, or a flat JSON object) when it is the protocol's, else None."""
    if answer.cut:
        return None
    text = answer.text.strip()
    params: dict[str, str]
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        if not isinstance(doc, dict):
            return None
        params = {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in doc.items()}
    else:
        try:
            params = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
        except ValueError:
            return None
    return params if params.get("result_code") in ("SUCCESS", "FAIL") else None


class SignedFormAdapter:
    """The signed-form protocol (this module's docstring; docs/adapters.md)."""

    option_keys: frozenset[str] = frozenset({"sign_key", "sign_key_env", "sign_type", "app_id"})

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """sign_key or sign_key_env (exactly one; the variable must be set), sign_type, app_id."""
        key, env = options.get("sign_key"), options.get("sign_key_env")
        if (key is None) == (env is None):
            raise ValueError("needs exactly one of 'sign_key' and 'sign_key_env' (the name of an environment variable)")
        if env is not None:
            if not isinstance(env, str) or not env:
                raise ValueError(f"field 'sign_key_env' must name an environment variable, got {env!r}")
            key = os.environ.get(env)
            if not key:
                raise ValueError(f"the environment variable {env!r} (sign_key_env) is not set or empty")
        elif isinstance(key, SignKey):  # a config already checked (InsurerRegistry.from_mapping of configs)
            key = key.reveal().decode("utf-8")
        elif not isinstance(key, str) or not key:
            raise ValueError("field 'sign_key' must be a non-empty string")
        sign_type = options.get("sign_type", "HMAC-SHA256")
        if sign_type not in SIGN_TYPES:
            raise ValueError(f"field 'sign_type' must be one of {list(SIGN_TYPES)}, got {sign_type!r}")
        app_id = options.get("app_id", DEFAULT_APP_ID)
        if not isinstance(app_id, str) or not app_id:
            raise ValueError(f"field 'app_id' must be a non-empty string, got {app_id!r}")
        return {"sign_key": SignKey(key), "sign_type": sign_type, "app_id": app_id}

    async def call(
        self,
        transport: HttpTransport,
        insurer: InsurerConfig,
        *,
        order_id: str,
        operation: str,
        payload: dict[str, Any],
    ) -> CallResult:
        """POST {base_url}/{operation}, signed; see the module table for outcomes."""
        biz = json.dumps(payload, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"))
        params = self._signed(insurer, order_id=order_id, operation=operation, biz_content=biz)
        headers = {
            "Content-Type": f"{FORM_TYPE}; charset=utf-8",
            "Accept": f"{FORM_TYPE}, application/json",
            "Idempotency-Key": idempotency_key(order_id, operation),
        }
        url = f"{insurer.base_url}/{path_segment(operation)}"
        started = time.perf_counter()
        try:
            answer = await send(transport, insurer, "POST", url, headers=headers, body=urlencode(params).encode())
        except TransportError as exc:
            return call_without_answer(exc, _ms_since(started))
        return self.interpret_call(insurer, answer, _ms_since(started))

    async def query(
        self, transport: HttpTransport, insurer: InsurerConfig, *, order_id: str, operation: str
    ) -> QueryResult:
        """POST {base_url}/{operation}/query, signed: COMPLETED -> True, NOT_FOUND -> False, else None."""
        params = self._signed(insurer, order_id=order_id, operation=operation)
        headers = {"Content-Type": f"{FORM_TYPE}; charset=utf-8", "Accept": f"{FORM_TYPE}, application/json"}
        url = f"{insurer.base_url}/{path_segment(operation)}/query"
        started = time.perf_counter()
        try:
            answer = await send(transport, insurer, "POST", url, headers=headers, body=urlencode(params).encode())
        except TransportError as exc:
            return QueryResult(None, None, exc.text, None, _ms_since(started))
        return self.interpret_query(insurer, answer, _ms_since(started))

    def interpret_call(self, insurer: InsurerConfig, answer: Answer, latency_ms: float) -> CallResult:
        status = answer.status
        params = parse_params(answer)
        if params is not None:
            if not verify(params, _key(insurer)):
                return CallResult("failure", None, None, _bad_signature(params), status, latency_ms)
            if params["result_code"] == "SUCCESS" and 200 <= status < 300:
                return CallResult("success", _biz(params), None, None, status, latency_ms)
            if params["result_code"] == "FAIL":
                message = params.get("err_msg", "")[:MAX_MESSAGE_CHARS]
                return CallResult("failure", None, params.get("err_code") or None, message, status, latency_ms)
        outcome: Outcome = "unknown" if status in GATEWAY_STATUSES and params is None else "failure"
        return CallResult(outcome, None, None, answer_text(answer).strip()[:MAX_MESSAGE_CHARS], status, latency_ms)

    def interpret_query(self, insurer: InsurerConfig, answer: Answer, latency_ms: float) -> QueryResult:
        status = answer.status
        params = parse_params(answer)
        if params is not None and verify(params, _key(insurer)) and params["result_code"] == "SUCCESS":
            state = params.get("trade_state")
            if state == "COMPLETED":
                return QueryResult(True, _biz(params), None, status, latency_ms)
            if state == "NOT_FOUND":
                return QueryResult(False, None, None, status, latency_ms)
        if params is not None and not verify(params, _key(insurer)):
            message = _bad_signature(params)
        else:
            body = answer_text(answer).strip()[:MAX_MESSAGE_CHARS]
            message = f"HTTP {status}: {body}" if body else f"HTTP {status} with an empty body"
        return QueryResult(None, None, message[:MAX_MESSAGE_CHARS], status, latency_ms)

    def _signed(self, insurer: InsurerConfig, **params: str) -> dict[str, str]:
        base = {
            "app_id": str(insurer.options.get("app_id", DEFAULT_APP_ID)),
            "timestamp": dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S"),
            **params,
        }
        return signed(base, _key(insurer), str(insurer.options.get("sign_type", "HMAC-SHA256")))


def _key(insurer: InsurerConfig) -> bytes:
    key = insurer.options.get("sign_key")
    if not isinstance(key, SignKey):
        raise LookupError(f"insurer {insurer.name!r}: signed-form needs sign_key or sign_key_env (its options: none)")
    return key.reveal()


def _bad_signature(params: Mapping[str, str]) -> str:
    said = ", ".join(f"{k}={params[k]}" for k in ("result_code", "err_code", "err_msg") if params.get(k))
    return f"signed-form: the insurer's answer has a bad or missing signature ({said}); not trusted"[:MAX_MESSAGE_CHARS]


def _biz(params: Mapping[str, str]) -> dict[str, Any]:
    text = params.get("biz_content", "")
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"value": text}
    return value if isinstance(value, dict) else {"value": value}


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
