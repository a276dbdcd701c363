"""How a partner answers: error code from its scheme, body wrapping, HTTP status and latency of a failure.

Helpers of `synth.vocabulary.render_failure`; every function takes the random source explicitly so a
seeded caller gets the same failure twice. Latency profiles (milliseconds, `t` = client timeout):

- timeout: client exceptions at t·(1+|N(0, 0.4%)|) + Exp(15 ms); the partner's own timeout answers
  log-normal around 0.6·t; gateway 504 pages half at t, half uniform in 0.4–1.0·t;
- connect_timeout: at 1 s, 2 s or t; tls: at min(10 s, t); dns: usually fast, sometimes 5 s;
- instant / fast / moderate / slow: log-normal, medians 5 / 45 / 350 / 1800 ms, kept below t.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from synth.vocabulary import Category, CodeScheme, Partner, Template

_LOGNORMAL: Final = {"instant": (5.0, 0.8), "fast": (45.0, 0.7), "moderate": (350.0, 0.9), "slow": (1800.0, 0.6)}
LATENCY_PROFILES: Final = frozenset({*_LOGNORMAL, "timeout", "connect_timeout", "tls", "dns"})


def latency_ms(profile: str, surface: str, timeout_s: float, rng: random.Random) -> float:
    """Latency of one failure, rounded to 0.1 ms (see the module docstring for the profiles)."""
    t = timeout_s * 1000.0
    if profile == "timeout":
        if surface == "client":
            value = t * (1.0 + abs(rng.gauss(0.0, 0.004))) + rng.expovariate(1 / 15.0)
        elif surface == "gateway":
            value = t + rng.expovariate(1 / 20.0) if rng.random() < 0.5 else t * rng.uniform(0.4, 1.0)
        else:
            value = min(t * 0.6 * math.exp(rng.gauss(0.0, 0.35)), t * 0.98)
    elif profile == "connect_timeout":
        value = min(rng.choice((1000.0, 2000.0, t)), t) + rng.expovariate(1 / 10.0)
    elif profile == "tls":
        value = min(10_000.0, t) + rng.expovariate(1 / 12.0)
    elif profile == "dns":
        value = 5000.0 + rng.expovariate(1 / 30.0) if rng.random() < 0.15 else math.exp(rng.gauss(3.0, 1.0))
        value = min(value, t * 0.99)
    else:
        median, sigma = _LOGNORMAL[profile]
        value = median * math.exp(rng.gauss(0.0, sigma))
        if value > t * 0.97:
            value = t * rng.uniform(0.6, 0.97)
    return round(max(value, 0.3), 1)


def http_status(template: Template, category: Category, partner: Partner, rng: random.Random) -> int | None:
    """None for client exceptions and non-HTTP partners; the page's status for gateways; else the partner's style."""
    if template.surface == "client" or partner.channel != "http":
        return None
    if template.surface == "gateway":
        return template.status
    if partner.status_style == "always200" or (partner.status_style == "mixed" and rng.random() < 0.5):
        return 200 if rng.random() < 0.97 else 500
    if template.status is not None:
        return template.status
    statuses = category.rest_status
    cum = list(itertools.accumulate(w for _, w in statuses))
    return statuses[bisect.bisect_right(cum, rng.random() * cum[-1], 0, len(cum) - 1)][0]


def pick_code(scheme: CodeScheme, category: str, status: int | None, rng: random.Random, progress: float) -> str | None:
    """A code of `scheme` for `category` in use at `progress`; the scheme's default when it has none."""
    if scheme.style == "none":
        return None
    if scheme.style == "http":
        return str(status) if status is not None else scheme.default
    codes = [code for code, since in scheme.codes.get(category, ()) if since <= progress]
    return rng.choice(codes) if codes else scheme.default


def _j(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


_REASONS: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    423: "Locked",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _err(status: int | None) -> int:
    """The status an error body states: the response's own when it is an error status, else 500."""
    return status if status is not None and status >= 400 else 500


def _ts(rng: random.Random) -> str:
    return (
        f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00"
    )


Wrapper = Callable[[str, str, int | None, random.Random], str]

_WRAPPERS: Final[dict[str, Wrapper]] = {
    "json_code_msg": lambda m, c, s, r: f'{{"code":"{c}","msg":{_j(m)}}}',
    "json_code_message": lambda m, c, s, r: f'{{"code":{_j(c)},"message":{_j(m)},"data":null}}',
    "json_errcode": lambda m, c, s, r: f'{{"errcode":{c if c.lstrip("-").isdigit() else _j(c)},"errmsg":{_j(m)}}}',
    "json_result": lambda m, c, s, r: (
        f'{{"success":false,"resultCode":"{c}","resultMsg":{_j(m)},"traceId":"{_hex(r, 16)}"}}'
    ),
    "json_head": lambda m, c, s, r: (
        f'{{"head":{{"rspCode":"{c}","rspMsg":{_j(m)},"transNo":"{_hex(r, 20)}"}},"body":{{}}}}'
    ),
    "spring": lambda m, c, s, r: (
        f'{{"timestamp":"{_ts(r)}.{r.randint(100, 999)}+08:00","status":{_err(s)},'
        f'"error":"{_REASONS.get(_err(s), "Error")}","message":{_j(m)},'
        f'"path":"/api/v1/{r.choice(("policy", "underwrite", "order", "pay"))}"}}'
    ),
    "problem": lambda m, c, s, r: (
        f'{{"type":"about:blank","title":"{_REASONS.get(_err(s), "Error")}","status":{_err(s)},'
        f'"detail":{_j(m)},"code":"{c}","instance":"/req/{_hex(r, 12)}"}}'
    ),
    "wx_xml": lambda m, c, s, r: (
        "<xml><return_code><![CDATA[SUCCESS]]></return_code><result_code><![CDATA[FAIL]]></result_code>"
        f"<err_code><![CDATA[{c}]]></err_code><err_code_des><![CDATA[{m}]]></err_code_des></xml>"
    ),
    "alipay": lambda m, c, s, r: (
        f'{{"alipay_trade_{r.choice(("pay", "refund", "query", "create"))}_response":{{"code":"'
        f'{"20000" if "SYSTEM" in c or "unknow" in c else "40004"}","msg":"'
        f'{"Service Currently Unavailable" if "SYSTEM" in c or "unknow" in c else "Business Failed"}",'
        f'"sub_code":"{c}","sub_msg":{_j(m)}}},"sign":"{_hex(r, 24)}"}}'
    ),
    "kv": lambda m, c, s, r: f"respCode={c}&respMsg={m}&txnTime={r.randint(10**13, 10**14 - 1)}",
    "soap": lambda m, c, s, r: (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>'
        f"<faultcode>soap:Server</faultcode><faultstring>{m}</faultstring><detail><errorCode>{c}</errorCode>"
        "</detail></soap:Fault></soap:Body></soap:Envelope>"
    ),
    "bracket": lambda m, c, s, r: f"[{c}]{m}",
    "code_colon": lambda m, c, s, r: f"{c}: {m}",
    "zh_labels": lambda m, c, s, r: f"错误码:{c}，错误信息:{m}",
}
WRAPS: Final = frozenset({"plain", *_WRAPPERS})


def wrap(partner: Partner, text: str, code: str | None, status: int | None, rng: random.Random) -> str:
    """The partner's answer as logged: maybe wrapped in its body format, maybe behind a platform prefix."""
    if partner.wrap != "plain" and not text.startswith(("{", "<")) and rng.random() < partner.wrap_p:
        text = _WRAPPERS[partner.wrap](text, code if code is not None else "-1", status, rng)
    if partner.prefixes and rng.random() < partner.prefix_p:
        text = rng.choice(partner.prefixes) + text
    return text
