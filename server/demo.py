"""``ripple demo``: the language server end to end, on a small generated project.

It starts ``ripple serve`` as a subprocess and speaks LSP to it over stdio, exactly as an
editor does: ``initialize`` with a workspace folder (a small sample project written to a
temporary directory), ``didOpen`` of one file, the user's edit typed one keystroke per
``didChange`` (an argument added to the first of several calls), then
``ripple/nextEdits``. It prints what the server suggests, with the round-trip latency,
and the models the server loaded.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from ripple.server.client import LspClient, server_command

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
REPORTS = '''from client import fetch


def monthly_report(month):
    return fetch(f"/reports/{month}")
'''
EDIT_LINE = 8
TYPED = ", timeout=5"
PAUSE_S = 1.0


def _apply(lines: list[str], edit: dict[str, Any]) -> tuple[int, str, str]:
    start, end = edit["range"]["start"], edit["range"]["end"]
    line = start["line"]
    old = lines[line] if line < len(lines) else ""
    # One-line replacements (what the demo's edits are); UTF-16 equals code points here.
    if end["line"] == line:
        new = old[: start["character"]] + edit["newText"] + old[end["character"] :]
    else:
        new = old[: start["character"]] + edit["newText"]
    return line, old, new


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="ripple-demo-") as tmp:
        root = Path(tmp) / "sample"
        root.mkdir()
        (root / "client.py").write_text(CLIENT, encoding="utf-8")
        (root / "reports.py").write_text(REPORTS, encoding="utf-8")
        extra = ["--models", str(args.models)] if args.models is not None else []
        started = time.perf_counter()
        with LspClient(server_command(*extra)) as client:
            client.initialize(root, {"window": {"workDoneProgress": False}})
            status = client.request("ripple/status", {"waitForIndex": True})
            ready_s = time.perf_counter() - started
            uri = client.open(root / "client.py", CLIENT)
            line_text = CLIENT.splitlines()[EDIT_LINE]
            col = line_text.index('")') + 1
            version = 1
            for i, ch in enumerate(TYPED):
                version += 1
                client.change(uri, version, (EDIT_LINE, col + i), (EDIT_LINE, col + i), ch)
            params = {
                "textDocument": {"uri": uri, "version": version},
                "position": {"line": EDIT_LINE, "character": col + len(TYPED)},
            }
            t0 = time.perf_counter()
            typing = client.request("ripple/nextEdits", params)
            latency_ms = (time.perf_counter() - t0) * 1000
            # The user pauses: the server runs its models (off its event loop) and the
            # next request for the same text gets every member's suggestions.
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            result = client.request("ripple/nextEdits", params)
            paused_ms = (time.perf_counter() - t0) * 1000

        edits: list[dict[str, Any]] = result["edits"]
        texts = {"client.py": CLIENT, "reports.py": REPORTS}
        new_line = line_text[:col] + TYPED + line_text[col:]
        models = ", ".join(status.get("models") or []) or "none (rules only)"
        print("ripple demo: `ripple serve` over stdio, a two-file sample project")
        print(f"  server ready in {ready_s:.2f} s; {status['indexedFiles']} files indexed; models: {models}")
        for problem in status.get("problems") or []:
            print(f"  note: {problem}")
        print(f"\nYou typed {TYPED!r} into client.py, line {EDIT_LINE + 1}:")
        print(f"  - {line_text.strip()}")
        print(f"  + {new_line.strip()}")
        print(
            f"\nripple/nextEdits while typing: {len(typing['edits'])} edit(s) in {latency_ms:.1f} ms "
            "(the rules; models run when typing pauses)"
        )
        print(f"after a {PAUSE_S:.0f} s pause: {len(edits)} edit(s) in {paused_ms:.1f} ms:")
        if not edits:
            print("  (none)")
        shown = []
        for edit in edits:
            name = Path(edit["textDocument"]["uri"]).name
            lines = texts.get(name, "").splitlines()
            if name == "client.py":
                lines[EDIT_LINE] = new_line
            line, old, new = _apply(lines, edit)
            print(f"  {name}:{line + 1}  (score {edit.get('score', 0):.2f}) {edit['explanation']}")
            print(f"    - {old.strip()}")
            print(f"    + {new.strip()}")
            shown.append({**edit, "file": name, "line": line, "old": old, "new": new})

    if args.json_out is not None:
        report = {
            "server": " ".join(server_command(*extra)),
            "models": status.get("models") or [],
            "problems": status.get("problems") or [],
            "indexed_files": status["indexedFiles"],
            "edit": {"file": "client.py", "line": EDIT_LINE, "old": line_text, "new": new_line},
            "latency_ms": round(latency_ms, 3),
            "latency_after_pause_ms": round(paused_ms, 3),
            "edits_while_typing": len(typing["edits"]),
            "suggestions": shown,
        }
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0
