"""POST /classify and /classify/batch: score failures with the serving model, then operators' rules."""

from __future__ import annotations

from typing import Final

import anyio.to_thread
from fastapi import APIRouter, Request

from model.records import Failure, make_failure
from service.api.responses import JSONBytes
from service.api.schemas import ClassifyBatchRequest, ClassifyBatchResponse, ClassifyRequest, ClassifyResponse
from service.metrics import Metrics
from service.rules import RuleBook
from service.scoring import ModelHolder

router = APIRouter(tags=["classify"])

#: Batches up to this size are scored on the event loop (well under a millisecond); larger ones in a thread.
INLINE_BATCH: Final = 64


def failure_of(body: ClassifyRequest) -> Failure:
    return make_failure(
        body.insurer, body.operation, body.error_code, body.error_message, body.http_status, body.latency_ms
    )


def serving(request: Request) -> tuple[ModelHolder, RuleBook, Metrics]:
    """The model holder, the rules and metrics from app.state (set up in the lifespan).

    The two classify routes read them here rather than through `Depends`: solving two dependencies
    per request cost about 7% of a /classify, the hottest route (bench/http_classify.py).
    """
    state = request.app.state
    models: ModelHolder = state.models
    rules: RuleBook = state.rules
    metrics: Metrics = state.metrics
    return models, rules, metrics


@router.post("/classify", response_model=ClassifyResponse, response_class=JSONBytes)
async def classify(body: ClassifyRequest, request: Request) -> JSONBytes:
    """Classify one failure: async-eligible (execute again later) or final."""
    models, rules, metrics = serving(request)
    verdict = rules.classify(models.current, failure_of(body))
    metrics.classified(verdict)
    return JSONBytes(verdict.as_dict())


@router.post("/classify/batch", response_model=ClassifyBatchResponse, response_class=JSONBytes)
async def classify_batch(body: ClassifyBatchRequest, request: Request) -> JSONBytes:
    """Classify 1 to 10,000 failures; results in the same order."""
    models, rules, metrics = serving(request)
    model = models.current
    failures = [failure_of(item) for item in body.items]
    if len(failures) <= INLINE_BATCH:
        verdicts = rules.classify_many(model, failures)
    else:
        verdicts = await anyio.to_thread.run_sync(
            rules.classify_many, model, failures, limiter=request.app.state.classify_limiter
        )
    for verdict in verdicts:
        metrics.classified(verdict)
    return JSONBytes({"results": [v.as_dict() for v in verdicts]})
