"""ParsedDocument: incremental edits agree with a fresh parse; positions round-trip."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ripple.models.edits.document import ParsedDocument, common_prefix_length
from ripple.models.edits.languages import language_name_for_path
from ripple.models.edits.positions import (
    LineIndex,
    LspPosition,
    Point,
    code_points_to_utf16,
    utf16_len,
    utf16_to_code_points,
)

SLOW = os.environ.get("RIPPLE_SLOW") == "1"
EXAMPLES = 1000 if SLOW else 200

SEED_SOURCE = '''import os


def fetch(url, retries=3):
    """Fetch 😀 a URL — naïve version."""
    for attempt in range(retries):
        data = os.environ.get("KEY_日本", "x\u0301")
        if data:
            return fetch_once(url, data)
    return None


class Client:
    def __init__(self, base):
        self.base = base

    def get(self, path):
        return fetch(self.base + path)
'''

# Fragments an edit may insert: code, punctuation that breaks the syntax, unicode
# (astral, CJK, combining marks), and line breaks.
FRAGMENTS = [
    "x", "(", ")", ":", "\n", "\n    ", "    ", "def g():\n    pass\n", "fetch(url, t)",
    "'", '"""', "#", "😀", "日本語", "e\u0301", "𝔘", "\r\n", "timeout=5", "[", "]", "λ",
    "", " ", ",", "return", "class", "\t",
]


@st.composite
def edit_sequences(draw: st.DrawFn) -> tuple[str, list[tuple[float, float, str]]]:
    n = draw(st.integers(min_value=1, max_value=12))
    edits = []
    for _ in range(n):
        a = draw(st.floats(min_value=0, max_value=1))
        b = draw(st.floats(min_value=0, max_value=1))
        frag = draw(
            st.one_of(
                st.sampled_from(FRAGMENTS),
                st.text(max_size=6),
                st.lists(st.sampled_from(FRAGMENTS), max_size=3).map("".join),
            )
        )
        edits.append((a, b, frag))
    return SEED_SOURCE, edits


def _node_spans(doc: ParsedDocument) -> list[tuple[str, int, int]]:
    assert doc.tree is not None
    spans = []
    cursor = doc.tree.walk()
    visited = False
    while True:
        if not visited:
            node = cursor.node
            assert node is not None
            spans.append((node.type, node.start_byte, node.end_byte))
            if cursor.goto_first_child():
                continue
        if cursor.goto_next_sibling():
            visited = False
            continue
        if not cursor.goto_parent():
            break
        visited = True
    return spans


def _check_against_fresh(doc: ParsedDocument) -> None:
    fresh = ParsedDocument(doc.text, path="x.py")
    assert doc.source == doc.text.encode("utf-8")
    assert doc.sexp() == fresh.sexp()
    assert _node_spans(doc) == _node_spans(fresh)
    ref = LineIndex(doc.text)
    assert np.array_equal(doc.lines._cp, ref._cp)
    assert np.array_equal(doc.lines._bytes, ref._bytes)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(edit_sequences())
def test_incremental_edits_match_fresh_parse(case: tuple[str, list[tuple[float, float, str]]]) -> None:
    text, edits = case
    doc = ParsedDocument(text, path="x.py")
    expected = text
    for a, b, frag in edits:
        start, end = sorted((int(a * len(expected)), int(b * len(expected))))
        applied = doc.apply_edit(start, end, frag)
        assert applied.old_text == expected[start:end]
        assert applied.new_end == start + len(frag)
        expected = expected[:start] + frag + expected[end:]
        assert doc.text == expected
        _check_against_fresh(doc)


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(st.text(max_size=40), st.integers(0, 60), st.integers(0, 60), st.text(max_size=8))
def test_plain_text_documents_edit_like_strings(text: str, a: int, b: int, frag: str) -> None:
    doc = ParsedDocument(text, path="notes.unknown-ext")
    assert doc.tree is None and doc.language is None
    start, end = sorted((min(a, len(text)), min(b, len(text))))
    doc.apply_edit(start, end, frag)
    assert doc.text == text[:start] + frag + text[end:]
    assert doc.sexp() == ""


def test_apply_edit_clamps_and_orders_a_bad_range() -> None:
    doc = ParsedDocument("abc\n", path="a.py")
    doc.apply_edit(10, -5, "x")  # reversed and out of range: whole text replaced
    assert doc.text == "x"


def test_changed_ranges_report_the_new_argument() -> None:
    doc = ParsedDocument("fetch(url)\n", path="a.py")
    doc.apply_edit(9, 9, ", timeout")
    assert doc.text == "fetch(url, timeout)\n"
    changed = doc.reparse()
    assert changed, "adding an argument changes the tree's shape"
    assert changed[0].start_byte >= 9 and changed[0].end_byte <= 19
    assert doc.reparse() == (), "nothing changed since the last parse"


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(edit_sequences())
def test_batched_edits_parse_once_like_a_fresh_parse(
    case: tuple[str, list[tuple[float, float, str]]],
) -> None:
    # Many edits recorded on one tree, then one incremental re-parse.
    text, edits = case
    doc = ParsedDocument(text, path="x.py")
    for a, b, frag in edits:
        start, end = sorted((int(a * len(doc.text)), int(b * len(doc.text))))
        doc.apply_edit(start, end, frag)
    doc.reparse()
    _check_against_fresh(doc)


def test_apply_lsp_edit_uses_utf16_columns() -> None:
    # "😀" is two UTF-16 units, one code point and four UTF-8 bytes.
    doc = ParsedDocument('s = "😀x"\n', path="a.py")
    doc.apply_lsp_edit((0, 7), (0, 8), "y")
    assert doc.text == 's = "😀y"\n'
    assert doc.sexp() == ParsedDocument(doc.text, path="a.py").sexp()


def test_replace_text_keeps_the_tree_incremental() -> None:
    doc = ParsedDocument("a = 1\nb = 2\n", path="a.py")
    applied = doc.replace_text("a = 1\nb = 22\n")
    assert (applied.start, applied.old_end, applied.new_text) == (11, 11, "2")
    assert doc.sexp() == ParsedDocument("a = 1\nb = 22\n", path="a.py").sexp()


@pytest.mark.parametrize(
    ("path", "language", "root"),
    [
        ("a.py", "python", "module"),
        ("stubs/a.pyi", "python", "module"),
        ("web/app.ts", "typescript", "program"),
        ("main.go", "go", "source_file"),
        ("lib.rs", "rust", "source_file"),
        ("README", None, None),
        ("data.unknown", None, None),
    ],
)
def test_language_by_extension(path: str, language: str | None, root: str | None) -> None:
    assert language_name_for_path(path) == language
    doc = ParsedDocument("x", path=path)
    assert (doc.tree.root_node.type if doc.tree else None) == root


# -- positions -------------------------------------------------------------------------

POSITION_CASES = [
    # (line text, code-point column, UTF-16 column, UTF-8 byte column)
    ("abc", 2, 2, 2),
    ("é", 1, 1, 2),
    ("😀x", 1, 2, 4),
    ("😀x", 2, 3, 5),
    ("日本語", 2, 2, 6),
    ("e\u0301f", 2, 2, 3),  # combining acute accent: its own code point
    ("𝔘𝔫𝔦", 3, 6, 12),
]


@pytest.mark.parametrize(("line", "cp", "utf16", "utf8"), POSITION_CASES)
def test_position_units(line: str, cp: int, utf16: int, utf8: int) -> None:
    index = LineIndex("first line\n" + line + "\nlast")
    offset = len("first line\n") + cp
    assert index.offset_to_lsp(offset) == LspPosition(1, utf16)
    assert index.lsp_to_offset(LspPosition(1, utf16)) == offset
    assert index.offset_to_point(offset) == Point(1, utf8)
    assert index.point_to_offset(Point(1, utf8)) == offset
    assert index.offset_to_byte(offset) == len(("first line\n" + line[:cp]).encode("utf-8"))
    assert index.byte_to_offset(index.offset_to_byte(offset)) == offset


def test_lsp_positions_are_clamped() -> None:
    index = LineIndex("ab\n😀\n")
    assert index.lsp_to_offset((0, 99)) == 2  # past the end of a line: its end
    assert index.lsp_to_offset((1, 1)) == 3  # inside a surrogate pair: the character's start
    assert index.lsp_to_offset((99, 0)) == len("ab\n😀\n")
    assert index.lsp_to_offset((-1, 5)) == 0


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(max_size=60))
def test_position_round_trips(text: str) -> None:
    index = LineIndex(text)
    data = text.encode("utf-8")
    for offset in range(len(text) + 1):
        lsp = index.offset_to_lsp(offset)
        assert index.lsp_to_offset(lsp) == offset
        point = index.offset_to_point(offset)
        assert index.point_to_offset(point) == offset
        byte = index.offset_to_byte(offset)
        assert byte == len(text[:offset].encode("utf-8"))
        assert data[:byte].decode("utf-8") == text[:offset]
        assert index.byte_to_offset(byte) == offset
        line_start = text.rfind("\n", 0, offset) + 1
        line = text[line_start:].split("\n", 1)[0]
        assert lsp.character == utf16_len(text[line_start:offset])
        assert utf16_to_code_points(line, lsp.character) == offset - line_start
        assert code_points_to_utf16(line, offset - line_start) == lsp.character


@pytest.mark.parametrize(
    ("a", "b", "n"), [("", "", 0), ("abc", "abd", 2), ("abc", "abc", 3), ("x", "", 0), ("😀a", "😀b", 1)]
)
def test_common_prefix_length(a: str, b: str, n: int) -> None:
    assert common_prefix_length(a, b) == n
