"""Adapters by name from the entry-point group `asyncgate.adapters` (docs/adapters.md).

Every installed distribution may add adapters to the group, asyncgate's own built-ins included
(pyproject.toml). Names are listed from the installed metadata without importing anything; an
adapter is imported only when an insurers file names it, so a broken plugin nobody uses cannot stop
the service. An entry point names a class (or any callable) that takes no argument and returns the
adapter; the object must have `call` and `query` coroutines (`InsurerAdapter`).

Errors (AdapterError, a GatewayError, raised when the insurers file is loaded, i.e. at startup)::

    no adapter named 'x' is installed; installed: [...]
    adapter 'x' is registered twice: dist-a (mod:A) and dist-b (mod:B)
    adapter 'x' (mod:A) could not be loaded: ImportError: ...
    adapter 'x' (mod:A) is not an adapter: it has no coroutine 'query'
"""

from __future__ import annotations

import inspect
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Final

from service.errors import AsyncgateError

if TYPE_CHECKING:
    from service.gateway.adapters import InsurerAdapter

GROUP: Final = "asyncgate.adapters"


class AdapterError(AsyncgateError, LookupError):
    """{problem}

    An insurer names an adapter that is not installed, or an installed adapter cannot be used.
    """


def installed() -> dict[str, EntryPoint]:
    """The adapters installed now, by name (read from the metadata; nothing is imported)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        other = found.get(ep.name)
        if other is not None and other.value != ep.value:
            raise AdapterError(
                problem=f"adapter {ep.name!r} is registered twice: {_origin(other)} and {_origin(ep)} "
                f"(entry-point group {GROUP})"
            )
        found[ep.name] = ep
    return found


def load_adapter(name: str) -> InsurerAdapter:
    """The adapter registered as `name`, made once per process; AdapterError naming what is installed."""
    eps = installed()
    ep = eps.get(name)
    if ep is None:
        raise AdapterError(
            problem=f"no adapter named {name!r} is installed; installed: {sorted(eps)} "
            f"(entry-point group {GROUP}; see docs/adapters.md)"
        )
    return _made(ep.name, ep.value)


@cache
def _made(name: str, value: str) -> InsurerAdapter:
    ep = EntryPoint(name=name, value=value, group=GROUP)
    try:
        factory: Any = ep.load()
        adapter = factory()
    except Exception as exc:
        raise AdapterError(
            problem=f"adapter {name!r} ({value}) could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    for method in ("call", "query"):
        if not inspect.iscoroutinefunction(getattr(adapter, method, None)):
            raise AdapterError(problem=f"adapter {name!r} ({value}) is not an adapter: it has no coroutine {method!r}")
    checked: InsurerAdapter = adapter
    return checked


def _origin(ep: EntryPoint) -> str:
    dist = ep.dist.name if ep.dist is not None else "?"
    return f"{dist} ({ep.value})"
