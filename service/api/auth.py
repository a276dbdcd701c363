"""API keys: with keys configured, every endpoint but /healthz and /readyz needs `Authorization: Bearer <key>`.

`ASYNCGATE_API_KEYS` holds comma-separated `KEY:ROLE` or `KEY:ROLE:NAME` entries (spaces around
entries are ignored)::

    ASYNCGATE_API_KEYS="3f9c...e1:read, 7a2b...90:write, c04d...5e:admin:ops-alice"

A KEY is 16 to 256 visible ASCII characters without `,` or `:` (`openssl rand -hex 32` makes a good
one); a NAME (1 to 64 of `A-Z a-z 0-9 _ - . @`) is who the key stands for in what it changes (an
operator's rule's `created_by`); without one the name is `key-` and the first 8 hex digits of the
key's SHA-256, which names the key without revealing it. A ROLE is `read`, `write` or `admin`, each
including the ones before it:

    read    GET anything (orders, metrics, the model card, /docs, /openapi.json) and POST /classify*
    write   also POST /process and POST /orders/{id}/requeue (and any other write)
    admin   also everything under /admin/

The operations console under /console checks the same keys itself (a login form and a cookie,
service/console/access.py), so the middleware lets its paths through.

Answers: 401 (with `WWW-Authenticate: Bearer`) when the key is missing or unknown, 403 when the key's
role is too low; the body names what is needed, never the key. An accepted request carries the key's
name in `request.state.api_key_name` (`principal(request)`; "anonymous" when no keys are configured).
Keys are kept only as SHA-256 digests. `ApiKeyAuth` is a pure ASGI middleware (BaseHTTPMiddleware
costs ~3x throughput), placed outside the body limit, so a refused request's body is never read.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import AsyncgateError

PUBLIC_PATHS: Final = frozenset({"/healthz", "/readyz"})
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
#: POST endpoints that change nothing (scoring only): the read role is enough.
READ_POSTS: Final = frozenset({"/classify", "/classify/batch"})
_KEY = re.compile(r"^[\x21-\x7e]{16,256}$")
_NAME = re.compile(r"^[A-Za-z0-9_\-.@]{1,64}$")
#: Who changed something when no API keys are configured.
ANONYMOUS: Final = "anonymous"


class Role(IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3


class ApiKeysError(AsyncgateError, ValueError):
    """ASYNCGATE_API_KEYS entry {position} {problem}

    ASYNCGATE_API_KEYS is not a valid list of KEY:ROLE[:NAME] entries; the message names the entry, never its key.
    """

    def __init__(self, position: int, problem: str) -> None:
        self.position = position
        super().__init__(position=position, problem=problem)


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys, as SHA-256 digest → role, and digest → name."""

    roles: Mapping[bytes, Role]
    names: Mapping[bytes, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> ApiKeys:
        """Parse `KEY:ROLE[:NAME],...`; ApiKeysError naming the entry's position (never its key)."""
        roles: dict[bytes, Role] = {}
        names: dict[bytes, str] = {}
        entries = [entry.strip() for entry in text.split(",")]
        for position, entry in enumerate(entries, start=1):
            if not entry:
                raise ApiKeysError(position, "is empty (entries are KEY:ROLE separated by commas)")
            parts = entry.split(":")
            if len(parts) not in (2, 3) or not parts[0]:
                raise ApiKeysError(position, "is not KEY:ROLE or KEY:ROLE:NAME")
            key, role = parts[0], parts[1]
            if not _KEY.match(key):
                raise ApiKeysError(
                    position, "has a bad key: a key is 16 to 256 visible ASCII characters without ',' or ':'"
                )
            try:
                level = Role[role.strip().upper()]
            except KeyError:
                raise ApiKeysError(position, f"has an unknown role {role!r}; roles are read, write, admin") from None
            digest = _digest(key)
            if digest in roles:
                raise ApiKeysError(position, "repeats an earlier key")
            name = parts[2].strip() if len(parts) == 3 else f"key-{digest.hex()[:8]}"
            if not _NAME.match(name):
                raise ApiKeysError(position, "has a bad name: a name is 1 to 64 characters of A-Z a-z 0-9 _ - . @")
            roles[digest] = level
            names[digest] = name
        return cls(roles, names)

    def role_of(self, key: str) -> Role | None:
        return self.roles.get(_digest(key))

    def name_of(self, key: str) -> str | None:
        return self.names.get(_digest(key))


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def principal(request: Request) -> str:
    """The name of the API key that made this request ("anonymous" when no keys are configured)."""
    name = request.scope.get("state", {}).get("api_key_name")
    return name if isinstance(name, str) else ANONYMOUS


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
        digest = _digest(token.strip())
        role = self.keys.roles.get(digest)
        if role is None:
            await _refuse(send, 401, "invalid API key")
            return
        if role < needed:
            what = f"{scope['method']} {scope['path']}"
            await _refuse(send, 403, f"this key has the {role.name.lower()} role; {what} needs {needed.name.lower()}")
            return
        scope.setdefault("state", {})["api_key_name"] = self.keys.names.get(digest)
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
