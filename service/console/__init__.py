"""The operations console at /console: server-rendered pages for the people who watch async orders.

`install_console(app, settings)` (called by create_app) adds the pages (Overview, Orders, one order's
timeline, Failures, Rules, Model, Events), the login and requeue actions, the static files (Chart.js, vendored from
the npm registry, plus a little JavaScript and CSS: no CDN, works offline) and the HTML answers to
the console's own exceptions. Nothing is opened or read at import.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from service.api.auth import ApiKeys
from service.config import Settings
from service.console import actions, events, pages
from service.console.access import ConsoleAccessDenied, ConsoleLoginRequired, CrossSiteRequest
from service.console.activity import ActivityCache
from service.console.render import PREFIX, STATIC_DIR, Renderer

__all__ = ["install_console"]


def install_console(app: FastAPI, settings: Settings) -> None:
    """Mount the console on `app`; its access follows `settings.api_keys` (open when there are none)."""
    app.state.console = Renderer()
    app.state.console_activity = ActivityCache()
    app.state.console_keys = ApiKeys.parse(settings.api_keys) if settings.api_keys else None
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.include_router(events.router)  # the Events page (docs/contract.md §8)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="console-static")

    async def login_required(request: Request, exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303)

    async def denied(request: Request, exc: Exception) -> Response:
        renderer: Renderer = request.app.state.console
        return renderer.page(request, "denied.html", "login", status_code=403, reason=str(exc))

    async def cross_site(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("cross-site console actions are refused", status_code=403)

    app.add_exception_handler(ConsoleLoginRequired, login_required)
    app.add_exception_handler(ConsoleAccessDenied, denied)
    app.add_exception_handler(CrossSiteRequest, cross_site)
