"""``ripple demo``: ripple end to end on a small example, printed.

A file with several calls of ``fetch(url)`` is opened; the user adds an argument to
the first call. ripple applies the edit to its parsed document incrementally, computes
the AST edit script of the change, and asks the shipped predictor for the next edits,
as the language server does on a settled edit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ripple.models.edits.diff_cli import format_action
from ripple.models.edits.document import ParsedDocument
from ripple.models.edits.editscript import diff_sources
from ripple.models.suggest.api import Cursor, EditContext, LiveEdit
from ripple.models.suggest.registry import SHIPPED, make_predictor

EXAMPLE_PATH = "client.py"
EXAMPLE = '''import requests


def fetch(url, timeout=None):
    return requests.get(url, timeout=timeout).json()


def load_user(user_id):
    return fetch(f"/users/{user_id}")


def load_team(team_id):
    return fetch(f"/teams/{team_id}")


def load_project(project_id):
    return fetch(f"/projects/{project_id}")
'''
OLD_CALL = 'fetch(f"/users/{user_id}")'
NEW_CALL = 'fetch(f"/users/{user_id}", timeout=5)'


def run(args: argparse.Namespace) -> int:
    doc = ParsedDocument(EXAMPLE, path=EXAMPLE_PATH)
    before_lines = tuple(EXAMPLE.splitlines(keepends=True))

    # The user's edit, typed as one change: add `timeout=5` to the first call.
    start = EXAMPLE.index(OLD_CALL) + len(OLD_CALL) - 1
    applied = doc.apply_edit(start, start, ", timeout=5")
    changed = doc.reparse()
    after = doc.text
    after_lines = tuple(after.splitlines(keepends=True))
    row = applied.start_point.row

    script = diff_sources(EXAMPLE, after)
    ctx = EditContext(
        files={EXAMPLE_PATH: after_lines},
        base={EXAMPLE_PATH: before_lines},
        edits=(
            LiveEdit(
                path=EXAMPLE_PATH,
                start=row,
                end=row + 1,
                old_lines=before_lines[row : row + 1],
                new_lines=after_lines[row : row + 1],
            ),
        ),
        cursor=Cursor(EXAMPLE_PATH, row, len(after_lines[row].rstrip("\n"))),
    )
    predictor = make_predictor(SHIPPED)
    t0 = time.perf_counter()
    suggestions = predictor.suggest(ctx)[:5]
    latency_ms = (time.perf_counter() - t0) * 1000

    print(f"ripple demo: {EXAMPLE_PATH}, {len(before_lines)} lines ({doc.language})")
    print(f"\nThe edit, on line {row + 1}:")
    print(f"  - {before_lines[row].rstrip()}")
    print(f"  + {after_lines[row].rstrip()}")
    print(f"  tree-sitter re-parsed incrementally; {len(changed)} changed range(s)")
    print(f"\nAST edit script ({len(script.actions)} actions):")
    for action in script:
        print(f"  {format_action(action)}")
    print(f"\nNext edits suggested by '{predictor.name}' in {latency_ms:.1f} ms:")
    if not suggestions:
        print("  (none)")
    for s in suggestions:
        old = "".join(after_lines[s.start_line : s.end_line]).rstrip()
        new = "".join(s.new_lines).rstrip()
        why = f"  [{s.explanation}]" if s.explanation else ""
        print(f"  {s.path}:{s.start_line + 1}{why}")
        print(f"    - {old}")
        print(f"    + {new}")

    if args.json_out is not None:
        result = {
            "edit": {"line": row, "old": before_lines[row], "new": after_lines[row]},
            "script": [format_action(action) for action in script],
            "predictor": predictor.name,
            "latency_ms": round(latency_ms, 3),
            "suggestions": [
                {
                    "path": s.path,
                    "start_line": s.start_line,
                    "end_line": s.end_line,
                    "new_lines": list(s.new_lines),
                    "explanation": s.explanation,
                }
                for s in suggestions
            ],
        }
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0
