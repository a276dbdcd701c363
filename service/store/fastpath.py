"""The three per-order statements of the durable path on PostgreSQL, straight through an asyncpg pool.

(Each transition's event is part of its statement: docs/contract.md §8.)

`steps` defines every statement (SQLAlchemy expressions, built once with bind parameters) and its
parameters; this module compiles reserve's, record_attempt's and record_query's statements once
for asyncpg and runs them on a pool of its own, encoding the parameters and decoding the row as
SQLAlchemy's types would (JSON as text both ways, times timezone-aware UTC). It exists because
SQLAlchemy's execution machinery (a Connection per step, the greenlet bridge, result processing)
cost more CPU than everything else in /process together (py-spy, 32 connections, 2 cores). The
store tests run each of these steps both ways and compare the records.

Everything else, including a reserve that finds its order_id taken (a replay), goes through the
SQLAlchemy engines.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from service.store import steps
from service.store.engine import asyncpg_connect_args, normalize_db_url
from service.store.records import AttemptRecord, NewAttempt, OrderRecord
from service.store.tables import OrderState, UTCDateTime, attempts, orders

_DIALECT: Final = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]
_TIME: Final = UTCDateTime()
#: Result columns holding JSON (asyncpg hands json back as text): the order's (record) and the attempt's
#: (record_query). Record returns no attempt JSON: steps.recorded builds the attempt from its parameters.
_JSON_COLUMNS: Final = frozenset(
    column.name for table in (orders, attempts) for column in table.c if isinstance(column.type, sa.JSON)
)


#: A bind parameter the caller must pass (the others are the statement's own literals).
_PASSED: Final = object()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    #: per positional parameter: (name, None | "json" | "time", the literal's value or _PASSED); what
    #: SQLAlchemy's construct_params would give, without its cost per call (~15% of a step's CPU)
    arguments: tuple[tuple[str, str | None, Any], ...]


def _encoding(bind_type: Any) -> str | None:
    if isinstance(bind_type, sa.JSON):
        return "json"
    if isinstance(bind_type, UTCDateTime):
        return "time"
    return None


def _compile(statement: sa.Executable) -> _Compiled:
    compiled = statement.compile(dialect=_DIALECT)  # type: ignore[attr-defined]
    arguments = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        literal = _PASSED if bind.required or bind.callable is not None else bind.value
        arguments.append((name, _encoding(bind.type), literal))
    return _Compiled(str(compiled), tuple(arguments))


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset on release, instead of asyncpg's RESET ALL / UNLISTEN / CLOSE ALL round trip:
    these connections only ever run single autocommit statements, so they hold no session state (an
    open transaction would still be rolled back by asyncpg before this is called)."""


class FastSteps:
    """reserve, record_attempt and record_query on PostgreSQL through one asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._reserve = _compile(steps.reserve_statement(True))
        self._record = _compile(steps.record_statement())
        self._query = _compile(steps.query_statement())

    @classmethod
    async def open(cls, url: str, *, size: int, connect_timeout_s: float = 3.0) -> FastSteps:
        """A pool of up to `size` connections to the PostgreSQL `url` (one is opened now)."""
        dsn, settings = asyncpg_connect_args(sa.make_url(normalize_db_url(url)))
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=size,
            server_settings=settings,
            timeout=connect_timeout_s,
            reset=_keep_session,
        )
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def _row(self, compiled: _Compiled, parameters: dict[str, Any]) -> dict[str, Any] | None:
        arguments = []
        for name, encoding, literal in compiled.arguments:
            value = parameters[name] if literal is _PASSED else parameters.get(name, literal)
            if value is None:
                pass
            elif encoding == "json":
                value = orjson.dumps(value).decode()
            elif encoding == "time":
                value = _TIME.process_bind_param(value, _DIALECT)
            arguments.append(value)
        row = await self._pool.fetchrow(compiled.sql, *arguments)
        if row is None:
            return None
        decoded = dict(row.items())
        for name in _JSON_COLUMNS.intersection(decoded):
            if isinstance(decoded[name], str):
                decoded[name] = orjson.loads(decoded[name])
        for name, value in decoded.items():
            if isinstance(value, dt.datetime):
                decoded[name] = value.astimezone(dt.UTC)
        return decoded

    async def reserve(
        self,
        order_id: str,
        insurer: str,
        operation: str,
        payload: dict[str, Any],
        request_hash: str,
        *,
        lease_owner: str,
        lease_s: float,
        now: dt.datetime,
    ) -> OrderRecord | None:
        """steps.reserve's insert; None when the order_id is taken (the caller looks the order up)."""
        parameters = steps.reserve_parameters(
            order_id, insurer, operation, payload, request_hash, lease_owner=lease_owner, lease_s=lease_s, now=now
        )
        row = await self._row(self._reserve, parameters)
        return None if row is None else steps.reserved(row["id"], parameters)

    async def record_attempt(
        self,
        order_pk: int,
        attempt: NewAttempt,
        *,
        new_state: OrderState,
        next_attempt_at: dt.datetime | None,
        lease_owner: str,
        reason: str,
        actor: str,
        result: Any = None,
        now: dt.datetime,
        count_call: bool,
        held: OrderRecord,
    ) -> OrderRecord:
        """steps.record_attempt with full_log=False and the held order given: the returned log holds
        the attempt written now."""
        parameters = steps.record_parameters(
            order_pk,
            attempt,
            new_state=new_state,
            next_attempt_at=next_attempt_at,
            lease_owner=lease_owner,
            reason=reason,
            actor=actor,
            result=result,
            now=now,
            count_call=count_call,
            held=held,
        )
        return steps.recorded(await self._row(self._record, parameters), parameters, held)

    async def record_query(
        self, order_pk: int, attempt: NewAttempt, *, lease_owner: str, actor: str, now: dt.datetime
    ) -> AttemptRecord:
        """steps.record_query."""
        parameters = steps.query_parameters(order_pk, attempt, lease_owner=lease_owner, actor=actor, now=now)
        return steps.queried(await self._row(self._query, parameters), parameters)
