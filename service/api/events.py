"""Order events (docs/contract.md §8): the feed GET /events and POST /admin/events/{event_id}/redeliver.

GET  /events?after=<cursor>&limit=<1..1000>   {"events": [...], "next_cursor": "..."}, oldest first (read role)
POST /admin/events/{event_id}/redeliver       a failed or delivered event back to pending, due now (admin role)

The feed's bodies are the stored event documents, spliced into the answer as they are (no parse and
re-encode), so the feed and the webhook send the very same bytes for an event.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from service.api.deps import StoreDep
from service.processing import utcnow
from service.store.events import MAX_FEED_LIMIT, EventRecord

router = APIRouter(tags=["events"])

EventId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^evt_[0-9a-f]+$")]


@router.get(
    "/events",
    responses={
        200: {
            "description": "a page of events, oldest first",
            "content": {"application/json": {"example": {"events": [], "next_cursor": "ZXYxfDB8MA"}}},
        }
    },
)
async def feed(
    store: StoreDep,
    after: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_FEED_LIMIT)] = 100,
) -> Response:
    """Events past `after` (none: from the first); follow `next_cursor`, which is always given. An empty
    `events` means caught up: poll again later with the same cursor."""
    bodies, next_cursor = await anyio.to_thread.run_sync(lambda: store.events.feed(after=after, limit=limit))
    content = b'{"events":[' + ",".join(bodies).encode("utf-8") + b'],"next_cursor":' + orjson.dumps(next_cursor) + b"}"
    return Response(content, media_type="application/json")


def delivery_out(event: EventRecord) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "order_id": event.order_id,
        "to_state": event.to_state,
        "delivery_state": event.delivery_state,
        "delivery_attempts": event.delivery_attempts,
        "next_attempt_at": event.next_attempt_at.isoformat() if event.next_attempt_at else None,
        "last_status": event.last_status,
        "last_error": event.last_error,
    }


@router.post(
    "/admin/events/{event_id}/redeliver",
    responses={404: {"description": "no such event"}, 409: {"description": "the event is already pending"}},
)
async def redeliver(event_id: EventId, store: StoreDep) -> dict[str, Any]:
    """Send a failed (or delivered) event again: pending, due now, with a fresh maximum age."""
    event = await anyio.to_thread.run_sync(lambda: store.events.redeliver(event_id, now=utcnow()))
    return delivery_out(event)
