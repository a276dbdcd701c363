"""Toy models for the learning-loop tests: with a training profile on the card, and a contrarian one."""

from __future__ import annotations

from pathlib import Path

from model.artifact import load_artifact, save_artifact
from model.classifier import build_classifier
from model.profile import data_profile
from service.scoring import ServingModel
from tests.factories import toy_classifier, toy_frame, toy_params


def save_toy(registry: Path, version: str, *, contrarian: bool = False) -> Path:
    """A toy artifact with a profiled card; `contrarian` learns the labels inverted (it disagrees on everything)."""
    frame = toy_frame(1500)
    if contrarian:
        classifier = build_classifier(toy_params()).fit(frame, 1 - frame["async_eligible"])
    else:
        classifier = toy_classifier(1500)
    data = {"rows": len(frame), "profile": data_profile(frame)}
    return save_artifact(classifier, registry, version=version, data=data)


def load_toy(registry: Path, version: str, *, contrarian: bool = False) -> ServingModel:
    return ServingModel(load_artifact(save_toy(registry, version, contrarian=contrarian)))
