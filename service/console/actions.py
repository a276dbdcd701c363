"""The console's actions: log in and out (the key in a cookie), requeue a FAILED or DEAD order, and add or
remove an operators' rule (service/rules.py) — the last three need the admin role.

Forms are posted as application/x-www-form-urlencoded and parsed here (no multipart dependency);
every POST refuses a browser's cross-site request.
"""

from __future__ import annotations

import datetime as dt
from typing import Final
from urllib.parse import parse_qs, quote

import anyio.to_thread
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from service.api.auth import Role
from service.api.deps import RulesDep, StoreDep
from service.console.access import COOKIE, COOKIE_PATH, access_for, check_same_site, request_access, require
from service.console.pages import RendererDep, render_order, render_rules
from service.console.render import PREFIX
from service.rules import RuleDraft
from service.store import InvalidTransition, OrderNotFound, RuleNotFound
from service.store.records import RULE_FIELDS

router = APIRouter(prefix="/console", include_in_schema=False)

MAX_FORM_BYTES: Final = 4096
COOKIE_MAX_AGE_S: Final = 12 * 3600


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    fields = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _safe_next(target: str | None) -> str:
    """Only paths inside the console: never redirect elsewhere."""
    if target and target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"


@router.get("/login")
async def login_form(request: Request, page: RendererDep, next: str | None = None) -> Response:
    """The login form (with keys configured)."""
    return page.page(request, "login.html", "login", next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request, page: RendererDep) -> Response:
    """Check the key; on success store it in the console cookie and go on to `next`."""
    check_same_site(request)
    form = await _form(request)
    key = form.get("key", "").strip()
    target = _safe_next(form.get("next"))
    access = access_for(getattr(request.app.state, "console_keys", None), key)
    if access.open:
        return RedirectResponse(target, status_code=303)
    if access.role is None:
        return page.page(request, "login.html", "login", status_code=401, next=target, error="Unknown API key.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        key,
        max_age=COOKIE_MAX_AGE_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    check_same_site(request)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


@router.post("/orders/{order_id}/requeue")
async def requeue(request: Request, page: RendererDep, store: StoreDep, order_id: str) -> Response:
    """FAILED or DEAD → ASYNC_PROCESSING, due now, with a fresh retry budget; needs the admin role."""
    check_same_site(request)
    access = require(request, Role.ADMIN, "Requeueing an order")
    actor = "console" if access.open else f"console:{access.role_name}"
    try:
        await anyio.to_thread.run_sync(lambda: store.requeue(order_id, actor=actor, now=dt.datetime.now(dt.UTC)))
    except OrderNotFound:
        return page.page(request, "missing.html", "orders", status_code=404, what=f"order {order_id!r}")
    except InvalidTransition as error:
        return await render_order(
            request, page, store, request_access(request), order_id, error=str(error), status_code=409
        )
    return RedirectResponse(f"{PREFIX}/orders/{quote(order_id, safe='')}?requeued=1", status_code=303)


@router.post("/rules")
async def add_rule(request: Request, page: RendererDep, store: StoreDep, rules: RulesDep) -> Response:
    """Make an operators' rule from the form (the Rules page, or a failure group's "pin" form); admin only."""
    check_same_site(request)
    access = require(request, Role.ADMIN, "Changing operators' rules")
    form = await _form(request)
    fields = {name: form.get(name, "") for name in RULE_FIELDS}
    try:
        draft = RuleDraft.model_validate(fields)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return await render_rules(request, page, store, access, errors=problems, form=fields, status_code=422)

    def write() -> int:
        rule = store.rules.add_rule(draft.new_rule(), actor=access.who, now=dt.datetime.now(dt.UTC))
        rules.load(store)
        return rule.rule_id

    rule_id = await anyio.to_thread.run_sync(write)
    return RedirectResponse(f"{PREFIX}/rules?created={rule_id}", status_code=303)


@router.post("/rules/{rule_id}/remove")
async def remove_rule(request: Request, page: RendererDep, store: StoreDep, rules: RulesDep, rule_id: int) -> Response:
    """Remove a rule (it stays in the history); admin only."""
    check_same_site(request)
    access = require(request, Role.ADMIN, "Changing operators' rules")

    def write() -> None:
        store.rules.delete_rule(rule_id, actor=access.who, now=dt.datetime.now(dt.UTC))
        rules.load(store)

    try:
        await anyio.to_thread.run_sync(write)
    except RuleNotFound as error:
        return await render_rules(request, page, store, access, errors=[str(error)], status_code=404)
    return RedirectResponse(f"{PREFIX}/rules?removed={rule_id}", status_code=303)
