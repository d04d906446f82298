"""``ripple bench latency`` against the real server over stdio, briefly and on a small file."""

from __future__ import annotations

import ast
import json
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from ripple.server.bench_latency import (
    FILE_NAME,
    BurstStats,
    _Buffer,
    _Request,
    _score,
    generate_module,
    keystroke_times_us,
    plan_typing,
)
from ripple.server.cli import main
from ripple.server.client import REQUEST_CANCELLED, LspError
from ripple.server.history import EditHistory

REQUIRED = {
    "p50_ms": float,
    "p99_ms": float,
    "answers": int,
    "stale": int,
    "rss_growth_mb": float,
    "keystroke_p99_us": float,
}


def test_generated_module_is_python_of_the_asked_size() -> None:
    text = generate_module(300, seed=3)
    assert len(text.splitlines()) == 300
    ast.parse(text)
    assert text == generate_module(300, seed=3)
    assert text != generate_module(300, seed=4)


def test_typing_renames_adds_arguments_and_inserts_lines() -> None:
    text = generate_module(400, seed=0)
    keys = plan_typing(text, 300, seed=0)
    assert len(keys) == 300
    buffer = _Buffer(text)
    for k in keys:
        buffer.apply(k)
    typed = buffer.text()
    assert "def fetch_" in typed and "def fetch_" not in text
    assert ", strict=True)" in typed
    assert "payload.raise_for_status()" in typed
    # The server's own bookkeeping, fed the same changes, ends on the same text.
    history = EditHistory()
    uri = Path(FILE_NAME).absolute().as_uri()
    history.open(uri, FILE_NAME, text, 1)
    for i, k in enumerate(keys):
        history.change_lsp(uri, i + 2, (k.line, k.start), (k.line, k.end), k.text)
    doc = history.get(uri)
    assert doc is not None and doc.text == typed
    assert len(keystroke_times_us(text, keys, uri)) == len(keys)


def _answered(version: int, result: Any = None, error: LspError | None = None) -> _Request:
    future: Future[Any] = Future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
    return _Request(1, version, ["x = 1", "y = 2"], sent=0.0, future=future, done_at=0.004)


def _edit(uri: str, version: int | None, line: int = 0, character: int = 4) -> dict[str, Any]:
    position = {"line": line, "character": character}
    return {"textDocument": {"uri": uri, "version": version}, "range": {"start": position, "end": position}}


def test_answers_for_another_version_count_as_stale() -> None:
    uri = "file:///m.py"
    stats = BurstStats()
    _score(_answered(3, {"edits": [_edit(uri, 3)]}), uri, stats)
    _score(_answered(3, {"edits": []}), uri, stats)
    _score(_answered(3, {"edits": [_edit(uri, 2)]}), uri, stats)  # computed for the old text
    _score(_answered(3, {"edits": [_edit(uri, 3, line=7)]}), uri, stats)  # beyond the text
    _score(_answered(3, error=LspError(REQUEST_CANCELLED, "cancelled")), uri, stats)
    assert (stats.answers, stats.nonempty, stats.stale, stats.invalid_edits) == (4, 3, 1, 1)
    assert stats.cancelled == 1 and stats.errors == 0
    assert stats.latencies_ms == [4.0] * 4


def test_bench_latency_runs_the_real_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "latency.json"
    code = main(
        ["bench", "latency", "--json", str(out), "--seconds", "2", "--rate", "20", "--lines", "300", "--quiet"]
    )
    assert code == 0
    report = json.loads(out.read_text())
    for key, kind in REQUIRED.items():
        assert isinstance(report[key], kind if kind is int else (int, float)), key
    assert report["requests"] == report["edits"] == 40
    assert report["stale"] == 0
    assert report["invalid_edits"] == 0
    assert report["answers"] > 0
    assert report["suggestions_nonempty"] > 0
    # Every request is answered exactly once: with edits, or as cancelled.
    assert report["answers"] + report["cancelled"] == report["requests"]
    assert report["errors"] == 0 and report["duplicate_answers"] == 0
    assert report["text_in_sync"] is True
    assert report["server_exit_code"] == 0
    assert report["rss_growth_mb"] < 50  # bounded memory while typing
    assert report["device"] in ("cpu", "cuda")
    assert 0 < report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]
    printed = capsys.readouterr().out
    assert "latency p99 (ms)" in printed and "stale answers" in printed


def test_bench_latency_rejects_a_tiny_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "latency", "--json", str(tmp_path / "x.json"), "--lines", "5"])
    assert code == 2
    assert "--lines" in capsys.readouterr().err
