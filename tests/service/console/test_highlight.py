"""The console marks the explanation's spans in the original message (docs/contract.md §7)."""

from service.console.highlight import highlight, span_marks


def test_spans_are_marked_in_the_original_message_by_sign():
    explanation = [
        {"kind": "text", "feature": "text:'系统繁忙'", "weight": 3.2, "span": "系统繁忙"},
        {"kind": "code", "feature": "insurer_code=acme|e1001", "weight": 0.5},
        {"kind": "text", "feature": "text:'do not'", "weight": -1.1, "span": "do not"},
    ]
    html = str(highlight("系统繁忙，DO NOT <retry>", explanation))
    assert '<mark class="span-pos" title="+3.200 (towards async)">系统繁忙</mark>' in html
    assert '<mark class="span-neg" title="-1.100 (towards final)">DO NOT</mark>' in html  # case-folded match
    assert "&lt;retry&gt;" in html  # the rest is escaped


def test_full_width_text_maps_back_to_its_original_characters():
    message = "ＳＹＳＴＥＭ　ＢＵＳＹ，请稍后"
    marks = span_marks(message, [{"kind": "text", "weight": 1.0, "span": "system busy"}])
    assert marks == [(0, 11, 1.0)]
    assert message[0:11] == "ＳＹＳＴＥＭ　ＢＵＳＹ"


def test_every_occurrence_is_marked_and_marks_never_overlap():
    explanation = [
        {"kind": "text", "weight": 2.0, "span": "超时"},
        {"kind": "text", "weight": -1.0, "span": "时间"},  # overlaps the first mark: left out there
    ]
    assert span_marks("超时 超时间", explanation) == [(0, 2, 2.0), (3, 5, 2.0)]


def test_no_message_or_no_spans_is_just_the_escaped_message():
    assert str(highlight(None, [])) == ""
    assert str(highlight("<b>", None)) == "&lt;b&gt;"
    assert str(highlight("abc", [{"kind": "rule", "weight": 0.0, "feature": "rule:1"}])) == "abc"
