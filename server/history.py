"""The live edit history: what the user changed since each document's settled snapshot.

Every text change the editor reports becomes a line-level :class:`LiveEdit` (lines
``[start, end)`` of the state before it became ``new_lines``). Keystrokes are coalesced:
a change that falls inside the lines the previous edit produced extends that edit, so
typing ``, timeout=5`` character by character is one edit of one line, the same unit the
replay benchmark feeds predictors from real commit hunks. An edit that is typed and
then undone disappears.

Memory is bounded: beyond ``max_live_edits`` the oldest edit folds into its document's
settled snapshot (the base), and a pause of ``settle_after_s`` settles everything. What
predictors see is an :class:`EditContext`: current texts, bases, the live edits oldest
first across documents, and the cursor; from it they can also ask for the AST edit
script since the settled snapshot (``EditContext.ast_script``), which is computed only
when some predictor needs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ripple.models.edits.document import AppliedEdit, ParsedDocument
from ripple.models.suggest.api import Cursor, EditContext, Lines, LiveEdit


def split_lines(text: str) -> Lines:
    """``text`` as lines that keep their ``"\\n"`` (the LSP's line breaks, not ``splitlines``')."""
    if not text:
        return ()
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return tuple(lines)


def _line(doc: ParsedDocument, row: int) -> str:
    index = doc.lines
    if row >= index.line_count:
        return ""
    text = index.line_text(row)
    return text + "\n" if row < index.line_count - 1 else text


def live_edit_of(path: str, doc: ParsedDocument, applied: AppliedEdit) -> LiveEdit:
    """The line-level edit that ``applied`` (already applied to ``doc``) made.

    Only the lines the edit touched are read, so this costs the same in a 10-line and
    a 10,000-line file.
    """
    index = doc.lines
    start_row = index.row_of(applied.start)
    first_start = index.line_start(start_row)
    end_row = index.row_of(applied.new_end)
    new_lines = tuple(_line(doc, row) for row in range(start_row, end_row + 1))
    prefix = index.slice(first_start, applied.start)
    end_line = new_lines[-1] if new_lines else ""
    suffix = end_line[applied.new_end - index.line_start(end_row) :]
    old_text = prefix + applied.old_text + suffix
    old_lines = split_lines(old_text)
    # The empty "line" after a file's final "\n" is not a line (split_lines agrees).
    if new_lines and new_lines[-1] == "":
        new_lines = new_lines[:-1]
    return LiveEdit(
        path=path,
        start=start_row,
        end=start_row + len(old_lines),
        old_lines=old_lines,
        new_lines=new_lines,
    )


def _fold(lines: Lines, edit: LiveEdit) -> Lines:
    return (*lines[: edit.start], *edit.new_lines, *lines[edit.end :])


def coalesce(last: LiveEdit, edit: LiveEdit) -> LiveEdit | None:
    """``last`` extended by ``edit`` when ``edit`` lies inside ``last``'s new lines.

    Returns ``None`` when they are separate edits. The result may be a no-op (old lines
    equal new lines): the caller drops it.
    """
    if edit.path != last.path or edit.start < last.start or edit.end > last.new_end:
        return None
    if edit.start == edit.end == last.new_end and last.new_lines:
        return None  # an insertion just below the edited lines starts a new edit
    offset = edit.start - last.start
    new_lines = (
        *last.new_lines[:offset],
        *edit.new_lines,
        *last.new_lines[edit.end - last.start :],
    )
    return LiveEdit(last.path, last.start, last.end, last.old_lines, tuple(new_lines))


@dataclass
class _Doc:
    uri: str
    path: str
    doc: ParsedDocument
    version: int
    base: Lines


class EditHistory:
    """Open documents, their settled snapshots, and the live edits since, across files."""

    def __init__(
        self,
        max_live_edits: int = 32,
        settle_after_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_live_edits = max_live_edits
        self.settle_after_s = settle_after_s
        self.clock = clock
        self.docs: dict[str, _Doc] = {}
        self.edits: list[LiveEdit] = []
        self.last_edit_at: float | None = None

    # -- documents ---------------------------------------------------------------------

    def open(
        self, uri: str, path: str, text: str, version: int, parse: bool = True
    ) -> ParsedDocument:
        """Track a document; ``parse=False`` keeps it as plain text (no tree-sitter)."""
        doc = ParsedDocument(text, path=path) if parse else ParsedDocument(text)
        self.docs[uri] = _Doc(uri, path, doc, version, split_lines(text))
        return doc

    def close(self, uri: str) -> None:
        """Forget a document; its live edits fold into nothing (the buffer is gone)."""
        entry = self.docs.pop(uri, None)
        if entry is not None:
            self.edits = [e for e in self.edits if e.path != entry.path]

    def get(self, uri: str) -> ParsedDocument | None:
        entry = self.docs.get(uri)
        return entry.doc if entry is not None else None

    def version(self, uri: str) -> int | None:
        entry = self.docs.get(uri)
        return entry.version if entry is not None else None

    def path(self, uri: str) -> str | None:
        entry = self.docs.get(uri)
        return entry.path if entry is not None else None

    def uri_of_path(self, path: str) -> str | None:
        for entry in self.docs.values():
            if entry.path == path:
                return entry.uri
        return None

    # -- changes -----------------------------------------------------------------------

    def change(
        self, uri: str, version: int, edits: list[tuple[int, int, str]] | None, full: str | None = None
    ) -> None:
        """Apply the editor's changes: ``(start, end, text)`` in code points, or ``full`` text."""
        entry = self.docs[uri]
        self._maybe_settle()
        if full is not None:
            applied = entry.doc.replace_text(full)
            self._record(entry, applied)
        for start, end, text in edits or ():
            applied = entry.doc.apply_edit(start, end, text)
            self._record(entry, applied)
        entry.version = version
        self.last_edit_at = self.clock()

    def change_lsp(
        self,
        uri: str,
        version: int,
        start: tuple[int, int],
        end: tuple[int, int],
        text: str,
    ) -> None:
        """Apply one change whose range is in LSP (UTF-16) positions."""
        entry = self.docs[uri]
        self._maybe_settle()
        applied = entry.doc.apply_lsp_edit(start, end, text)
        self._record(entry, applied)
        entry.version = version
        self.last_edit_at = self.clock()

    def replace(self, uri: str, version: int, text: str) -> None:
        self.change(uri, version, None, full=text)

    def _record(self, entry: _Doc, applied: AppliedEdit) -> None:
        if applied.old_text == applied.new_text:
            return
        edit = live_edit_of(entry.path, entry.doc, applied)
        if self.edits:
            merged = coalesce(self.edits[-1], edit)
            if merged is not None:
                self.edits.pop()
                if merged.old_lines != merged.new_lines:
                    self.edits.append(merged)
                return
        self.edits.append(edit)
        while len(self.edits) > self.max_live_edits:
            self._fold_oldest()

    def _fold_oldest(self) -> None:
        oldest = self.edits.pop(0)
        for entry in self.docs.values():
            if entry.path == oldest.path:
                entry.base = _fold(entry.base, oldest)

    def _maybe_settle(self) -> None:
        if (
            self.last_edit_at is not None
            and self.clock() - self.last_edit_at >= self.settle_after_s
        ):
            self.settle()

    def settle(self) -> None:
        """Make every document's current text its settled snapshot."""
        for entry in self.docs.values():
            entry.base = split_lines(entry.doc.text)
        self.edits.clear()

    # -- what predictors see -----------------------------------------------------------

    def context(
        self,
        cursor_uri: str,
        line: int,
        col: int,
        others: Mapping[str, Lines] | None = None,
        hidden: frozenset[str] = frozenset(),
    ) -> EditContext:
        """The predictors' view: open documents (+ ``others``, on-disk files) and the edits.

        Documents whose URI is in ``hidden`` are left out entirely (text and edits).
        """
        self._maybe_settle()
        files: dict[str, Lines] = {}
        base: dict[str, Lines] = {}
        hidden_paths = {self.docs[u].path for u in hidden if u in self.docs and u != cursor_uri}
        for entry in self.docs.values():
            if entry.path in hidden_paths:
                continue
            files[entry.path] = split_lines(entry.doc.text)
            base[entry.path] = entry.base
        for path, lines in (others or {}).items():
            if path not in files:
                files[path] = lines
                base[path] = lines
        cursor_path = self.docs[cursor_uri].path
        edits = tuple(e for e in self.edits if e.path not in hidden_paths)
        return EditContext(files, base, edits, Cursor(cursor_path, line, col))
