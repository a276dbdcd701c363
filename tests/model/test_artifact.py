import json
from pathlib import Path

import pytest

from model.artifact import (
    ArtifactIncompatible,
    ArtifactIntegrityError,
    ArtifactNotFound,
    load_artifact,
    save_artifact,
)
from model.registry import RegistryError, activate, active_version, list_versions, resolve_artifact, rollback
from tests.factories import toy_classifier, toy_frame


@pytest.fixture(scope="module")
def classifier():
    return toy_classifier(1500)


def _save(classifier, tmp_path: Path, version: str = "v1") -> Path:
    return save_artifact(classifier, tmp_path, version=version, data={"rows": 1500, "sha256": "ab" * 32})


def test_round_trip_gives_identical_probabilities(classifier, tmp_path):
    loaded = load_artifact(_save(classifier, tmp_path))
    frame = toy_frame(300, seed=9)
    assert (loaded.classifier.predict_proba(frame) == classifier.predict_proba(frame)).all()
    card = loaded.card
    assert card["version"] == "v1"
    assert card["threshold"] == classifier.threshold_
    assert {"scikit-learn", "numpy", "skops", "python"} <= set(card["libraries"])
    assert len(card["model_sha256"]) == 64


def test_tampered_model_file_is_refused(classifier, tmp_path):
    artifact = _save(classifier, tmp_path)
    model_file = artifact / "model.skops"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="SHA-256"):
        load_artifact(artifact)


def test_truncated_model_file_is_refused(classifier, tmp_path):
    artifact = _save(classifier, tmp_path)
    model_file = artifact / "model.skops"
    model_file.write_bytes(model_file.read_bytes()[:1000])
    with pytest.raises(ArtifactIntegrityError):
        load_artifact(artifact)


def test_other_sklearn_minor_version_is_refused(classifier, tmp_path):
    artifact = _save(classifier, tmp_path)
    card = json.loads((artifact / "model_card.json").read_text())
    card["libraries"]["scikit-learn"] = "0.24.2"
    (artifact / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ArtifactIncompatible, match=r"scikit-learn 0\.24\.2"):
        load_artifact(artifact)


def test_untrusted_types_are_refused(classifier, tmp_path):
    import shutil
    import zipfile

    import skops.io as sio

    from model.artifact import sha256_file

    good = _save(classifier, tmp_path / "good")
    artifact = tmp_path / "evil"
    artifact.mkdir()
    sio.dump({"x": Path("/etc/passwd")}, artifact / "model.skops", compression=zipfile.ZIP_DEFLATED)
    shutil.copy(good / "serving.npz", artifact / "serving.npz")
    from model.artifact import PROTOCOL, library_versions

    card = {
        "version": "evil",
        "protocol": PROTOCOL,
        "libraries": library_versions(),
        "model_file": "model.skops",
        "model_sha256": sha256_file(artifact / "model.skops"),
        "serving_file": "serving.npz",
        "serving_sha256": sha256_file(artifact / "serving.npz"),
    }
    (artifact / "model_card.json").write_text(json.dumps(card))
    loaded = load_artifact(artifact)  # serving reads only the tables: no code can run from them
    with pytest.raises(ArtifactIncompatible, match="untrusted types"):
        loaded.classifier  # noqa: B018 - the skops model is deserialized (and refused) on first use


def test_tampered_serving_file_is_refused(classifier, tmp_path):
    artifact = _save(classifier, tmp_path)
    serving = artifact / "serving.npz"
    data = bytearray(serving.read_bytes())
    data[len(data) // 3] ^= 0xFF
    serving.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=r"serving\.npz has SHA-256"):
        load_artifact(artifact)


def test_the_serving_tables_score_exactly_like_the_classifier(classifier, tmp_path):
    from model.records import iter_failures
    from model.scorer import FastScorer

    loaded = load_artifact(_save(classifier, tmp_path))
    from_tables, from_classifier = FastScorer(loaded.tables), FastScorer(classifier)
    for failure in iter_failures(toy_frame(300, seed=4)):
        a, b = from_tables.score(failure), from_classifier.score(failure)
        assert (a.probability, a.category, a.explanation) == (b.probability, b.category, b.explanation)


def test_serving_loads_no_training_machinery(classifier, tmp_path):
    import subprocess
    import sys

    artifact = _save(classifier, tmp_path)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from model.artifact import load_artifact\n"
        "from model.records import Failure\n"
        "from model.scorer import FastScorer\n"
        f"scorer = FastScorer(load_artifact(Path({str(artifact)!r})).tables)\n"
        "print(scorer.score(Failure('acme', 'pay', None, '系统繁忙', 503, 10.0)).async_eligible)\n"
        "print(sorted(m for m in ('sklearn', 'skops', 'scipy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split("\n")[:2] == ["True", "[]"], out.stdout + out.stderr


def test_missing_artifact(tmp_path):
    with pytest.raises(ArtifactNotFound):
        load_artifact(tmp_path)
    with pytest.raises(ArtifactNotFound):
        resolve_artifact(tmp_path)


def test_registry_activate_list_rollback(classifier, tmp_path):
    _save(classifier, tmp_path, "2026-01-01T00-00-00-aaaaaa")
    _save(classifier, tmp_path, "2026-02-01T00-00-00-bbbbbb")
    assert active_version(tmp_path) is None
    activate(tmp_path, "2026-01-01T00-00-00-aaaaaa")
    activate(tmp_path, "2026-02-01T00-00-00-bbbbbb")
    assert resolve_artifact(tmp_path).name == "2026-02-01T00-00-00-bbbbbb"
    assert [(v.version, v.active) for v in list_versions(tmp_path)] == [
        ("2026-01-01T00-00-00-aaaaaa", False),
        ("2026-02-01T00-00-00-bbbbbb", True),
    ]
    assert rollback(tmp_path) == "2026-01-01T00-00-00-aaaaaa"
    assert active_version(tmp_path) == "2026-01-01T00-00-00-aaaaaa"
    with pytest.raises(RegistryError, match="no previously active"):
        rollback(tmp_path)
    with pytest.raises(RegistryError, match="no version 'nope'"):
        activate(tmp_path, "nope")


def test_artifact_folder_given_directly(classifier, tmp_path):
    artifact = _save(classifier, tmp_path)
    assert resolve_artifact(artifact) == artifact


def test_existing_version_is_not_overwritten(classifier, tmp_path):
    _save(classifier, tmp_path)
    with pytest.raises(FileExistsError):
        _save(classifier, tmp_path)
