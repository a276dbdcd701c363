"""The insurers file: name -> InsurerConfig, validated on load with errors naming file, insurer and field.

The file is TOML (docs/contract.md §1)::

    [insurers.acme]
    base_url = "http://127.0.0.1:9001"
    timeout_s = 2.0          # client timeout for one synchronous call
    adapter = "generic-json" # the default adapter; any name in the entry-point group asyncgate.adapters
    connect_timeout_s = 1.0  # optional extension; default min(timeout_s, 2.0)
    # any other key is the adapter's option (its `option_keys`), checked by the adapter on load

An insurer naming an adapter that is not installed fails the load (the message names the adapter and
the installed ones); an adapter is imported only when an insurer names it (plugins.py).

Exceptions::

    GatewayError
    ├── UnknownInsurer      an insurer name that the registry does not hold
    └── InsurersFileError   (also a ValueError) the file or a mapping is not a valid registry
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from service.errors import AsyncgateError
from service.gateway.plugins import AdapterError, load_adapter

if TYPE_CHECKING:
    from service.gateway.adapters import InsurerAdapter

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_ADAPTER = "generic-json"
MAX_CONNECT_TIMEOUT_S = 2.0
_FIELDS = frozenset({"base_url", "timeout_s", "adapter", "connect_timeout_s"})


class GatewayError(AsyncgateError):
    """Insurer gateway error."""


class UnknownInsurer(GatewayError):
    """unknown insurer {name!r}

    The insurer is not in the insurers file.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name=name)


class InsurersFileError(GatewayError, ValueError):
    """{where}: {problem}

    The insurers file (or mapping) is not valid; the message names the file, insurer and field.
    """


@dataclass(frozen=True)
class InsurerConfig:
    """How to reach one insurer: where, how long to wait, and which adapter speaks its format."""

    name: str
    base_url: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    adapter: str = DEFAULT_ADAPTER
    connect_timeout_s: float | None = None
    #: the adapter's own insurers-file keys (e.g. signed-form's sign_key_env), as its check_options kept them
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def effective_connect_timeout_s(self) -> float:
        """The connect timeout: the configured one, else min(timeout_s, 2.0)."""
        if self.connect_timeout_s is not None:
            return self.connect_timeout_s
        return min(self.timeout_s, MAX_CONNECT_TIMEOUT_S)


class InsurerRegistry:
    """A read-only, mapping-like set of insurers by name; `get` and `[]` raise UnknownInsurer.

    Deliberately not a `collections.abc.Mapping`: its `get` never returns a default.
    """

    def __init__(
        self,
        insurers: Mapping[str, InsurerConfig] | None = None,
        adapters: Mapping[str, InsurerAdapter] | None = None,
    ) -> None:
        self._insurers: dict[str, InsurerConfig] = dict(insurers or {})
        #: the adapters the insurers name, by adapter name (loaded from the entry points when validated)
        self.adapters: dict[str, InsurerAdapter] = dict(adapters or {})

    @classmethod
    def from_mapping(
        cls,
        mapping: Mapping[str, InsurerConfig | Mapping[str, Any]],
        *,
        source: str = "<mapping>",
        adapters: Mapping[str, InsurerAdapter] | None = None,
    ) -> InsurerRegistry:
        """Build a registry from configs or from plain field dicts (validated like the file).

        Adapters come from `adapters` when given (tests), else from the installed entry points."""
        insurers: dict[str, InsurerConfig] = {}
        used: dict[str, InsurerAdapter] = {}
        for name, entry in mapping.items():
            if isinstance(entry, InsurerConfig):
                if entry.name != name:
                    raise InsurersFileError(where=source, problem=f"insurer {name!r}: config is named {entry.name!r}")
                fields = _as_fields(entry)
            else:
                fields = dict(entry)
            config, adapter = _validated(source, name, fields, adapters)
            insurers[name] = config
            used[config.adapter] = adapter
        return cls(insurers, used)

    def get(self, name: str) -> InsurerConfig:
        """The insurer's config; raises UnknownInsurer for a name the registry does not hold."""
        try:
            return self._insurers[name]
        except KeyError:
            raise UnknownInsurer(name) from None

    def names(self) -> list[str]:
        """Insurer names, sorted."""
        return sorted(self._insurers)

    def __getitem__(self, name: str) -> InsurerConfig:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._insurers

    def __iter__(self) -> Iterator[str]:
        return iter(self._insurers)

    def __len__(self) -> int:
        return len(self._insurers)

    def __repr__(self) -> str:
        return f"InsurerRegistry({self.names()!r})"


def load_insurers(path: Path, *, adapters: Mapping[str, InsurerAdapter] | None = None) -> InsurerRegistry:
    """Read and validate the insurers TOML file; raises InsurersFileError naming the fault."""
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise InsurersFileError(where=path, problem="insurers file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise InsurersFileError(where=path, problem=f"not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"insurers"})
    if unknown:
        raise InsurersFileError(where=path, problem=f"unknown top-level key(s) {unknown}; expected [insurers.NAME]")
    tables = doc.get("insurers")
    if tables is None:
        raise InsurersFileError(where=path, problem="no [insurers.NAME] table")
    if not isinstance(tables, dict):
        raise InsurersFileError(where=path, problem="'insurers' must be a table of [insurers.NAME] tables")
    for name, entry in tables.items():
        if not isinstance(entry, dict):
            raise InsurersFileError(where=path, problem=f"insurer {name!r}: expected a table [insurers.{name}]")
    return InsurerRegistry.from_mapping(tables, source=str(path), adapters=adapters)


def _as_fields(config: InsurerConfig) -> dict[str, Any]:
    return {
        "base_url": config.base_url,
        "timeout_s": config.timeout_s,
        "adapter": config.adapter,
        "connect_timeout_s": config.connect_timeout_s,
        **config.options,
    }


def _adapter(where: str, name: Any, adapters: Mapping[str, InsurerAdapter] | None) -> InsurerAdapter:
    if not isinstance(name, str):
        raise InsurersFileError(where=where, problem=f"field 'adapter' must be a string, got {name!r}")
    if adapters is not None:
        if name not in adapters:
            problem = f"no adapter named {name!r} is installed; installed: {sorted(adapters)}"
            raise InsurersFileError(where=where, problem=f"field 'adapter': {problem}")
        return adapters[name]
    try:
        return load_adapter(name)
    except AdapterError as exc:
        raise InsurersFileError(where=where, problem=f"field 'adapter': {exc}") from None


def _validated(
    source: str, name: str, fields: Mapping[str, Any], adapters: Mapping[str, InsurerAdapter] | None
) -> tuple[InsurerConfig, InsurerAdapter]:
    where = f"{source}: insurer {name!r}"
    if not name:
        raise InsurersFileError(where=source, problem="an insurer name must not be empty")
    adapter_name = fields.get("adapter", DEFAULT_ADAPTER)
    adapter = _adapter(where, adapter_name, adapters)
    option_keys: frozenset[str] = frozenset(getattr(adapter, "option_keys", frozenset()))
    unknown = sorted(set(fields) - _FIELDS - option_keys)
    if unknown:
        allowed = sorted(_FIELDS | option_keys)
        raise InsurersFileError(where=where, problem=f"unknown key(s) {unknown}; allowed: {allowed}")
    options = {key: fields[key] for key in sorted(option_keys) if key in fields}
    check = getattr(adapter, "check_options", None)
    if check is not None:
        try:
            options = dict(check(options))
        except ValueError as exc:
            raise InsurersFileError(where=where, problem=f"adapter {adapter_name!r}: {exc}") from None
    base_url = fields.get("base_url")
    if base_url is None:
        raise InsurersFileError(where=where, problem="missing field 'base_url'")
    if not isinstance(base_url, str):
        raise InsurersFileError(where=where, problem=f"field 'base_url' must be a string, got {base_url!r}")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InsurersFileError(where=where, problem=f"field 'base_url' must be an http(s) URL, got {base_url!r}")
    if parts.query or parts.fragment:
        raise InsurersFileError(
            where=where, problem=f"field 'base_url' must not have a query or fragment: {base_url!r}"
        )
    timeout_s = _positive(where, "timeout_s", fields.get("timeout_s", DEFAULT_TIMEOUT_S))
    connect = fields.get("connect_timeout_s")
    connect_timeout_s = None if connect is None else _positive(where, "connect_timeout_s", connect)
    config = InsurerConfig(
        name=name,
        base_url=base_url.rstrip("/"),
        timeout_s=timeout_s,
        adapter=adapter_name,
        connect_timeout_s=connect_timeout_s,
        options=options,
    )
    return config, adapter


def _positive(where: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InsurersFileError(where=where, problem=f"field {field!r} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InsurersFileError(where=where, problem=f"field {field!r} must be > 0 seconds, got {value!r}")
    return float(value)
