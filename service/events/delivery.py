"""Webhook delivery (docs/contract.md §8): claim due events under a lease, POST them signed, record the answer.

Every `asyncgate serve` and `asyncgate worker` process with ASYNCGATE_WEBHOOK_URL and
ASYNCGATE_WEBHOOK_SECRET runs one `Deliverer` (started by service/runtime.py). The loop:

1. once half its slots (or all) are free, claim that many due events (`EventStore.claim_deliveries`:
   pending, due, lease free, every earlier event of the order delivered), leased for `lease_s`;
2. POST each at once (at most `concurrency` at a time per process to the one endpoint), signed with a
   fresh `webhook-timestamp`, no redirects followed, within `timeout_s` for the whole try; through the
   same HTTP seam as the insurer calls (service/gateway/transport.py: aiohttp, its own pool);
3. 2xx: the acknowledgement is queued and written in batches (a few ms later); then the loop is woken,
   since the order's next event may now be due. Anything else: the try is recorded at once with the
   next due time (service/events/backoff.py), or `failed` when the maximum age is spent.

A lease is far longer than a try (`lease_s` > 2 x the timeout), so no other process sends the event
while this one may still be sending it. When the process stops, queued acknowledgements are written
and the leases of events not yet answered are given back. A process that dies loses nothing: its
leases expire and another process sends those events again (at least once: receivers deduplicate by
`webhook-id`, the event_id). Nothing here logs the secret or the signature.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from yarl import URL

from service.config import Settings
from service.errors import AsyncgateError
from service.events.backoff import DeliveryBackoff
from service.events.signing import WEAK_KEY_BYTES, Signer
from service.gateway.transport import AiohttpTransport, HttpTransport, TransportError
from service.metrics import Metrics
from service.store import StoreUnavailable
from service.store.events import EventRecord, EventStore

log = logging.getLogger("asyncgate.events")

#: How long acknowledgements wait to be written together.
ACK_FLUSH_S: Final = 0.02
#: The most of a refusal's body kept as its last_error.
ERROR_BODY_CHARS: Final = 200
#: The transport's pool of the webhook endpoint (the insurers' pools are named after them).
POOL: Final = "webhook"


class WebhookConfigInvalid(AsyncgateError, ValueError):
    """Webhook delivery is misconfigured: {problem}"""

    def __init__(self, problem: str) -> None:
        super().__init__(problem=problem)


@dataclass(frozen=True)
class Outcome:
    """One try's answer: `kind` is acknowledged, rejected (an HTTP answer that is not 2xx), timeout or unreachable."""

    kind: str
    status: int | None
    error: str

    @property
    def acknowledged(self) -> bool:
        return self.kind == "acknowledged"


def endpoint_label(url: str) -> str:
    """The URL without credentials, query or fragment, for logs and the console."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_url(url: str) -> str:
    """The URL as sent: an http(s) URL with a host, percent-encoded where it needs to be (once)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookConfigInvalid(f"ASYNCGATE_WEBHOOK_URL must be an http(s) URL, got {endpoint_label(url)!r}")
    try:
        return str(URL(url))
    except ValueError as exc:
        raise WebhookConfigInvalid(f"ASYNCGATE_WEBHOOK_URL is not a valid URL: {endpoint_label(url)!r}") from exc


class Deliverer:
    """The delivery loop of one process (see the module docstring); `run()` until cancelled."""

    def __init__(
        self,
        events: EventStore,
        signer: Signer,
        backoff: DeliveryBackoff,
        metrics: Metrics,
        *,
        url: str,
        owner: str,
        lease_s: float = 60.0,
        batch: int = 100,
        concurrency: int = 16,
        timeout_s: float = 10.0,
        poll_s: float = 0.5,
        rng: random.Random | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        transport: HttpTransport | None = None,
    ) -> None:
        if lease_s <= 2 * timeout_s:
            raise WebhookConfigInvalid(
                f"the delivery lease ({lease_s} s) must be longer than twice the timeout ({timeout_s} s)"
            )
        self.events = events
        self.signer = signer
        self.backoff = backoff
        self.metrics = metrics
        self.url = check_url(url)
        self.owner = owner
        self.lease_s = lease_s
        self.batch = batch
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.rng = rng or random.Random()
        self.clock = clock
        # no proxy from the environment: the webhook endpoint is named explicitly, like the database
        self.transport = transport or AiohttpTransport(connections_per_insurer=concurrency, trust_env=False)
        self._owns_transport = transport is None
        self._slots = anyio.Semaphore(concurrency)
        self._wake = anyio.Event()
        self._acks_ready = anyio.Event()
        self._acks: list[tuple[EventRecord, int]] = []
        self._leased: set[int] = set()
        self._store_down_logged = False

    def _wake_up(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        log.info("delivering events to %s", endpoint_label(self.url), extra={"owner": self.owner})
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._flush_acks_forever)
                while True:
                    try:
                        await self._claim_and_send(tasks)
                    except Exception:  # a bug or an unexpected database error must not stop serve or the worker
                        log.exception("event delivery: claim failed unexpectedly", extra={"owner": self.owner})
                        await anyio.sleep(self.poll_s)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._flush_acks()
                unanswered = sorted(self._leased)
                if unanswered:
                    try:
                        await anyio.to_thread.run_sync(lambda: self.events.release_deliveries(self.owner, unanswered))
                    except StoreUnavailable:
                        pass  # their leases expire
                if self._owns_transport:
                    await self.transport.aclose()
            log.info("event delivery stopped", extra={"owner": self.owner})

    async def _claim_and_send(self, tasks: anyio.abc.TaskGroup) -> None:
        free = int(self._slots.value)
        if free < max(1, self.concurrency // 2) and free < self.concurrency:
            await self._wait(None)  # claim in batches: when half the slots are free, or all of them
            return
        try:
            claimed = await anyio.to_thread.run_sync(
                lambda: self.events.claim_deliveries(
                    self.owner, batch=min(self.batch, free), lease_s=self.lease_s, now=self.clock()
                )
            )
        except StoreUnavailable as exc:
            self._store_down(exc)
            await anyio.sleep(self.poll_s)
            return
        self._store_down_logged = False
        if not claimed:
            await self._wait(self.poll_s)
            return
        for event in claimed:
            self._slots.acquire_nowait()  # claimed no more than the free slots
            self._leased.add(event.pk)
            tasks.start_soon(self._deliver, event)

    async def _wait(self, seconds: float | None) -> None:
        with anyio.move_on_after(seconds if seconds is not None else self.poll_s):
            await self._wake.wait()
        self._wake = anyio.Event()

    def _store_down(self, exc: StoreUnavailable) -> None:
        if not self._store_down_logged:
            log.warning("event delivery paused, database unavailable: %s", exc, extra={"owner": self.owner})
            self._store_down_logged = True

    async def _deliver(self, event: EventRecord) -> None:
        try:
            outcome = await self.send(event)
        except Exception as exc:  # not the network's (send maps those): tried again after the lease
            log.exception("event delivery failed unexpectedly", extra={"event_id": event.event_id})
            outcome = Outcome("unreachable", None, f"{type(exc).__name__}: {exc}"[:500])
        finally:
            self._slots.release()
            self._wake_up()
        self.metrics.webhook_try(outcome.kind)
        if outcome.acknowledged:
            assert outcome.status is not None
            self._acks.append((event, outcome.status))
            self._acks_ready.set()
            return
        now = self.clock()
        tries = event.delivery_attempts + 1
        since = event.age_from(now)
        due = self.backoff.next_try(tries=tries, since=since, now=now, rng=self.rng)
        context = {"event_id": event.event_id, "order_id": event.order_id, "tries": tries, "outcome": outcome.kind}
        try:
            written = await anyio.to_thread.run_sync(
                lambda: self.events.delivery_failed(
                    self.owner,
                    event.pk,
                    status=outcome.status,
                    error=outcome.error,
                    next_attempt_at=due,
                    retry_since=since,
                )
            )
            if due is None and written:  # counted once, by the holder of the lease that wrote it
                log.warning("event %s not delivered, giving up: %s", event.event_id, outcome.error, extra=context)
                self.metrics.webhook_gave_up()
        except StoreUnavailable as exc:
            self._store_down(exc)  # the lease expires and the event is tried again
        except Exception:
            log.exception("event delivery: recording a try failed", extra={"event_id": event.event_id})
        finally:
            self._leased.discard(event.pk)

    async def send(self, event: EventRecord) -> Outcome:
        """POST one event, signed now; the answer as an Outcome (never raises for the network's sake).

        The whole try (connect, send, answer) has `timeout_s`, so it always ends well inside the lease."""
        body = event.body.encode("utf-8")
        headers = self.signer.headers(event.event_id, int(time.time()), body)
        answer = None
        try:
            with anyio.move_on_after(self.timeout_s):
                answer = await self.transport.request(
                    "POST",
                    self.url,
                    headers=headers,
                    body=body,
                    timeout_s=self.timeout_s,
                    connect_timeout_s=self.timeout_s,
                    pool=POOL,
                )
        except TransportError as exc:
            if exc.kind.endswith("Timeout"):
                return Outcome("timeout", None, f"{exc.kind}: no answer within {self.timeout_s:g} s")
            return Outcome("unreachable", None, exc.text[:500])
        if answer is None:  # the whole try ran out of time
            return Outcome("timeout", None, f"ReadTimeout: no answer within {self.timeout_s:g} s")
        status = answer.status
        if 200 <= status < 300:
            return Outcome("acknowledged", status, "")
        text = answer.body[:ERROR_BODY_CHARS].decode("utf-8", "replace").strip()
        where = f" (to {answer.header('location')[:200]}, not followed)" if 300 <= status < 400 else ""
        return Outcome("rejected", status, f"HTTP {status}{where}: {text}" if text else f"HTTP {status}{where}")

    async def _flush_acks_forever(self) -> None:
        while True:
            await self._acks_ready.wait()
            self._acks_ready = anyio.Event()
            await anyio.sleep(ACK_FLUSH_S)
            await self._flush_acks()
            self._wake_up()  # the next events of these orders may be due now

    async def _flush_acks(self) -> None:
        if not self._acks:
            return
        acks, self._acks = self._acks, []
        now = self.clock()
        try:
            await anyio.to_thread.run_sync(
                lambda: self.events.acknowledge(self.owner, [(e.pk, status) for e, status in acks], now=now)
            )
        except StoreUnavailable as exc:
            self._store_down(exc)  # the leases expire and these events are sent again (at least once)
        except Exception:
            log.exception("event delivery: writing acknowledgements failed", extra={"owner": self.owner})
        else:
            for event, _ in acks:
                self.metrics.webhook_lag((now - event.at).total_seconds())
        finally:
            for event, _ in acks:
                self._leased.discard(event.pk)


def new_owner() -> str:
    return f"events:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def deliverer_from_settings(settings: Settings, events: EventStore, metrics: Metrics) -> Deliverer | None:
    """The process's Deliverer, or None when no webhook is configured (both URL and secret unset).

    WebhookConfigInvalid (or WebhookSecretInvalid) when only one is set or either is malformed: a
    process told to deliver must not start without delivering. No message quotes the secret."""
    if not settings.webhook_url and not settings.webhook_secret:
        return None
    if not settings.webhook_url or not settings.webhook_secret:
        missing = "ASYNCGATE_WEBHOOK_URL" if not settings.webhook_url else "ASYNCGATE_WEBHOOK_SECRET"
        raise WebhookConfigInvalid(f"{missing} is not set (both are needed to deliver events)")
    if settings.webhook_retry_max_s < settings.webhook_retry_base_s:
        raise WebhookConfigInvalid("ASYNCGATE_WEBHOOK_RETRY_MAX_S must be at least ASYNCGATE_WEBHOOK_RETRY_BASE_S")
    signer = Signer.from_secret(settings.webhook_secret)
    if signer.weak:
        log.warning(
            "ASYNCGATE_WEBHOOK_SECRET holds a key shorter than %d bytes: receivers can verify it, but the "
            "Standard Webhooks specification recommends 24 to 64 random bytes",
            WEAK_KEY_BYTES,
        )
    return Deliverer(
        events,
        signer,
        DeliveryBackoff(
            base_s=settings.webhook_retry_base_s,
            max_s=settings.webhook_retry_max_s,
            max_age_s=settings.webhook_max_age_s,
        ),
        metrics,
        url=settings.webhook_url,
        owner=new_owner(),
        lease_s=settings.webhook_lease_s,
        batch=settings.webhook_batch,
        concurrency=settings.webhook_concurrency,
        timeout_s=settings.webhook_timeout_s,
        poll_s=settings.webhook_poll_s,
    )
