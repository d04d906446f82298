"""The suggestion engine's parts: minimal edits, debounce, gate, ensemble, config, calibration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ripple.models.errors import UsageError
from ripple.models.suggest.api import EditContext, Suggestion
from ripple.models.suggest.ensemble import Ensemble, Gate
from ripple.models.suggest.registry import make_shipped
from ripple.models.suggest.rules import RuleEngine
from ripple.server.config import RippleConfig, parse_config
from ripple.server.engine import Debounce, Engine, minimal_edit
from ripple.server.history import EditHistory, split_lines
from ripple.server.workspace import Workspace, WorkspaceConfig
from ripple.training.calibrate import SILENCED, MemberScores

LINES = split_lines('a = f(x)\ns = "😀 f(y)"\nlast')


def test_minimal_edit_is_the_changed_characters_in_utf16() -> None:
    edit = minimal_edit(LINES, Suggestion("a.py", 0, 1, ("a = f(x, 5)\n",)))
    assert edit is not None and edit.start == edit.end == (0, 7) and edit.new_text == ", 5"
    # After the emoji, UTF-16 counts two characters for it.
    edit = minimal_edit(LINES, Suggestion("a.py", 1, 2, ('s = "😀 f(y, 5)"\n',)))
    assert edit is not None and edit.start == (1, 11) and edit.new_text == ", 5"
    # Deleting a whole line ends at the start of the next one.
    edit = minimal_edit(LINES, Suggestion("a.py", 0, 1, ()))
    assert edit is not None and edit.start == (0, 0) and edit.end == (1, 0) and edit.new_text == ""
    assert minimal_edit(LINES, Suggestion("a.py", 0, 1, ("a = f(x)\n",))) is None
    assert minimal_edit(LINES, Suggestion("a.py", 2, 9, ("x",))) is None


def test_debounce_grows_on_rejection_and_shrinks_on_acceptance() -> None:
    d = Debounce(100, 40, 400)
    for _ in range(10):
        d.rejected()
    assert d.ms == 400
    for _ in range(20):
        d.accepted()
    assert d.ms == 40


class _Fixed:
    def __init__(self, name: str, suggestions: list[Suggestion]) -> None:
        self.name = name
        self.suggestions = suggestions

    def suggest(self, ctx: EditContext) -> list[Suggestion]:
        return list(self.suggestions)


class _Broken:
    name = "broken"

    def suggest(self, ctx: EditContext) -> list[Suggestion]:
        raise RuntimeError("model exploded")


def _ctx() -> EditContext:
    from ripple.models.suggest.api import Cursor

    return EditContext({"a.py": LINES}, {"a.py": LINES}, (), Cursor("a.py", 0, 0))


def test_ensemble_gates_each_member_merges_duplicates_and_survives_failures() -> None:
    same = ("a = f(x, 5)\n",)
    a = _Fixed("a", [Suggestion("a.py", 0, 1, same, 0.5, "from a"), Suggestion("a.py", 1, 2, (), 0.2)])
    b = _Fixed("b", [Suggestion("a.py", 0, 1, same, 0.9, "from b")])
    ensemble = Ensemble([_Broken(), a, b], Gate({"a": 0.3, "b": 0.8}))
    out = ensemble.suggest(_ctx())
    assert [(s.start_line, s.score) for s in out] == [(0, 0.9)]
    assert out[0].explanation == "from b; from a"
    assert ensemble.failures == {"broken": 1}


def test_gate_files_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "gate.json"
    good.write_text(json.dumps({"thresholds": {"rules": 0.6}, "default": 0.1}))
    gate = Gate.load(good)
    assert gate.threshold("rules") == 0.6 and gate.threshold("other") == 0.1
    assert Gate.load(tmp_path / "missing.json").threshold("x") == 0.0
    bad = tmp_path / "bad.json"
    for content in ("{", '{"thresholds": {"rules": "high"}}', "[]"):
        bad.write_text(content)
        with pytest.raises(UsageError):
            Gate.load(bad)


def test_the_shipped_system_reports_bad_models_and_keeps_the_rules(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "manifest.json").write_text("[1, 2]")
    (tmp_path / "gate.json").write_text('{"thresholds": {"rules": 0.5}}')
    shipped = make_shipped(tmp_path)
    assert [m.name for m in shipped.ensemble.members] == ["rules"]
    assert any("junk" in p for p in shipped.problems)
    assert shipped.ensemble.gate.threshold("rules") == 0.5
    missing = make_shipped(tmp_path / "nope")
    assert missing.problems and [m.name for m in missing.ensemble.members] == ["rules"]


def test_config_accepts_camel_case_and_reports_bad_values() -> None:
    config, problems = parse_config(
        {"ripple": {"maxSuggestions": 3, "debounce_ms": 20, "device": "tpu", "bogus": 1, "minScore": 7}}
    )
    assert config.max_suggestions == 3 and config.debounce_ms == 20.0
    assert config.device == "auto" and config.min_score == 0.0  # out of range: kept
    assert len(problems) == 3 and any("bogus" in p for p in problems)
    again, problems = parse_config({"enabled": "yes"}, config)
    assert again.enabled is True and again.max_suggestions == 3 and problems
    assert parse_config(None) == (RippleConfig(), [])
    assert parse_config([1])[1]


def test_calibration_picks_the_lowest_threshold_that_reaches_the_precision() -> None:
    m = MemberScores("rules", steps=100)
    m.tops = [(0.9, True)] * 30 + [(0.9, False)] * 10 + [(0.5, True)] * 10 + [(0.5, False)] * 30
    assert m.threshold(0.7, min_support=20) == 0.9  # 30/40 right at 0.9; 40/80 at 0.5
    assert m.threshold(0.5, min_support=20) == 0.5
    assert m.threshold(0.9, min_support=20) == SILENCED
    assert m.threshold(0.7, min_support=50) == SILENCED
    curve = m.curve()
    assert [p["shown"] for p in curve] == [40, 80] and curve[1]["coverage"] == 0.8


def test_engine_finds_call_sites_in_unopened_files_and_suppresses_rejections(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def g(url):\n    return fetch(url)\n")
    (tmp_path / "b.py").write_text(
        "def h():\n    return fetch(url)\n\n\ndef k():\n    data = fetch(url)\n"
    )
    (tmp_path / "c.py").write_text("nothing = 'here'\n")
    ws = Workspace([tmp_path], WorkspaceConfig())
    ws.scan()
    history = EditHistory()
    uri = (tmp_path / "a.py").as_uri()
    history.open(uri, "a.py", (tmp_path / "a.py").read_text(), 1)
    engine = Engine(history, Ensemble([RuleEngine()]), RippleConfig(), ws)
    at = len("def g(url):\n    return fetch(url")
    history.change(uri, 2, [(at, at, ", timeout=5")])
    ctx = engine.context(uri, 1, 0)
    assert set(ctx.files) == {"a.py", "b.py"}  # c.py shares no identifier with the edit
    edits = engine.suggest(uri, 1, 0)
    assert [(e.path, e.edit.start, e.edit.new_text) for e in edits] == [
        ("b.py", (1, 20), ", timeout=5"),
        ("b.py", (5, 20), ", timeout=5"),
    ]
    assert edits[0].version is None and edits[0].uri == (tmp_path / "b.py").as_uri()
    engine.did_reject(edits[0].id)
    again = engine.suggest(uri, 1, 0)
    # The rejected change is suppressed (at any line with the same text); the other stays.
    assert [e.edit.start for e in again] == [(5, 20)]
    assert engine.stats["rejected"] == 1
