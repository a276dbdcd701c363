"""Operators' rules over HTTP (docs/contract.md §7; admin role, enforced by the API-key middleware for /admin).

POST   /admin/rules             201 with the new rule and its rule_id; 422 naming the field at fault
GET    /admin/rules             {"rules": [...]}: the live rules, oldest first, with created_at/by and hits
DELETE /admin/rules/{rule_id}   204; 404 when no live rule has that id (the rule stays in the history)
GET    /admin/rules/history     {"changes": [...]}: every creation and removal, newest first, with who and when

`created_by`/`actor` is the name of the API key (service/api/auth.py), "anonymous" without keys. The
process that makes a change applies it at once; the others within `rules_poll_s` (service/rules.py).
`hits` is what the processes have flushed so far: each flushes its counts every `rules_poll_s`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel

from service.api.auth import principal
from service.api.deps import RulesDep, StoreDep
from service.rules import RuleDraft
from service.store import RuleChange, RuleRecord

router = APIRouter(prefix="/admin/rules", tags=["rules"])


class RuleOut(BaseModel):
    rule_id: int
    insurer: str | None
    operation: str | None
    error_code: str | None
    message_contains: str | None
    decision: str
    category: str | None
    reason: str
    created_at: dt.datetime
    created_by: str
    hits: int
    overrides: int  # of the hits, how many the model alone would have decided the other way
    deleted_at: dt.datetime | None = None
    deleted_by: str | None = None


class RuleList(BaseModel):
    rules: list[RuleOut]


class RuleChangeOut(BaseModel):
    change_id: int
    rule_id: int
    action: str
    at: dt.datetime
    actor: str
    rule: RuleOut


class RuleHistory(BaseModel):
    changes: list[RuleChangeOut]


def rule_out(rule: RuleRecord) -> RuleOut:
    return RuleOut(
        rule_id=rule.rule_id,
        insurer=rule.insurer,
        operation=rule.operation,
        error_code=rule.error_code,
        message_contains=rule.message_contains,
        decision=rule.decision,
        category=rule.category,
        reason=rule.reason,
        created_at=rule.created_at,
        created_by=rule.created_by,
        hits=rule.hits,
        overrides=rule.overrides,
        deleted_at=rule.deleted_at,
        deleted_by=rule.deleted_by,
    )


def change_out(change: RuleChange) -> RuleChangeOut:
    return RuleChangeOut(
        change_id=change.change_id,
        rule_id=change.rule_id,
        action=change.action,
        at=change.at,
        actor=change.actor,
        rule=rule_out(change.rule),
    )


RuleId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.post("", status_code=201, response_model=RuleOut, responses={422: {"description": "names the field at fault"}})
async def add_rule(draft: RuleDraft, request: Request, store: StoreDep, rules: RulesDep) -> RuleOut:
    """Pin the decision on the failures this rule matches; every process applies it within 5 s."""
    actor = principal(request)

    def write() -> RuleRecord:
        rule = store.rules.add_rule(draft.new_rule(), actor=actor, now=dt.datetime.now(dt.UTC))
        rules.load(store)
        return rule

    return rule_out(await anyio.to_thread.run_sync(write))


@router.get("", response_model=RuleList)
async def list_rules(store: StoreDep) -> RuleList:
    """The live rules, oldest first, with how many failures each decided (as flushed so far)."""
    _, live = await anyio.to_thread.run_sync(store.rules.live_rules)
    return RuleList(rules=[rule_out(r) for r in live])


@router.get("/history", response_model=RuleHistory)
async def rule_history(store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> RuleHistory:
    """Every creation and removal of a rule, newest first: who, when, and the rule."""
    changes = await anyio.to_thread.run_sync(lambda: store.rules.rule_history(limit=limit))
    return RuleHistory(changes=[change_out(c) for c in changes])


@router.delete("/{rule_id}", status_code=204, responses={404: {"description": "no live rule with that id"}})
async def delete_rule(rule_id: RuleId, request: Request, store: StoreDep, rules: RulesDep) -> Response:
    """Remove a rule: it stops applying (here at once, elsewhere within 5 s) and stays in the history."""
    actor = principal(request)

    def write() -> None:
        store.rules.delete_rule(rule_id, actor=actor, now=dt.datetime.now(dt.UTC))
        rules.load(store)

    await anyio.to_thread.run_sync(write)
    return Response(status_code=204)
