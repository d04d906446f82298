"""`ripple demo`, the README's first command: a real server over stdio suggests the edit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_suggests_the_argument_at_the_other_call_sites(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ripple.server.cli", "demo", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["server"].endswith("serve")
    assert result["indexed_files"] == 2
    got = {(s["file"], s["line"], s["new"].strip()) for s in result["suggestions"]}
    assert ("client.py", 12, 'return fetch(f"/teams/{team_id}", timeout=5)') in got
    assert ("client.py", 16, 'return fetch(f"/projects/{project_id}", timeout=5)') in got
    # The other file of the project is not open: the workspace index found it.
    assert ("reports.py", 4, 'return fetch(f"/reports/{month}", timeout=5)') in got
    assert all("client.py:9" in s["explanation"] for s in result["suggestions"])
    assert "ripple/nextEdits while typing" in proc.stdout and "pause" in proc.stdout


def test_demo_with_a_broken_models_folder_still_serves_the_rules(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "broken").mkdir(parents=True)
    (models / "broken" / "manifest.json").write_text("{not json")
    out = tmp_path / "demo.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ripple.server.cli", "demo", "--models", str(models), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["models"] == []
    assert any("broken" in p for p in result["problems"])
    assert result["suggestions"]
