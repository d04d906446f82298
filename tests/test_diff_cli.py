"""``ripple diff OLD NEW [--json]`` end to end, as a subprocess (C3PO §3.2 edit scripts).

Data-driven: each case is (before text, after text, flags, expected stdout lines or
JSON objects) through one ``check`` helper; error cases check the exit code and the
one-line message.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def ripple(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ripple.server.cli", *map(str, args)],
        capture_output=True, text=True, timeout=60,
    )


def write_pair(tmp_path: Path, before: str, after: str) -> tuple[Path, Path]:
    old, new = tmp_path / "old.py", tmp_path / "new.py"
    old.write_text(before, encoding="utf-8")
    new.write_text(after, encoding="utf-8")
    return old, new


TEXT_CASES: list[tuple[str, str, str, list[str]]] = [
    # (name, before, after, expected lines)
    ("identical", "x = 1\n", "x = 1\n", []),
    ("rename one identifier is exactly one UPD", "x = foo(1)\ny = foo\n",
     "x = bar(1)\ny = foo\n", ['UPD identifier "foo" -> "bar" @ 0:4']),
    ("add one argument: INS only", "def f(a):\n    return g(a)\n",
     "def f(a):\n    return g(a, timeout)\n",
     ['INS , "," @ 1:14 into argument_list[2]',
      'INS identifier "timeout" @ 1:16 into argument_list[3]']),
    ("move a statement", "a()\nb()\n", "b()\na()\n", ["MOV expression_statement @ 1:0 into module[0]"]),
    ("delete a statement", "a = 1\nb\n", "b\n",
     ['DEL identifier "a" @ 0:0', 'DEL = "=" @ 0:2', 'DEL integer "1" @ 0:4',
      "DEL assignment @ 0:0", "DEL expression_statement @ 0:0"]),
    ("non-ASCII values print as themselves", 's = "héllo"\n', 's = "hällo"\n',
     ['UPD string "\\"héllo\\"" -> "\\"hällo\\"" @ 0:4']),
]

JSON_CASES: list[tuple[str, str, str, list[dict[str, Any]]]] = [
    ("rename", "x = foo(1)\n", "x = bar(1)\n",
     [{"op": "UPD", "type": "identifier", "start": [0, 4], "end": [0, 7],
       "old": "foo", "new": "bar"}]),
    # INS positions are in the NEW file, DEL positions in the OLD one.
    ("insert: positions in the NEW file", "f(a)\n", "\n\nf(a, b)\n",
     [{"op": "INS", "type": ",", "start": [2, 3], "end": [2, 4], "value": ",",
       "parent": "argument_list", "index": 2},
      {"op": "INS", "type": "identifier", "start": [2, 5], "end": [2, 6], "value": "b",
       "parent": "argument_list", "index": 3}]),
    ("delete: positions in the OLD file", "\n\n\ng(b, c)\n", "g(b)\n",
     [{"op": "DEL", "type": ",", "start": [3, 3], "end": [3, 4], "value": ","},
      {"op": "DEL", "type": "identifier", "start": [3, 5], "end": [3, 6], "value": "c"}]),
    ("move", "a()\nb()\n", "b()\na()\n",
     [{"op": "MOV", "type": "expression_statement", "start": [1, 0], "end": [1, 3],
       "parent": "module", "index": 0}]),
    ("no change", "x = 1  # a\n", "x = 1  # b\n", []),
]


def check(tmp_path: Path, before: str, after: str, expected: list[str] | list[dict[str, Any]],
          as_json: bool) -> None:
    old, new = write_pair(tmp_path, before, after)
    result = ripple("diff", old, new, *(["--json"] if as_json else []))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    if as_json:
        assert json.loads(result.stdout) == expected
    else:
        assert result.stdout.splitlines() == expected


@pytest.mark.parametrize(("before", "after", "expected"), [c[1:] for c in TEXT_CASES],
                         ids=[c[0] for c in TEXT_CASES])
def test_text_output(tmp_path: Path, before: str, after: str, expected: list[str]) -> None:
    check(tmp_path, before, after, expected, as_json=False)


@pytest.mark.parametrize(("before", "after", "expected"), [c[1:] for c in JSON_CASES],
                         ids=[c[0] for c in JSON_CASES])
def test_json_output(tmp_path: Path, before: str, after: str,
                     expected: list[dict[str, Any]]) -> None:
    check(tmp_path, before, after, expected, as_json=True)


def _missing(tmp_path: Path) -> tuple[Path, Path]:
    old, _ = write_pair(tmp_path, "x = 1\n", "x = 2\n")
    return old, tmp_path / "absent.py"


def _not_utf8(tmp_path: Path) -> tuple[Path, Path]:
    old, new = write_pair(tmp_path, "x = 1\n", "")
    new.write_bytes(b"x = '\xff'\n")
    return old, new


def _directory(tmp_path: Path) -> tuple[Path, Path]:
    old, _ = write_pair(tmp_path, "x = 1\n", "")
    return old, tmp_path


ERROR_CASES = [
    ("missing file", _missing, "no such file"),
    ("not UTF-8", _not_utf8, "is not UTF-8"),
    ("a directory", _directory, "is a directory"),
]


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_usage_errors(tmp_path: Path, make: Any, message: str) -> None:
    old, new = make(tmp_path)
    result = ripple("diff", old, new)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ripple: error: ") and message in lines[0]
