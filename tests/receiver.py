"""A webhook receiver for tests: a real HTTP server in a thread that verifies each delivery with the
Standard Webhooks library (`standardwebhooks`), as a platform's receiver would, and records it.

    with Receiver(SECRET) as receiver:       # http://127.0.0.1:<port>/hook
        receiver.mode = "ok" | "fail" | "slow" | "redirect" | "down-for-event"
        receiver.acknowledged()              # event_id → document, first acknowledgement of each
        check_in_order(receiver.log)         # no order's event arrived before the previous was acknowledged

`mode` "fail" answers 500, "slow" sleeps `slow_s` before answering 200, "redirect" answers 307 to
another path (which would acknowledge: a sender that followed it would be wrong). `fail_first`
answers 500 to the first N tries of every event. `stop()` closes the socket (connection refused).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = "whsec_" + base64.b64encode(b"asyncgate-test-key-0123456789abcdef").decode()


@dataclass
class Delivery:
    """One request the receiver got: when, the event (None if it did not verify) and the answer."""

    at: float
    answered_at: float
    event_id: str
    document: dict[str, Any] | None
    status: int
    verified: bool


class Receiver:
    def __init__(self, secret: str = SECRET, *, port: int = 0) -> None:
        self.webhook = Webhook(secret)
        self.mode = "ok"
        self.slow_s = 2.0
        self.fail_first = 0
        self.lock = threading.Lock()
        self.log: list[Delivery] = []
        self._tries: dict[str, int] = {}
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                receiver._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        body = request.rfile.read(int(request.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            document = self.webhook.verify(body, headers)
            verified = True
        except WebhookVerificationError:
            document, verified = None, False
        event_id = headers.get("webhook-id", "")
        with self.lock:
            tries = self._tries[event_id] = self._tries.get(event_id, 0) + 1
        mode = self.mode
        status = 200
        if not verified:
            status = 400
        elif mode == "fail" or tries <= self.fail_first:
            status = 500
        elif mode == "slow":
            time.sleep(self.slow_s)
        elif mode == "redirect":
            status = 307
        request.send_response(status)
        if status == 307:
            request.send_header("Location", "/elsewhere")
        payload = b"ok" if status == 200 else b'{"error": "no"}'
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        try:
            request.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            status = 599  # the sender gave up (timeout) before the answer: not an acknowledgement
        with self.lock:
            self.log.append(Delivery(started, time.monotonic(), event_id, document, status, verified))

    def deliveries(self) -> list[Delivery]:
        with self.lock:
            return list(self.log)

    def acknowledged(self) -> dict[str, dict[str, Any]]:
        """event_id → document of every event answered 2xx."""
        return {d.event_id: d.document for d in self.deliveries() if 200 <= d.status < 300 and d.document is not None}


def check_in_order(log: list[Delivery]) -> dict[str, list[str]]:
    """Per order, the acknowledged to_states in order; AssertionError if an order's event arrived before
    the order's previous event had been acknowledged, or arrived unsigned."""
    acked_at: dict[str, float] = {}
    for d in log:
        if 200 <= d.status < 300:
            acked_at.setdefault(d.event_id, d.answered_at)
    by_order: dict[str, list[Delivery]] = {}
    for d in sorted(log, key=lambda d: d.at):
        assert d.verified, f"delivery {d.event_id} did not verify"
        assert d.document is not None
        by_order.setdefault(d.document["order_id"], []).append(d)
    states: dict[str, list[str]] = {}
    for order_id, deliveries in by_order.items():
        sequence: list[str] = []  # event ids in first-arrival order
        for d in deliveries:
            if d.event_id not in sequence:
                for earlier in sequence:
                    assert earlier in acked_at and acked_at[earlier] <= d.at, (
                        f"order {order_id}: {d.event_id} arrived before {earlier} was acknowledged"
                    )
                sequence.append(d.event_id)
        documents = {d.event_id: d.document for d in deliveries if d.document is not None}
        states[order_id] = [documents[e]["to_state"] for e in sequence if e in acked_at]
    return states


def dump(log: list[Delivery]) -> str:
    return json.dumps([(d.event_id, d.status) for d in log[-20:]])
