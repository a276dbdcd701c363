"""mask_personal_data: the personal data that can appear in payloads and insurer messages is masked;
what the model and operators need (codes, amounts, statuses, order ids) is kept."""

from __future__ import annotations

import pytest

from model.privacy import mask_personal_data


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("身份证 11010119900307457X 校验失败", "身份证 <ID_NUMBER> 校验失败"),
        ("ID 110101199003074578, retry", "ID <ID_NUMBER>, retry"),
        ("手机13812345678格式错误", "手机<PHONE>格式错误"),
        ("phone +86 138-1234-5678 busy", "phone <PHONE> busy"),
        ("call 138 1234 5678 later", "call <PHONE> later"),
        ("卡号 6222 0212 3456 7890 123 余额不足", "卡号 <CARD> 余额不足"),
        ("card 6222-0212-3456-7890 declined", "card <CARD> declined"),
        ("mail a.b+c@ex-ample.com.cn bounced", "mail <EMAIL> bounced"),
        ("姓名：张三，证件不符", "姓名：<NAME>，证件不符"),
        ("被保人:王五;", "被保人:<NAME>;"),
        ('{"holder": "李四", "premium": 1200}', '{"holder": "<NAME>", "premium": 1200}'),
        ("name=John Smith, age 40", "name=<NAME>, age 40"),
        ("applicant: Mary Ann Lee rejected", "applicant: <NAME> rejected"),
    ],
)
def test_personal_data_is_masked(text: str, masked: str) -> None:
    assert mask_personal_data(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "order P2026112400001 premium 1200.50 status 503",
        "E1001 系统繁忙，请稍后再试 (trace 20261125103000)",
        "ReadTimeout: timed out after 2001.3 ms",
        "insurer acme: HTTP 429 too many requests",
        "",
    ],
)
def test_what_is_not_personal_is_kept(text: str) -> None:
    assert mask_personal_data(text) == text


def test_masking_is_idempotent() -> None:
    text = "投保人身份证110101199003074578与手机号13812345678，姓名=张三，卡6222021234567890123"
    once = mask_personal_data(text)
    assert mask_personal_data(once) == once
    assert not any(ch.isdigit() for ch in once.replace("<", "").replace(">", ""))
