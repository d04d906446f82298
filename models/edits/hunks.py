"""Line hunks between two versions of a file, as the replay benchmark defines them.

BENCHMARK.md fixes the recipe so every implementation replays the same steps:
``difflib.SequenceMatcher(None, before_lines, after_lines, autojunk=False)``, every opcode
other than ``equal`` is a hunk, lines keep their line endings, and a hunk whose old and new
text are equal once all whitespace is removed is dropped (re-indentation and blank-line
shuffles are formatting, not edits anyone wants suggested). The language server reuses the
same functions to turn a settled snapshot and the live text into the edits it conditions on.

Line numbers are 0-based; a range ``[start, end)`` is half-open, so a pure insertion has
``start == end``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LineHunk:
    """Replace lines ``[start, end)`` of the old text by ``new_lines``.

    ``old_lines`` is kept so an edit can be shown, reverted, or compared with a
    suggestion without the old text at hand. ``new_start`` is where the new lines begin
    in the text the hunk belongs to (the after side of a diff).
    """

    start: int
    end: int
    old_lines: tuple[str, ...]
    new_lines: tuple[str, ...]
    new_start: int

    @property
    def delta(self) -> int:
        """How many lines the hunk adds (negative when it removes lines)."""
        return len(self.new_lines) - len(self.old_lines)

    def shifted(self, offset: int) -> LineHunk:
        """The same hunk on a text where ``offset`` lines were inserted above it."""
        return LineHunk(
            self.start + offset,
            self.end + offset,
            self.old_lines,
            self.new_lines,
            self.new_start,
        )


def split_lines(text: str) -> list[str]:
    """Lines with their line endings, the way ``str.splitlines(keepends=True)`` cuts them."""
    return text.splitlines(keepends=True)


def strip_whitespace(text: str) -> str:
    """``text`` with every whitespace character removed (``str.isspace`` characters)."""
    # split/join is several times faster than a regular expression on whole files.
    return "".join(text.split())


def is_whitespace_only(old_lines: Iterable[str], new_lines: Iterable[str]) -> bool:
    """True when the two sides differ only in whitespace (BENCHMARK.md's dropping rule)."""
    return strip_whitespace("".join(old_lines)) == strip_whitespace("".join(new_lines))


def line_hunks(before_lines: Sequence[str], after_lines: Sequence[str]) -> list[LineHunk]:
    """The non-whitespace hunks turning ``before_lines`` into ``after_lines``, top to bottom."""
    matcher = difflib.SequenceMatcher(None, before_lines, after_lines, autojunk=False)
    hunks: list[LineHunk] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        old = tuple(before_lines[i1:i2])
        new = tuple(after_lines[j1:j2])
        if is_whitespace_only(old, new):
            continue
        hunks.append(LineHunk(i1, i2, old, new, j1))
    return hunks


def text_hunks(before: str, after: str) -> list[LineHunk]:
    """:func:`line_hunks` on two texts."""
    return line_hunks(split_lines(before), split_lines(after))


def apply_hunk(lines: Sequence[str], hunk: LineHunk) -> list[str]:
    """``lines`` with ``hunk`` applied at its ``[start, end)`` range."""
    return [*lines[: hunk.start], *hunk.new_lines, *lines[hunk.end :]]
