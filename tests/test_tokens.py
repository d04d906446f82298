"""Tokens from tree-sitter leaves and identifier sub-tokens (Zhao et al. §2, C3PO §5.2.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ripple.models.edits.tokens import Token, subtokens, tokenize


def check_tokens(source: str, language: str | None, expected: list[tuple[str, str]]) -> None:
    """Tokens as (text, type) pairs, and the invariants every token list must satisfy."""
    tokens = tokenize(source, language)
    assert [(t.text, t.type) for t in tokens] == expected
    check_invariants(source, tokens)


def check_invariants(source: str, tokens: list[Token]) -> None:
    """In order, non-overlapping, text = its bytes, points agree, only blanks left out."""
    data = source.encode("utf-8")
    lines = data.split(b"\n")
    previous_end = 0
    for token in tokens:
        assert previous_end <= token.start_byte < token.end_byte
        assert data[token.start_byte : token.end_byte].decode("utf-8", "replace") == token.text
        assert data[previous_end : token.start_byte].strip() == b""
        for offset, (row, column) in (
            (token.start_byte, token.start_point),
            (token.end_byte, token.end_point),
        ):
            assert sum(len(line) + 1 for line in lines[:row]) + column == offset
        previous_end = token.end_byte
    assert data[previous_end:].strip() == b""


TOKEN_CASES: list[tuple[str, str, str | None, list[tuple[str, str]]]] = [
    (
        "assignment",
        "x = foo(1, y)\n",
        "python",
        [
            ("x", "identifier"),
            ("=", "="),
            ("foo", "identifier"),
            ("(", "("),
            ("1", "integer"),
            (",", ","),
            ("y", "identifier"),
            (")", ")"),
        ],
    ),
    (
        "a plain string is one token, quotes and prefix included",
        's = b\'a\\x00 b\' + """doc\nmore"""\n',
        "python",
        [
            ("s", "identifier"),
            ("=", "="),
            ("b'a\\x00 b'", "string"),
            ("+", "+"),
            ('"""doc\nmore"""', "string"),
        ],
    ),
    (
        "implicit concatenation: one token per literal",
        'x = "a" "b"\n',
        "python",
        [("x", "identifier"), ("=", "="), ('"a"', "string"), ('"b"', "string")],
    ),
    (
        "an f-string with code is split like Python 3.12's tokenize",
        'f"v={val!r:>{width}} \\n"\n',
        "python",
        [
            ('f"', "string_start"),
            ("v=", "string_content"),
            ("{", "{"),
            ("val", "identifier"),
            ("!r", "type_conversion"),
            (":", ":"),
            (">", "format_specifier"),  # text no leaf owns: the enclosing node's type
            ("{", "{"),
            ("width", "identifier"),
            ("}", "}"),
            ("}", "}"),
            (" \\n", "string_content"),
            ('"', "string_end"),
        ],
    ),
    (
        "an f-string without code stays one token",
        'f"plain"\n',
        "python",
        [('f"plain"', "string")],
    ),
    (
        "comments are kept",
        "# head\nx = 1  # tail\n",
        "python",
        [
            ("# head", "comment"),
            ("x", "identifier"),
            ("=", "="),
            ("1", "integer"),
            ("# tail", "comment"),
        ],
    ),
    (
        "keywords and operators carry their own type",
        "def f(a, *b): return not a\n",
        "python",
        [
            ("def", "def"),
            ("f", "identifier"),
            ("(", "("),
            ("a", "identifier"),
            (",", ","),
            ("*", "*"),
            ("b", "identifier"),
            (")", ")"),
            (":", ":"),
            ("return", "return"),
            ("not", "not"),
            ("a", "identifier"),
        ],
    ),
    (
        "a syntax error keeps every token and no zero-width MISSING one",
        "def f(:\n  pass\n",  # tree-sitter invents a zero-width ")"
        "python",
        [("def", "def"), ("f", "identifier"), ("(", "("), (":", ":"), ("pass", "pass")],
    ),
    (
        "an ERROR node's leaves are tokens",
        "x = [1, 2\n",
        "python",
        [
            ("x", "identifier"),
            ("=", "="),
            ("[", "["),
            ("1", "integer"),
            (",", ","),
            ("2", "integer"),
        ],
    ),
    (
        "non-ASCII: byte offsets, text decoded",
        "größe = 'ß'\n",
        "python",
        [("größe", "identifier"), ("=", "="), ("'ß'", "string")],
    ),
    (
        "another grammar: a JS template literal splits around ${...}",
        "let s = `a${b}c`;\n",
        "javascript",
        [
            ("let", "let"),
            ("s", "identifier"),
            ("=", "="),
            ("`", "`"),
            ("a", "string_fragment"),
            ("${", "${"),
            ("b", "identifier"),
            ("}", "}"),
            ("c", "string_fragment"),
            ("`", "`"),
            (";", ";"),
        ],
    ),
    (
        "plain text: words, numbers, operators, punctuation",
        "foo(bar, 1.5e3) == näive -> don't\n",
        None,
        [
            ("foo", "word"),
            ("(", "punctuation"),
            ("bar", "word"),
            (",", "punctuation"),
            ("1.5e3", "number"),
            (")", "punctuation"),
            ("==", "operator"),
            ("näive", "word"),
            ("->", "operator"),
            ("don", "word"),
            ("'", "punctuation"),
            ("t", "word"),
        ],
    ),
    ("empty source", "", "python", []),
    ("blank plain text", " \n\t\n", None, []),
]


@pytest.mark.parametrize(
    ("source", "language", "expected"),
    [case[1:] for case in TOKEN_CASES],
    ids=[case[0] for case in TOKEN_CASES],
)
def test_tokenize(source: str, language: str | None, expected: list[tuple[str, str]]) -> None:
    check_tokens(source, language, expected)


def test_token_positions() -> None:
    tokens = tokenize("a = (\n    'ß',\n)\n")
    assert [(t.text, t.start_point, t.end_point) for t in tokens] == [
        ("a", (0, 0), (0, 1)),
        ("=", (0, 2), (0, 3)),
        ("(", (0, 4), (0, 5)),
        ("'ß'", (1, 4), (1, 8)),  # columns are bytes: ß is two
        (",", (1, 8), (1, 9)),
        (")", (2, 0), (2, 1)),
    ]


SUBTOKEN_CASES: list[tuple[str, list[str]]] = [
    ("snake_case_name", ["snake", "case", "name"]),
    ("toString", ["to", "string"]),
    ("HTTPServer", ["http", "server"]),
    ("getHTTP2Response", ["get", "http", "2", "response"]),
    ("utf8Decode", ["utf", "8", "decode"]),
    ("x2", ["x", "2"]),
    ("ABC", ["abc"]),
    ("iOS", ["i", "os"]),
    ("__init__", ["init"]),
    ("MAX_VALUE_10", ["max", "value", "10"]),
    ("größeX", ["größe", "x"]),
    ("$el", ["el"]),
    ("_", ["_"]),  # nothing alphanumeric: the value is its own sub-token
    ("+=", ["+="]),
    ("", []),
]


@pytest.mark.parametrize(("identifier", "expected"), SUBTOKEN_CASES)
def test_subtokens(identifier: str, expected: list[str]) -> None:
    assert subtokens(identifier) == expected


# Python-ish text: mostly code characters, some odd ones, so parses often fail.
_CODE_TEXT = st.text(
    alphabet=st.sampled_from(list("abcxyz_019 \n\t()[]{}:=+-*,.'\"#\\fßé€")), max_size=80
)


@settings(max_examples=150, deadline=None)
@given(_CODE_TEXT)
def test_tokens_cover_python_text(source: str) -> None:
    check_invariants(source, tokenize(source, "python"))


@settings(max_examples=150, deadline=None)
@given(_CODE_TEXT)
def test_tokens_cover_plain_text(source: str) -> None:
    check_invariants(source, tokenize(source, None))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aZbY09_$-.ßÉé中¼ ")), max_size=30))
def test_subtokens_are_lowercase_pieces(identifier: str) -> None:
    parts = subtokens(identifier)
    assert all(part and part == part.lower() for part in parts)
    if any(char.isalnum() for char in identifier):
        assert "".join(parts) == "".join(c for c in identifier if c.isalnum()).lower()
