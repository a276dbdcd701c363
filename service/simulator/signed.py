"""The simulator's signed-form side (service/gateway/signed_form.py): /signed/{operation} and its query.

    POST /signed/{operation}         a signed form call: the same ledger, scripts and scenarios as
                                     POST /{operation}; payload = biz_content (JSON)
    POST /signed/{operation}/query   result_code SUCCESS + trade_state COMPLETED (biz_content) | NOT_FOUND

Every answer is form-encoded and signed with the simulator's key (SIM_SIGN_KEY, or the
ASYNCGATE_SIM_SIGN_KEY environment variable read by serve_simulator) in the request's sign_type
(HMAC-SHA256 when it names none we know). A request whose signature does not verify gets a
definitive FAIL `SIGN_ERROR` (400) and touches neither the ledger nor the call counters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

from fastapi.responses import Response

from service.gateway.signed_form import FORM_TYPE, SIGN_TYPES, signed, verify

#: The simulator's signing key unless ASYNCGATE_SIM_SIGN_KEY gives another (a test and demo value, not a secret).
SIM_SIGN_KEY: Final = "asyncgate-simulator-key"
SIGN_ERROR: Final = ("SIGN_ERROR", "签名错误：请求签名校验失败")


class SignedDialect:
    """Reads signed requests and writes signed answers with one key."""

    def __init__(self, key: str) -> None:
        self._key = key.encode("utf-8")
        self.sign_type = "HMAC-SHA256"

    def read(self, body: bytes) -> dict[str, str] | None:
        """The request's parameters, or None when the body is not a form."""
        try:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError):
            return None

    def verifies(self, params: Mapping[str, str]) -> bool:
        return verify(params, self._key)

    def answer(self, request: Mapping[str, str], status: int, params: Mapping[str, str], label: str) -> Response:
        sign_type = request.get("sign_type", "")
        body = urlencode(signed(params, self._key, sign_type if sign_type in SIGN_TYPES else self.sign_type))
        return Response(body, status_code=status, media_type=FORM_TYPE, headers={"X-Sim-Plan": label})

    def success(self, request: Mapping[str, str], data: dict[str, Any], label: str) -> Response:
        biz = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return self.answer(request, 200, {"result_code": "SUCCESS", "biz_content": biz}, label)

    def failure(self, request: Mapping[str, str], status: int, code: str | None, message: str, label: str) -> Response:
        params = {"result_code": "FAIL", "err_code": code or "", "err_msg": message}
        return self.answer(request, status, params, label)

    def query(self, request: Mapping[str, str], data: dict[str, Any] | None) -> Response:
        if data is None:
            return self.answer(request, 200, {"result_code": "SUCCESS", "trade_state": "NOT_FOUND"}, "query")
        biz = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        params = {"result_code": "SUCCESS", "trade_state": "COMPLETED", "biz_content": biz}
        return self.answer(request, 200, params, "query")
