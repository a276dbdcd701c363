from model.text import categorical_tokens, code_tokens, field_features, normalize_message


def test_masks_volatile_values_so_templates_collapse():
    a = normalize_message("订单P2026112400001处理超时, trace=9f8e7d6c5b4a39281706a5b4c3d2e1f0 at 2026-11-24 10:00:01")
    b = normalize_message("订单P2026112499999处理超时, trace=0123456789abcdef0123456789abcdef at 2025-01-02 23:59:59")
    assert a == b
    assert "2026" not in a


def test_full_width_and_case_fold():
    assert normalize_message("ＳＹＳＴＥＭ　ＢＵＳＹ，请稍后") == "system busy 请稍后"


def test_masks_id_numbers_phones_ips_hosts():
    text = normalize_message("身份证110101199003077777 手机13812345678 dial tcp 10.2.3.4:443 host api.acme.com.cn")
    assert "<idno>" in text and "<phone>" in text and "<ip>" in text and "<host>" in text
    assert "110101" not in text and "138123" not in text


def test_java_package_names_are_not_hosts():
    assert "sockettimeoutexception" in normalize_message("java.net.SocketTimeoutException: Read timed out")


def test_empty_and_missing_messages():
    assert normalize_message("") == ""
    assert normalize_message(None) == ""


def test_an_exact_code_is_evidence_only_inside_its_insurers_scheme():
    tokens = code_tokens("ACQ.SYSTEM_ERROR", "acme")
    assert "insurer_code=acme|acq.system_error" in tokens
    assert not any(t.startswith("code=") for t in tokens)  # never a global exact code
    # the code's words are language, global; scheme prefixes shorter than four letters are not words
    assert {"code_word=system", "code_word=error"} <= set(tokens) and "code_word=acq" not in tokens
    assert code_tokens("SocketTimeoutException", None) == [
        "code_word=socket",
        "code_word=timeout",
        "code_word=exception",
    ]


def test_code_shape_is_never_a_feature():
    for code in ("500100", "E1001", "-1", "40001"):
        tokens = code_tokens(code, "acme")
        assert tokens == [f"insurer_code=acme|{code.casefold()}"], tokens
    assert code_tokens("500100", None) == []  # an unknown insurer's numeric code says nothing
    assert code_tokens(None) == ["code:missing"]
    assert code_tokens("  ") == ["code:missing"]


def test_codes_of_public_standards_are_global():
    assert "code_std=unavailable" in code_tokens("UNAVAILABLE", None)
    assert "code_std=econnreset" in code_tokens("ECONNRESET", "acme")
    assert "code_std=deadline_exceeded" in code_tokens("deadline_exceeded", None)


def test_code_dropout_leaves_the_code_out_altogether():
    assert categorical_tokens("acme", "pay", "E1001", 200, code_hidden=True) == [
        "operation=pay",
        "insurer=acme",
        "status=200",
        "status_class=2xx",
    ]


def test_field_features_missing_values_are_explicit():
    feats = field_features(None, None, None, None, None)
    assert feats["status:missing"] == 1.0
    assert feats["latency:missing"] == 1.0
    assert feats["code:missing"] == 1.0


def test_latency_near_whole_second_flags_client_timeouts():
    assert "latency_at_whole_second" in field_features("a", "pay", None, None, 3004.0)
    assert "latency_at_whole_second" not in field_features("a", "pay", None, None, 3500.0)
    assert "latency_at_whole_second" not in field_features("a", "pay", None, None, 40.0)


def test_reason_is_extracted_from_structured_bodies():
    from model.text import extract_reason

    spring = (
        '{"timestamp":"2026-05-06T02:00:00+08:00","status":500,"error":"Internal Server Error",'
        '"message":"重复投保","path":"/v1"}'
    )
    assert extract_reason(spring) == "重复投保"
    assert (
        extract_reason('核心返回：{"head":{"rspCode":"3010","rspMsg":"不予承保"},"body":{}}') == "核心返回： 不予承保"
    )
    assert extract_reason("respCode=94&respMsg=退款单已存在&txnTime=1") == "退款单已存在"
    assert (
        extract_reason("<xml><return_code>FAIL</return_code><return_msg><![CDATA[系统繁忙]]></return_msg></xml>")
        == "系统繁忙"
    )
    assert extract_reason('{"status":500,"error":"Internal Server Error"}') == "Internal Server Error"


def test_plain_and_unparsable_text_is_kept():
    from model.text import extract_reason

    for text in ("plain {not json}", "系统繁忙", "{broken json}", "<html><title>502 Bad Gateway</title></html>", "a=b"):
        assert extract_reason(text) == text
