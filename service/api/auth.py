"""API keys: with keys configured, every endpoint but /healthz and /readyz needs `Authorization: Bearer <key>`.

`ASYNCGATE_API_KEYS` holds comma-separated `KEY:ROLE` entries (spaces around entries are ignored)::

    ASYNCGATE_API_KEYS="3f9c...e1:read, 7a2b...90:write, c04d...5e:admin"

A KEY is 16 to 256 visible ASCII characters without `,` or `:` (`openssl rand -hex 32` makes a good
one); a ROLE is `read`, `write` or `admin`, each including the ones before it:

    read    GET anything (orders, metrics, the model card, /docs, /openapi.json) and POST /classify*
    write   also POST /process and POST /orders/{id}/requeue (and any other write)
    admin   also everything under /admin/

The operations console under /console checks the same keys itself (a login form and a cookie,
service/console/access.py), so the middleware lets its paths through.

Answers: 401 (with `WWW-Authenticate: Bearer`) when the key is missing or unknown, 403 when the key's
role is too low; the body names what is needed, never the key. Keys are kept only as SHA-256
digests. `ApiKeyAuth` is a pure ASGI middleware (BaseHTTPMiddleware costs ~3x throughput), placed
outside the body limit, so a refused request's body is never read.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

PUBLIC_PATHS: Final = frozenset({"/healthz", "/readyz"})
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
#: POST endpoints that change nothing (scoring only): the read role is enough.
READ_POSTS: Final = frozenset({"/classify", "/classify/batch"})
_KEY = re.compile(r"^[\x21-\x7e]{16,256}$")


class Role(IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3


class ApiKeysError(ValueError):
    """ASYNCGATE_API_KEYS is not a valid list of KEY:ROLE entries (the message names the entry, not the key)."""


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys, as SHA-256 digest → role."""

    roles: Mapping[bytes, Role]

    @classmethod
    def parse(cls, text: str) -> ApiKeys:
        """Parse `KEY:ROLE,KEY:ROLE`; ApiKeysError naming the entry's position (never its key)."""
        roles: dict[bytes, Role] = {}
        entries = [entry.strip() for entry in text.split(",")]
        for position, entry in enumerate(entries, start=1):
            where = f"ASYNCGATE_API_KEYS entry {position}"
            if not entry:
                raise ApiKeysError(f"{where} is empty (entries are KEY:ROLE separated by commas)")
            key, sep, role = entry.rpartition(":")
            if not sep or not key:
                raise ApiKeysError(f"{where} is not KEY:ROLE")
            if ":" in key or not _KEY.match(key):
                raise ApiKeysError(f"{where}: a key is 16 to 256 visible ASCII characters without ',' or ':'")
            try:
                level = Role[role.strip().upper()]
            except KeyError:
                raise ApiKeysError(f"{where}: unknown role {role!r}; roles are read, write, admin") from None
            digest = _digest(key)
            if digest in roles:
                raise ApiKeysError(f"{where} repeats an earlier key")
            roles[digest] = level
        return cls(roles)

    def role_of(self, key: str) -> Role | None:
        return self.roles.get(_digest(key))


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def required_role(method: str, path: str) -> Role | None:
    """The role a request needs; None for the public health endpoints and for the console (which checks
    the same keys itself, from its login cookie)."""
    if path in PUBLIC_PATHS:
        return None
    if path == "/console" or path.startswith("/console/"):
        return None  # the operations console checks the same keys from its login cookie (service/console/access.py)
    if path == "/admin" or path.startswith("/admin/"):
        return Role.ADMIN
    if method in READ_METHODS or (method == "POST" and path in READ_POSTS):
        return Role.READ
    return Role.WRITE


def is_loopback(host: str) -> bool:
    """Is `host` a loopback address (127.0.0.0/8, ::1) or `localhost`?"""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ApiKeyAuth:
    """Pure ASGI middleware checking `Authorization: Bearer <key>` against `keys`."""

    def __init__(self, app: ASGIApp, *, keys: ApiKeys):
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = required_role(scope["method"], scope["path"])
        if needed is None:
            await self.app(scope, receive, send)
            return
        header = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        if header is None:
            await _refuse(send, 401, "missing API key: send the header 'Authorization: Bearer <key>'")
            return
        scheme, _, token = header.decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await _refuse(send, 401, "the Authorization header must be 'Bearer <key>'")
            return
        role = self.keys.role_of(token.strip())
        if role is None:
            await _refuse(send, 401, "invalid API key")
            return
        if role < needed:
            what = f"{scope['method']} {scope['path']}"
            await _refuse(send, 403, f"this key has the {role.name.lower()} role; {what} needs {needed.name.lower()}")
            return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
