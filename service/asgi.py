"""ASGI factory for multi-process serving (`asyncgate serve --workers N`): each process builds its
Settings from the ASYNCGATE_* environment the CLI exported before starting uvicorn."""

from fastapi import FastAPI

from service.app import create_app
from service.config import Settings


def app() -> FastAPI:
    return create_app(Settings())
