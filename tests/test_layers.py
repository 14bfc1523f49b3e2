"""The layer table of ARCHITECTURE.md section 2, enforced on every import statement in the tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"firmware_bridge", "safety", "control", "sim"}
ALLOWED = {
    "firmware_bridge": set(),
    "safety": {"firmware_bridge"},
    "control": {"safety", "firmware_bridge"},
    "sim": {"firmware_bridge"},
}
# The composition root: the one CLI entry that wires devices for `rfa run` and `rfa sim`.
COMPOSITION_ROOT = ROOT / "control" / "cli.py"


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT


def layer_violations() -> list[str]:
    problems = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            extra = imported_packages(path) - allowed - {package}
            if path == COMPOSITION_ROOT:
                extra -= {"sim"}
            if extra:
                problems.append(f"{path.relative_to(ROOT)} imports {sorted(extra)}")
    return problems


def test_every_module_respects_the_layer_table() -> None:
    assert layer_violations() == []


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import control.procedure\nfrom sim.tissue import LumpedTissue\n")
    assert imported_packages(bad) == {"control", "sim"}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_layer_exists(package: str) -> None:
    assert (ROOT / package / "__init__.py").is_file()
