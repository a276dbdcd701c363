"""The HTTP seam under the adapters: one request -> an Answer, or NotSent / MaybeReceived; never a library's type.

Adapters (built-in and plugins, docs/adapters.md) speak to insurers only through `HttpTransport.request`,
so the HTTP library is ours to change. `AiohttpTransport` is the production one (aiohttp: a compiled
HTTP parser, one connection pool per insurer); `HttpxTransport` wraps an `httpx.AsyncClient` (the
service tests' MockTransport harness and bench/insurer_client.py's baseline). Both map their
library's errors onto the same two exceptions, with the same kinds::

    TransportError(AsyncgateError) kind (below) + detail (the library's or the OS's text)
    ├── NotSent                    no byte of the request can have reached the insurer
    │       ConnectError           refused, DNS failure, TLS handshake failure, proxy refused the tunnel
    │       ConnectTimeout         the connect phase (or the wait for a pooled connection) timed out
    │       PoolTimeout            (httpx only: aiohttp times the pool wait and the connect as one phase)
    └── MaybeReceived              the request may have reached the insurer: the outcome is unknown
            ReadTimeout            no byte of the answer for timeout_s (each read), or the total backstop
            WriteTimeout           (httpx only) the request could not be written in time
            ReadError              the connection broke (reset, closed mid-body)
            RemoteProtocolError    the server closed without an answer, or sent something that is not HTTP

aiohttp exceptions -> kind (checked in this order; the first match wins):

    ConnectionTimeoutError                          NotSent ConnectTimeout   (pool wait or sock_connect)
    ClientConnectorError (DNS, SSL, certificate,    NotSent ConnectError
      proxy connection: all its subclasses)
    ClientHttpProxyError (CONNECT refused)          NotSent ConnectError
    ServerTimeoutError (SocketTimeoutError: a       MaybeReceived ReadTimeout
      sock_read), asyncio/builtin TimeoutError
      (the total backstop)
    ServerDisconnectedError                         MaybeReceived RemoteProtocolError
    ClientResponseError (an unparsable answer)      MaybeReceived RemoteProtocolError
    ClientPayloadError (body cut or undecodable)    MaybeReceived ReadError
    any other ClientError or OSError                MaybeReceived ReadError
    InvalidURL                                      raised as is: a bug or a bad config, not insurer behaviour

When in doubt an error is MaybeReceived: an unknown outcome only costs a query before the next call,
while a request wrongly taken as not sent could be completed twice.

Timeouts per request (aiohttp.ClientTimeout): `sock_connect` = connect_timeout_s (one socket connect),
`connect` = connect_timeout_s + timeout_s (the pool wait plus the connect), `sock_read` = timeout_s
(each read of the answer), and `total` = TOTAL_BACKSTOP_FACTOR x that sum, a backstop against an answer
trickled byte by byte. An answer body is read up to MAX_BODY_BYTES; a longer one is cut (`Answer.cut`)
and its connection closed rather than pooled. No redirect is followed; HTTP(S)_PROXY / NO_PROXY are
honoured (`trust_env`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from service.errors import AsyncgateError

if TYPE_CHECKING:
    import httpx

USER_AGENT: Final = "asyncgate/0.1"
#: Bytes of an answer read at most; a longer body is cut (and is therefore not any protocol).
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
#: The total time of one exchange is at most this many times its phase timeouts added up.
TOTAL_BACKSTOP_FACTOR: Final = 3.0
#: Connections per insurer (each insurer has its own pool, so one that hangs cannot starve the others).
DEFAULT_CONNECTIONS_PER_INSURER: Final = 200
#: Longest exception text kept, in characters.
MAX_DETAIL_CHARS: Final = 2_000

Method = Literal["GET", "POST"]
NotSentKind = Literal["ConnectError", "ConnectTimeout", "PoolTimeout"]
MaybeReceivedKind = Literal["ReadTimeout", "WriteTimeout", "ReadError", "RemoteProtocolError"]


class TransportError(AsyncgateError):
    """{text}

    No answer: `kind` (see the module table) and the library's `detail`; str() is `Kind: detail`.
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail.strip()[:MAX_DETAIL_CHARS]
        super().__init__(text=self.text)

    @property
    def text(self) -> str:
        """`Kind: detail`, or `Kind` alone; a timeout without detail says `timed out`."""
        detail = self.detail or ("timed out" if self.kind.endswith("Timeout") else "")
        return f"{self.kind}: {detail}"[:MAX_DETAIL_CHARS] if detail else self.kind


class NotSent(TransportError):
    """{text}

    The request never left: no byte of it can have reached the insurer.
    """


class MaybeReceived(TransportError):
    """{text}

    The request may have reached the insurer and been acted on: the outcome is unknown.
    """


@dataclass(frozen=True)
class Answer:
    """What the insurer answered: status, body bytes (at most MAX_BODY_BYTES), charset and headers."""

    status: int
    body: bytes
    charset: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    cut: bool = False  # the body was longer than MAX_BODY_BYTES and was cut there

    @property
    def text(self) -> str:
        return decode_body(self.body, self.charset)

    def header(self, name: str) -> str:
        """A header's value, its name matched in any case ("" when absent)."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), "")

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters ("" when absent)."""
        return self.header("content-type").split(";", 1)[0].strip().lower()


class HttpTransport(Protocol):
    """One HTTP exchange with an insurer; raises NotSent / MaybeReceived, nothing else for network faults."""

    async def request(
        self,
        method: Method,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout_s: float,
        connect_timeout_s: float,
        pool: str,
    ) -> Answer:
        """`url` is already percent-encoded and sent as is; `pool` names the insurer whose pool is used."""
        ...

    async def aclose(self) -> None: ...


def decode_body(body: bytes, charset: str | None) -> str:
    """Body bytes to text: the declared charset, else UTF-8 (BOM allowed), else GB18030, else lossy UTF-8."""
    if charset:
        try:
            return body.decode(charset, errors="replace")
        except LookupError:
            pass
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    return body.decode("utf-8", errors="replace")


def client_timeout(timeout_s: float, connect_timeout_s: float) -> aiohttp.ClientTimeout:
    """The per-phase timeouts of one request (see the module docstring)."""
    connect = connect_timeout_s + timeout_s
    return aiohttp.ClientTimeout(
        total=TOTAL_BACKSTOP_FACTOR * (connect + timeout_s),
        connect=connect,
        sock_connect=connect_timeout_s,
        sock_read=timeout_s,
        ceil_threshold=math.inf,  # never round a timeout up to the next second
    )


def aiohttp_error(exc: BaseException) -> TransportError | None:
    """The seam's error for an aiohttp (or socket) exception; None for one that is a bug (InvalidURL, ...)."""
    detail = str(exc)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return NotSent("ConnectTimeout", detail)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ClientHttpProxyError):
        return NotSent("ConnectError", detail)
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return MaybeReceived("ReadTimeout", detail)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return MaybeReceived("RemoteProtocolError", detail or "Server disconnected")
    if isinstance(exc, aiohttp.InvalidURL):
        return None
    if isinstance(exc, aiohttp.ClientResponseError):
        return MaybeReceived("RemoteProtocolError", exc.message or detail)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return MaybeReceived("ReadError", detail)
    return None


class AiohttpTransport:
    """aiohttp, one ClientSession (and TCPConnector) per insurer, made on first use, closed by `aclose`."""

    def __init__(
        self, *, connections_per_insurer: int = DEFAULT_CONNECTIONS_PER_INSURER, trust_env: bool = True
    ) -> None:
        self.connections_per_insurer = connections_per_insurer
        self.trust_env = trust_env
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        # the environment's proxy per (scheme, host), looked up once: aiohttp's own trust_env looks it
        # up on every request, in an executor thread, reading ~/.netrc each time (py-spy: ~12% of
        # /process's CPU at 32 connections)
        self._proxies: dict[tuple[str, str], tuple[URL | None, aiohttp.BasicAuth | None]] = {}

    def proxy(self, url: URL) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        """The proxy (and its credentials) the environment names for this URL's scheme and host, if any."""
        key = (url.scheme, url.host or "")
        found = self._proxies.get(key)
        if found is None:
            found = (None, None)
            if self.trust_env:
                try:
                    found = get_env_proxy_for_url(url)
                except LookupError:  # none set, or NO_PROXY names the host
                    pass
            self._proxies[key] = found
        return found

    def session(self, pool: str) -> aiohttp.ClientSession:
        """The insurer's session (made now if it has none): its own pool of connections."""
        session = self._sessions.get(pool)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.connections_per_insurer,
                limit_per_host=0,  # the session is the insurer's: its limit is the insurer's
                timeout_ceil_threshold=math.inf,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": USER_AGENT},
                trust_env=False,  # the proxy is passed per request (see `proxy`)
                cookie_jar=aiohttp.DummyCookieJar(),  # an insurer's cookies are not ours to keep
                raise_for_status=False,
            )
            self._sessions[pool] = session
        return session

    async def request(
        self,
        method: Method,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout_s: float,
        connect_timeout_s: float,
        pool: str,
    ) -> Answer:
        session = self.session(pool)
        target = URL(url, encoded=True)  # the adapter's encoding is final: no re-quoting, no ".." folding
        proxy, proxy_auth = self.proxy(target)
        try:
            async with session.request(
                method,
                target,
                headers=dict(headers),
                data=body,
                proxy=proxy,
                proxy_auth=proxy_auth,
                allow_redirects=False,
                timeout=client_timeout(timeout_s, connect_timeout_s),
            ) as response:
                body_read, cut = await _read_bounded(response)
                if cut:
                    response.close()  # the rest is never read: this connection cannot be reused
                return Answer(response.status, body_read, response.charset, dict(response.headers), cut)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = aiohttp_error(exc)
            if error is None:
                raise
            raise error from exc

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


async def _read_bounded(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size < MAX_BODY_BYTES:
        chunk = await response.content.read(MAX_BODY_BYTES - size)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), not response.content.at_eof()


class HttpxTransport:
    """An `httpx.AsyncClient` behind the seam (tests' MockTransport clients; the benchmark's baseline).

    Not what the service uses for insurers unless it is handed one: `open_runtime(http_client=...)`.
    """

    def __init__(self, client: httpx.AsyncClient, *, owned: bool = False) -> None:
        self.client = client
        self._owned = owned

    async def request(
        self,
        method: Method,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout_s: float,
        connect_timeout_s: float,
        pool: str,
    ) -> Answer:
        import httpx

        not_sent = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
        request = self.client.build_request(
            method,
            httpx.URL(url),
            headers=dict(headers),
            content=body,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        )
        try:
            response = await self.client.send(request, stream=True)
            try:
                chunks: list[bytes] = []
                size = 0
                cut = False
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= MAX_BODY_BYTES:
                        cut = size > MAX_BODY_BYTES
                        break
                data = b"".join(chunks)[:MAX_BODY_BYTES]
            except httpx.DecodingError as exc:  # a body we cannot decompress is still an answer
                return Answer(response.status_code, f"{type(exc).__name__}: {exc}".encode(), "utf-8")
            finally:
                await response.aclose()
        except httpx.LocalProtocolError:
            raise  # we built an invalid request: a bug, not insurer behaviour
        except httpx.TransportError as exc:
            kind = type(exc).__name__
            if isinstance(exc, not_sent):
                raise NotSent("ConnectError" if kind == "UnsupportedProtocol" else kind, str(exc)) from exc
            raise MaybeReceived(kind, str(exc)) from exc
        return Answer(response.status_code, data, response.charset_encoding, dict(response.headers), cut)

    async def aclose(self) -> None:
        if self._owned:
            await self.client.aclose()
