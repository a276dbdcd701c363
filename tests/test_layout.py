"""The shape of the house: import rules between packages, and the README kept true."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str) -> dict[Path, set[str]]:
    found: dict[Path, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[path] = names
    return found


def test_model_imports_nothing_of_ours():
    for path, names in _imports("model").items():
        assert not names & {"training", "service", "synth"}, path


def test_synth_builds_only_on_model():
    for path, names in _imports("synth").items():
        assert not names & {"training", "service"}, path


def test_only_training_and_the_simulator_use_the_synthetic_vocabulary():
    """Serving (the API, the worker, the console) never loads the vocabulary: model/ is what it needs."""
    for path, names in _imports("service").items():
        if "simulator" in path.relative_to(ROOT / "service").parts:
            continue
        assert "synth" not in names, path


def test_training_never_imports_service():
    for path, names in _imports("training").items():
        assert "service" not in names, path


def test_service_imports_training_only_in_the_cli():
    for path, names in _imports("service").items():
        if path.name == "cli.py":
            continue
        assert "training" not in names, path


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_test_command_is_what_ci_runs():
    commands = re.findall(r"```(?:bash|sh)\n(.*?)\n```", _readme(), flags=re.S)
    test_commands = [c for c in commands if "pytest" in c and "venv" in c]
    assert test_commands, "README has no test command"
    assert test_commands[0].strip() in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_tree_lists_what_exists():
    tree = re.search(r"<!-- tree -->\n```\n(.*?)```", _readme(), flags=re.S)
    assert tree, "README has no annotated tree"
    for line in tree.group(1).splitlines():
        entry = line.split("#")[0].strip().strip("├└─│ ")
        if entry:
            assert (ROOT / entry.rstrip("/")).exists(), f"README tree lists {entry}, which does not exist"


@pytest.mark.parametrize(
    "command", ["serve", "worker", "train", "evaluate", "generate-data", "simulate-insurer", "demo"]
)
def test_readme_documents_every_contract_command(command):
    assert f"asyncgate {command}" in _readme()
