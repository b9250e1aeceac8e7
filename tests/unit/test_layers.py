"""Every module of queuectl/ has a place in the layers of [tool.importlinter], and they hold."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "queuectl"
PYPROJECT = ROOT / "pyproject.toml"


def modules() -> dict[str, Path]:
    """Every module under queuectl/, by dotted name, from the files (nothing is imported)."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def layers_contracts() -> dict[str, dict[str, Any]]:
    """The layers contracts of [tool.importlinter], by their one container."""
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    found = {}
    for contract in config["contracts"]:
        if contract["type"] == "layers":
            (container,) = contract["containers"]
            found[container] = dict(contract)
    return found


def placed(container: str) -> dict[str, bool]:
    """The module names the layers of `container` list, each with: written yet?"""
    names: dict[str, bool] = {}
    for layer in layers_contracts()[container]["layers"]:
        for tail in re.split(r"[|:]", layer):
            tail = tail.strip()
            optional = tail.startswith("(") and tail.endswith(")")
            names[f"{container}.{tail.strip('()')}"] = not optional
    return names


def imports_of(path: Path) -> list[str]:
    """The queuectl modules a file imports (for the failure message: where it could go)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("queuectl"):
            found.add(str(node.module))
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("queuectl")}
    return sorted(found)


@pytest.mark.parametrize("container", ["queuectl", "queuectl.backends"])
def test_every_module_is_named_in_a_layer(container: str) -> None:
    names = placed(container)
    depth = container.count(".") + 2  # queuectl.cli.app is placed by queuectl.cli
    unplaced = []
    for name, path in modules().items():
        if not name.startswith(f"{container}."):
            continue  # the container itself (its __init__) is not a layer
        if ".".join(name.split(".")[:depth]) not in names:
            unplaced.append(f"{name} (imports: {', '.join(imports_of(path)) or 'nothing'})")
    assert not unplaced, (
        f"place these in the layers of {container} ([tool.importlinter] in pyproject.toml), in "
        "the lowest layer above everything they import:\n  " + "\n  ".join(unplaced)
    )


@pytest.mark.parametrize("container", ["queuectl", "queuectl.backends"])
def test_every_name_in_the_layers_is_a_module(container: str) -> None:
    """A module renamed or deleted leaves no stale name (a "(name)" may be still unwritten)."""
    existing = set(modules())
    required = placed(container).items()
    stale = [name for name, is_required in required if is_required and name not in existing]
    assert not stale, f"named in the layers but not in queuectl/: {stale}"


def test_the_layers_are_exhaustive_and_the_bench_is_forbidden_to_the_runtime() -> None:
    assert all(c.get("exhaustive") is True for c in layers_contracts().values())
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    forbidden = [c for c in config["contracts"] if c["type"] == "forbidden"]
    assert any(
        c["source_modules"] == ["queuectl.*"] and c["forbidden_modules"] == ["queuectl.bench"]
        for c in forbidden
    )


def test_the_contracts_hold() -> None:
    """What `lint-imports` (make lint) checks, so `make unit` catches a wrong import too."""
    cli = pytest.importorskip("importlinter.cli")
    assert cli.lint_imports(config_filename=str(PYPROJECT), no_cache=True) == 0
