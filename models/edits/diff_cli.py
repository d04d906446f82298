"""``ripple diff OLD_FILE NEW_FILE [--json]``: print the AST edit script (C3PO §3.2).

One action per line, positions 0-based ``line:col`` (col in bytes, as tree-sitter
counts) in the file the node belongs to: NEW for INS, OLD for DEL, UPD and MOV::

    UPD identifier "old" -> "new" @ 3:8
    INS identifier "timeout" @ 5:20 into argument_list[3]
    MOV expression_statement @ 7:4 into block[0]
    DEL identifier "x" @ 9:0

With ``--json``: a list of ``{"op", "type", "start", "end", ...}`` objects; UPD adds
``"old"``/``"new"``, leaves add ``"value"``, INS and MOV add ``"parent"`` (its type,
``null`` for the virtual root) and ``"index"``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ripple.models.errors import UsageError

from .editscript import Action, Insert, Move, Update, diff_sources
from .languages import language_name_for_path
from .tree import Node


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"is a directory, not a file: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 (byte {exc.start})") from None


def _quote(value: str | None) -> str:
    # json.dumps gives one-line, escaped, double-quoted text (newlines in strings stay \n).
    return "None" if value is None else json.dumps(value, ensure_ascii=False)


def _where(node: Node) -> str:
    return f"@ {node.start_point[0]}:{node.start_point[1]}"


def _parent(parent: Node | None, index: int) -> str:
    return f"into {parent.type if parent is not None else '<root>'}[{index}]"


def format_action(action: Action) -> str:
    """One line of ``ripple diff``'s text output."""
    node = action.node
    value = f" {_quote(node.value)}" if node.value is not None else ""
    if isinstance(action, Update):
        return f"UPD {node.type} {_quote(action.old)} -> {_quote(action.new)} {_where(node)}"
    if isinstance(action, Insert | Move):
        return f"{action.op} {node.type}{value} {_where(node)} {_parent(action.parent, action.index)}"
    return f"DEL {node.type}{value} {_where(node)}"


def action_json(action: Action) -> dict[str, Any]:
    """One object of ``ripple diff --json``'s list."""
    node = action.node
    out: dict[str, Any] = {
        "op": action.op,
        "type": node.type,
        "start": list(node.start_point),
        "end": list(node.end_point),
    }
    if isinstance(action, Update):
        out["old"] = action.old
        out["new"] = action.new
    elif node.value is not None:
        out["value"] = node.value
    if isinstance(action, Insert | Move):
        out["parent"] = action.parent.type if action.parent is not None else None
        out["index"] = action.index
    return out


def run(args: argparse.Namespace) -> int:
    old_path: Path = args.old
    new_path: Path = args.new
    old, new = _read(old_path), _read(new_path)
    # Pick the grammar by extension; ripple diff is about Python first, so unknown
    # extensions (or none, as for temp files) fall back to Python.
    language = language_name_for_path(new_path) or language_name_for_path(old_path) or "python"
    script = diff_sources(old, new, language)
    if args.json:
        # One object per line: readable, and still a single JSON document.
        objects = [json.dumps(action_json(a), ensure_ascii=False) for a in script.actions]
        print("[\n" + ",\n".join(objects) + "\n]" if objects else "[]")
    else:
        for action in script.actions:
            print(format_action(action))
    return 0
