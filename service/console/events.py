"""The console's Events page (docs/contract.md §8): delivery lag, failed deliveries with their last error
and a redeliver button (admin role), and the latest events with their delivery state.

GET  /console/events                          the page (read role)
POST /console/events/{event_id}/redeliver     a failed (or delivered) event back to pending; admin, same site
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from service.api.auth import Role
from service.api.deps import SettingsDep, StoreDep
from service.console.access import check_same_site, require
from service.console.pages import ReaderDep, RendererDep
from service.console.render import PREFIX
from service.events.delivery import endpoint_label
from service.store.events import EventNotFound, EventPending

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/events")
async def events_page(
    request: Request,
    access: ReaderDep,
    page: RendererDep,
    store: StoreDep,
    settings: SettingsDep,
    redelivered: str | None = None,
    error: str | None = None,
) -> Response:
    """How far delivery lags, what failed and why, and the latest events."""

    def read() -> tuple[Any, ...]:
        return store.events.summary(), store.events.failed(limit=100), store.events.recent(limit=50)

    summary, failed, recent = await anyio.to_thread.run_sync(read)
    now = dt.datetime.now(dt.UTC)
    lag_s = (now - summary.oldest_pending_at).total_seconds() if summary.oldest_pending_at else 0.0
    configured = bool(settings.webhook_url and settings.webhook_secret)
    notice = f"Event {redelivered} will be delivered again." if redelivered else None
    return page.page(
        request,
        "events.html",
        "events",
        status_code=409 if error else 200,
        summary=summary,
        lag_s=lag_s,
        failed=failed,
        recent=recent,
        endpoint=endpoint_label(settings.webhook_url) if configured else None,
        max_age_s=settings.webhook_max_age_s,
        can_redeliver=access.can_admin,
        notice=notice,
        error=error,
    )


@router.post("/events/{event_id}/redeliver")
async def redeliver(request: Request, page: RendererDep, store: StoreDep, event_id: str) -> Response:
    """Send the event again (pending, due now, a fresh maximum age); admin only."""
    check_same_site(request)
    require(request, Role.ADMIN, "Redelivering an event")
    try:
        await anyio.to_thread.run_sync(lambda: store.events.redeliver(event_id, now=dt.datetime.now(dt.UTC)))
    except EventNotFound:
        return page.page(request, "missing.html", "events", status_code=404, what=f"event {event_id!r}")
    except EventPending as exc:
        return RedirectResponse(f"{PREFIX}/events?error={quote(str(exc), safe='')}", status_code=303)
    return RedirectResponse(f"{PREFIX}/events?redelivered={quote(event_id, safe='')}", status_code=303)
