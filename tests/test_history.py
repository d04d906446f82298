"""The live edit history: coalescing, folding, settling, and the replay invariant."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from ripple.server.history import EditHistory, coalesce, split_lines

EXAMPLES = 1000 if os.environ.get("RIPPLE_SLOW") else 200

URI = "file:///w/a.py"
TEXT = "def f(a):\n    return g(a)\n\n\nx = g(1)\ny = g(2)\n"


def _type(history: EditHistory, offset: int, text: str, version: int) -> int:
    for ch in text:
        history.change(URI, version, [(offset, offset, ch)])
        offset += 1
        version += 1
    return version


def test_keystrokes_coalesce_into_one_line_edit() -> None:
    h = EditHistory()
    h.open(URI, "a.py", TEXT, 1)
    at = TEXT.index("g(1)") + 3
    _type(h, at, ", 5", 2)
    assert len(h.edits) == 1
    edit = h.edits[0]
    assert (edit.start, edit.end) == (4, 5)
    assert edit.old_lines == ("x = g(1)\n",)
    assert edit.new_lines == ("x = g(1, 5)\n",)


def test_an_edit_elsewhere_starts_a_new_edit_and_undo_removes_one() -> None:
    h = EditHistory()
    h.open(URI, "a.py", TEXT, 1)
    v = _type(h, TEXT.index("g(1)") + 3, ", 5", 2)
    doc = h.get(URI)
    assert doc is not None
    at = doc.text.index("g(2)") + 3
    v = _type(h, at, ", 5", v)
    assert [e.start for e in h.edits] == [4, 5]
    # Deleting what was just typed on line 5 undoes that edit entirely.
    h.change(URI, v, [(at, at + 3, "")])
    assert [e.start for e in h.edits] == [4]


def test_old_edits_fold_into_the_base_and_a_pause_settles() -> None:
    now = [0.0]
    h = EditHistory(max_live_edits=2, settle_after_s=10, clock=lambda: now[0])
    h.open(URI, "a.py", TEXT, 1)
    for i, name in enumerate(["x", "y"]):
        doc = h.get(URI)
        assert doc is not None
        at = doc.text.index(f"{name} = ")
        h.change(URI, 2 + i, [(at, at + 1, name + name)])
    doc = h.get(URI)
    assert doc is not None
    at = doc.text.index("def f")
    h.change(URI, 9, [(at + 4, at + 5, "h")])
    assert len(h.edits) == 2  # the first fell into the base
    ctx = h.context(URI, 0, 0)
    assert ctx.base["a.py"][4] == "xx = g(1)\n"
    assert ctx.snapshots("a.py")[-1] == ctx.files["a.py"]
    now[0] = 11.0
    ctx = h.context(URI, 0, 0)
    assert ctx.edits == () and ctx.base["a.py"] == ctx.files["a.py"]


def test_coalesce_refuses_edits_outside_the_last_one() -> None:
    from ripple.models.suggest.api import LiveEdit

    last = LiveEdit("a.py", 3, 4, ("a\n",), ("b\n", "c\n"))
    assert coalesce(last, LiveEdit("a.py", 5, 6, ("d\n",), ("e\n",))) is None
    assert coalesce(last, LiveEdit("b.py", 3, 4, ("b\n",), ("x\n",))) is None
    merged = coalesce(last, LiveEdit("a.py", 4, 5, ("c\n",), ("z\n",)))
    assert merged is not None and merged.new_lines == ("b\n", "z\n") and merged.end == 4


def test_split_lines_matches_the_protocol_line_breaks() -> None:
    assert split_lines("") == ()
    assert split_lines("a\nb") == ("a\n", "b")
    assert split_lines("a\n") == ("a\n",)
    assert split_lines("a\u2028b\n") == ("a\u2028b\n",)  # not a line break in LSP


ALPHABET = st.sampled_from(["a", "b", "\n", " ", "(", ")", "é", "😀"])


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    text=st.text(ALPHABET, max_size=40),
    ops=st.lists(
        st.tuples(st.floats(0, 1), st.floats(0, 1), st.text(ALPHABET, max_size=5)),
        max_size=25,
    ),
    max_live=st.integers(1, 6),
)
def test_base_plus_live_edits_is_always_the_current_text(
    text: str, ops: list[tuple[float, float, str]], max_live: int
) -> None:
    h = EditHistory(max_live_edits=max_live)
    h.open(URI, "a.py", text, 1)
    for version, (a, b, new) in enumerate(ops, start=2):
        doc = h.get(URI)
        assert doc is not None
        n = len(doc.text)
        start, end = sorted((round(a * n), round(b * n)))
        h.change(URI, version, [(start, end, new)])
        ctx = h.context(URI, 0, 0)
        assert ctx.files["a.py"] == split_lines(doc.text)
        assert ctx.snapshots("a.py")[-1] == ctx.files["a.py"]
        assert len(ctx.edits) <= max_live
        for edit in ctx.edits:
            assert edit.old_lines != edit.new_lines
