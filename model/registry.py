"""The model registry: a folder of artifact versions and an `ACTIVE` file naming the one that serves.

    <registry>/<version>/model_card.json + model.skops
    <registry>/ACTIVE      the active version's name
    <registry>/HISTORY     previously active versions, oldest first (for rollback)

`--model-dir` may also name one artifact folder directly; `resolve_artifact` accepts both.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.artifact import CARD_FILE, ArtifactNotFound, read_card

ACTIVE_FILE = "ACTIVE"
HISTORY_FILE = "HISTORY"


class RegistryError(Exception):
    """The model registry at {path} cannot do that: {reason}"""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"model registry at {path}: {reason}")


@dataclass(frozen=True)
class VersionInfo:
    version: str
    path: Path
    active: bool
    card: dict[str, Any]


def is_artifact_dir(path: Path) -> bool:
    return (path / CARD_FILE).is_file()


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def active_version(registry: Path) -> str | None:
    marker = registry / ACTIVE_FILE
    if not marker.is_file():
        return None
    name = marker.read_text(encoding="utf-8").strip()
    return name or None


def resolve_artifact(model_dir: Path) -> Path:
    """The artifact folder to load: `model_dir` itself, or its registry's active version."""
    if is_artifact_dir(model_dir):
        return model_dir
    version = active_version(model_dir)
    if version is None:
        raise ArtifactNotFound(
            model_dir, f"neither an artifact ({CARD_FILE}) nor a registry with an {ACTIVE_FILE} version"
        )
    artifact = model_dir / version
    if not is_artifact_dir(artifact):
        raise ArtifactNotFound(artifact, f"{ACTIVE_FILE} names version {version!r}, which has no {CARD_FILE}")
    return artifact


def list_versions(registry: Path) -> list[VersionInfo]:
    """Every version in the registry, oldest first."""
    if not registry.is_dir():
        return []
    active = active_version(registry)
    found = [
        VersionInfo(child.name, child, child.name == active, read_card(child))
        for child in sorted(registry.iterdir())
        if child.is_dir() and not child.name.startswith(".") and is_artifact_dir(child)
    ]
    return found


def activate(registry: Path, version: str) -> None:
    """Make `version` active; the previously active one goes on the rollback history."""
    if not is_artifact_dir(registry / version):
        known = ", ".join(v.version for v in list_versions(registry)) or "none"
        raise RegistryError(registry, f"no version {version!r} (known: {known})")
    previous = active_version(registry)
    if previous == version:
        return
    if previous is not None:
        history = _history(registry)
        _write_atomic(registry / HISTORY_FILE, "".join(f"{v}\n" for v in [*history, previous]))
    _write_atomic(registry / ACTIVE_FILE, f"{version}\n")


def rollback(registry: Path) -> str:
    """Re-activate the previously active version; returns it."""
    history = _history(registry)
    while history:
        candidate = history.pop()
        if is_artifact_dir(registry / candidate):
            _write_atomic(registry / HISTORY_FILE, "".join(f"{v}\n" for v in history))
            _write_atomic(registry / ACTIVE_FILE, f"{candidate}\n")
            return candidate
    raise RegistryError(registry, "no previously active version to roll back to")


def _history(registry: Path) -> list[str]:
    path = registry / HISTORY_FILE
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
