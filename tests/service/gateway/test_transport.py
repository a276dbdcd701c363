"""AiohttpTransport against real sockets on 127.0.0.1: every error mapping of transport.py's table, the
per-phase timeouts, the body limit, the pool per insurer, no redirects, the proxy from the environment;
and HttpxTransport's mapping of httpx's errors onto the same kinds."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from yarl import URL

from service.gateway import AiohttpTransport, Answer, HttpxTransport, MaybeReceived, NotSent, TransportError
from service.gateway.transport import MAX_BODY_BYTES, USER_AGENT, aiohttp_error

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"success":true}'


@dataclass
class Server:
    port: int
    heads: list[bytes] = field(default_factory=list)

    def url(self, path: str = "/api/pay") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The request line and headers (and the body, when it has a Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


@contextlib.asynccontextmanager
async def serving(serve: Serve) -> AsyncIterator[Server]:
    """A TCP server on a free loopback port whose connections `serve` handles (the request head recorded)."""
    server_ref: list[Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server_ref.append(Server(port))
    try:
        yield server_ref[0]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def recording(server_heads: list[bytes], then: Serve) -> Serve:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_heads.append(await read_head(reader))
        await then(reader, writer)

    return serve


async def send(
    transport: AiohttpTransport,
    url: str,
    *,
    method: str = "POST",
    timeout_s: float = 1.0,
    connect_timeout_s: float = 0.5,
    pool: str = "acme",
) -> Answer:
    return await transport.request(
        method,  # type: ignore[arg-type]
        url,
        headers={"Content-Type": "application/json", "Idempotency-Key": "O1:pay"},
        body=b'{"order_id":"O1"}' if method == "POST" else None,
        timeout_s=timeout_s,
        connect_timeout_s=connect_timeout_s,
        pool=pool,
    )


def outcome(
    serve: Serve, *, timeout_s: float = 1.0, connect_timeout_s: float = 0.5, path: str = "/api/pay"
) -> Answer | TransportError:
    """One POST to a server playing `serve`: the Answer, or the seam's error."""

    async def main() -> Answer | TransportError:
        transport = AiohttpTransport(trust_env=False)
        try:
            async with serving(serve) as server:
                try:
                    return await send(
                        transport, server.url(path), timeout_s=timeout_s, connect_timeout_s=connect_timeout_s
                    )
                except TransportError as exc:
                    return exc
        finally:
            await transport.aclose()

    return asyncio.run(main())


def reply(raw: bytes) -> Serve:
    """Write `raw` (the request already read)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()

    return serve


def answer_with(raw: bytes) -> Serve:
    """Read the request, then write `raw`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await reply(raw)(reader, writer)

    return serve


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    await asyncio.sleep(30)


# -- not sent ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_closed_port_is_not_sent_connect_error() -> None:
    async def main() -> TransportError:
        transport = AiohttpTransport(trust_env=False)
        try:
            with pytest.raises(NotSent) as caught:
                await send(transport, f"http://127.0.0.1:{free_port()}/api/pay")
            return caught.value
        finally:
            await transport.aclose()

    exc = asyncio.run(main())
    assert exc.kind == "ConnectError"
    assert exc.text.startswith("ConnectError: Cannot connect to host 127.0.0.1:")


def test_a_name_that_does_not_resolve_is_not_sent_connect_error() -> None:
    async def main() -> TransportError:
        transport = AiohttpTransport(trust_env=False)
        try:
            with pytest.raises(NotSent) as caught:
                await send(transport, "http://no-such-insurer.invalid/api/pay")  # .invalid never resolves
            return caught.value
        finally:
            await transport.aclose()

    assert asyncio.run(main()).kind == "ConnectError"


def test_a_connect_that_hangs_is_not_sent_connect_timeout() -> None:
    """A listener whose accept queue is full drops the SYN: the connect phase times out, nothing was sent."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)

    async def main() -> tuple[TransportError, float]:
        transport = AiohttpTransport(trust_env=False)
        started = time.monotonic()
        try:
            with pytest.raises(NotSent) as caught:
                await send(transport, f"http://127.0.0.1:{port}/api/pay", timeout_s=5.0, connect_timeout_s=0.3)
            return caught.value, time.monotonic() - started
        finally:
            await transport.aclose()

    try:
        exc, elapsed = asyncio.run(main())
    finally:
        for s in [*fillers, listener]:
            s.close()
    assert exc.kind == "ConnectTimeout"
    assert elapsed < 4.0, "the connect timeout, not timeout_s, bounds the connect phase"


def test_waiting_for_a_pooled_connection_is_not_sent_and_other_insurers_are_not_held_up() -> None:
    async def main() -> tuple[TransportError, Answer]:
        transport = AiohttpTransport(connections_per_insurer=1, trust_env=False)
        try:
            async with serving(never_answer) as hung, serving(answer_with(OK)) as healthy:
                first = asyncio.create_task(send(transport, hung.url(), timeout_s=3.0))
                await asyncio.sleep(0.2)  # the first request holds acme's only connection
                with pytest.raises(NotSent) as caught:
                    await send(transport, hung.url(), timeout_s=0.3, connect_timeout_s=0.1)
                other = await send(transport, healthy.url(), pool="beta", timeout_s=0.5)
                first.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await first
                return caught.value, other
        finally:
            await transport.aclose()

    waited, other = asyncio.run(main())
    assert waited.kind == "ConnectTimeout", "a pool wait that runs out never sent anything"
    assert other.status == 200, "beta has its own pool: acme's hung connection does not hold it up"


# -- maybe received ---------------------------------------------------------------------------------


def test_a_server_that_accepts_but_never_answers_is_a_read_timeout() -> None:
    started = time.monotonic()
    result = outcome(never_answer, timeout_s=0.3)
    assert isinstance(result, MaybeReceived)
    assert result.kind == "ReadTimeout"
    assert result.text.startswith("ReadTimeout")
    assert time.monotonic() - started < 5.0


def test_a_server_that_closes_without_answering_is_remote_protocol_error() -> None:
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)

    result = outcome(close)
    assert isinstance(result, MaybeReceived)
    assert result.kind == "RemoteProtocolError"


def test_a_server_that_closes_mid_response_is_a_read_error() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    result = outcome(answer_with(head + b'{"success": tr'))
    assert isinstance(result, MaybeReceived)
    assert result.kind == "ReadError"


def test_a_server_that_resets_mid_response_is_maybe_received() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
        writer.transport.abort()

    result = outcome(reset)
    assert isinstance(result, MaybeReceived)
    assert result.kind in ("ReadError", "RemoteProtocolError")


@pytest.mark.parametrize(
    "garbage",
    [b"HELLO THERE\r\n\r\n", b"HTTP/1.1 abc Nope\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 8],
    ids=["not-http", "bad-status", "binary"],
)
def test_a_server_that_sends_garbage_is_remote_protocol_error(garbage: bytes) -> None:
    result = outcome(answer_with(garbage))
    assert isinstance(result, MaybeReceived), result
    assert result.kind == "RemoteProtocolError"


def test_a_body_that_stalls_past_timeout_s_is_a_read_timeout() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        await asyncio.sleep(30)

    result = outcome(stall, timeout_s=0.3)
    assert isinstance(result, MaybeReceived)
    assert result.kind == "ReadTimeout"


def test_a_slow_body_within_timeout_s_per_read_is_read_whole() -> None:
    body = b'{"success":true,"data":{"n":"' + b"x" * 8 + b'"}}'

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 8):
            writer.write(body[i : i + 8])
            await writer.drain()
            await asyncio.sleep(0.1)

    result = outcome(trickle, timeout_s=0.4)
    assert isinstance(result, Answer)
    assert (result.status, result.body, result.cut) == (200, body, False)


def test_a_body_trickled_forever_hits_the_total_backstop() -> None:
    async def forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)

    started = time.monotonic()
    # each read is within timeout_s; the backstop is 3 x (0.1 + 0.2 + 0.2) = 1.5 s
    result = outcome(forever, timeout_s=0.2, connect_timeout_s=0.1)
    elapsed = time.monotonic() - started
    assert isinstance(result, MaybeReceived), result
    assert result.kind == "ReadTimeout"
    assert 1.0 < elapsed < 10.0


# -- answers ----------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_cut_at_max_body_bytes_and_the_connection_not_reused() -> None:
    size = MAX_BODY_BYTES + 512 * 1024
    connections: list[int] = []

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while True:
            head = await read_head(reader)
            if b"/small" in head:
                writer.write(OK)
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                writer.write(b"x" * size)
            await writer.drain()

    async def main() -> tuple[Answer, Answer]:
        transport = AiohttpTransport(trust_env=False)
        try:
            async with serving(big) as server:
                cut = await send(transport, server.url())
                after = await send(transport, server.url("/small"))
                return cut, after
        finally:
            await transport.aclose()

    cut, after = asyncio.run(main())
    assert (cut.status, len(cut.body), cut.cut) == (200, MAX_BODY_BYTES, True)
    assert (after.status, after.cut) == (200, False)
    assert len(connections) == 2, "the cut connection was closed, not handed back to the pool"


def test_a_body_of_exactly_the_limit_is_not_cut() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % MAX_BODY_BYTES
    result = outcome(answer_with(head + b"y" * MAX_BODY_BYTES))
    assert isinstance(result, Answer)
    assert (len(result.body), result.cut) == (MAX_BODY_BYTES, False)


def test_the_request_goes_out_as_given_with_our_user_agent_and_no_redirect_is_followed() -> None:
    heads: list[bytes] = []
    redirect = b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
    result = outcome(recording(heads, reply(redirect)), path="/api/pay/%2E%2E")
    assert isinstance(result, Answer)
    assert result.status == 302, "a redirect is an answer, never followed"
    (head,) = heads
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /api/pay/%2E%2E HTTP/1.1", "the adapter's encoding is sent as is"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    assert headers["user-agent"] == USER_AGENT
    assert headers["idempotency-key"] == "O1:pay"
    assert headers["content-type"] == "application/json"


def test_the_charset_and_headers_of_the_answer_are_kept() -> None:
    body = "系统繁忙".encode("gb18030")
    raw = b"HTTP/1.1 503 X\r\nContent-Type: text/plain; charset=GB18030\r\nContent-Length: %d\r\n\r\n" % len(body)
    result = outcome(answer_with(raw + body))
    assert isinstance(result, Answer)
    assert (result.status, result.text, result.content_type) == (503, "系统繁忙", "text/plain")


def test_the_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    heads: list[bytes] = []

    async def main() -> Answer:
        async with serving(recording(heads, reply(OK))) as proxy:
            monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
            monkeypatch.delenv("http_proxy", raising=False)
            transport = AiohttpTransport(trust_env=True)
            try:
                return await send(transport, "http://insurer.test/api/pay")
            finally:
                await transport.aclose()

    assert asyncio.run(main()).status == 200
    assert heads[0].startswith(b"POST http://insurer.test/api/pay HTTP/1.1"), "sent to the proxy, absolute URI"


def test_the_proxy_is_looked_up_once_per_host_and_no_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "direct.test")
    transport = AiohttpTransport(trust_env=True)
    proxied, _ = transport.proxy(URL("http://insurer.test/api/pay"))
    assert str(proxied) == "http://proxy.test:3128"
    assert transport.proxy(URL("http://direct.test/api/pay")) == (None, None)
    monkeypatch.setenv("HTTP_PROXY", "http://other.test:3128")  # read at the host's first request only
    assert str(transport.proxy(URL("http://insurer.test/other"))[0]) == "http://proxy.test:3128"
    assert AiohttpTransport(trust_env=False).proxy(URL("http://insurer.test/api/pay")) == (None, None)


def test_an_unknown_exception_is_not_swallowed() -> None:
    assert aiohttp_error(KeyError("x")) is None
    assert isinstance(aiohttp_error(ConnectionResetError("reset")), MaybeReceived)


# -- httpx behind the same seam ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind", "sent"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "ConnectError", False),
        (httpx.ConnectTimeout(""), "ConnectTimeout", False),
        (httpx.PoolTimeout(""), "PoolTimeout", False),
        (httpx.UnsupportedProtocol("ftp"), "ConnectError", False),
        (httpx.ReadTimeout(""), "ReadTimeout", True),
        (httpx.WriteTimeout(""), "WriteTimeout", True),
        (httpx.ReadError("reset"), "ReadError", True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), "RemoteProtocolError", True),
    ],
)
def test_httpx_errors_map_onto_the_same_kinds(exc: httpx.TransportError, kind: str, sent: bool) -> None:
    def mock(request: httpx.Request) -> httpx.Response:
        raise exc

    async def main() -> TransportError:
        async with httpx.AsyncClient(transport=httpx.MockTransport(mock)) as client:
            with pytest.raises(TransportError) as caught:
                await HttpxTransport(client).request(
                    "POST", "http://insurer.test/x", headers={}, body=b"{}", timeout_s=1, connect_timeout_s=1, pool="a"
                )
            return caught.value

    error = asyncio.run(main())
    assert error.kind == kind
    assert isinstance(error, MaybeReceived if sent else NotSent)
    if kind.endswith("Timeout"):
        assert error.text == f"{kind}: timed out"


def test_httpx_invalid_request_raises() -> None:
    def mock(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError("illegal header")

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(mock)) as client:
            await HttpxTransport(client).request(
                "GET", "http://insurer.test/x", headers={}, timeout_s=1, connect_timeout_s=1, pool="a"
            )

    with pytest.raises(httpx.LocalProtocolError):
        asyncio.run(main())


def test_httpx_answers_are_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.gateway.transport.MAX_BODY_BYTES", 64)

    def mock(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"z" * 200, headers={"Content-Type": "text/plain; charset=utf-8"})

    async def main() -> Answer:
        async with httpx.AsyncClient(transport=httpx.MockTransport(mock)) as client:
            return await HttpxTransport(client).request(
                "GET", "http://insurer.test/x", headers={}, timeout_s=1, connect_timeout_s=1, pool="a"
            )

    result = asyncio.run(main())
    assert (result.body, result.cut, result.charset) == (b"z" * 64, True, "utf-8")
