"""Renders the console's Jinja2 templates (autoescaped) with the filters they use and the viewer's access.

Every page gets `access` (open / role), `nav` (the current page), `now` and `prefix` (the console's
mount path); times are shown in UTC.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Final

from fastapi import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from service.console.access import request_access
from service.console.highlight import highlight

TEMPLATES_DIR: Final = Path(__file__).with_name("templates")
STATIC_DIR: Final = Path(__file__).with_name("static")
PREFIX: Final = "/console"


def fmt_time(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """ "3 min ago" / "in 12 s" relative to `now` (default: now)."""
    if value is None:
        return "—"
    seconds = ((now or dt.datetime.now(dt.UTC)) - value).total_seconds()
    magnitude = abs(seconds)
    for limit, unit, size in ((120, "s", 1), (7200, "min", 60), (172_800, "h", 3600)):
        if magnitude < limit:
            text = f"{magnitude / size:.0f} {unit}"
            break
    else:
        text = f"{magnitude / 86_400:.1f} d"
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def fmt_num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    env.filters.update(time=fmt_time, ago=fmt_ago, pct=fmt_pct, num=fmt_num, ms=fmt_ms, highlight=highlight)
    env.globals["prefix"] = PREFIX
    env.trim_blocks = True
    env.lstrip_blocks = True
    return templates


class Renderer:
    """Holds the template environment (built once per app) and renders pages."""

    def __init__(self) -> None:
        self.templates = make_templates()

    def page(self, request: Request, name: str, nav: str, status_code: int = 200, **context: Any) -> Response:
        values = {"access": request_access(request), "nav": nav, "now": dt.datetime.now(dt.UTC), **context}
        return self.templates.TemplateResponse(request, name, values, status_code=status_code)
