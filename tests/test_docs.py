"""The contributor's documents keep up with the code: docs/architecture.md states the layers
as the contract does and describes each of them, the documents' links resolve, the
pre-commit hooks run what the tests run, and CONTRIBUTING.md lists every benchmark with
the keys of its last line."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md",
             *sorted((ROOT / "docs").glob("*.md"))]


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["id"] == "layers")
    return [str(layer) for layer in contract["layers"]]


def test_architecture_states_the_contracts_layers_in_order() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert "\n".join(_layers()) in text, "copy the layers from pyproject.toml"


def test_architecture_describes_every_package_and_module_of_the_contract() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    names = {part.strip() for layer in _layers() for part in layer.split("|")}
    missing = [name for name in sorted(names)
               if f"### `{name}/`" not in text and f"### `{name}.py`" not in text]
    assert not missing, f"docs/architecture.md has no section for {missing}"


def test_relative_links_in_the_documents_resolve() -> None:
    broken = []
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (document.parent / target.split("#")[0]).exists():
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert not broken


def test_readme_links_the_contributors_documents() -> None:
    text = (ROOT / "README.md").read_text()
    for target in ("docs/architecture.md", "CONTRIBUTING.md", "CHANGELOG.md", "LICENSE"):
        assert f"]({target})" in text, target


def test_pre_commit_runs_what_the_tests_run() -> None:
    # The commands of tests/test_lint.py and tests/test_architecture.py, as one would type
    # them; the hooks run on the installed tools, so they must not download any.
    text = (ROOT / ".pre-commit-config.yaml").read_text()
    entries = re.findall(r"^\s*entry:\s*(.+?)\s*$", text, flags=re.M)
    assert entries == ["python3 -m ruff check src tests benchmarks", "python3 -m mypy",
                       "lint-imports --no-cache"]
    assert text.count("language: system") == len(entries)
    assert text.count("pass_filenames: false") == len(entries)
    assert re.findall(r"^\s*- repo:\s*(\S+)", text, flags=re.M) == ["local"]


def _last_line_keys(script: Path) -> list[str] | None:
    """Gives the keys a benchmark's docstring says its last line prints, or None if it
    names no last line (a helper module)."""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    found = re.search(r"last line[^`]*`([^`]+)`", doc, flags=re.I)
    return re.findall(r"([\w<>]+)=", found.group(1)) if found else None


def test_contributing_lists_every_benchmark_with_its_last_line() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    assert scripts
    for script in scripts:
        keys = _last_line_keys(script)
        if keys is None:
            continue
        assert f"`{script.name}`" in text, f"CONTRIBUTING.md does not list {script.name}"
        missing = [key for key in keys if f"{key}=" not in text]
        assert not missing, f"{script.name} prints {missing}, which CONTRIBUTING.md omits"
