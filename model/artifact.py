"""Model artifacts: a versioned directory holding `model.skops`, `serving.npz` and `model_card.json`.

The card records the version, protocol, library versions, training data hash/size/sources,
threshold, metrics, feature schema and the SHA-256 of both model files. Loading verifies all of it
before a single byte is read. Serving reads only the serving file (model/serving.py: the scorer's
tables, no scikit-learn, no skops), so a cold start does not import the training machinery; the skops
model — the reference pipeline — is deserialized on first use of `LoadedModel.classifier`, with skops
against an explicit allowlist:

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
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from model.serving import SERVING_FILE, ScorerTables, read_serving_file, tables_of, write_serving_file

if TYPE_CHECKING:
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


@dataclass
class LoadedModel:
    """A verified artifact: its card, the serving tables, and the reference classifier on demand."""

    card: dict[str, Any]
    path: Path
    tables: ScorerTables
    _classifier: FailureClassifier | None = None

    @property
    def version(self) -> str:
        return str(self.card["version"])

    @property
    def classifier(self) -> FailureClassifier:
        """The skops model (the sklearn pipeline), deserialized against the allowlist on first use."""
        if self._classifier is None:
            self._classifier = _load_classifier(self.path, self.card)
        return self._classifier


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _installed(distribution: str) -> str:
    try:
        return installed_version(distribution)
    except PackageNotFoundError:
        return ""


def library_versions() -> dict[str, str]:
    """Versions of the libraries an artifact depends on (read from the installed metadata: no imports)."""
    return {
        "python": platform.python_version(),
        "scikit-learn": _installed("scikit-learn"),
        "numpy": _installed("numpy"),
        "scipy": _installed("scipy"),
        "skops": _installed("skops"),
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
        import skops.io as sio

        model_path = staging / MODEL_FILE
        sio.dump(classifier, model_path, compression=zipfile.ZIP_DEFLATED)
        serving_path = staging / SERVING_FILE
        write_serving_file(tables_of(classifier), serving_path)
        card = {
            "version": version,
            "protocol": PROTOCOL,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "model_file": MODEL_FILE,
            "model_sha256": sha256_file(model_path),
            "serving_file": SERVING_FILE,
            "serving_sha256": sha256_file(serving_path),
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
    """Verify the card (protocol, scikit-learn minor version, SHA-256 of both files), then read the
    serving tables. The skops model is deserialized (allowlist checked) on first use of `.classifier`."""
    card = read_card(artifact_dir)
    if card.get("protocol") != PROTOCOL:
        raise ArtifactIncompatible(artifact_dir, f"protocol {card.get('protocol')!r}, this asyncgate reads {PROTOCOL}")
    trained_with = str(card.get("libraries", {}).get("scikit-learn", ""))
    running = _installed("scikit-learn")
    if trained_with.split(".")[:2] != running.split(".")[:2]:
        raise ArtifactIncompatible(artifact_dir, f"trained with scikit-learn {trained_with or '?'}, running {running}")
    _verified(artifact_dir, card, "model_file", MODEL_FILE, "model_sha256")
    serving_path = _verified(artifact_dir, card, "serving_file", SERVING_FILE, "serving_sha256")
    try:
        tables = read_serving_file(serving_path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ArtifactIntegrityError(artifact_dir, f"{serving_path.name} is unreadable: {exc}") from exc
    return LoadedModel(card=card, path=artifact_dir, tables=tables)


def _verified(artifact_dir: Path, card: dict[str, Any], name_key: str, default: str, sha_key: str) -> Path:
    """The path of one of the artifact's files, after checking its SHA-256 against the card."""
    path = artifact_dir / str(card.get(name_key, default))
    if not path.is_file():
        raise ArtifactNotFound(artifact_dir, f"no model file {path.name}")
    actual = sha256_file(path)
    if actual != card.get(sha_key):
        raise ArtifactIntegrityError(
            artifact_dir,
            f"{path.name} has SHA-256 {actual[:12]}…, the card records "
            f"{str(card.get(sha_key))[:12]}… (tampered or truncated)",
        )
    return path


def _load_classifier(artifact_dir: Path, card: dict[str, Any]) -> FailureClassifier:
    import skops.io as sio

    from model.classifier import FailureClassifier

    model_path = _verified(artifact_dir, card, "model_file", MODEL_FILE, "model_sha256")
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
    return classifier
