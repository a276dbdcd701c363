"""The durable path's steps on an order, each the body of one transaction and, on PostgreSQL, one statement.

    reserve         INSERT .. ON CONFLICT DO NOTHING RETURNING, with the creation's transition and event (a CTE)
    record_attempt  the order's new state, the attempt, the transition and its event (a CTE; FOR UPDATE
                    on the lease)
    record_query    INSERT INTO attempts .. SELECT .. FROM the leased order
    claim_due       one UPDATE .. FROM a FOR UPDATE SKIP LOCKED CTE (queries.claim_statement)
    release / extend_lease   one UPDATE each

On SQLite, where a data-modifying statement cannot sit in a CTE, `reserve` and `record_attempt` are
short sequences of statements in the same (BEGIN IMMEDIATE) transaction, with the same effect; the
store tests run every step on both dialects. Every transition's event (docs/contract.md §8) is
written by the transition's own statement, or its transaction on SQLite: the transactional outbox.
Each function takes the transaction's connection first: `OrderStore` runs it synchronously (`run`)
or without blocking the event loop (`run_async`: PostgreSQL's async driver, no thread; SQLite in a
worker thread), so the API, the worker and every other caller share one definition of each step.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from service.events.payload import encode_document, event_document, failure_summary, new_event_id
from service.jsonvalues import encodable
from service.store import queries
from service.store.errors import LeaseLost, OrderConflict
from service.store.events import txid_expression
from service.store.records import (
    AttemptRecord,
    EventFacts,
    LastOutcome,
    NewAttempt,
    OrderRecord,
    attempt_from_row,
    order_from_row,
)
from service.store.tables import OrderState, attempts, events, orders, transitions

_LAST_OUTCOME: Final[dict[str, LastOutcome]] = {
    "success": "success",
    "completed": "success",
    "failure": "failure",
    "unknown": "unknown",
}
#: Label prefix of the attempt's columns in record_attempt's one row (beside the order's).
_ATTEMPT: Final = "attempt__"


def _postgres(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


# Every statement of the hot path is built once per dialect, with bind parameters, and executed with
# a dict of values: building a CTE statement per call (its column collections, coercions) cost more
# than running it (measured: a third of /process's time under py-spy). Parameter names carry a prefix
# (o_, a_, t_) because SQLAlchemy reserves a column's own name for its generated parameters.

_ORDER_INSERT: Final = (
    "order_id",
    "insurer",
    "operation",
    "payload",
    "request_hash",
    "state",
    "attempts",
    "next_attempt_at",
    "lease_owner",
    "lease_until",
    "created_at",
    "updated_at",
)
_NEW_ATTEMPT_FIELDS: Final = tuple(f.name for f in dataclasses.fields(NewAttempt))
_ATTEMPT_FIELDS: Final = (*_NEW_ATTEMPT_FIELDS, "at", "actor")
#: What reserve and record return of the rows they write: only what the database decides (the new
#: ids, and the order's columns whose SET expressions read the old row); the rest of each record is
#: the parameters and the held order (decoding ~35 columns per /process cost ~20% of its statements'
#: client CPU, py-spy and a micro-benchmark).
_RECORD_ORDER_COLUMNS: Final = (
    "id",
    "state",
    "attempts",
    "next_attempt_at",
    "last_outcome",
    "category",
    "result",
    "first_failure_at",
    "updated_at",
)
_TRANSITION_FIELDS: Final = ("at", "to_state", "reason", "actor")
#: NUL (PostgreSQL text cannot hold it) and lone surrogates (no UTF-8 encoder takes them; json.loads
#: makes them from an escape like "\udc00").
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")


def _storable_text(text: str) -> str:
    return _UNSTORABLE.sub("\ufffd", text)


#: How deep an insurer's value is kept; deeper containers read "…" (orjson stops at 255 levels, and the
#: event document puts the result three levels down).
STORED_DEPTH: Final = 64


def storable(value: Any) -> Any:
    """An insurer's value made storable and encodable everywhere: in every string (and object key) NUL
    and lone surrogates become U+FFFD; an integer beyond 64 bits is kept as its digits, a string;
    nesting past STORED_DEPTH is cut. Whatever an adapter parsed (json.loads takes all of these) is
    recorded, never refused."""
    return encodable(value, text=_storable_text, max_depth=STORED_DEPTH)


def _param(table: sa.Table, prefix: str, name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(prefix + name, type_=table.c[name].type)


def _params(table: sa.Table, prefix: str, names: Collection[str]) -> list[sa.Label[Any]]:
    """Typed bind parameters named after `table`'s columns, as labelled columns (for INSERT .. SELECT)."""
    return [_param(table, prefix, name).label(name) for name in names]


def _bound(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {prefix + name: value for name, value in values.items()}


_EVENT_FIELDS: Final = ("event_id", "order_id", "to_state", "at", "body", "next_attempt_at")


def _event_insert(source: sa.Select[Any]) -> sa.Insert:
    """INSERT INTO events the row of each order `source` selects (its first column: the order's pk),
    due for delivery at once, with the writing transaction's id (the feed's position)."""
    select = source.add_columns(*_params(events, "e_", _EVENT_FIELDS), txid_expression().label("txid"))
    return sa.insert(events).from_select(["order_pk", *_EVENT_FIELDS, "txid"], select)


def _event_parameters(facts: EventFacts, from_state: str | None, to_state: str, now: dt.datetime) -> dict[str, Any]:
    """The event's bind parameters: its id, and its document (docs/contract.md §8) built in Python."""
    event_id = new_event_id(now)
    document = event_document(
        event_id=event_id,
        order_id=facts.order_id,
        insurer=facts.insurer,
        operation=facts.operation,
        from_state=from_state,
        to_state=to_state,
        attempts=facts.attempts,
        result=facts.result,
        failure=facts.failure,
        at=now,
    )
    values = {"event_id": event_id, "order_id": facts.order_id, "to_state": to_state, "at": now}
    return _bound("e_", values | {"body": encode_document(document), "next_attempt_at": now})


def _insert_event(conn: sa.Connection, order_pk: int, parameters: dict[str, Any]) -> None:
    """SQLite: the event row, in the transition's transaction."""
    row = {name: parameters["e_" + name] for name in _EVENT_FIELDS}
    conn.execute(sa.insert(events).values(row | {"order_pk": order_pk}))


# -- reserve ------------------------------------------------------------------------------------


@functools.cache
def reserve_statement(postgres: bool) -> sa.Executable:
    values = {name: _param(orders, "o_", name) for name in _ORDER_INSERT}
    if not postgres:
        return sqlite.insert(orders).values(values).on_conflict_do_nothing().returning(orders.c.id)
    inserted = (
        postgresql.insert(orders)
        .values(values)
        .on_conflict_do_nothing(index_elements=[orders.c.order_id])
        .returning(orders.c.id)
        .cte("inserted")
    )
    creation = sa.select(inserted.c.id, sa.null().label("from_state"), *_params(transitions, "t_", _TRANSITION_FIELDS))
    transition = (
        sa.insert(transitions).from_select(["order_pk", "from_state", *_TRANSITION_FIELDS], creation).cte("transition")
    )
    event = _event_insert(sa.select(inserted.c.id)).cte("event")
    return sa.select(inserted).add_cte(transition).add_cte(event)


@functools.cache
def _transition_statement() -> sa.Executable:
    names = ("order_pk", "from_state", *_TRANSITION_FIELDS)
    return sa.insert(transitions).values({name: _param(transitions, "t_", name) for name in names})


def reserve(
    conn: sa.Connection,
    order_id: str,
    insurer: str,
    operation: str,
    payload: dict[str, Any],
    request_hash: str,
    *,
    lease_owner: str,
    lease_s: float,
    now: dt.datetime,
) -> tuple[OrderRecord, bool]:
    """Insert the order in ASYNC_PROCESSING, leased to `lease_owner`: (order, True).

    The order falls due when the lease runs out, so a worker takes it over if the caller dies
    during its insurer call. An existing order_id gives (existing order, False) when
    `request_hash` matches and raises OrderConflict otherwise. Concurrent reserves of one
    order_id: exactly one gets True (the others wait for its commit, then find its order).
    """
    parameters = reserve_parameters(
        order_id, insurer, operation, payload, request_hash, lease_owner=lease_owner, lease_s=lease_s, now=now
    )
    postgres = _postgres(conn)
    row = conn.execute(reserve_statement(postgres), parameters).mappings().first()
    if row is not None and not postgres:
        conn.execute(_transition_statement(), parameters | {"t_order_pk": row["id"], "t_from_state": None})
        _insert_event(conn, row["id"], parameters)
    if row is not None:
        return reserved(row["id"], parameters), True
    return replayed(queries.find_order(conn, order_id), order_id, request_hash), False


def reserve_parameters(
    order_id: str,
    insurer: str,
    operation: str,
    payload: dict[str, Any],
    request_hash: str,
    *,
    lease_owner: str,
    lease_s: float,
    now: dt.datetime,
) -> dict[str, Any]:
    """The bind parameters of reserve's statements."""
    lease_until = now + dt.timedelta(seconds=lease_s)
    values = {
        "order_id": order_id,
        "insurer": insurer,
        "operation": operation,
        "payload": payload,
        "request_hash": request_hash,
        "state": OrderState.ASYNC_PROCESSING.value,
        "attempts": 0,
        "next_attempt_at": lease_until,
        "lease_owner": lease_owner,
        "lease_until": lease_until,
        "created_at": now,
        "updated_at": now,
    }
    creation = {"at": now, "to_state": OrderState.ASYNC_PROCESSING.value, "reason": "received", "actor": lease_owner}
    facts = EventFacts(order_id, insurer, operation, attempts=0)
    event = _event_parameters(facts, None, OrderState.ASYNC_PROCESSING.value, now)
    return _bound("o_", values) | _bound("t_", creation) | event


def reserved(order_pk: int, parameters: dict[str, Any]) -> OrderRecord:
    """The order reserve inserted: its new id, and the values it was inserted with."""
    values = {name: parameters["o_" + name] for name in _ORDER_INSERT}
    values["state"] = OrderState(values["state"])
    return OrderRecord(pk=order_pk, last_outcome=None, category=None, result=None, first_failure_at=None, **values)


def replayed(existing: OrderRecord | None, order_id: str, request_hash: str) -> OrderRecord:
    """The stored order a reserve of a taken order_id returns; OrderConflict when the bodies differ."""
    if existing is None:  # the conflicting row is gone again (it cannot be: orders are never deleted)
        raise RuntimeError(f"order {order_id!r} neither inserted nor found")
    if existing.request_hash != request_hash:
        raise OrderConflict(order_id)
    return existing


# -- record an attempt ------------------------------------------------------------------------


def _order_changes() -> dict[str, Any]:
    """The order's SET clause, one for every step (the parameters say what changes); its expressions
    read the row as it was before the update."""
    o = functools.partial(_param, orders, "o_")
    never_called = sa.and_(orders.c.last_outcome.is_(None), orders.c.attempts == 0)
    return {
        "state": o("state"),
        "next_attempt_at": o("next_attempt_at"),
        "lease_owner": sa.null(),
        "lease_until": sa.null(),
        "updated_at": o("updated_at"),
        "attempts": orders.c.attempts + sa.bindparam("o_calls", type_=sa.Integer()),
        # the outcome's, else "not_sent" for a skip before any call (no query needed), else unchanged
        "last_outcome": sa.case(
            (o("last_outcome").is_not(None), o("last_outcome")),
            (sa.and_(sa.bindparam("o_skip", type_=sa.Boolean()), never_called), "not_sent"),
            else_=orders.c.last_outcome,
        ),
        "category": sa.func.coalesce(o("category"), orders.c.category),
        "first_failure_at": sa.case(
            (
                sa.bindparam("o_failed", type_=sa.Boolean()),
                sa.func.coalesce(orders.c.first_failure_at, o("updated_at")),
            ),
            else_=orders.c.first_failure_at,
        ),
        "result": sa.case((o("result").is_not(None), o("result")), else_=orders.c.result),
    }


def _held() -> sa.Select[Any]:
    return sa.select(orders.c.id, orders.c.state).where(
        orders.c.id == sa.bindparam("pk", type_=orders.c.id.type),
        orders.c.lease_owner == sa.bindparam("owner", type_=orders.c.lease_owner.type),
    )


@functools.cache
def record_statement() -> sa.Executable:
    """PostgreSQL: the lease checked and locked, the order updated, the attempt and the transition
    inserted — one statement, returning the order and the attempt in one row (none: lease lost)."""
    held = _held().with_for_update().cte("held")
    updated = (
        sa.update(orders)
        .where(orders.c.id == held.c.id)
        .values(_order_changes())
        .returning(*[orders.c[name] for name in _RECORD_ORDER_COLUMNS])
        .cte("updated")
    )
    written = (
        sa.insert(attempts)
        .from_select(["order_pk", *_ATTEMPT_FIELDS], sa.select(updated.c.id, *_params(attempts, "a_", _ATTEMPT_FIELDS)))
        .returning(attempts.c.id, attempts.c.order_pk)
        .cte("written")
    )
    # `held` found the order, so `updated` changed it: the transition needs no other condition
    moved = sa.select(held.c.id, held.c.state.label("from_state"), *_params(transitions, "t_", _TRANSITION_FIELDS))
    changed = held.c.state != sa.bindparam("t_to_state")
    transition = (
        sa.insert(transitions)
        .from_select(["order_pk", "from_state", *_TRANSITION_FIELDS], moved.where(changed))
        .cte("transition")
    )
    event = _event_insert(sa.select(held.c.id).where(changed)).cte("event")
    return (
        sa.select(updated, *[c.label(_ATTEMPT + c.name) for c in written.c])
        .select_from(updated.join(written, written.c.order_pk == updated.c.id))
        .add_cte(transition)
        .add_cte(event)
    )


@functools.cache
def _sqlite_record_statements() -> tuple[sa.Executable, sa.Executable, sa.Executable]:
    """SQLite: the lease check, the order's update, the attempt's insert (the transition: _transition_statement)."""
    update = (
        sa.update(orders)
        .where(orders.c.id == sa.bindparam("pk", type_=orders.c.id.type))
        .values(_order_changes())
        .returning(*[orders.c[name] for name in _RECORD_ORDER_COLUMNS])
    )
    names = ("order_pk", *_ATTEMPT_FIELDS)
    insert = sa.insert(attempts).values({name: _param(attempts, "a_", name) for name in names}).returning(attempts.c.id)
    return _held(), update, insert


def record_attempt(
    conn: sa.Connection,
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
    full_log: bool = True,
    held: OrderRecord | None = None,
) -> OrderRecord:
    """Write the attempt, move the order to `new_state`, release the lease: all or nothing.

    Raises LeaseLost, writing nothing, if `lease_owner` no longer holds the order. `attempts`
    grows by one when `count_call`; a failure (or unknown outcome) sets `category` (when given) and,
    the first time, `first_failure_at`; a skip before any call marks the order `not_sent` (nothing
    to query before sending it); `result` is stored when given. A transition row and its event are
    added when the state changes. Returns the order with its whole attempt log, or, with
    `full_log=False`, with only the attempt written now (no read: the hot path's case).

    `held` is the order as the lease holder holds it (its reserve's or claim's record: nothing else
    changes a leased order), from which the event is built; without it the order is read first.
    """
    if held is None:
        row = conn.execute(sa.select(orders).where(orders.c.id == order_pk)).mappings().first()
        if row is None:
            raise LeaseLost(order_pk, lease_owner)
        held = order_from_row(row)
    parameters = record_parameters(
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
    if _postgres(conn):
        order = recorded(conn.execute(record_statement(), parameters).mappings().first(), parameters, held)
    else:
        order = _record_in_steps(conn, order_pk, parameters, held)
    if full_log:
        return dataclasses.replace(order, attempt_log=queries.attempt_logs(conn, [order_pk]).get(order_pk, ()))
    return order


def record_parameters(
    order_pk: int,
    attempt: NewAttempt,
    *,
    new_state: OrderState,
    next_attempt_at: dt.datetime | None,
    lease_owner: str,
    reason: str,
    actor: str,
    result: Any,
    now: dt.datetime,
    count_call: bool,
    held: OrderRecord,
) -> dict[str, Any]:
    """The bind parameters of record_attempt's statements, the event's built from `held` (the order
    before the step); ValueError for an impossible move."""
    new_state = OrderState(new_state)
    if new_state is OrderState.ASYNC_PROCESSING and next_attempt_at is None:
        raise ValueError("an order kept in ASYNC_PROCESSING needs a next_attempt_at")
    failed = attempt.outcome in ("failure", "unknown")
    result = storable(result)
    written = _attempt_values(attempt, actor=actor, now=now)
    parameters = {
        "pk": order_pk,
        "owner": lease_owner,
        "o_state": new_state.value,
        "o_next_attempt_at": next_attempt_at,
        "o_updated_at": now,
        "o_calls": 1 if count_call else 0,
        "o_last_outcome": _LAST_OUTCOME.get(attempt.outcome),
        "o_skip": attempt.kind == "skip",
        "o_category": attempt.category if failed else None,
        "o_failed": failed,
        "o_result": result,
    }
    parameters |= _bound("a_", written)
    parameters |= _bound("t_", {"at": now, "to_state": new_state.value, "reason": reason, "actor": actor})
    facts = EventFacts(
        held.order_id,
        held.insurer,
        held.operation,
        attempts=held.attempts + (1 if count_call else 0),
        result=result,
        failure=failure_summary(
            error_code=written["error_code"] if failed else None,
            error_message=written["error_message"] if failed else None,
            http_status=attempt.http_status if failed else None,
            category=written["category"] if failed and written["category"] else held.category,
        ),
    )
    return parameters | _event_parameters(facts, held.state.value, new_state.value, now)


def recorded(row: Mapping[Any, Any] | None, parameters: dict[str, Any], held: OrderRecord) -> OrderRecord:
    """The order record_attempt wrote, from the row its statement returned (None: LeaseLost): `held`
    with the columns the update decided (_RECORD_ORDER_COLUMNS), its lease released, and as its log
    the attempt written (the parameters it was inserted with and its new id)."""
    if row is None:
        raise LeaseLost(parameters["pk"], parameters["owner"])
    attempt = AttemptRecord(
        id=row[_ATTEMPT + "id"], order_pk=held.pk, **{name: parameters["a_" + name] for name in _ATTEMPT_FIELDS}
    )
    changed = {name: row[name] for name in _RECORD_ORDER_COLUMNS if name != "id"}
    changed["state"] = OrderState(changed["state"])
    return dataclasses.replace(held, lease_owner=None, lease_until=None, attempt_log=(attempt,), **changed)


def _attempt_values(attempt: NewAttempt, *, actor: str, now: dt.datetime) -> dict[str, Any]:
    """The attempt row's columns but order_pk, made `storable` (an insurer's texts may hold NUL or lone
    surrogates, and the explanation quotes them), on both dialects."""
    fields = {name: storable(getattr(attempt, name)) for name in _NEW_ATTEMPT_FIELDS}  # not asdict: no deep copy
    return fields | {"at": now, "actor": actor}


def _record_in_steps(conn: sa.Connection, order_pk: int, parameters: dict[str, Any], held: OrderRecord) -> OrderRecord:
    held_statement, update, insert = _sqlite_record_statements()
    leased = conn.execute(held_statement, parameters).one_or_none()
    if leased is None:
        raise LeaseLost(order_pk, parameters["owner"])
    changed = conn.execute(update, parameters).mappings().one()
    attempt_id = conn.execute(insert, parameters | {"a_order_pk": order_pk}).scalar_one()
    if leased.state != parameters["t_to_state"]:
        conn.execute(_transition_statement(), parameters | {"t_order_pk": order_pk, "t_from_state": leased.state})
        _insert_event(conn, order_pk, parameters)
    return recorded({**changed, _ATTEMPT + "id": attempt_id}, parameters, held)


# -- queries, claims and leases -----------------------------------------------------------------


@functools.cache
def query_statement() -> sa.Executable:
    leased = _held().with_only_columns(orders.c.id, *_params(attempts, "a_", _ATTEMPT_FIELDS)).with_for_update()
    return sa.insert(attempts).from_select(["order_pk", *_ATTEMPT_FIELDS], leased).returning(*attempts.c)


def record_query(
    conn: sa.Connection, order_pk: int, attempt: NewAttempt, *, lease_owner: str, actor: str, now: dt.datetime
) -> AttemptRecord:
    """Write a query attempt, keeping the lease (one INSERT .. SELECT from the leased order); LeaseLost,
    writing nothing, if the lease is not held."""
    parameters = query_parameters(order_pk, attempt, lease_owner=lease_owner, actor=actor, now=now)
    return queried(conn.execute(query_statement(), parameters).mappings().first(), parameters)


def query_parameters(
    order_pk: int, attempt: NewAttempt, *, lease_owner: str, actor: str, now: dt.datetime
) -> dict[str, Any]:
    """The bind parameters of record_query's statement."""
    if attempt.kind != "query":
        raise ValueError(f"record_query takes attempts of kind 'query', not {attempt.kind!r}")
    return {"pk": order_pk, "owner": lease_owner} | _bound("a_", _attempt_values(attempt, actor=actor, now=now))


def queried(row: Mapping[Any, Any] | None, parameters: dict[str, Any]) -> AttemptRecord:
    """The attempt record_query wrote (None: LeaseLost)."""
    if row is None:
        raise LeaseLost(parameters["pk"], parameters["owner"])
    return attempt_from_row(row)


def claim_due(
    conn: sa.Connection,
    worker_id: str,
    *,
    batch: int,
    lease_s: float,
    now: dt.datetime,
    exclude_insurers: Collection[str] = (),
) -> list[OrderRecord]:
    """Lease up to `batch` due ASYNC_PROCESSING orders to `worker_id` until now+lease_s, oldest due first.

    Due: next_attempt_at <= now and no lease, or an expired one (lease_until < now). Concurrent
    claimers never get the same order. `attempts` is not changed here (it counts calls). Orders
    of `exclude_insurers` are not claimed.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    statement = queries.claim_statement(
        worker_id,
        batch=batch,
        lease_until=now + dt.timedelta(seconds=lease_s),
        now=now,
        exclude_insurers=exclude_insurers,
    )
    claimed = [order_from_row(row) for row in conn.execute(statement).mappings()]
    return sorted(claimed, key=lambda order: (order.next_attempt_at or now, order.pk))


def release(
    conn: sa.Connection, order_pk: int, lease_owner: str, *, next_attempt_at: dt.datetime | None = None
) -> bool:
    """Drop `lease_owner`'s lease (state unchanged), optionally rescheduling; False if not held."""
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    done = conn.execute(
        sa.update(orders).where(orders.c.id == order_pk, orders.c.lease_owner == lease_owner).values(values)
    )
    return done.rowcount == 1


def extend_lease(conn: sa.Connection, order_pk: int, lease_owner: str, *, lease_s: float, now: dt.datetime) -> bool:
    """Keep holding the order until now+lease_s; False if `lease_owner` no longer holds it."""
    done = conn.execute(
        sa.update(orders)
        .where(orders.c.id == order_pk, orders.c.lease_owner == lease_owner)
        .values(lease_until=now + dt.timedelta(seconds=lease_s))
    )
    return done.rowcount == 1


def get(conn: sa.Connection, order_id: str, *, with_attempts: bool = True) -> OrderRecord | None:
    """The order with this order_id (and its attempts, oldest first), or None."""
    order = queries.find_order(conn, order_id)
    if order is None or not with_attempts:
        return order
    log = queries.attempt_logs(conn, [order.pk])
    return dataclasses.replace(order, attempt_log=log.get(order.pk, ()))


#: Steps whose writes are one statement on PostgreSQL, so `OrderStore.run_async` runs them without a
#: transaction block (autocommit: one round trip instead of BEGIN, statement, COMMIT). What else such a
#: step may do is read in a statement of its own, which a transaction would not make more consistent:
#: reserve's lookup of an order_id taken by a concurrent reserve (it must see that one's commit), and
#: record_attempt's read of the whole log (its own attempt is committed by then).
ONE_STATEMENT: Final[frozenset[Callable[..., Any]]] = frozenset(
    {reserve, record_attempt, record_query, claim_due, release, extend_lease}
)
