"""The store's exceptions: every failure a caller must tell apart, each message its docstring.

AsyncgateError (service/errors.py)
└── StoreError
    ├── OrderConflict       same order_id, different request body
    ├── OrderNotFound       no order with that order_id
    ├── InvalidTransition   the order's state does not allow the change
    ├── LeaseLost           another worker took the order; nothing was written
    ├── InvalidCursor       a list cursor that this store did not hand out
    ├── RuleNotFound        no live rule with that rule_id
    └── StoreUnavailable    the database cannot be reached or opened (the original is __cause__)
"""

from __future__ import annotations

from service.errors import AsyncgateError


class StoreError(AsyncgateError):
    """Order store error."""


class OrderConflict(StoreError):
    """Order {order_id!r} already exists with a different request body."""

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        super().__init__(order_id=order_id)


class OrderNotFound(StoreError):
    """Order {order_id!r} does not exist."""

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        super().__init__(order_id=order_id)


class InvalidTransition(StoreError):
    """Order {order_id!r} is {current}: it cannot go to {target}."""

    def __init__(self, order_id: str, current: str, target: str) -> None:
        self.order_id = order_id
        self.current = current
        self.target = target
        super().__init__(order_id=order_id, current=current, target=target)


class LeaseLost(StoreError):
    """Order #{order_pk} is no longer leased to {lease_owner!r}; nothing was written."""

    def __init__(self, order_pk: int, lease_owner: str) -> None:
        self.order_pk = order_pk
        self.lease_owner = lease_owner
        super().__init__(order_pk=order_pk, lease_owner=lease_owner)


class InvalidCursor(StoreError):
    """Invalid list cursor {cursor!r}: pass back a next_cursor exactly as received."""

    def __init__(self, cursor: str) -> None:
        self.cursor = cursor
        super().__init__(cursor=cursor)


class RuleNotFound(StoreError):
    """Rule {rule_id} does not exist (or was removed)."""

    def __init__(self, rule_id: int) -> None:
        self.rule_id = rule_id
        super().__init__(rule_id=rule_id)


class StoreUnavailable(StoreError):
    """Database unavailable: {reason}"""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason=reason)
