"""Operators' rules (docs/contract.md §7): pin the decision on failures the model gets wrong, without retraining.

    draft = RuleDraft.model_validate({"error_code": "E1001", "decision": "async", "reason": "..."})
    rule = store.rules.add_rule(draft.new_rule(), actor="ops-alice", now=now)
    verdict = book.classify(model, failure)      # the model's verdict, pinned by the best rule if one matches

Matching. A rule's `insurer` and `operation` match the failure's exactly, as given (case-sensitive:
they are identifiers the platform sends); its `error_code` matches the failure's code exactly after
stripping surrounding blanks on both sides (blank codes are no code); `message_contains` matches when,
after Unicode NFKC and case-folding of both, it is a substring of the failure's raw `error_message`.
A null field matches anything, but `error_code` and `message_contains` are never both null. When
several rules match, the most specific wins: more non-null match fields, then the newest (latest
`created_at`, then highest `rule_id`).

Deciding. The pinned verdict's `async_eligible` is the rule's decision, `probability` stays the model's
(so disagreements stay visible), `decided_by` is "rule" with its `rule_id`, and an explanation item
`{"kind": "rule", "feature": "rule:<id>", "weight": 0.0, "rule_id", "reason", "model_async_eligible"}`
goes first. The category is the rule's when it names one; otherwise the model's when the rule keeps the
model's side, and null when it flips it (the model's category would name a cause on the other side).
A rule-decided verdict is never explored (service/learning/watch.py).

Speed. `RuleSet` compiles the live rules into buckets keyed by the (insurer, operation, code) fields
each rule sets, so a lookup is at most eight dict reads plus the message check of the few rules in the
buckets hit; the message is normalized only when such a rule needs it. With no rules, `apply` is one
attribute read and a truth test.

Propagation. Each process holds a `RuleBook`; `RuleBook.run` polls the store every `rules_poll_s`
seconds: it flushes the hits counted in memory since the last poll (one `UPDATE ... SET hits = hits + n`
per rule, and as much to `overrides` for the hits where the model alone would have decided the other
way) and reloads the set when the version (the latest rule change's id) moved. A process that
changes the rules reloads at once (`RuleBook.load`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Final, Literal

import anyio
import anyio.to_thread
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from model.records import Failure
from model.schema import CATEGORIES
from service.scoring import ServingModel, Verdict
from service.store import NewRule, OrderStore, RuleRecord, StoreUnavailable

log = logging.getLogger("asyncgate.rules")

Decision = Literal["async", "final"]
MATCH_FIELDS: Final = ("insurer", "operation", "error_code", "message_contains")
NO_NUL: Final = r"^[^\x00]*$"


def _blank_is_none(value: Any) -> Any:
    """'' or all-blank text is null (any); other values go on to the field's own checks."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _stripped(value: Any) -> Any:
    value = _blank_is_none(value)
    return value.strip() if isinstance(value, str) else value


def _trimmed(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


_Blank = BeforeValidator(_blank_is_none)
_Strip = BeforeValidator(_stripped)
# the bounds sit on the inner type (on the `| None` union they would be applied to None)
_Insurer = Annotated[Annotated[str, Field(max_length=128, pattern=NO_NUL)] | None, _Blank]
_Operation = Annotated[Annotated[str, Field(max_length=64, pattern=NO_NUL)] | None, _Blank]
_Code = Annotated[Annotated[str, Field(max_length=256, pattern=NO_NUL)] | None, _Strip]
_Contains = Annotated[Annotated[str, Field(max_length=512, pattern=NO_NUL)] | None, _Blank]
_Category = Annotated[Annotated[str, Field(max_length=64)] | None, _Strip]


class RuleDraft(BaseModel):
    """A rule as an operator writes it (POST /admin/rules, the CLI, an imported file, the console).

    Blank text is null. Errors name the field: an unknown decision, both `error_code` and
    `message_contains` null, an empty reason, a category that is unknown or on the other side of the
    decision, text over its length limit or holding a NUL character, or an unknown field.
    """

    model_config = ConfigDict(extra="forbid")

    insurer: _Insurer = None
    operation: _Operation = None
    error_code: _Code = None
    message_contains: Annotated[_Contains, Field(validate_default=True)] = None
    decision: Decision
    category: _Category = None
    reason: Annotated[str, Field(min_length=1, max_length=1000, pattern=NO_NUL), BeforeValidator(_trimmed)]

    @field_validator("message_contains")
    @classmethod
    def _something_to_match(cls, value: str | None, info: ValidationInfo) -> str | None:
        # a failed error_code is absent from info.data: its own error says what is wrong
        if value is None and "error_code" in info.data and info.data["error_code"] is None:
            raise ValueError("error_code and message_contains cannot both be null: a rule must match a code or a text")
        return value

    @field_validator("category")
    @classmethod
    def _known_category_on_the_decisions_side(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if value not in CATEGORIES:
            raise ValueError(f"unknown category {value!r}; categories are {', '.join(CATEGORIES)}")
        decision = info.data.get("decision")
        if decision is not None and CATEGORIES[value] != (decision == "async"):
            side = "async-eligible" if CATEGORIES[value] else "final"
            raise ValueError(f"category {value!r} is {side}; it cannot go with decision {decision!r}")
        return value

    def new_rule(self) -> NewRule:
        return NewRule(**self.model_dump())


def normalize(text: str) -> str:
    """What message matching compares: NFKC, then case-folded."""
    return unicodedata.normalize("NFKC", text).casefold()


@dataclasses.dataclass(frozen=True, slots=True)
class _Compiled:
    rule: RuleRecord
    needle: str | None
    rank: tuple[int, Any, int]


#: Which of (insurer, operation, error_code) a bucket's rules set.
_Pattern = tuple[bool, bool, bool]


class RuleSet:
    """The live rules of one version, compiled for lookup (immutable: a reload builds a new one)."""

    def __init__(self, rules: Iterable[RuleRecord] = (), version: int = 0):
        self.version = version
        self.rules: tuple[RuleRecord, ...] = tuple(rules)
        buckets: dict[_Pattern, dict[tuple[str, ...], list[_Compiled]]] = {}
        for rule in self.rules:
            pattern = (rule.insurer is not None, rule.operation is not None, rule.error_code is not None)
            key = tuple(v for v in (rule.insurer, rule.operation, rule.error_code) if v is not None)
            specificity = sum(getattr(rule, name) is not None for name in MATCH_FIELDS)
            needle = None if rule.message_contains is None else normalize(rule.message_contains)
            compiled = _Compiled(rule, needle, (specificity, rule.created_at, rule.rule_id))
            buckets.setdefault(pattern, {}).setdefault(key, []).append(compiled)
        for by_key in buckets.values():
            for bucket in by_key.values():
                bucket.sort(key=lambda c: c.rank, reverse=True)
        self._buckets = {pattern: {k: tuple(v) for k, v in by_key.items()} for pattern, by_key in buckets.items()}

    def __len__(self) -> int:
        return len(self.rules)

    def match(self, failure: Failure) -> RuleRecord | None:
        """The most specific (then newest) live rule matching `failure`, or None."""
        if not self._buckets:
            return None
        code = None if failure.error_code is None else (failure.error_code.strip() or None)
        fields = (failure.insurer, failure.operation, code)
        message: str | None = None
        best: _Compiled | None = None
        for pattern, by_key in self._buckets.items():
            key = []
            for wanted, value in zip(pattern, fields, strict=True):
                if wanted:
                    if value is None:
                        break
                    key.append(value)
            else:
                bucket = by_key.get(tuple(key))
                if bucket is None:
                    continue
                for candidate in bucket:  # best first: the first that matches is this bucket's best
                    if best is not None and candidate.rank <= best.rank:
                        break
                    if candidate.needle is not None:
                        if message is None:
                            message = normalize(failure.error_message)
                        if candidate.needle not in message:
                            continue
                    best = candidate
                    break
        return None if best is None else best.rule


def pin(verdict: Verdict, rule: RuleRecord) -> Verdict:
    """The model's `verdict` with the decision pinned by `rule` (module docstring: Deciding)."""
    eligible = rule.decision == "async"
    category = rule.category or (verdict.category if eligible == verdict.async_eligible else None)
    item = {
        "kind": "rule",
        "feature": f"rule:{rule.rule_id}",
        "weight": 0.0,
        "rule_id": rule.rule_id,
        "reason": rule.reason,
        "model_async_eligible": verdict.async_eligible,
    }
    return dataclasses.replace(
        verdict,
        async_eligible=eligible,
        category=category,
        explanation=[item, *verdict.explanation],
        decided_by="rule",
        rule_id=rule.rule_id,
        exploration=False,
    )


def model_async_eligible(explanation: Any, async_eligible: bool | None) -> bool | None:
    """What the model alone decided for a stored classification: the rule item's record of it when a rule
    decided (the first explanation item), else the stored decision."""
    if isinstance(explanation, list) and explanation:
        first = explanation[0]
        if isinstance(first, dict) and first.get("kind") == "rule":
            value = first.get("model_async_eligible")
            return value if isinstance(value, bool) else None
    return async_eligible


class RuleBook:
    """One process's rules: the compiled live set, the hits counted since the last flush, and the poll."""

    def __init__(self, rules: RuleSet | None = None):
        self.current = rules or RuleSet()
        self._hits: dict[int, tuple[int, int]] = {}  # rule_id → (hits, overrides) since the last flush
        self._lock = threading.Lock()

    # -- the hot path -------------------------------------------------------------------------------

    def apply(self, failure: Failure, verdict: Verdict) -> Verdict:
        """`verdict` pinned by the rule that matches `failure` (counted as a hit), or `verdict` unchanged."""
        current = self.current
        if not current.rules:
            return verdict
        rule = current.match(failure)
        if rule is None:
            return verdict
        overridden = int((rule.decision == "async") != verdict.async_eligible)
        with self._lock:
            hits, overrides = self._hits.get(rule.rule_id, (0, 0))
            self._hits[rule.rule_id] = (hits + 1, overrides + overridden)
        return pin(verdict, rule)

    def classify(self, model: ServingModel, failure: Failure) -> Verdict:
        """The one classification of a failure everywhere (API, /process, worker): the model, then the rules."""
        return self.apply(failure, model.classify(failure))

    def classify_many(self, model: ServingModel, failures: Sequence[Failure]) -> list[Verdict]:
        return [self.classify(model, f) for f in failures]

    # -- keeping up with the database ---------------------------------------------------------------

    def load(self, store: OrderStore, *, force: bool = False) -> bool:
        """Reload the live rules when their version moved (or with `force`); True when a new set was loaded."""
        if not force and store.rules.rules_version() == self.current.version:
            return False
        version, rules = store.rules.live_rules()
        previous, self.current = self.current, RuleSet(rules, version)
        if previous.version != version:
            log.info("rules version %s: %s live rules", version, len(rules), extra={"rules_version": version})
        return True

    def pending_hits(self) -> dict[int, tuple[int, int]]:
        """(hits, overrides) per rule counted since the last flush."""
        with self._lock:
            return dict(self._hits)

    def flush(self, store: OrderStore) -> int:
        """Add the hits (and overrides) counted since the last flush to the rules; returns the hits. Kept
        for the next flush when the database is unavailable (StoreUnavailable is raised)."""
        with self._lock:
            hits, self._hits = self._hits, {}
        if not hits:
            return 0
        try:
            store.rules.add_rule_hits(hits)
        except Exception:
            with self._lock:
                for rule_id, (n, overridden) in hits.items():
                    before = self._hits.get(rule_id, (0, 0))
                    self._hits[rule_id] = (before[0] + n, before[1] + overridden)
            raise
        return sum(n for n, _ in hits.values())

    def sync(self, store: OrderStore) -> None:
        """One poll: flush the hits, then reload the set if it changed."""
        self.flush(store)
        self.load(store)

    async def run(self, store: OrderStore, interval_s: float) -> None:
        """Poll every `interval_s` seconds until cancelled; a database outage is logged and waited out."""
        while True:
            await anyio.sleep(interval_s)
            try:
                await anyio.to_thread.run_sync(self.sync, store)
            except StoreUnavailable as exc:
                log.warning("rules not synchronised, database unavailable: %s", exc)

    async def close(self, store: OrderStore) -> None:
        """The last flush when the process stops (shielded from cancellation)."""
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(self.flush, store)
            except StoreUnavailable as exc:
                log.warning("rule hits not flushed at shutdown, database unavailable: %s", exc)
