"""Static checks as part of the test run: ruff (lint) and mypy (types)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"


def test_ruff_clean() -> None:
    _run([str(BIN / "ruff"), "check", "server", "models", "training", "tests"], ROOT)


def test_mypy_clean(tmp_path: Path) -> None:
    # The folders are installed as ripple.server / ripple.models / ripple.training; mypy
    # cannot follow setuptools' editable finder, so give it the same shape with links.
    pkg = tmp_path / "ripple"
    pkg.mkdir()
    for name in ("server", "models", "training"):
        (pkg / name).symlink_to(ROOT / name)
    env = dict(os.environ, MYPYPATH=str(tmp_path))
    _run(
        [
            str(BIN / "mypy"),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "-p",
            "ripple",
        ],
        tmp_path,
        env,
    )
