"""Webhook delivery (docs/contract.md §8) from a running app to a real HTTP receiver that verifies each
delivery with the `standardwebhooks` library: signed, in order per order, retried, given up after
the maximum age and redelivered, no redirect followed, the secret never logged."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

from service.events.backoff import DeliveryBackoff
from service.events.delivery import Deliverer, Outcome, WebhookConfigInvalid, check_url
from service.events.signing import Signer, WebhookSecretInvalid
from service.metrics import Metrics
from service.store.events import EventRecord
from tests.receiver import SECRET, Receiver, check_in_order, dump
from tests.service.conftest import Service, busy, final

FAST: dict[str, Any] = {
    "webhook_secret": SECRET,
    "webhook_retry_base_s": 0.05,
    "webhook_retry_max_s": 0.2,
    "webhook_poll_s": 0.05,
    "webhook_timeout_s": 1.0,
    "webhook_lease_s": 5.0,
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def metric(service: Service, name: str) -> float:
    text = service.client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def delivery_states(service: Service) -> list[str]:
    return [e.delivery_state for e in service.app.state.store.events.recent(limit=1000)]


def test_every_event_is_delivered_signed_and_in_order_per_order(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    service = start_service(webhook_url=receiver.url, **FAST)
    service.insurer.script("P-final", final())
    service.insurer.script("P-busy", busy())
    for order_id in ("P-ok", "P-final", "P-busy"):
        service.process(order_id)
    service.client.post("/orders/P-final/requeue")
    wait_for(lambda: len(receiver.acknowledged()) == 6, "six events acknowledged")
    assert check_in_order(receiver.log) == {
        "P-ok": ["ASYNC_PROCESSING", "SUCCEEDED"],
        "P-final": ["ASYNC_PROCESSING", "FAILED", "ASYNC_PROCESSING"],
        "P-busy": ["ASYNC_PROCESSING"],
    }
    feed = service.client.get("/events", params={"limit": 100}).json()["events"]
    assert {e["event_id"]: e for e in feed} == receiver.acknowledged()  # the feed's and the webhook's documents
    wait_for(lambda: set(delivery_states(service)) == {"delivered"}, "every event marked delivered")
    assert metric(service, 'asyncgate_webhook_deliveries_total{outcome="acknowledged"}') >= 6
    assert metric(service, "asyncgate_events_oldest_undelivered_age_seconds") == 0.0


def test_a_refusing_receiver_gets_the_event_again_until_it_acknowledges(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    receiver.fail_first = 3
    service = start_service(webhook_url=receiver.url, **FAST)
    service.process("P1")
    wait_for(lambda: len(receiver.acknowledged()) == 2, "both events acknowledged")
    statuses = [(d.document or {}).get("to_state") for d in receiver.log if d.status == 500]
    assert statuses.count("ASYNC_PROCESSING") == 3 and statuses.count("SUCCEEDED") == 3
    assert check_in_order(receiver.log) == {"P1": ["ASYNC_PROCESSING", "SUCCEEDED"]}
    events = service.app.state.store.events.recent()
    wait_for(lambda: set(delivery_states(service)) == {"delivered"}, "marked delivered")
    assert all(e.delivery_attempts >= 3 for e in events)
    assert metric(service, 'asyncgate_webhook_deliveries_total{outcome="rejected"}') == 6


def test_an_event_past_the_maximum_age_is_failed_then_redelivered(
    start_service: Callable[..., Service], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.mode = "fail"
    service = start_service(webhook_url=receiver.url, webhook_max_age_s=0.3, **FAST)
    service.process("P1")
    store = service.app.state.store
    wait_for(lambda: "failed" in delivery_states(service), "the first event failed")
    [failed] = store.events.failed()
    assert failed.to_state == "ASYNC_PROCESSING" and failed.last_status == 500
    assert failed.last_error.startswith("HTTP 500")
    time.sleep(0.3)
    # in order per order: the order's next event is not sent while the failed one is not acknowledged
    assert all((d.document or {}).get("to_state") == "ASYNC_PROCESSING" for d in receiver.log)
    assert metric(service, "asyncgate_webhook_events_failed_total") == 1
    assert metric(service, 'asyncgate_events_undelivered{state="failed"}') == 1
    assert metric(service, "asyncgate_events_oldest_undelivered_age_seconds") > 0
    receiver.mode = "ok"
    assert service.client.post(f"/admin/events/{failed.event_id}/redeliver").status_code == 200
    wait_for(lambda: len(receiver.acknowledged()) == 2, "both events acknowledged after redeliver")
    assert check_in_order(receiver.log) == {"P1": ["ASYNC_PROCESSING", "SUCCEEDED"]}
    text = caplog.text + "".join(d.document.__repr__() for d in receiver.log)
    key = SECRET.removeprefix("whsec_")
    assert SECRET not in text and key not in text, "the secret was logged"


def test_a_redirect_is_not_followed(start_service: Callable[..., Service], receiver: Receiver) -> None:
    receiver.mode = "redirect"
    service = start_service(webhook_url=receiver.url, **FAST)
    service.process("P1")
    wait_for(lambda: len(receiver.log) >= 2, "two tries")
    assert {d.status for d in receiver.log} == {307}  # nothing was sent to /elsewhere
    events = service.app.state.store.events.recent()
    assert any("307" in (e.last_error or "") and "not followed" in (e.last_error or "") for e in events)
    assert set(delivery_states(service)) == {"pending"}


def test_a_slow_receiver_times_out_and_the_event_is_sent_again(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    receiver.mode, receiver.slow_s = "slow", 1.5
    service = start_service(webhook_url=receiver.url, **(FAST | {"webhook_timeout_s": 0.3, "webhook_lease_s": 2}))
    service.process("P1")
    wait_for(
        lambda: any("no answer within" in (e.last_error or "") for e in service.app.state.store.events.recent()),
        "a timeout",
    )
    receiver.mode = "ok"
    wait_for(lambda: len(receiver.acknowledged()) == 2, "both acknowledged", timeout_s=30)
    assert check_in_order(receiver.log) == {"P1": ["ASYNC_PROCESSING", "SUCCEEDED"]}, dump(receiver.log)
    assert metric(service, 'asyncgate_webhook_deliveries_total{outcome="timeout"}') >= 1


def test_without_a_webhook_events_wait_for_the_feed(start_service: Callable[..., Service]) -> None:
    service = start_service()
    service.process("P1")
    time.sleep(0.2)
    assert set(delivery_states(service)) == {"pending"}
    assert "asyncgate_events_oldest_undelivered_age_seconds" not in service.client.get("/metrics").text


@pytest.mark.parametrize(
    ("settings", "error", "says"),
    [
        ({"webhook_url": "http://127.0.0.1:9/hook"}, WebhookConfigInvalid, "ASYNCGATE_WEBHOOK_SECRET is not set"),
        ({"webhook_secret": SECRET}, WebhookConfigInvalid, "ASYNCGATE_WEBHOOK_URL is not set"),
        ({"webhook_url": "ftp://x/y", "webhook_secret": SECRET}, WebhookConfigInvalid, "http(s) URL"),
        ({"webhook_url": "http://h/x", "webhook_secret": "sekrit-value"}, WebhookSecretInvalid, "whsec_"),
        ({"webhook_url": "http://h/x", "webhook_secret": "whsec_%%%sekrit"}, WebhookSecretInvalid, "base64"),
        ({"webhook_url": "http://h/x", "webhook_secret": "whsec_"}, WebhookSecretInvalid, "empty key"),
    ],
)
def test_a_misconfigured_webhook_stops_the_start_without_quoting_the_secret(
    start_service: Callable[..., Service], settings: dict[str, str], error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as raised:
        start_service(**settings)
    assert says in str(raised.value)
    assert "sekrit" not in str(raised.value) and SECRET not in str(raised.value)


def test_an_unexpected_error_in_the_claim_does_not_stop_delivery(
    start_service: Callable[..., Service], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.store.events import EventStore

    claim = EventStore.claim_deliveries
    calls = {"n": 0}

    def flaky(self: EventStore, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("a bug")
        return claim(self, *args, **kwargs)

    monkeypatch.setattr(EventStore, "claim_deliveries", flaky)
    service = start_service(webhook_url=receiver.url, **FAST)
    service.process("P1")
    wait_for(lambda: len(receiver.acknowledged()) == 2, "both events acknowledged after the failed claims")
    assert calls["n"] > 2
    assert service.client.get("/healthz").status_code == 200


# -- one try, on real sockets -------------------------------------------------------------------------


def _event() -> EventRecord:
    at = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
    return EventRecord(
        1,
        "evt_1",
        1,
        "P1",
        "SUCCEEDED",
        at,
        '{"event_id": "evt_1"}',
        "pending",
        0,
        at,
        None,
        None,
        None,
        None,
        None,
        None,
    )


def _deliverer(url: str, timeout_s: float) -> Deliverer:
    return Deliverer(
        cast(Any, None),  # send() never touches the store
        Signer.from_secret(SECRET),
        DeliveryBackoff(base_s=0.1, max_s=1, max_age_s=60),
        Metrics(),
        url=url,
        owner="test",
        lease_s=10 * timeout_s,
        timeout_s=timeout_s,
    )


async def _trickling_server(answer: bytes, gap_s: float) -> tuple[asyncio.Server, int]:
    """Reads the request, then writes `answer` one byte every `gap_s` (each read stays under any per-read timeout)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            for byte in answer:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(gap_s)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_one_try_ends_within_the_timeout_even_when_the_answer_trickles() -> None:
    async def main() -> tuple[Outcome, float]:
        server, port = await _trickling_server(b"HTTP/1.1 204 No Content\r\nX-Pad: " + b"a" * 200, gap_s=0.05)
        deliverer = _deliverer(f"http://127.0.0.1:{port}/hook", timeout_s=0.5)
        try:
            started = time.monotonic()
            outcome = await deliverer.send(_event())
            return outcome, time.monotonic() - started
        finally:
            await deliverer.transport.aclose()
            server.close()

    outcome, took = asyncio.run(main())
    assert outcome.kind == "timeout" and "0.5 s" in outcome.error
    assert took < 1.0, took  # per-read timeouts alone would have let it run ~10 s: past a short lease


def test_one_try_outcomes_acknowledged_rejected_unreachable() -> None:
    async def main() -> list[Outcome]:
        ok, ok_port = await _trickling_server(b"HTTP/1.1 204 No Content\r\n\r\n", gap_s=0)
        no, no_port = await _trickling_server(
            b"HTTP/1.1 503 Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy", gap_s=0
        )
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()  # nothing listens there
        outcomes = []
        for port in (ok_port, no_port, closed_port):
            deliverer = _deliverer(f"http://127.0.0.1:{port}/hook", timeout_s=2.0)
            outcomes.append(await deliverer.send(_event()))
            await deliverer.transport.aclose()
        ok.close()
        no.close()
        return outcomes

    acknowledged, rejected, unreachable = asyncio.run(main())
    assert (acknowledged.kind, acknowledged.status) == ("acknowledged", 204)
    assert (rejected.kind, rejected.status, rejected.error) == ("rejected", 503, "HTTP 503: busy")
    assert unreachable.kind == "unreachable" and unreachable.error.startswith("ConnectError")


def test_a_webhook_url_is_sent_percent_encoded_once() -> None:
    assert check_url("http://127.0.0.1:9/hooks/订单 events?a=b c") == (
        "http://127.0.0.1:9/hooks/%E8%AE%A2%E5%8D%95%20events?a=b+c"
    )
    assert check_url("http://127.0.0.1:9/a%20b") == "http://127.0.0.1:9/a%20b"
    with pytest.raises(WebhookConfigInvalid, match="http"):
        check_url("ftp://example.com/hook")


class _Recorder:
    """The one store call a failed try makes, recorded (a unit seam: the store's own tests cover the SQL)."""

    def __init__(self) -> None:
        self.failed: list[dict[str, Any]] = []

    def delivery_failed(self, owner: str, pk: int, **fields: Any) -> bool:
        self.failed.append(fields)
        return True


def test_the_maximum_age_counts_from_the_first_failed_try_not_from_the_event() -> None:
    """An event written long ago (a backlog from before the webhook, or held behind its order's failing
    earlier event) still gets the whole maximum age of retries; once that is spent, it is failed."""
    now = dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC)

    async def main() -> list[dict[str, Any]]:
        server, port = await _trickling_server(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n", gap_s=0)
        recorder = _Recorder()
        deliverer = Deliverer(
            cast(Any, recorder),
            Signer.from_secret(SECRET),
            DeliveryBackoff(base_s=1, max_s=60, max_age_s=3600),
            Metrics(),
            url=f"http://127.0.0.1:{port}/hook",
            owner="test",
            timeout_s=2.0,
            clock=lambda: now,
        )
        old = dataclasses.replace(_event(), at=now - dt.timedelta(days=10))
        await deliverer._deliver(old)  # its first failed try: retried, the age counted from now
        spent = dataclasses.replace(old, delivery_attempts=5, retry_since=now - dt.timedelta(seconds=3601))
        await deliverer._deliver(spent)
        await deliverer.transport.aclose()
        server.close()
        return recorder.failed

    first, last = asyncio.run(main())
    assert first["retry_since"] == now and first["next_attempt_at"] is not None
    assert now < first["next_attempt_at"] <= now + dt.timedelta(seconds=1)
    assert (first["status"], first["error"]) == (503, "HTTP 503")
    assert last["next_attempt_at"] is None and last["retry_since"] == now - dt.timedelta(seconds=3601)
