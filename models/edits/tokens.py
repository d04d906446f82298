"""Tokens and sub-tokens: the vocabulary items of the token-level edit models.

Zhao et al. (2019), §2 ("Notation"), define a state as a sequence of discrete tokens
``s = (s_0, ..., s_M)``; §6.2 builds those tokens with Python's own tokenizer and then splits
them into sub-words. Here the tokens are the leaves of the tree-sitter parse, so every
language the server parses gets the same treatment, and ``subtokens`` splits identifiers the
way C3PO (Brody et al. 2020, §5.2.1, "encode_value") and code2vec do: ``toString`` ->
``to``, ``string``.

Decisions (see also the module functions):

* **String literals.** A string literal with no interpolation is ONE token, quotes and prefix
  included (``"abc"``, ``b'\\x00'``, ``\"\"\"doc\"\"\"``). This is what Python's ``tokenize``
  (used by Zhao et al. §6.2) produces, and an edit inside a literal is then one replacement
  of that token. A string that holds code (a Python f-string with ``{...}``, a JS template
  with ``${...}``, a Ruby/Bash string with an interpolation) is split into its leaves, as
  Python 3.12's ``tokenize`` splits f-strings, so that renaming a variable inside the braces
  is the same token edit as renaming it anywhere else. Literal text inside such a string
  (``string_content``) stays one token.
* **Comments** are kept, one token per comment (tree-sitter makes each comment a leaf).
* **Coverage.** Every non-whitespace byte of the source is inside exactly one token. Grammar
  rules can leave text outside all leaves (the ``>`` of the f-string format spec
  ``{x:>{w}}``); such text becomes tokens of the enclosing node's type, split at whitespace.
  Zero-width leaves (tree-sitter's MISSING nodes from error recovery) are dropped: they have
  no text to edit.
* **Positions.** Bytes are UTF-8 byte offsets and points are (row, byte column), as tree-sitter
  reports them; conversion to the editor's UTF-16 happens once, at the LSP boundary.
* **No language** (``language=None``, plain text): a regex tokenizer gives words, numbers,
  common multi-character operators and single punctuation characters.
"""

from __future__ import annotations

import contextlib
import gc
import re
import threading
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter

from ripple.models.edits.languages import make_parser

__all__ = ["Token", "subtokens", "tokenize", "tokens_from_tree"]


@dataclass(frozen=True, slots=True)
class Token:
    """One token of a state (Zhao et al. §2: ``s_m ∈ V``), located in its source.

    ``type`` is the tree-sitter node type (``identifier``, ``string``, ``comment``, ``(``,
    ``def`` ...), or ``word``/``number``/``operator``/``punctuation`` from the plain-text
    tokenizer. ``start_point``/``end_point`` are (row, byte column), 0-based.
    """

    text: str
    type: str
    start_byte: int
    end_byte: int
    start_point: tuple[int, int]
    end_point: tuple[int, int]


# Literal node types that are one token unless they contain code (see the module docstring).
_STRING_TYPES = frozenset(
    {
        "string",
        "string_literal",
        "raw_string_literal",
        "interpreted_string_literal",
        "char_literal",
        "character_literal",
        "encapsed_string",
    }
)
# Children that make a literal hold code, so it is split into leaves instead.
_INTERPOLATION_TYPES = frozenset(
    {
        "interpolation",
        "template_substitution",
        "string_interpolation",
        "simple_expansion",
        "expansion",
        "command_substitution",
        "variable_name",
    }
)
# Nodes with children whose text is nevertheless one token: the literal text of a split
# string, whose only children are escape sequences (the text between them is in no leaf).
_ATOMIC_TYPES = frozenset({"string_content", "string_fragment", "heredoc_body"})
_MAYBE_ATOMIC_TYPES = _STRING_TYPES | _ATOMIC_TYPES


def _is_atomic(node: tree_sitter.Node) -> bool:
    """Whether a node with children is emitted as one token (string literal rules above)."""
    node_type = node.type
    if node_type in _ATOMIC_TYPES:
        return True
    if node_type in _STRING_TYPES:
        return not any(child.type in _INTERPOLATION_TYPES for child in node.children)
    return False


class _Lines:
    """Row/column lookup for byte offsets, built only when needed (gaps are rare)."""

    def __init__(self, source: bytes) -> None:
        self._starts = [0] + [m.end() for m in re.finditer(b"\n", source)]

    def point(self, offset: int) -> tuple[int, int]:
        row = bisect_right(self._starts, offset) - 1
        return (row, offset - self._starts[row])


_NON_SPACE = re.compile(rb"\S+")


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a token list is built.

    Tokens hold no references to each other, so the collector has nothing to find; left on,
    its passes over the growing list cost about a third of the walk (measured on a
    10k-line file). Only the caller that found it enabled turns it back on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def tokens_from_tree(tree: tree_sitter.Tree | tree_sitter.Node, source: bytes) -> list[Token]:
    """The tokens of an already parsed tree (or of one node's span), left to right.

    ``source`` is the exact UTF-8 text that was parsed. The walk uses one ``TreeCursor``
    and an explicit loop, not recursion over ``Node.children``: every ``.children`` call
    builds a list of new Python objects, and this runs on every settled snapshot.
    """
    with _collector_paused():
        return _walk_leaves(tree, source)


def _walk_leaves(tree: tree_sitter.Tree | tree_sitter.Node, source: bytes) -> list[Token]:
    """``tokens_from_tree`` without the collector pause."""
    root = tree.root_node if isinstance(tree, tree_sitter.Tree) else tree
    tokens: list[Token] = []
    append = tokens.append
    cursor = root.walk()
    # Bound methods, looked up once: this loop runs once per node of the file.
    goto_first_child = cursor.goto_first_child
    goto_next_sibling = cursor.goto_next_sibling
    goto_parent = cursor.goto_parent
    # The nodes above the cursor, to name the text found in gaps (rare, so kept as nodes).
    ancestors: list[tree_sitter.Node] = []
    lines: _Lines | None = None
    last_end = root.start_byte

    def emit_gap(start: int, end: int) -> None:
        nonlocal lines
        gap_type = root.type
        for ancestor in reversed(ancestors):
            if ancestor.start_byte <= start:
                gap_type = ancestor.type
                break
        if lines is None:
            lines = _Lines(source)
        for match in _NON_SPACE.finditer(source, start, end):
            s, e = match.span()
            text = match.group().decode("utf-8", errors="replace")
            append(Token(text, gap_type, s, e, lines.point(s), lines.point(e)))

    while True:
        node = cursor.node
        assert node is not None  # a cursor always stands on a node
        node_type = node.type
        if (node_type in _MAYBE_ATOMIC_TYPES and _is_atomic(node)) or not goto_first_child():
            start, end = node.start_byte, node.end_byte
            if end > start:  # MISSING nodes are zero-width: nothing to tokenize
                if start > last_end and not source[last_end:start].isspace():
                    emit_gap(last_end, start)
                text = source[start:end].decode("utf-8", errors="replace")
                append(Token(text, node_type, start, end, node.start_point, node.end_point))
                last_end = end
        else:
            ancestors.append(node)
            continue
        while not goto_next_sibling():
            if not goto_parent():
                if root.end_byte > last_end and not source[last_end : root.end_byte].isspace():
                    emit_gap(last_end, root.end_byte)
                return tokens
            ancestors.pop()


# Plain text: identifiers/words (UTF-8 multi-byte sequences are all >= 0x80, so a word stays
# whole), numbers, common multi-character operators, then any other single character.
_PLAIN_TOKEN = re.compile(
    rb"(?P<word>[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)"
    rb"|(?P<number>[0-9][A-Za-z0-9_.\x80-\xff]*)"
    rb"|(?P<operator>==|!=|<=|>=|->|=>|::|\*\*|//|&&|\|\||<<|>>|\+=|-=|\*=|/=)"
    rb"|(?P<punctuation>\S)"
)


def _tokenize_plain(source: bytes) -> list[Token]:
    """The regex tokenizer for documents without a grammar (tokens never span lines)."""
    tokens: list[Token] = []
    row, line_start = 0, 0
    newline = source.find(b"\n")
    for match in _PLAIN_TOKEN.finditer(source):
        start, end = match.span()
        # Tokens come in order, so the row only moves forward.
        while newline != -1 and newline < start:
            row, line_start = row + 1, newline + 1
            newline = source.find(b"\n", line_start)
        kind = match.lastgroup
        assert kind is not None
        tokens.append(
            Token(
                match.group().decode("utf-8", errors="replace"),
                kind,
                start,
                end,
                (row, start - line_start),
                (row, end - line_start),
            )
        )
    return tokens


# Parsers are not thread-safe; a settled snapshot is tokenized on whichever thread runs it.
_parsers = threading.local()


def _parser(language: str) -> tree_sitter.Parser:
    cache: dict[str, tree_sitter.Parser] | None = getattr(_parsers, "by_language", None)
    if cache is None:
        cache = _parsers.by_language = {}
    parser = cache.get(language)
    if parser is None:
        parser = cache[language] = make_parser(language)
    return parser


def tokenize(source: str, language: str | None = "python") -> list[Token]:
    """The tokens of ``source``: tree-sitter leaves for ``language``, regex for None.

    Parsing never fails: a syntax error gives tree-sitter's error-recovered tree, whose
    leaves still cover the text (see the module docstring for the coverage rule).
    """
    data = source.encode("utf-8")
    if language is None:
        with _collector_paused():
            return _tokenize_plain(data)
    return tokens_from_tree(_parser(language).parse(data), data)


# Character classes for sub-token splitting.
_UPPER, _LOWER, _DIGIT, _SEPARATOR = range(4)


def _char_class(char: str) -> int:
    if char.isnumeric():  # digits of any script, and numerals such as ¼ or Ⅻ
        return _DIGIT
    if char.isupper():
        return _UPPER
    if char.isalpha():
        # Uncased letters (CJK ...) join the lower-case run: they never start a new word.
        return _LOWER
    return _SEPARATOR


def subtokens(identifier: str) -> list[str]:
    """Split an identifier into lower-cased sub-tokens (C3PO §5.2.1, Eq. 3: ``split(w)``).

    Boundaries: any non-alphanumeric character (``_``, ``$``, ``-`` ... dropped), a
    lower->upper change (``toString`` -> to, string), the last capital of a capital run
    that is followed by lower case (``HTTPServer`` -> http, server), and any change between
    digits and letters (``utf8Decode`` -> utf, 8, decode). A value with no letters or digits
    (``+``, ``==``, ``_``) is its own single sub-token, so operators keep a value to embed.
    """
    parts: list[str] = []
    current: list[str] = []
    previous = _SEPARATOR
    for index, char in enumerate(identifier):
        kind = _char_class(char)
        if kind == _SEPARATOR:
            if current:
                parts.append("".join(current))
                current = []
        elif current and (
            (kind == _DIGIT) != (previous == _DIGIT)
            or (kind == _UPPER and previous == _LOWER)
            or (
                kind == _UPPER
                and previous == _UPPER
                and index + 1 < len(identifier)
                and _char_class(identifier[index + 1]) == _LOWER
            )
        ):
            parts.append("".join(current))
            current = [char]
        else:
            current.append(char)
        previous = kind
    if current:
        parts.append("".join(current))
    if not parts:
        return [identifier.lower()] if identifier else []
    return [part.lower() for part in parts]
