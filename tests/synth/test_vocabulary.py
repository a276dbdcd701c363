"""The failure vocabulary loads, covers every category and partner, and renders realistic failures."""

from __future__ import annotations

import random
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from model.schema import CATEGORIES
from synth.values import id_number
from synth.vocabulary import (
    PLACEHOLDER_RE,
    Vocabulary,
    VocabularyError,
    default_vocab_dir,
    detect_language,
    fits,
    load_vocabulary,
    render_failure,
    render_template,
    templates_for,
)


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return load_vocabulary()


def _positive_mix(vocab: Vocabulary) -> list[tuple[str, str]]:
    return [
        (partner.name, category)
        for partner in vocab.partners.values()
        for category, weight in vocab.mix["kinds"][partner.kind].items()
        if weight > 0
    ]


def test_default_dir_is_the_synth_package_data() -> None:
    assert Path(str(default_vocab_dir())) == Path(__file__).resolve().parents[2] / "synth" / "vocab"
    assert (default_vocab_dir() / "partners.toml").is_file()


def test_categories_are_exactly_the_schema_ones_with_their_labels(vocab: Vocabulary) -> None:
    assert list(vocab.categories) == list(CATEGORIES)
    for name, category in vocab.categories.items():
        assert category.async_eligible is CATEGORIES[name]
        assert all(t.category == name for t in category.templates)


def test_every_category_has_many_templates_in_several_languages(vocab: Vocabulary) -> None:
    assert len(vocab.templates) >= 300
    for category in vocab.categories.values():
        assert len(category.templates) >= 20, category.name
        languages = Counter(t.lang for t in category.templates)
        assert languages["zh"] >= 5 and languages["en"] >= 5 and languages["mixed"] >= 1, category.name


def test_template_ids_are_unique_and_prefixed_by_category(vocab: Vocabulary) -> None:
    ids = [t.id for t in vocab.templates]
    assert len(ids) == len(set(ids))
    assert all(t.id.startswith(f"{t.category}.") for t in vocab.templates)


def test_at_least_25_partners_with_short_identifier_names(vocab: Vocabulary) -> None:
    assert len(vocab.partners) >= 25
    assert all(re.fullmatch(r"[a-z][a-z0-9_]{1,31}", name) for name in vocab.partners)
    kinds = Counter(p.kind for p in vocab.partners.values())
    for kind in ("insurer_core", "insurer_internet", "insurer_foreign", "payment", "identity", "sms"):
        assert kinds[kind] >= 1, kind
    assert any(p.since > 0.5 for p in vocab.partners.values()), "some partners must appear late"


def test_code_schemes_cover_every_style(vocab: Vocabulary) -> None:
    styles = {vocab.schemes[p.code_scheme].style for p in vocab.partners.values()}
    assert {"numeric", "e_prefix", "dotted", "upper_snake", "lower_dotted", "http", "generic", "none"} <= styles


def test_every_template_is_reachable_from_some_partner_in_the_mix(vocab: Vocabulary) -> None:
    reachable = {t.id for name, cat in _positive_mix(vocab) for t in templates_for(vocab, name, cat)}
    assert [t.id for t in vocab.templates if t.id not in reachable] == []


def test_every_template_renders_without_leftover_placeholders(vocab: Vocabulary) -> None:
    rng = random.Random(0)
    for template in vocab.templates:
        partner = next(p for p in vocab.partners.values() if fits(template, p))
        for _ in range(3):
            failure = render_template(vocab, partner.name, template, rng, timeout_s=partner.timeout_s)
            assert not PLACEHOLDER_RE.search(failure.error_message), (template.id, failure.error_message)
            assert failure.template_id == template.id and failure.category == template.category


def test_every_partner_category_pair_of_the_mix_renders(vocab: Vocabulary) -> None:
    rng = random.Random(1)
    for name, category in _positive_mix(vocab):
        failure = render_failure(vocab, name, category, rng, progress=0.0)
        assert failure.category == category
        assert failure.error_message


def test_every_partner_code_scheme_renders_its_own_codes(vocab: Vocabulary) -> None:
    rng = random.Random(2)
    for partner in vocab.partners.values():
        scheme = vocab.schemes[partner.code_scheme]
        allowed = {c for codes in scheme.codes.values() for c, _ in codes} | {scheme.default}
        allowed |= {t.code for t in vocab.templates if t.code}
        seen = set()
        for _ in range(200):
            category = rng.choice([c for c, w in vocab.mix["kinds"][partner.kind].items() if w > 0])
            failure = render_failure(vocab, partner.name, category, rng)
            if failure.surface != "insurer":
                continue
            seen.add(failure.error_code)
            if scheme.style == "none":
                assert failure.error_code is None
            elif scheme.style == "generic":
                assert failure.error_code == scheme.default
            elif scheme.style == "http":
                assert failure.error_code in {str(failure.http_status), scheme.default}
            else:
                assert failure.error_code in allowed, (partner.name, failure.error_code)
        if scheme.style not in ("none", "generic", "http"):
            assert len(seen) >= 3, partner.name


def test_client_and_gateway_failures_carry_no_code(vocab: Vocabulary) -> None:
    rng = random.Random(3)
    surfaces: Counter[str] = Counter()
    for name, category in _positive_mix(vocab) * 4:
        failure = render_failure(vocab, name, category, rng)
        surfaces[failure.surface] += 1
        if failure.surface == "client":
            assert failure.error_code is None and failure.http_status is None
        elif failure.surface == "gateway":
            assert failure.error_code is None and failure.http_status is not None
    assert surfaces["client"] > 50 and surfaces["gateway"] > 20


def test_non_http_partners_have_no_status(vocab: Vocabulary) -> None:
    rng = random.Random(4)
    for partner in (p for p in vocab.partners.values() if p.channel != "http"):
        for category in [c for c, w in vocab.mix["kinds"][partner.kind].items() if w > 0]:
            assert render_failure(vocab, partner.name, category, rng).http_status is None


def test_always200_partners_answer_errors_with_200(vocab: Vocabulary) -> None:
    rng = random.Random(5)
    statuses = Counter(render_failure(vocab, "paychannel_wx", "payment_declined", rng).http_status for _ in range(300))
    assert statuses[200] >= 270


def test_client_timeouts_cluster_at_the_timeout_and_other_latencies_stay_below(vocab: Vocabulary) -> None:
    rng = random.Random(6)
    timeouts, others = [], []
    for _ in range(400):
        failure = render_failure(vocab, "huaxia_life_core", "timeout", rng, timeout_s=5.0)
        if failure.surface == "client":
            timeouts.append(failure.latency_ms)
        validation = render_failure(vocab, "huaxia_life_core", "validation", rng, timeout_s=5.0)
        others.append(validation.latency_ms)
    assert len(timeouts) > 100
    assert all(5000.0 <= t < 5400.0 for t in timeouts)
    assert max(others) < 5000.0 and sorted(others)[len(others) // 2] < 200.0


def test_templates_do_not_appear_before_their_since(vocab: Vocabulary) -> None:
    since = {t.id: t.since for t in vocab.templates}
    rng = random.Random(7)
    early = [render_failure(vocab, n, c, rng, progress=0.1).template_id for n, c in _positive_mix(vocab) * 3]
    assert all(since[t] <= 0.1 for t in early)
    assert sum(t.since > 0.5 for t in vocab.templates) >= 20


def test_rendering_is_deterministic_for_a_seed(vocab: Vocabulary) -> None:
    first = [render_failure(vocab, "anping_core", "insurer_busy", random.Random(9)) for _ in range(3)]
    second = [render_failure(vocab, "anping_core", "insurer_busy", random.Random(9)) for _ in range(3)]
    assert first == second


def test_hard_negatives_and_hard_positives_are_in_the_vocabulary(vocab: Vocabulary) -> None:
    texts = {t.text: t.category for t in vocab.templates}
    assert texts["订单已超时关闭"] == "duplicate_or_closed"
    assert texts["签名时间戳已过期"] == "auth_config"
    assert texts["验证码已过期，请重新获取"] == "validation"
    assert texts["密码错误次数超限"] == "auth_config"
    assert texts["系统检测到重复投保"] == "duplicate_or_closed"
    assert texts["timeout parameter must be between 1 and 30"] == "validation"
    assert texts["交易处理中，请稍后查询结果"] == "pending_unknown"
    assert texts["result unknown, please query"] == "pending_unknown"
    assert texts["服务器开小差了，请稍后再试"] == "insurer_busy"
    assert texts["upstream returned no data"] == "dependency"
    assert texts["Lock wait timeout exceeded; try restarting transaction"] == "lock_contention"
    time_words = re.compile(r"超时|过期|稍后|重试|再试|timeout|expired|retry|later", re.IGNORECASE)
    definitive = [t for t in vocab.templates if not CATEGORIES[t.category] and time_words.search(t.text)]
    assert len({t.category for t in definitive}) >= 6 and len(definitive) >= 25


def test_detect_language() -> None:
    assert detect_language("系统繁忙，请稍后再试") == "zh"
    assert detect_language("Read timed out") == "en"
    assert detect_language("核心系统异常：java.lang.NullPointerException") == "mixed"
    assert detect_language("订单号{order_id}重复") == "zh"


def test_id_numbers_have_valid_check_characters() -> None:
    rng = random.Random(11)
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    for _ in range(50):
        value = id_number(rng)
        assert len(value) == 18
        assert "10X98765432"[sum(int(c) * w for c, w in zip(value[:17], weights, strict=True)) % 11] == value[17]


def _copy_vocab(tmp_path: Path) -> Path:
    target = tmp_path / "vocab"
    shutil.copytree(Path(str(default_vocab_dir())), target)
    return target


def test_unknown_placeholder_is_refused(tmp_path: Path) -> None:
    root = _copy_vocab(tmp_path)
    (root / "categories" / "zz_bad.toml").write_text(
        'templates = [{ id = "bad", category = "timeout", text = "超时 {no_such_field}" }]\n', encoding="utf-8"
    )
    with pytest.raises(VocabularyError, match="no_such_field"):
        load_vocabulary(root)


def test_duplicate_template_id_is_refused(tmp_path: Path) -> None:
    root = _copy_vocab(tmp_path)
    (root / "categories" / "zz_dup.toml").write_text(
        'templates = [{ id = "java_socket_read", category = "timeout", text = "x" }]\n', encoding="utf-8"
    )
    with pytest.raises(VocabularyError, match="duplicate"):
        load_vocabulary(root)


def test_gateway_page_without_status_is_refused(tmp_path: Path) -> None:
    root = _copy_vocab(tmp_path)
    (root / "categories" / "zz_gw.toml").write_text(
        'templates = [{ id = "nostatus", category = "timeout", surface = "gateway", text = "x" }]\n',
        encoding="utf-8",
    )
    with pytest.raises(VocabularyError, match="gateway page without status"):
        load_vocabulary(root)


def test_every_http_insurer_can_answer_every_category(vocab: Vocabulary) -> None:
    """The insurer simulator words any category as a body or a page in any HTTP insurer's style."""
    for partner in vocab.partners.values():
        if partner.channel == "http" and partner.kind.startswith("insurer"):
            for category in CATEGORIES:
                surfaces = {t.surface for t in templates_for(vocab, partner.name, category)}
                assert surfaces - {"client"}, (partner.name, category)


def test_a_placeholder_repeated_in_a_template_gets_one_value_and_suffixed_ones_their_own(
    vocab: Vocabulary,
) -> None:
    rng = random.Random(12)
    same = next(t for t in vocab.templates if t.id == "connection.java_apache_refused")
    for _ in range(20):
        text = render_template(vocab, "huaxia_life_core", same, rng).error_message
        hosts = re.findall(r"Connect to ([\w.-]+):443 \[([\w.-]+)/", text)
        assert hosts and hosts[0][0] == hosts[0][1]
    window = next(t for t in vocab.templates if t.id == "maintenance.zh_core_window")
    texts = [render_template(vocab, "huaxia_life_core", window, rng).error_message for _ in range(20)]
    pairs = [re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", t) for t in texts]
    assert all(len(p) == 2 for p in pairs) and any(p[0] != p[1] for p in pairs)
