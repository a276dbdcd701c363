"""The installed plugin as asyncgate sees it: listed in the entry-point group, loaded for the insurer that
names it in the insurers file, and making the calls (a real HTTP server on 127.0.0.1 checks the token)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from service.config import Settings
from service.gateway import (
    CallResult,
    InsurerGateway,
    InsurersFileError,
    QueryResult,
    installed,
    load_insurers,
    make_transport,
)
from service.runtime import insurer_registry

TOKEN = "tok-123"


class Insurer(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str]] = []  # noqa: RUF012 (method, path, Authorization)

    def _answer(self, status: int, doc: object) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        Insurer.seen.append(("POST", self.path, self.headers.get("Authorization", "")))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._answer(401, {"success": False, "error_code": "AUTH", "error_message": "bad token"})
        else:
            self._answer(200, {"success": True, "data": {"policy_no": "EX-1"}})

    def do_GET(self) -> None:
        Insurer.seen.append(("GET", self.path, self.headers.get("Authorization", "")))
        self._answer(200, {"success": True, "data": {"policy_no": "EX-1"}})

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def insurer_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Insurer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2"
    finally:
        server.shutdown()
        server.server_close()


def insurers_file(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "insurers.toml"
    path.write_text(f'[insurers.acme]\nbase_url = "{base_url}"\nadapter = "example-bearer"\ntoken_env = "EX_TOKEN"\n')
    return path


def test_the_plugin_is_registered_by_its_own_distribution() -> None:
    ep = installed()["example-bearer"]
    assert ep.value == "asyncgate_adapter_example:BearerJsonAdapter"
    assert ep.dist is not None and ep.dist.name == "asyncgate-adapter-example"


def test_asyncgate_calls_and_queries_through_the_plugin(
    tmp_path: Path, insurer_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EX_TOKEN", TOKEN)
    registry = insurer_registry(Settings(insurers_file=insurers_file(tmp_path, insurer_url)))  # as serve loads it
    assert type(registry.adapters["example-bearer"]).__name__ == "BearerJsonAdapter"
    assert TOKEN not in repr(registry["acme"])

    async def main() -> tuple[CallResult, QueryResult, CallResult]:
        transport = make_transport(trust_env=False)
        try:
            gateway = InsurerGateway(registry, transport)
            done = await gateway.call("acme", "EX1", "underwrite", {"n": 1})
            query = await gateway.query("acme", "EX1", "underwrite")
            port = socket.socket()
            port.bind(("127.0.0.1", 0))
            closed = port.getsockname()[1]
            port.close()
            nobody = InsurerGateway(load_insurers(insurers_file(tmp_path, f"http://127.0.0.1:{closed}")), transport)
            refused = await nobody.call("acme", "EX2", "underwrite", {})
            return done, query, refused
        finally:
            await transport.aclose()

    done, query, refused = asyncio.run(main())
    assert (done.outcome, done.data) == ("success", {"policy_no": "EX-1"})
    assert query.completed is True
    assert (refused.outcome, refused.http_status) == ("failure", None)
    assert Insurer.seen[:2] == [
        ("POST", "/v2/underwrite", f"Bearer {TOKEN}"),
        ("GET", "/v2/underwrite/EX1", f"Bearer {TOKEN}"),
    ]


def test_a_missing_token_fails_the_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EX_TOKEN", raising=False)
    with pytest.raises(InsurersFileError, match="'EX_TOKEN'"):
        load_insurers(insurers_file(tmp_path, "http://127.0.0.1:1"))
