"""Typed dependencies: what a route needs, taken from app.state (set up in the lifespan).

All are `async def`: FastAPI runs a plain `def` dependency in its thread pool, two thread hops per
request that cost /classify more than scoring itself (bench/http_classify.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.health import InsurerHealth
from service.learning.loop import Learning
from service.metrics import Metrics
from service.processing import OrderProcessor
from service.rules import RuleBook
from service.scoring import ModelHolder
from service.store import OrderStore


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> OrderStore:
    store: OrderStore = request.app.state.store
    return store


async def get_models(request: Request) -> ModelHolder:
    models: ModelHolder = request.app.state.models
    return models


async def get_processor(request: Request) -> OrderProcessor:
    processor: OrderProcessor = request.app.state.processor
    return processor


async def get_health(request: Request) -> InsurerHealth:
    health: InsurerHealth = request.app.state.health
    return health


async def get_learning(request: Request) -> Learning:
    learning: Learning = request.app.state.learning
    return learning


async def get_rules(request: Request) -> RuleBook:
    rules: RuleBook = request.app.state.rules
    return rules


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[OrderStore, Depends(get_store)]
ModelsDep = Annotated[ModelHolder, Depends(get_models)]
ProcessorDep = Annotated[OrderProcessor, Depends(get_processor)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
HealthDep = Annotated[InsurerHealth, Depends(get_health)]
LearningDep = Annotated[Learning, Depends(get_learning)]
RulesDep = Annotated[RuleBook, Depends(get_rules)]
