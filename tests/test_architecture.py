"""The layering of the package (pyproject.toml [tool.importlinter], docs/architecture.md) holds, and would be
caught if broken."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-logo", "--no-cache"], cwd=root, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


@pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")
def test_the_layers_contract_is_kept_and_a_violation_is_caught(tmp_path):
    result = lint(REPO)
    assert result.returncode == 0 and "1 kept, 0 broken" in result.stdout, result.stdout + result.stderr
    # The model reaching up to the trainer: the contract must break, naming the import.
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "gptjax", copy / "gptjax", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy)
    model = copy / "gptjax" / "model.py"
    model.write_text(model.read_text() + "\nfrom gptjax.trainer import Trainer  # noqa\n")
    broken = lint(copy)
    assert broken.returncode != 0 and "gptjax.model -> gptjax.trainer" in broken.stdout, broken.stdout


def test_no_gptjax_module_is_imported_inside_a_function():
    # Imports inside functions hide the dependency graph from the contract (and from readers).
    found = []
    for path in sorted((REPO / "gptjax").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    names = ([inner.module or ""] if isinstance(inner, ast.ImportFrom) else
                             [a.name for a in inner.names] if isinstance(inner, ast.Import) else [])
                    if any(n == "gptjax" or n.startswith("gptjax.") for n in names):
                        found.append(f"{path.relative_to(REPO)}:{inner.lineno}")
    assert found == []
