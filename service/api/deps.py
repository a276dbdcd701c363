"""Typed dependencies: what a route needs, taken from app.state (set up in the lifespan)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.metrics import Metrics
from service.processing import OrderProcessor
from service.scoring import ModelHolder
from service.store import OrderStore


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> OrderStore:
    store: OrderStore = request.app.state.store
    return store


def get_models(request: Request) -> ModelHolder:
    models: ModelHolder = request.app.state.models
    return models


def get_processor(request: Request) -> OrderProcessor:
    processor: OrderProcessor = request.app.state.processor
    return processor


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[OrderStore, Depends(get_store)]
ModelsDep = Annotated[ModelHolder, Depends(get_models)]
ProcessorDep = Annotated[OrderProcessor, Depends(get_processor)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
