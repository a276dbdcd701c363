"""The durable order store: orders, their attempts and transitions, on SQLite or PostgreSQL.

engine = create_db_engine(url)   # opens nothing yet
migrate(engine)                  # schema to head (Alembic), idempotent
store = OrderStore(engine, create_async_db_engine(url))  # the only code that reads or writes orders;
                                 # the async engine (PostgreSQL only, else None) serves run_async
"""

from service.store.engine import create_async_db_engine, create_db_engine, migrate, normalize_db_url
from service.store.errors import (
    InvalidCursor,
    InvalidTransition,
    LeaseLost,
    OrderConflict,
    OrderNotFound,
    RuleNotFound,
    StoreError,
    StoreUnavailable,
)
from service.store.records import (
    AttemptKind,
    AttemptOutcome,
    AttemptRecord,
    FirstFailure,
    LastOutcome,
    NewAttempt,
    NewRule,
    OrderRecord,
    RuleChange,
    RuleRecord,
    TransitionRecord,
)
from service.store.repository import OrderStore
from service.store.tables import OrderState

__all__ = [
    "AttemptKind",
    "AttemptOutcome",
    "AttemptRecord",
    "FirstFailure",
    "InvalidCursor",
    "InvalidTransition",
    "LastOutcome",
    "LeaseLost",
    "NewAttempt",
    "NewRule",
    "OrderConflict",
    "OrderNotFound",
    "OrderRecord",
    "OrderState",
    "OrderStore",
    "RuleChange",
    "RuleNotFound",
    "RuleRecord",
    "StoreError",
    "StoreUnavailable",
    "TransitionRecord",
    "create_async_db_engine",
    "create_db_engine",
    "migrate",
    "normalize_db_url",
]
