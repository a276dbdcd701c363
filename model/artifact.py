"""Model artifacts: a versioned directory holding `model.skops` and `model_card.json`.

The card records the version, protocol, library versions, training data hash/size/sources,
threshold, metrics, feature schema and the SHA-256 of the model file. Loading verifies all of it
before a single byte is deserialized, and deserializes with skops against an explicit allowlist:

    ArtifactError
    ├── ArtifactNotFound       no card / model file where one was expected
    ├── ArtifactIntegrityError the model file's SHA-256 differs from the card's, or it is unreadable
    └── ArtifactIncompatible   another protocol, another scikit-learn minor version, untrusted types
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import scipy
import sklearn
import skops
import skops.io as sio

from model.classifier import FailureClassifier

PROTOCOL: Final = 2  # 2: word n-grams beside the character n-grams; insurer-scoped codes
MODEL_FILE: Final = "model.skops"
CARD_FILE: Final = "model_card.json"
#: The only non-default types an artifact may contain.
TRUSTED_TYPES: Final = ("model.classifier.FailureClassifier", "model.features.FailureFeatures")


class ArtifactError(Exception):
    """The model artifact at {path} cannot be used: {reason}"""

    def __init__(self, path: Path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"model artifact at {path} cannot be used: {reason}")


class ArtifactNotFound(ArtifactError):
    """No model artifact at {path}."""


class ArtifactIntegrityError(ArtifactError):
    """The model file does not match the SHA-256 its card records (tampered or truncated)."""


class ArtifactIncompatible(ArtifactError):
    """The artifact was written by an incompatible protocol or library version, or holds untrusted types."""


@dataclass(frozen=True)
class LoadedModel:
    classifier: FailureClassifier
    card: dict[str, Any]
    path: Path

    @property
    def version(self) -> str:
        return str(self.card["version"])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "skops": skops.__version__,
    }


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def new_version(data_sha256: str, now: datetime | None = None) -> str:
    """`YYYY-MM-DDTHH-MM-SS-<6 hex of the data hash>` (UTC); sortable by time."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H-%M-%S}-{data_sha256[:6]}"


def save_artifact(
    classifier: FailureClassifier,
    out_dir: Path,
    *,
    version: str,
    data: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> Path:
    """Writes `out_dir/<version>/` atomically (a temp folder renamed into place) and returns it."""
    target = out_dir / version
    if target.exists():
        raise FileExistsError(f"artifact version {version} already exists in {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=out_dir))
    try:
        model_path = staging / MODEL_FILE
        sio.dump(classifier, model_path, compression=zipfile.ZIP_DEFLATED)
        card = {
            "version": version,
            "protocol": PROTOCOL,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "model_file": MODEL_FILE,
            "model_sha256": sha256_file(model_path),
            "libraries": library_versions(),
            "git_sha": _git_sha(),
            "training_data": data,
            "threshold": classifier.threshold_,
            "cost_ratio": classifier.cost_ratio,
            "calibration": {
                "method": "platt",
                "a": classifier.calibration_a_,
                "b": classifier.calibration_b_,
            },
            "params": params or classifier.get_params(),
            "categories": classifier.category_classes,
            "feature_schema": {
                "columns": [
                    "insurer",
                    "operation",
                    "error_code",
                    "error_message",
                    "http_status",
                    "latency_ms",
                ],
                "message": {
                    "char_wb_ngram_range": list(classifier.ngram_range),
                    "word_ngram_range": list(classifier.word_ngram_range),
                    "n_char_features": classifier.features_.n_char_features_,
                    "n_features": classifier.features_.n_message_features_,
                },
                "fields": {"n_features": len(classifier.features_.field_names())},
            },
            "metrics": metrics or {},
        }
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def read_card(artifact_dir: Path) -> dict[str, Any]:
    card_path = artifact_dir / CARD_FILE
    if not card_path.is_file():
        raise ArtifactNotFound(artifact_dir, f"no {CARD_FILE}")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactIntegrityError(artifact_dir, f"{CARD_FILE} is unreadable: {exc}") from exc
    if not isinstance(card, dict):
        raise ArtifactIntegrityError(artifact_dir, f"{CARD_FILE} is not a JSON object")
    return card


def load_artifact(artifact_dir: Path) -> LoadedModel:
    """Verify the card (protocol, scikit-learn minor version, SHA-256, allowlist), then load."""
    card = read_card(artifact_dir)
    if card.get("protocol") != PROTOCOL:
        raise ArtifactIncompatible(artifact_dir, f"protocol {card.get('protocol')!r}, this asyncgate reads {PROTOCOL}")
    trained_with = str(card.get("libraries", {}).get("scikit-learn", ""))
    if trained_with.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ArtifactIncompatible(
            artifact_dir, f"trained with scikit-learn {trained_with or '?'}, running {sklearn.__version__}"
        )
    model_path = artifact_dir / str(card.get("model_file", MODEL_FILE))
    if not model_path.is_file():
        raise ArtifactNotFound(artifact_dir, f"no model file {model_path.name}")
    actual = sha256_file(model_path)
    if actual != card.get("model_sha256"):
        raise ArtifactIntegrityError(
            artifact_dir,
            f"{model_path.name} has SHA-256 {actual[:12]}…, the card records "
            f"{str(card.get('model_sha256'))[:12]}… (tampered or truncated)",
        )
    try:
        untrusted = set(sio.get_untrusted_types(file=model_path))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ArtifactIntegrityError(artifact_dir, f"{model_path.name} is unreadable: {exc}") from exc
    refused = untrusted - set(TRUSTED_TYPES)
    if refused:
        raise ArtifactIncompatible(artifact_dir, f"untrusted types in the model file: {sorted(refused)}")
    classifier = sio.load(model_path, trusted=sorted(untrusted))
    if not isinstance(classifier, FailureClassifier):
        raise ArtifactIncompatible(artifact_dir, f"holds a {type(classifier).__name__}, not a FailureClassifier")
    return LoadedModel(classifier=classifier, card=card, path=artifact_dir)
