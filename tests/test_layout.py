"""The project's shape: packages, import invariants, README and CI in agreement."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = {"server": "ripple.server", "models": "ripple.models", "training": "ripple.training"}


def _packages_on_disk() -> set[str]:
    found = set()
    for folder, name in PACKAGE_DIRS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    return found


def test_every_package_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    assert listed == _packages_on_disk()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


# (folder, forbidden import prefixes, files allowed to break the rule and why)
INVARIANTS = [
    ("models", ("pygls", "lsprotocol", "ripple.server", "ripple.training"), {}),
    ("models/edits", ("torch",), {}),
    ("models/suggest", ("torch",), {}),
    # The runtime serves with the base install: numpy + onnxruntime, none of the [train] extra.
    ("models/runtime", ("torch", "onnx", "onnxscript", "safetensors"), {}),
    ("server", ("torch",), {}),
    ("training", ("ripple.server", "pygls", "lsprotocol"), {}),
    # The CLI is the outermost edge: it may reach training, lazily, by module name only.
    ("server", ("ripple.training",), {}),
]


@pytest.mark.parametrize(("folder", "forbidden", "allowed"), INVARIANTS)
def test_import_arrows_point_one_way(
    folder: str, forbidden: tuple[str, ...], allowed: dict[str, str]
) -> None:
    base = ROOT / folder
    if not base.exists():
        return
    offenders = []
    for path in base.rglob("*.py"):
        if str(path.relative_to(ROOT)) in allowed:
            continue
        for name in _imports(path):
            if name.startswith(forbidden) and any(
                name == f or name.startswith(f + ".") for f in forbidden
            ):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def _quick_start_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def test_readme_has_exactly_two_quick_start_commands() -> None:
    blocks = _quick_start_blocks()
    assert len(blocks) == 2, blocks
    run, tests = blocks
    assert "ripple" in run and "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    tests_command = _quick_start_blocks()[1].strip()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests_command in ci
