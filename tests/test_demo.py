"""`ripple demo`, the README's first command, runs end to end and suggests the edit."""

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
    assert result["predictor"] == "ripple"
    assert any(line.startswith("INS") for line in result["script"])
    assert not any(line.startswith("DEL") for line in result["script"])
    got = {(s["start_line"], "".join(s["new_lines"]).strip()) for s in result["suggestions"]}
    assert (12, 'return fetch(f"/teams/{team_id}", timeout=5)') in got
    assert (16, 'return fetch(f"/projects/{project_id}", timeout=5)') in got
    assert "Next edits suggested by 'ripple'" in proc.stdout
