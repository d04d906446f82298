"""``ripple replay REPO_PATH`` on small real git repositories built in a temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ripple.server.cli import main

CLIENT = '''import requests


def fetch(url, timeout=None):
    return requests.get(url, timeout=timeout).json()


def load_user(user_id):
    return fetch(f"/users/{user_id}")


def load_team(team_id):
    return fetch(f"/teams/{team_id}")


def load_project(project_id):
    return fetch(f"/projects/{project_id}")
'''
ADD_TIMEOUT = CLIENT.replace('}")', '}", timeout=5)')
ONE_HUNK = ADD_TIMEOUT.replace("import requests", "import requests  # http")


def _git(repo: Path, *args: str, date: str | None = None) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    if date is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def _commit(repo: Path, files: dict[str, str], message: str, when: int) -> None:
    for name, text in files.items():
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message, date=f"{1_700_000_000 + when} +0000")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    _commit(root, {"client.py": CLIENT}, "Add the client", 1)
    _commit(root, {"client.py": ADD_TIMEOUT}, "Pass a timeout to every fetch", 2)
    _commit(root, {"README.md": "# notes\n"}, "Write notes", 3)
    _commit(root, {"client.py": ONE_HUNK}, "Comment the import", 4)
    return root


def test_replay_prints_steps_and_summary_and_writes_json(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "replay.json"
    assert main(["replay", str(repo), "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "fewer than 20" in printed  # four commits exist; all are replayed or listed
    assert "Pass a timeout to every fetch  (3 hunks, 2 steps)" in printed
    assert "skipped: no Python changes" in printed
    assert "skipped: 1 hunk" in printed
    assert "exact ✓" in printed or "exact yes" in printed
    assert "precision@1" in printed

    report = json.loads(out.read_text())
    assert report["commits_walked"] == 4
    assert report["commits_replayed"] == 1
    assert report["steps"] == 2
    summary = report["summary"]
    assert summary["exact@1"] > 0
    assert summary["exact@1_hits"] >= 1
    assert 0 < summary["precision@1"] <= 1
    assert summary["suggestions_shown"] >= summary["exact@1_hits"]
    replayed = [c for c in report["commits"] if c["skipped"] is None]
    first = replayed[0]["steps"][0]
    # After the first call got its timeout, the next hunk is the second call.
    assert first["next"]["path"] == "client.py"
    assert first["next"]["old_lines"] == ['    return fetch(f"/teams/{team_id}")\n']
    # ripple is right at least once: its top suggestion is one of the calls still to do.
    hits = [step for step in replayed[0]["steps"] if step["exact@1"]]
    assert hits
    for step in hits:
        top = step["suggestions"][0]
        assert top["path"] == "client.py"
        assert top["new_lines"][0].endswith('}", timeout=5)\n')
    skipped = {c["subject"]: c["skipped"] for c in report["commits"] if c["skipped"]}
    assert skipped["Write notes"] == "no Python changes"


def test_replay_verbose_shows_the_texts(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(repo), "--last", "3", "--verbose", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert '+     return fetch(f"/teams/{team_id}", timeout=5)' in printed
    assert "Add the client" not in printed  # outside the last 3 commits
    assert "fewer than" not in printed


def test_not_a_repository_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ripple: error: {tmp_path}: not a git repository"


def test_no_python_changes_is_a_clear_error(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _commit(repo, {"README.md": "# more notes\n"}, "More notes", 5)
    assert main(["replay", str(repo), "--last", "1"]) == 2
    err = capsys.readouterr().err
    assert "none of the last 1 commits changes a Python file" in err
