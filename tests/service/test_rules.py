"""Operators' rules without HTTP: validation, matching and specificity, pinning a verdict, the store and RuleBook."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from model.records import Failure, make_failure
from service.rules import RuleBook, RuleDraft, RuleSet, model_async_eligible, pin
from service.scoring import ServingModel, Verdict
from service.store import NewRule, OrderStore, RuleNotFound, RuleRecord, StoreUnavailable, create_db_engine, migrate
from tests.service.conftest import BUSY_MESSAGE, FINAL_MESSAGE

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def rule(rule_id: int, *, age_s: float = 0.0, **fields: Any) -> RuleRecord:
    values: dict[str, Any] = {"decision": "async", "reason": f"rule {rule_id}"} | fields
    draft = RuleDraft.model_validate(values)
    return RuleRecord(
        rule_id=rule_id,
        **draft.model_dump(),
        created_at=T0 - dt.timedelta(seconds=age_s),
        created_by="test",
    )


def failure(message: str = "系统繁忙", code: str | None = "E1001", insurer: str = "acme", operation: str = "pay"):
    return make_failure(insurer, operation, code, message, 503, 10.0)


def verdict(async_eligible: bool = False, category: str | None = "validation") -> Verdict:
    return Verdict(
        async_eligible=async_eligible,
        probability=0.9 if async_eligible else 0.1,
        threshold=0.35,
        category=category,
        model_version="v1",
        explanation=[{"feature": "text:繁忙", "weight": 1.2}],
    )


# -- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decision": "maybe", "error_code": "E1", "reason": "r"}, "decision"),
        ({"decision": "async", "reason": "r"}, "message_contains"),
        ({"decision": "async", "error_code": "  ", "message_contains": "", "reason": "r"}, "message_contains"),
        ({"decision": "async", "error_code": "E1", "reason": "   "}, "reason"),
        ({"decision": "async", "error_code": "E1"}, "reason"),
        ({"decision": "async", "error_code": "E1", "reason": "r", "category": "validation"}, "category"),
        ({"decision": "final", "error_code": "E1", "reason": "r", "category": "nonsense"}, "category"),
        ({"decision": "async", "error_code": "E" * 257, "reason": "r"}, "error_code"),
        ({"decision": "async", "message_contains": "x" * 513, "reason": "r"}, "message_contains"),
        ({"decision": "async", "error_code": "E1", "insurer": "i" * 129, "reason": "r"}, "insurer"),
        ({"decision": "async", "error_code": "E1", "reason": "r" * 1001}, "reason"),
        ({"decision": "async", "error_code": "E1", "operation": "p\x00y", "reason": "r"}, "operation"),
        ({"decision": "async", "error_code": "E1", "reason": "r", "eror_code": "E2"}, "eror_code"),
    ],
)
def test_invalid_drafts_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RuleDraft.model_validate(body)
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


def test_blank_text_is_null_and_code_and_reason_are_stripped() -> None:
    draft = RuleDraft.model_validate(
        {"insurer": "", "error_code": " E1 ", "message_contains": "  ", "decision": "final", "reason": " why \n"}
    )
    assert (draft.insurer, draft.error_code, draft.message_contains, draft.reason) == (None, "E1", None, "why")
    assert RuleDraft.model_validate(
        {"message_contains": " 繁忙 ", "decision": "async", "reason": "r"}
    ).message_contains == (" 繁忙 "), "a substring is kept as written"


# -- matching -----------------------------------------------------------------------------------------


def test_no_rules_match_nothing() -> None:
    assert RuleSet().match(failure()) is None


def test_code_matches_exactly_after_strip_insurer_and_operation_as_given() -> None:
    rules = RuleSet([rule(1, error_code="E1001", insurer="acme", operation="pay")])
    assert rules.match(failure(code=" E1001 ")) is not None
    assert rules.match(failure(code="e1001")) is None, "codes are compared exactly (case matters)"
    assert rules.match(failure(code="E10011")) is None
    assert rules.match(failure(code=None)) is None
    assert rules.match(failure(insurer="Acme")) is None, "insurer as given"
    assert rules.match(failure(operation="underwrite")) is None


def test_message_contains_is_a_substring_after_nfkc_and_casefold() -> None:
    rules = RuleSet([rule(1, message_contains="Ｓｙｓｔｅｍ BUSY")])  # full-width letters
    assert rules.match(failure("upstream: system busy, retry", code=None)) is not None
    assert rules.match(failure("SYSTEM BUSY", code="X")) is not None, "a null code matches any code"
    assert rules.match(failure("system is busy", code=None)) is None
    cjk = RuleSet([rule(2, message_contains="系统繁忙")])
    assert cjk.match(failure("【系统繁忙】请稍后", code=None)) is not None
    straße = RuleSet([rule(3, message_contains="STRASSE")])
    assert straße.match(failure("Hauptstraße gesperrt", code=None)) is not None, "casefold: ß = ss"


def test_the_most_specific_rule_wins_then_the_newest() -> None:
    code_only = rule(1, error_code="E1001", decision="final", reason="code")
    code_and_insurer = rule(2, error_code="E1001", insurer="acme", age_s=100, reason="code+insurer")
    text_and_code = rule(3, error_code="E1001", message_contains="繁忙", age_s=50, reason="code+text")
    rules = RuleSet([code_only, code_and_insurer, text_and_code])
    found = rules.match(failure("系统繁忙"))
    assert found is not None and found.rule_id == 3, "two fields each: rule 3 is newer than rule 2"
    found = rules.match(failure("another message"))
    assert found is not None and found.rule_id == 2, "the text rule does not match; two fields beat one"
    found = rules.match(failure("another message", insurer="beta"))
    assert found is not None and found.rule_id == 1
    newer = RuleSet([rule(7, error_code="E1001", age_s=10), rule(5, error_code="E1001")])
    found = newer.match(failure())
    assert found is not None and found.rule_id == 5, "same specificity: the later created_at"
    same_time = RuleSet([rule(8, error_code="E1001"), rule(9, error_code="E1001")])
    found = same_time.match(failure())
    assert found is not None and found.rule_id == 9, "same time: the higher rule_id"


def test_a_rule_needing_a_field_the_failure_lacks_never_matches() -> None:
    rules = RuleSet([rule(1, insurer="acme", message_contains="busy")])
    assert rules.match(Failure(None, "pay", None, "busy", None, None)) is None
    assert rules.match(Failure("acme", None, None, "busy", None, None)) is not None


# -- pinning ------------------------------------------------------------------------------------------


def test_pin_flips_the_decision_keeps_the_probability_and_explains_first() -> None:
    model_says = verdict(async_eligible=False, category="validation")
    pinned = pin(model_says, rule(4, error_code="E1001", reason="insurer retries these"))
    assert (pinned.async_eligible, pinned.probability, pinned.decided_by, pinned.rule_id) == (True, 0.1, "rule", 4)
    assert pinned.category is None, "flipped side without a category of its own: none"
    assert pinned.explanation[0] == {
        "kind": "rule",
        "feature": "rule:4",
        "weight": 0.0,
        "rule_id": 4,
        "reason": "insurer retries these",
        "model_async_eligible": False,
    }
    assert pinned.explanation[1:] == model_says.explanation
    assert model_async_eligible(pinned.explanation, pinned.async_eligible) is False
    assert model_async_eligible(model_says.explanation, False) is False
    assert pinned.as_dict()["decided_by"] == "rule" and pinned.as_dict()["rule_id"] == 4


def test_pin_category_is_the_rules_or_the_models_on_the_same_side() -> None:
    with_category = pin(verdict(False), rule(1, error_code="E1", category="insurer_busy"))
    assert with_category.category == "insurer_busy"
    same_side = pin(verdict(False, "validation"), rule(2, error_code="E1", decision="final"))
    assert (same_side.async_eligible, same_side.category) == (False, "validation")


def test_pin_never_keeps_exploration() -> None:
    explored = Verdict(False, 0.2, 0.35, None, "v1", [], exploration=True)
    assert pin(explored, rule(1, error_code="E1", decision="final")).exploration is False


# -- the store and the book ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/rules.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def stores(store_url: str):
    """Two stores on one database, as two processes would have."""
    engines = [create_db_engine(store_url), create_db_engine(store_url)]
    migrate(engines[0])
    yield OrderStore(engines[0]), OrderStore(engines[1])
    for engine in engines:
        engine.dispose()


def draft(**fields: Any) -> Any:
    return RuleDraft.model_validate({"decision": "async", "reason": "r"} | fields).new_rule()


def test_store_keeps_every_change_with_who_and_when(stores) -> None:
    store, _ = stores
    assert store.rules.rules_version() == 0
    first = store.rules.add_rule(draft(error_code="E1"), actor="alice", now=T0)
    second = store.rules.add_rule(draft(message_contains="busy"), actor="bob", now=T0 + dt.timedelta(seconds=1))
    removed = store.rules.delete_rule(first.rule_id, actor="carol", now=T0 + dt.timedelta(seconds=2))
    assert (removed.deleted_by, removed.deleted_at) == ("carol", T0 + dt.timedelta(seconds=2))
    version, live = store.rules.live_rules()
    assert [r.rule_id for r in live] == [second.rule_id] and version == store.rules.rules_version() == 3
    history = store.rules.rule_history()
    assert [(c.action, c.rule_id, c.actor) for c in history] == [
        ("deleted", first.rule_id, "carol"),
        ("created", second.rule_id, "bob"),
        ("created", first.rule_id, "alice"),
    ]
    assert store.rules.get_rule(first.rule_id) == removed, "a removed rule can still be looked up"
    with pytest.raises(RuleNotFound):
        store.rules.delete_rule(first.rule_id, actor="carol", now=T0)
    with pytest.raises(RuleNotFound):
        store.rules.delete_rule(999, actor="carol", now=T0)


def test_a_second_process_sees_a_change_at_its_next_poll(stores, serving_model: ServingModel) -> None:
    writer, reader = stores
    book_here, book_there = RuleBook(), RuleBook()
    book_there.load(reader, force=True)
    busy = failure(BUSY_MESSAGE, code="E1001")
    assert book_there.classify(serving_model, busy).decided_by == "model"
    made = writer.rules.add_rule(draft(error_code="E1001", decision="final"), actor="a", now=T0)
    assert book_here.load(writer), "the process that made the change reloads at once"
    assert book_there.classify(serving_model, busy).decided_by == "model", "until its poll"
    book_there.sync(reader)
    pinned = book_there.classify(serving_model, busy)
    assert (pinned.decided_by, pinned.rule_id, pinned.async_eligible) == ("rule", made.rule_id, False)
    assert not book_there.load(reader), "an unchanged version reloads nothing"
    writer.rules.delete_rule(made.rule_id, actor="a", now=T0)
    book_there.sync(reader)
    assert book_there.classify(serving_model, busy).decided_by == "model"


def test_hits_are_counted_in_memory_and_flushed_as_increments(stores, serving_model: ServingModel) -> None:
    one, two = stores
    made = one.rules.add_rule(draft(message_contains="繁忙", decision="final"), actor="a", now=T0)
    books = [RuleBook(), RuleBook()]
    for book, store in zip(books, stores, strict=True):
        book.load(store)
    for _ in range(3):
        books[0].classify(serving_model, failure(BUSY_MESSAGE))
    books[1].classify_many(serving_model, [failure(BUSY_MESSAGE), failure(FINAL_MESSAGE)])
    assert one.rules.get_rule(made.rule_id).hits == 0, "nothing is written per classification"
    assert books[0].pending_hits() == {made.rule_id: (3, 3)}, "the model alone says async: each hit overrides it"
    assert books[0].flush(one) == 3 and books[1].flush(two) == 1
    assert books[0].flush(one) == 0, "each hit is flushed once"
    stored = one.rules.get_rule(made.rule_id)
    assert stored is not None and (stored.hits, stored.overrides) == (4, 4)
    agreeing = one.rules.add_rule(draft(error_code="E2001", decision="final"), actor="a", now=T0)
    books[0].load(one)
    books[0].classify(serving_model, failure(FINAL_MESSAGE, code="E2001"))
    books[0].flush(one)
    stored = one.rules.get_rule(agreeing.rule_id)
    assert stored is not None and (stored.hits, stored.overrides) == (1, 0), "the model agrees: no override"


def test_hits_survive_a_failed_flush(stores, serving_model: ServingModel, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = stores
    made = store.rules.add_rule(draft(error_code="E1001"), actor="a", now=T0)
    book = RuleBook()
    book.load(store)
    book.classify(serving_model, failure())

    def down(hits: Any) -> None:
        raise StoreUnavailable("down")

    monkeypatch.setattr(store.rules, "add_rule_hits", down)
    with pytest.raises(StoreUnavailable):
        book.flush(store)
    monkeypatch.undo()
    assert book.pending_hits() == {made.rule_id: (1, 0)}
    assert book.flush(store) == 1 and store.rules.get_rule(made.rule_id).hits == 1


def test_import_adds_what_is_missing_all_or_nothing_and_replace_removes_the_rest(stores) -> None:
    store, _ = stores
    kept = store.rules.add_rule(draft(error_code="E1"), actor="a", now=T0)
    gone = store.rules.add_rule(draft(error_code="E2"), actor="a", now=T0)
    added, already, removed = store.rules.import_rules(
        [draft(error_code="E1"), draft(error_code="E3"), draft(error_code="E3")], actor="cli", now=T0, replace=True
    )
    assert [r.error_code for r in added] == ["E3"] and [r.rule_id for r in already] == [kept.rule_id]
    assert [r.rule_id for r in removed] == [gone.rule_id]
    assert sorted(r.error_code or "" for r in store.rules.live_rules()[1]) == ["E1", "E3"]
    before = store.rules.rules_version()
    refused = NewRule(None, None, "E6", None, None, None, "r")  # type: ignore[arg-type]  # no decision: NOT NULL
    with pytest.raises(sa.exc.IntegrityError):
        store.rules.import_rules([draft(error_code="E5"), refused], actor="cli", now=T0)
    assert store.rules.rules_version() == before, "a failing import writes nothing"
    assert "E5" not in {r.error_code for r in store.rules.live_rules()[1]}


def test_a_rules_decision_is_never_explored() -> None:
    from service.learning.drift import Familiarity
    from service.learning.watch import ExplorationPolicy

    policy = ExplorationPolicy(rate=1.0, min_probability=0.0, floor_probability=0.0)
    unsure = Verdict(False, 0.3, 0.35, None, "v1", [])
    familiar = Familiarity(1.0, True, False)
    assert policy.eligible(unsure, familiar, unknown=False), "the model's own final verdict may be explored"
    assert not policy.eligible(pin(unsure, rule(1, error_code="E1", decision="final")), familiar, unknown=False)
