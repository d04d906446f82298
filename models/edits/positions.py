"""Positions in a text, in every unit ripple meets.

- **code points**: offsets into a Python ``str``; what ripple uses inside.
- **bytes**: offsets into the UTF-8 encoding; what tree-sitter uses.
- **tree-sitter points**: ``(row, column)`` with the column in UTF-8 bytes.
- **LSP positions**: ``(line, character)`` with the character in UTF-16 code units
  (the protocol's default encoding); converted once, at the server's edge.

Lines end at ``"\\n"`` (a ``"\\r\\n"`` ending leaves the ``"\\r"`` at the end of its
line), which is also how tree-sitter counts rows.

``LineIndex`` keeps the start of every line in code points and in bytes as numpy
arrays and updates them in place after an edit, so converting a position costs the
length of one line, not of the document, and typing into a 10,000-line file does not
rescan it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_ASTRAL = "\U00010000"


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (astral characters count twice)."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for ch in text if ch >= _ASTRAL)


def utf8_len(text: str) -> int:
    """Length of ``text`` in UTF-8 bytes."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8"))


def utf16_to_code_points(line: str, character: int) -> int:
    """The code-point column in ``line`` of a UTF-16 column.

    A column past the end of the line is clamped to the line's end (as the LSP spec
    asks); a column in the middle of a surrogate pair is moved back to the start of
    that character.
    """
    if character <= 0:
        return 0
    if line.isascii() or max(line) < _ASTRAL:
        return min(character, len(line))
    units = 0
    for index, ch in enumerate(line):
        width = 2 if ch >= _ASTRAL else 1
        if units + width > character:
            return index
        units += width
    return len(line)


def code_points_to_utf16(line: str, column: int) -> int:
    """The UTF-16 column of a code-point column in ``line``."""
    return utf16_len(line[:column])


@dataclass(frozen=True, slots=True)
class Point:
    """A tree-sitter point: row and UTF-8 byte column, both 0-based."""

    row: int
    column: int

    def as_tuple(self) -> tuple[int, int]:
        return (self.row, self.column)


@dataclass(frozen=True, slots=True)
class LspPosition:
    """An LSP position: line and UTF-16 character, both 0-based."""

    line: int
    character: int


class LineIndex:
    """A text stored as its lines, with the start of every line in code points and bytes.

    Edits go through :meth:`replace`, which touches only the lines the edit spans and
    shifts the later line starts in place (numpy), so a keystroke in a 10,000-line
    file costs microseconds, not a copy of the file. ``text`` joins the lines when
    asked and caches the result until the next edit.
    """

    def __init__(self, text: str) -> None:
        self._lines: list[str] = text.split("\n")
        self._text: str | None = text
        lengths = np.fromiter((len(line) + 1 for line in self._lines), np.int64, len(self._lines))
        self._cp: npt.NDArray[np.int64] = np.zeros(len(self._lines), dtype=np.int64)
        np.cumsum(lengths[:-1], out=self._cp[1:])
        if text.isascii():
            self._bytes = self._cp.copy()
        else:
            byte_lengths = np.fromiter(
                (utf8_len(line) + 1 for line in self._lines), np.int64, len(self._lines)
            )
            self._bytes = np.zeros(len(self._lines), dtype=np.int64)
            np.cumsum(byte_lengths[:-1], out=self._bytes[1:])
        self._length = len(text)

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = "\n".join(self._lines)
        return self._text

    def __len__(self) -> int:
        """Length of the text in code points."""
        return self._length

    @property
    def line_count(self) -> int:
        return len(self._lines)

    def line_start(self, row: int) -> int:
        """Code-point offset where line ``row`` starts."""
        return int(self._cp[row])

    def line_text(self, row: int) -> str:
        """Line ``row`` without its ``"\\n"``."""
        return self._lines[row]

    def row_of(self, offset: int) -> int:
        """The line that contains code-point ``offset``."""
        return int(self._cp.searchsorted(offset, side="right")) - 1

    def slice(self, start: int, end: int) -> str:
        """``text[start:end]`` without joining the whole text."""
        if self._text is not None:
            return self._text[start:end]
        r0, c0 = self._row_col(start)
        r1, c1 = self._row_col(end)
        if r0 == r1:
            return self._lines[r0][c0:c1]
        return "\n".join([self._lines[r0][c0:], *self._lines[r0 + 1 : r1], self._lines[r1][:c1]])

    def _row_col(self, offset: int) -> tuple[int, int]:
        row = self.row_of(offset)
        return row, offset - int(self._cp[row])

    # -- conversions ---------------------------------------------------------------

    def offset_to_byte(self, offset: int) -> int:
        row, col = self._row_col(self._clamp(offset))
        line = self._lines[row]
        return int(self._bytes[row]) + (col if line.isascii() else utf8_len(line[:col]))

    def offset_to_point(self, offset: int) -> Point:
        row, col = self._row_col(self._clamp(offset))
        line = self._lines[row]
        return Point(row, col if line.isascii() else utf8_len(line[:col]))

    def point_to_offset(self, point: Point | tuple[int, int]) -> int:
        row, column = point if isinstance(point, tuple) else point.as_tuple()
        if row >= self.line_count:
            return self._length
        row = max(row, 0)
        line = self._lines[row]
        start = int(self._cp[row])
        if line.isascii():
            return start + min(max(column, 0), len(line))
        return start + _byte_column_to_code_points(line, column)

    def byte_to_offset(self, byte: int) -> int:
        row = max(int(self._bytes.searchsorted(byte, side="right")) - 1, 0)
        return self.point_to_offset((row, byte - int(self._bytes[row])))

    def offset_to_lsp(self, offset: int) -> LspPosition:
        row, col = self._row_col(self._clamp(offset))
        return LspPosition(row, utf16_len(self._lines[row][:col]))

    def lsp_to_offset(self, position: LspPosition | tuple[int, int]) -> int:
        """Code-point offset of an LSP position, clamped into the document."""
        line, character = (
            position if isinstance(position, tuple) else (position.line, position.character)
        )
        if line < 0:
            return 0
        if line >= self.line_count:
            return self._length
        return int(self._cp[line]) + utf16_to_code_points(self._lines[line], character)

    def _clamp(self, offset: int) -> int:
        return min(max(offset, 0), self._length)

    # -- edits ---------------------------------------------------------------------

    def replace(self, start: int, end: int, inserted: str) -> None:
        """Replace ``text[start:end]`` (code points, in order, in range) by ``inserted``."""
        r0, c0 = self._row_col(start)
        r1, c1 = self._row_col(end)
        lines = self._lines
        new_lines = (lines[r0][:c0] + inserted + lines[r1][c1:]).split("\n")
        cp_delta = len(inserted) - (end - start)
        self._text = None  # joined again only when somebody asks
        self._length += cp_delta
        if r0 == r1 and len(new_lines) == 1:
            # The common case, typing inside one line: shift later lines in place.
            old_line = lines[r0]
            new_line = new_lines[0]
            lines[r0] = new_line
            self._cp[r0 + 1 :] += cp_delta
            if not (old_line.isascii() and new_line.isascii()):
                byte_delta = utf8_len(new_line) - utf8_len(old_line)
            else:
                byte_delta = cp_delta
            self._bytes[r0 + 1 :] += byte_delta
            return
        lines[r0 : r1 + 1] = new_lines
        new_count = len(new_lines)
        cp_starts = np.empty(new_count, dtype=np.int64)
        byte_starts = np.empty(new_count, dtype=np.int64)
        cp_pos = int(self._cp[r0])
        byte_pos = int(self._bytes[r0])
        for i, line in enumerate(new_lines):
            cp_starts[i] = cp_pos
            byte_starts[i] = byte_pos
            cp_pos += len(line) + 1
            byte_pos += utf8_len(line) + 1
        # The first line after the edit now starts where the last new line ended.
        tail_cp = self._cp[r1 + 1 :]
        tail_bytes = self._bytes[r1 + 1 :]
        if tail_cp.shape[0]:
            tail_cp = tail_cp + (cp_pos - int(tail_cp[0]))
            tail_bytes = tail_bytes + (byte_pos - int(tail_bytes[0]))
        self._cp = np.concatenate((self._cp[:r0], cp_starts, tail_cp))
        self._bytes = np.concatenate((self._bytes[:r0], byte_starts, tail_bytes))


def _byte_column_to_code_points(line: str, column: int) -> int:
    """Code-point column of a UTF-8 byte column (clamped; mid-character moves back)."""
    if column <= 0:
        return 0
    used = 0
    for index, ch in enumerate(line):
        width = len(ch.encode("utf-8"))
        if used + width > column:
            return index
        used += width
    return len(line)
