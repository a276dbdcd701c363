"""One exception base for the service's own errors (service/errors.py), one way to word a message."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import service
from service.errors import AsyncgateError
from service.learning.reload import ModelRejected
from service.store import OrderNotFound


def _service_exceptions() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(service.__path__, "service."):
        if info.name.startswith("service.store.migrations") or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found.append(obj)
    return found


def test_every_error_the_service_defines_derives_from_the_one_base() -> None:
    errors = _service_exceptions()
    assert len(errors) > 10
    assert [e.__name__ for e in errors if not issubclass(e, AsyncgateError)] == []


def test_the_message_is_the_docstrings_first_line_filled_in() -> None:
    assert str(OrderNotFound("A-1")) == "Order 'A-1' does not exist."
    rejected = ModelRejected(Path("/m"), "broken")
    assert str(rejected) == "model at /m not loaded, the old model keeps serving: broken"
    assert (rejected.path, rejected.reason) == (Path("/m"), "broken")
