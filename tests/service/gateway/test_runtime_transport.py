"""The runtime's own transport: aiohttp (no http_client handed in), used by /process, closed at shutdown."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from service.app import create_app
from service.config import Settings
from service.gateway import AiohttpTransport, InsurerRegistry
from service.scoring import ServingModel

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient


class Insurer(BaseHTTPRequestHandler):
    """generic-json: every call succeeds with the order it was sent."""

    seen: list[tuple[str, str]] = []  # noqa: RUF012 (the test's record)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Insurer.seen.append((self.path, self.headers.get("User-Agent", "")))
        answer = json.dumps({"success": True, "data": {"policy_no": f"POL-{body['order_id']}"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def insurer_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Insurer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


def test_process_goes_through_the_runtimes_aiohttp_transport_which_is_closed_at_shutdown(
    tmp_path: Path, serving_model: ServingModel, insurer_url: str
) -> None:
    settings = Settings(
        state_dir=tmp_path / "state",
        db_url=f"sqlite:///{tmp_path}/state/asyncgate.db",
        model_dir=tmp_path / "no-models",
        http_max_connections=3,
    )
    registry = InsurerRegistry.from_mapping({"acme": {"base_url": insurer_url, "timeout_s": 2.0}})
    app = create_app(settings, model=serving_model, insurers=registry)
    with TestClient(app) as client:
        body = {"order_id": "RT1", "insurer": "acme", "operation": "underwrite", "payload": {"n": 1}}
        answer = client.post("/process", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "SUCCEEDED"
        transport = app.state.gateway.transport
        assert isinstance(transport, AiohttpTransport)
        session = transport.session("acme")
        assert session.connector is not None and session.connector.limit == 3
    assert Insurer.seen[-1][0] == "/api/underwrite"
    assert Insurer.seen[-1][1].startswith("asyncgate/")
    assert session.closed, "the runtime closes the transport it opened"
