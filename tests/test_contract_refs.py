"""The contract lives in the repository (docs/contract.md), and every reference to it names a section it has."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "docs" / "contract.md"


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / n for n in names if n.endswith((".py", ".md", ".ipynb", ".toml", ".html")) and (ROOT / n).exists()]


def test_the_contract_has_its_eight_sections() -> None:
    headings = re.findall(r"^## §(\d) ", CONTRACT.read_text(encoding="utf-8"), flags=re.M)
    assert headings == [str(n) for n in range(1, 9)]


def test_every_reference_names_a_section_of_docs_contract() -> None:
    sections = set(re.findall(r"^## §(\d) ", CONTRACT.read_text(encoding="utf-8"), flags=re.M))
    for path in _tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        assert not re.search(r"contract sections? \d|CONTRACT\.md", text), f"{path}: cite docs/contract.md §N"
        for number in re.findall(r"docs/contract\.md §(\d)", text):
            assert number in sections, f"{path} cites docs/contract.md §{number}, which does not exist"
