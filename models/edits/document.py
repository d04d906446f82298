"""``ParsedDocument``: a text and its tree-sitter tree, kept in step edit by edit.

Every edit updates the text, shifts the line index and tells the tree what changed
(``Tree.edit``); the incremental re-parse (``Parser.parse(new, old_tree)``) runs when
the tree is next read, once for all the edits made since. Keystrokes arrive far more
often than anything needs the tree, and in Python one typed character can change the
shape of the rest of the file (an indentation or an unclosed bracket makes
tree-sitter re-parse everything after it, ~100 ms on a 10,000-line file), so the
parse is paid once per burst of typing, not once per character. ``reparse()`` forces
it and returns the ranges whose syntax changed (``Tree.changed_ranges``) since the
previous parse; the edit history and the AST diff build on them.

A file whose extension has no grammar is still a ``ParsedDocument``: it has text,
positions and edits, and ``tree`` is ``None``.

Offsets are code points into ``text`` unless a name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import tree_sitter

from ripple.models.edits.languages import language_name_for_path, make_parser
from ripple.models.edits.positions import LineIndex, LspPosition, Point, utf8_len


@dataclass(frozen=True, slots=True)
class ChangedRange:
    """A region of the new tree whose syntax differs from the old tree's."""

    start_byte: int
    end_byte: int
    start_point: Point
    end_point: Point


@dataclass(frozen=True, slots=True)
class AppliedEdit:
    """What one ``apply_edit`` did, in the units the rest of ripple needs.

    ``start``/``old_end``/``new_end`` are code-point offsets; the byte and point
    fields are the same edges as tree-sitter saw them.
    """

    start: int
    old_end: int
    new_end: int
    old_text: str
    new_text: str
    start_byte: int
    old_end_byte: int
    new_end_byte: int
    start_point: Point
    old_end_point: Point
    new_end_point: Point


class ParsedDocument:
    """A document's text, its line index and (when its language is known) its tree."""

    def __init__(
        self, text: str, path: str | PurePath | None = None, language: str | None = None
    ) -> None:
        if language is None and path is not None:
            language = language_name_for_path(path)
        self.path = str(path) if path is not None else None
        self.language = language
        self._lines = LineIndex(text)
        self._source: bytes | None = text.encode("utf-8")
        self._parser: tree_sitter.Parser | None = (
            make_parser(language) if language is not None else None
        )
        self._tree: tree_sitter.Tree | None = (
            self._parser.parse(self.source) if self._parser is not None else None
        )
        self._stale = False  # edits made since the tree was last parsed

    # -- state ---------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self._lines.text

    @property
    def source(self) -> bytes:
        """The text as UTF-8, as tree-sitter sees it (encoded when first asked)."""
        if self._source is None:
            self._source = self._lines.text.encode("utf-8")
        return self._source

    @property
    def tree(self) -> tree_sitter.Tree | None:
        """The syntax tree of the current text (re-parsed first if edits are pending)."""
        if self._stale:
            self.reparse()
        return self._tree

    def reparse(self) -> tuple[ChangedRange, ...]:
        """Re-parse incrementally; the ranges whose syntax changed since the last parse.

        Empty for plain text, when nothing was edited, and often when an edit changed
        only a token's text, not the tree's shape.
        """
        if not self._stale or self._parser is None or self._tree is None:
            self._stale = False
            return ()
        old_tree = self._tree
        new_tree = self._parser.parse(self.source, old_tree)
        self._tree = new_tree
        self._stale = False
        return tuple(
            ChangedRange(
                r.start_byte,
                r.end_byte,
                Point(r.start_point.row, r.start_point.column),
                Point(r.end_point.row, r.end_point.column),
            )
            for r in old_tree.changed_ranges(new_tree)
        )

    @property
    def lines(self) -> LineIndex:
        return self._lines

    def sexp(self) -> str:
        """The tree as an s-expression (``""`` for plain text)."""
        tree = self.tree
        return str(tree.root_node) if tree is not None else ""

    # -- edits ---------------------------------------------------------------------

    def apply_edit(self, start: int, end: int, new_text: str) -> AppliedEdit:
        """Replace ``text[start:end]`` (code points) by ``new_text``.

        The tree is told about the edit at once and re-parsed when next read. Offsets
        outside the text are clamped and a reversed range is put in order, so a stale
        or sloppy edit never raises.
        """
        lines = self._lines
        length = len(lines)
        start = min(max(start, 0), length)
        end = min(max(end, 0), length)
        if end < start:
            start, end = end, start
        old_text = lines.slice(start, end)

        start_point = lines.offset_to_point(start)
        old_end_point = lines.offset_to_point(end)
        start_byte = lines.offset_to_byte(start)
        old_end_byte = start_byte + utf8_len(old_text)
        new_end_byte = start_byte + utf8_len(new_text)
        newline = new_text.rfind("\n")
        if newline == -1:
            new_end_point = Point(start_point.row, start_point.column + utf8_len(new_text))
        else:
            new_end_point = Point(
                start_point.row + new_text.count("\n"), utf8_len(new_text[newline + 1 :])
            )
        lines.replace(start, end, new_text)
        self._source = None

        if self._tree is not None:
            # Several edits may be recorded on one tree before it is re-parsed.
            self._tree.edit(
                start_byte=start_byte,
                old_end_byte=old_end_byte,
                new_end_byte=new_end_byte,
                start_point=start_point.as_tuple(),
                old_end_point=old_end_point.as_tuple(),
                new_end_point=new_end_point.as_tuple(),
            )
            self._stale = True

        return AppliedEdit(
            start=start,
            old_end=end,
            new_end=start + len(new_text),
            old_text=old_text,
            new_text=new_text,
            start_byte=start_byte,
            old_end_byte=old_end_byte,
            new_end_byte=new_end_byte,
            start_point=start_point,
            old_end_point=old_end_point,
            new_end_point=new_end_point,
        )

    def apply_lsp_edit(
        self, start: LspPosition | tuple[int, int], end: LspPosition | tuple[int, int], text: str
    ) -> AppliedEdit:
        """Apply an edit whose range is in LSP positions (UTF-16 characters)."""
        return self.apply_edit(self._lines.lsp_to_offset(start), self._lines.lsp_to_offset(end), text)

    def replace_text(self, text: str) -> AppliedEdit:
        """Replace the whole text (a full-sync change), keeping the tree incremental."""
        # Trim the common prefix and suffix so the re-parse stays local.
        old = self.text
        prefix = common_prefix_length(old, text)
        suffix = common_prefix_length(old[prefix:][::-1], text[prefix:][::-1])
        return self.apply_edit(prefix, len(old) - suffix, text[prefix : len(text) - suffix])


def common_prefix_length(a: str, b: str) -> int:
    """Length of the longest common prefix (binary search over C-speed slice compares)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[low:mid] == b[low:mid]:
            low = mid
        else:
            high = mid - 1
    return low
