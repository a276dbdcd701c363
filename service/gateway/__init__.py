"""The insurer gateway: synchronous calls and status queries to insurers (docs/contract.md §3, docs/adapters.md).

registry.py     insurers file -> InsurerRegistry of InsurerConfig (UnknownInsurer, InsurersFileError)
plugins.py      adapters by name from the entry-point group asyncgate.adapters (AdapterError)
adapters.py     the adapter interface and generic-json -> CallResult / QueryResult, never raising
transport.py    the HTTP seam: HttpTransport.request -> Answer | NotSent | MaybeReceived (aiohttp, httpx)
client.py       make_transport() and InsurerGateway(registry, transport).call / .query
"""

from service.gateway.adapters import (
    CallResult,
    GenericJsonAdapter,
    InsurerAdapter,
    Outcome,
    QueryResult,
    idempotency_key,
)
from service.gateway.client import InsurerGateway, as_transport, make_transport
from service.gateway.plugins import AdapterError, installed, load_adapter
from service.gateway.registry import (
    GatewayError,
    InsurerConfig,
    InsurerRegistry,
    InsurersFileError,
    UnknownInsurer,
    load_insurers,
)
from service.gateway.transport import (
    AiohttpTransport,
    Answer,
    HttpTransport,
    HttpxTransport,
    MaybeReceived,
    NotSent,
    TransportError,
)

__all__ = [
    "AdapterError",
    "AiohttpTransport",
    "Answer",
    "CallResult",
    "GatewayError",
    "GenericJsonAdapter",
    "HttpTransport",
    "HttpxTransport",
    "InsurerAdapter",
    "InsurerConfig",
    "InsurerGateway",
    "InsurerRegistry",
    "InsurersFileError",
    "MaybeReceived",
    "NotSent",
    "Outcome",
    "QueryResult",
    "TransportError",
    "UnknownInsurer",
    "as_transport",
    "idempotency_key",
    "installed",
    "load_adapter",
    "load_insurers",
    "make_transport",
]
