"""Who is looking at the console: open (no API keys configured) or the role of the key they logged in with.

Keys are the API's (`ASYNCGATE_API_KEYS`, parsed by service/api/auth.py: roles read < write < admin).
When none is configured the console is open, as the API is. Otherwise the API's Bearer-header
middleware lets /console through and the console checks its own login cookie: the login form stores
the key in an HttpOnly, SameSite=Strict cookie scoped to /console; pages need at least `read`;
requeue and changing operators' rules need `admin`. A state-changing POST that a browser marks as cross-site is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fastapi import Request

from service.api.auth import ANONYMOUS, ApiKeys, Role
from service.errors import AsyncgateError

COOKIE: Final = "asyncgate_console_key"
COOKIE_PATH: Final = "/console"
MAX_KEY_CHARS: Final = 256


class ConsoleLoginRequired(AsyncgateError):
    """This console page needs an API key: log in."""


class ConsoleAccessDenied(AsyncgateError):
    """{action} needs an API key with the {role} role."""

    def __init__(self, action: str, role: str) -> None:
        self.action = action
        self.role = role
        super().__init__(action=action, role=role)


class CrossSiteRequest(AsyncgateError):
    """A console action was posted from another site; it is refused."""


@dataclass(frozen=True)
class Access:
    """What the viewer may do: `open` when no keys are configured, else the role of their key (None: none)."""

    open: bool
    role: Role | None = None
    name: str | None = None  # the key's name (service/api/auth.py)

    def allows(self, role: Role) -> bool:
        return self.open or (self.role is not None and self.role >= role)

    @property
    def can_read(self) -> bool:
        return self.allows(Role.READ)

    @property
    def can_admin(self) -> bool:
        return self.allows(Role.ADMIN)

    @property
    def role_name(self) -> str | None:
        return None if self.role is None else self.role.name.lower()

    @property
    def who(self) -> str:
        """Who is acting, as the API records it: the key's name, or "anonymous" on an open console."""
        return self.name or ANONYMOUS


def access_for(keys: ApiKeys | None, key: str | None) -> Access:
    """The Access of someone presenting `key` (None: no key) when the configured keys are `keys`."""
    if keys is None or not keys.roles:
        return Access(open=True)
    if not key or len(key) > MAX_KEY_CHARS:
        return Access(open=False)
    return Access(open=False, role=keys.role_of(key), name=keys.name_of(key))


def request_access(request: Request) -> Access:
    """The Access of this request, from the console cookie and the keys parsed when the console was installed."""
    keys: ApiKeys | None = getattr(request.app.state, "console_keys", None)
    return access_for(keys, request.cookies.get(COOKIE))


def require(request: Request, role: Role, action: str) -> Access:
    """The request's Access; ConsoleLoginRequired without a valid key, ConsoleAccessDenied when its role is lower."""
    access = request_access(request)
    if access.allows(role):
        return access
    if access.role is None:
        raise ConsoleLoginRequired()
    raise ConsoleAccessDenied(action, role.name.lower())


def check_same_site(request: Request) -> None:
    """Raise CrossSiteRequest when the browser says the POST came from another site."""
    if request.headers.get("sec-fetch-site", "same-origin") == "cross-site":
        raise CrossSiteRequest()
