"""The base of asyncgate's own errors, and the one way they word their messages.

Every error the service raises for a reason of its own derives from `AsyncgateError`. A class's
message is the first line of its docstring, a template filled with the keyword fields it is raised
with (`OrderNotFound(order_id="A-1")` → "Order 'A-1' does not exist."); the rest of the docstring
says when it is raised. A subclass that takes positional arguments keeps them as typed attributes
and passes them on as fields. The families:

    StoreError              service/store/errors.py (order conflicts, leases, cursors, the database down)
    GatewayError            service/gateway/registry.py (UnknownInsurer, InsurersFileError)
    ApiKeysError            service/api/auth.py (ASYNCGATE_API_KEYS)
    PayloadTooLarge         service/processing.py; CircuitOpen (the worker puts the order back)
    ModelRejected           service/learning/reload.py (a model that may not replace the serving one)
    RuleFileError           service/rule_files.py
    ConsoleLoginRequired    service/console/access.py; ConsoleAccessDenied, CrossSiteRequest
    ScriptError             service/simulator/behaviour.py; SimulatorConfigError; LedgerFileError (ledger.py)

Errors that are also a ValueError (the configuration and file errors) keep that base too, so the
settings' validation and callers that catch ValueError see them as before.

The API's error table (service/api/errors.py) maps them to HTTP answers. model/, synth/ and
training/ import nothing of service/ (tests/test_layout.py keeps it so), so their errors stay their
own: model's ArtifactError family (ModelRejected also derives from it, so a caller that catches
ArtifactError catches it) and RegistryError, synth's VocabularyError, training's DataError and
SplitUnavailable.
"""

from __future__ import annotations


class AsyncgateError(Exception):
    """asyncgate error."""

    def __init__(self, **fields: object) -> None:
        template = (type(self).__doc__ or "").strip().splitlines()[0]
        # Exception's own __init__, not super(): a family may also derive from another exception
        # (ValueError, model's ArtifactError) whose constructor takes other arguments.
        Exception.__init__(self, template.format(**fields))
