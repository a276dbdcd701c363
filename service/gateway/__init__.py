"""The insurer gateway: synchronous calls and status queries to insurers (docs/contract.md §3).

registry.py  insurers file -> InsurerRegistry of InsurerConfig (UnknownInsurer, InsurersFileError)
adapters.py  one insurer format each (generic-json) -> CallResult / QueryResult, never raising
client.py    make_http_client() and InsurerGateway(registry, client).call / .query
"""

from service.gateway.adapters import (
    ADAPTERS,
    CallResult,
    GenericJsonAdapter,
    InsurerAdapter,
    Outcome,
    QueryResult,
    idempotency_key,
)
from service.gateway.client import InsurerGateway, make_http_client
from service.gateway.registry import (
    GatewayError,
    InsurerConfig,
    InsurerRegistry,
    InsurersFileError,
    UnknownInsurer,
    load_insurers,
)

__all__ = [
    "ADAPTERS",
    "CallResult",
    "GatewayError",
    "GenericJsonAdapter",
    "InsurerAdapter",
    "InsurerConfig",
    "InsurerGateway",
    "InsurerRegistry",
    "InsurersFileError",
    "Outcome",
    "QueryResult",
    "UnknownInsurer",
    "idempotency_key",
    "load_insurers",
    "make_http_client",
]
