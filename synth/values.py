"""Realistic random values for the `{placeholder}` fields of failure templates: one function per name.

`fill(name, rng, ctx)` returns the text for one placeholder; `PLACEHOLDERS` lists every name a
template may use. Values look like what partners put in their messages (order ids, policy numbers,
valid-checksum 18-digit ID numbers, masked phones, amounts, hosts, private IPs, trace ids...).
Nothing here touches the network; IPs and hosts are only text.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Mapping
from typing import Final

Filler = Callable[[random.Random, Mapping[str, str]], str]

_HEX: Final = "0123456789abcdef"
_ALNUM: Final = string.ascii_uppercase + string.digits
_SURNAMES: Final = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
_GIVEN: Final = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉梅"
_REGIONS: Final = ("110101", "310104", "440305", "330106", "320102", "510107", "420106", "370202", "610113", "500103")
_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK: Final = "10X98765432"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_HEX) for _ in range(n))


def _date(rng: random.Random) -> str:
    return f"20{rng.randint(24, 26)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"


def id_number(rng: random.Random) -> str:
    """An 18-digit PRC resident ID number with a valid check character."""
    body = f"{rng.choice(_REGIONS)}{rng.randint(1950, 2020)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body += _digits(rng, 3)
    total = sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS, strict=True))
    return body + _ID_CHECK[total % 11]


def _id_no(rng: random.Random, _: Mapping[str, str]) -> str:
    value = id_number(rng)
    return value if rng.random() < 0.5 else value[:6] + "********" + value[-4:]


def _name(rng: random.Random, _: Mapping[str, str]) -> str:
    full = rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2)))
    return full if rng.random() < 0.3 else full[0] + "*" * (len(full) - 1)


def _phone(rng: random.Random, _: Mapping[str, str]) -> str:
    value = "1" + rng.choice("3456789") + _digits(rng, 9)
    return value if rng.random() < 0.4 else value[:3] + "****" + value[-4:]


def _order_id(rng: random.Random, _: Mapping[str, str]) -> str:
    pattern = rng.randrange(4)
    if pattern == 0:
        return f"P{_date(rng)}{_digits(rng, 8)}"
    if pattern == 1:
        return f"ORD{_digits(rng, 16)}"
    if pattern == 2:
        return f"{_date(rng)}{_digits(rng, 12)}"
    return "".join(rng.choice(_ALNUM) for _ in range(24))


def _policy_no(rng: random.Random, _: Mapping[str, str]) -> str:
    pattern = rng.randrange(3)
    if pattern == 0:
        return f"{rng.choice(('86', '88', '66'))}{_digits(rng, 20)}"
    if pattern == 1:
        return f"P{rng.choice(('DEA', 'ZAB', 'HLA', 'YAC'))}{_date(rng)}{_digits(rng, 10)}"
    return f"{rng.randint(1, 9)}{_digits(rng, 15)}"


def _proposal_no(rng: random.Random, _: Mapping[str, str]) -> str:
    return f"{rng.choice(('T', 'TB', 'Q'))}{_date(rng)}{_digits(rng, 10)}"


def _amount(rng: random.Random, _: Mapping[str, str]) -> str:
    return f"{rng.choice((9.9, 19.9, 36.5, 128.0, 299.0, 588.0, 1260.0, 3650.0, 12800.0)) * rng.randint(1, 3):.2f}"


def _fen(rng: random.Random, _: Mapping[str, str]) -> str:
    return str(rng.randint(99, 2_000_000))


def _datetime(rng: random.Random, _: Mapping[str, str]) -> str:
    return (
        f"20{rng.randint(24, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    )


def _date_iso(rng: random.Random, _: Mapping[str, str]) -> str:
    return f"20{rng.randint(24, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _clock(rng: random.Random, _: Mapping[str, str]) -> str:
    return f"{rng.choice((0, 1, 2, 22, 23))}:{rng.choice(('00', '30'))}"


def _ip(rng: random.Random, _: Mapping[str, str]) -> str:
    first = rng.choice(("10", "172", "192"))
    if first == "10":
        return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if first == "172":
        return f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _choice(values: tuple[str, ...]) -> Filler:
    def pick(rng: random.Random, _: Mapping[str, str]) -> str:
        return rng.choice(values)

    return pick


def _ctx(key: str, fallback: Filler) -> Filler:
    def from_ctx(rng: random.Random, ctx: Mapping[str, str]) -> str:
        value = ctx.get(key)
        return value if value else fallback(rng, ctx)

    return from_ctx


def _int(low: int, high: int) -> Filler:
    def pick(rng: random.Random, _: Mapping[str, str]) -> str:
        return str(rng.randint(low, high))

    return pick


def _timeout_ms(rng: random.Random, ctx: Mapping[str, str]) -> str:
    return str(int(float(ctx.get("timeout_s", "3")) * 1000))


def _timeout_s(rng: random.Random, ctx: Mapping[str, str]) -> str:
    value = float(ctx.get("timeout_s", "3"))
    return str(int(value)) if value.is_integer() else str(value)


_HOSTS: Final = ("api.gw-partner.com", "openapi.hxrs-life.com.cn", "core.tpcx.cn", "gw.insur-hub.net")

FILLERS: Final[dict[str, Filler]] = {
    "order_id": _order_id,
    "out_trade_no": lambda rng, _: _hex(rng, 32) if rng.random() < 0.5 else f"{_date(rng)}{_digits(rng, 14)}",
    "policy_no": _policy_no,
    "proposal_no": _proposal_no,
    "claim_no": lambda rng, _: f"C{_date(rng)}{_digits(rng, 9)}",
    "id_no": _id_no,
    "name": _name,
    "phone": _phone,
    "amount": _amount,
    "fen": _fen,
    "datetime": _datetime,
    "date": _date_iso,
    "clock": _clock,
    "host": _ctx("host", _choice(_HOSTS)),
    "ip": _ip,
    "port": _choice(("443", "8080", "8443", "80", "9090", "18080")),
    "trace_id": lambda rng, _: _hex(rng, 32),
    "span_id": lambda rng, _: _hex(rng, 16),
    "request_id": lambda rng, _: f"{_hex(rng, 8)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 12)}",
    "ms": _int(3, 2900),
    "timeout_ms": _timeout_ms,
    "timeout_s": _timeout_s,
    "n": _int(2, 9),
    "qps": _choice(("10", "20", "50", "100", "200", "500", "1000")),
    "retry_after": _int(1, 60),
    "minutes": _choice(("5", "10", "15", "30", "60")),
    "card_tail": lambda rng, _: _digits(rng, 4),
    "bank": _choice(("工商银行", "建设银行", "农业银行", "中国银行", "招商银行", "交通银行", "浦发银行", "兴业银行")),
    "product": _choice(
        (
            "安心百万医疗险2025版",
            "少儿重疾险(互联网专属)",
            "综合意外险A款",
            "住院医疗险",
            "定期寿险臻享版",
            "驾乘意外险",
            "境外旅行险",
            "惠民保2026",
            "宠物医疗险",
            "退货运费险",
        )
    ),
    "plan": _choice(("PLAN_A", "PLAN_B", "STD-01", "HK-2025-03", "M100", "GOLD")),
    "region": _choice(("新疆", "西藏", "香港", "澳门", "台湾", "海外", "三沙市")),
    "occupation": _choice(("高空作业人员", "矿工", "爆破工", "职业运动员", "远洋渔船船员", "消防员", "特技演员")),
    "occ_class": _choice(("4", "5", "6", "拒保")),
    "min_age": _choice(("0", "18", "28天")),
    "max_age": _choice(("50", "55", "60", "65", "70")),
    "age": _int(0, 85),
    "field": _choice(
        (
            "insuredIdNo",
            "holderName",
            "premium",
            "effectiveDate",
            "mobile",
            "bankCardNo",
            "sumInsured",
            "productCode",
            "insuredBirthday",
            "out_trade_no",
            "total_fee",
            "notify_url",
            "planCode",
        )
    ),
    "field_zh": _choice(
        ("被保人证件号", "投保人姓名", "保费", "生效日期", "手机号", "银行卡号", "保额", "出生日期", "职业代码")
    ),
    "table": _choice(("t_policy_order", "t_pay_trade", "policy_main", "uw_task", "t_claim_case", "order_item")),
    "db": _choice(("policy_db", "trade", "core_uw", "claimdb", "insure_order")),
    "service": _choice(
        (
            "com.core.policy.api.PolicyService",
            "com.pay.trade.facade.TradeFacade",
            "cn.uw.api.UnderwriteApi",
            "com.claim.api.ClaimService",
            "com.user.realname.RealNameService",
        )
    ),
    "grpc_service": _choice(("policy.v1.PolicyService/Issue", "uw.UnderwriteService/Check", "pay.v2.Trade/Create")),
    "method": _choice(("underwrite", "issuePolicy", "createTrade", "queryOrder", "refund", "verify", "submitClaim")),
    "path": _choice(
        (
            "/api/v1/underwrite",
            "/openapi/policy/issue",
            "/pay/unifiedorder",
            "/v3/refund/domestic/refunds",
            "/gateway.do",
            "/claim/submit",
            "/realname/verify",
        )
    ),
    "topic": _choice(("policy-issued", "pay-notify", "order-events", "claim-status")),
    "partition": _int(0, 11),
    "pool": _choice(("HikariPool-1", "HikariPool-2", "coreDataSource", "druid-1")),
    "thread": lambda rng, _: f"http-nio-8080-exec-{rng.randint(1, 200)}",
    "mch_id": lambda rng, _: "1" + _digits(rng, 9),
    "app_id": lambda rng, _: "wx" + _hex(rng, 16),
    "version": _choice(("1.18.0", "1.20.1", "1.22.1", "1.24.0", "1.25.3")),
    "tengine_version": _choice(("2.3.2", "2.3.3", "3.0.0", "3.1.0")),
    "pid": _int(1000, 99999),
    "count": _int(2, 5),
    "redis_key": lambda rng, _: f"lock:order:{_digits(rng, 12)}",
    "seconds": _int(2, 59),
    "error_no": _int(100000, 999999),
}

PLACEHOLDERS: Final = frozenset(FILLERS)


def fill(name: str, rng: random.Random, ctx: Mapping[str, str]) -> str:
    """The text for placeholder `name` (KeyError for an unknown name: vocabulary files are checked at load)."""
    return FILLERS[name](rng, ctx)
