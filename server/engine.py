"""The suggestion engine: from the live edit history to ranked, explained next edits.

One request goes: build the :class:`EditContext` (open documents, plus the workspace
files where the identifiers the user just edited also occur), run the shipped predictor
(the gated ensemble of ``models/suggest``), drop what the user already rejected, and
turn each suggestion into the smallest text replacement, in LSP positions, with an id
the client reports back (shown / accepted / rejected).

Feedback stays in this process: a rejection suppresses that exact replacement at that
place and lengthens the debounce of speculative runs; an acceptance shortens it.
"""

from __future__ import annotations

import itertools
import keyword
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ripple.models.edits.positions import code_points_to_utf16
from ripple.models.suggest.api import EditContext, Lines, Predictor, Suggestion
from ripple.server.config import RippleConfig
from ripple.server.history import EditHistory

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class WorkspaceView(Protocol):
    """What the engine needs from the on-disk workspace (``server/workspace.py``)."""

    def occurrences(self, name: str, limit: int | None = None) -> list[tuple[str, int]]: ...

    def lines(self, rel: str) -> tuple[str, ...]: ...

    def path_of(self, rel: str) -> Path: ...


@dataclass(frozen=True)
class TextEdit:
    """A replacement in LSP terms: ``[(start line, start UTF-16 char), (end ...))`` -> text."""

    start: tuple[int, int]
    end: tuple[int, int]
    new_text: str


@dataclass(frozen=True)
class NextEdit:
    """One suggestion as the client sees it."""

    id: str
    uri: str
    version: int | None  # the open document's version; None for a file not open
    path: str
    edit: TextEdit
    suggestion: Suggestion
    # What a rejection suppresses: this replacement at a place with this text.
    key: tuple[str, str, str]

    @property
    def explanation(self) -> str:
        return self.suggestion.explanation

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "textDocument": {"uri": self.uri, "version": self.version},
            "range": {
                "start": {"line": self.edit.start[0], "character": self.edit.start[1]},
                "end": {"line": self.edit.end[0], "character": self.edit.end[1]},
            },
            "newText": self.edit.new_text,
            "explanation": self.explanation,
            "score": round(self.suggestion.score, 4),
        }


def _offset_to_position(lines: Lines, start_line: int, offset: int) -> tuple[int, int]:
    """A code-point offset counted from line ``start_line`` -> (line, UTF-16 character)."""
    row = start_line
    while row < len(lines) and offset > len(lines[row]) - (1 if lines[row].endswith("\n") else 0):
        line = lines[row]
        if not line.endswith("\n"):
            break
        offset -= len(line)
        row += 1
    text = lines[row] if row < len(lines) else ""
    return row, code_points_to_utf16(text.rstrip("\n"), min(offset, len(text.rstrip("\n"))))


def minimal_edit(lines: Lines, s: Suggestion) -> TextEdit | None:
    """The smallest character-level replacement that turns ``s``'s lines into its new lines.

    ``None`` when the suggestion changes nothing or lies outside the file.
    """
    if s.start_line < 0 or s.end_line > len(lines) or s.start_line > s.end_line:
        return None
    old = "".join(lines[s.start_line : s.end_line])
    new = "".join(s.new_lines)
    if old == new:
        return None
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while (
        suffix < limit - prefix
        and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]
    ):
        suffix += 1
    start = _offset_to_position(lines, s.start_line, prefix)
    end = _offset_to_position(lines, s.start_line, len(old) - suffix)
    if s.start_line == len(lines):  # an insertion after the last line
        start = end = (len(lines), 0)
    return TextEdit(start, end, new[prefix : len(new) - suffix])


class Debounce:
    """How long the engine waits after a keystroke before a speculative run.

    Multiplied by ``grow`` after a rejection (the user does not want more right now) and
    by ``shrink`` after an acceptance, within ``[low, high]`` milliseconds.
    """

    def __init__(
        self, initial: float, low: float, high: float, grow: float = 1.5, shrink: float = 0.7
    ) -> None:
        self.low, self.high = low, max(low, high)
        self.grow, self.shrink = grow, shrink
        self.ms = min(max(initial, self.low), self.high)

    def rejected(self) -> None:
        self.ms = min(self.high, self.ms * self.grow)

    def accepted(self) -> None:
        self.ms = max(self.low, self.ms * self.shrink)


def _rejection_key(path: str, lines: Lines, s: Suggestion) -> tuple[str, str, str]:
    # The place is named by its text, not its line number, so the suppression survives
    # edits above it and ends when the place itself changes.
    old = "".join(lines[s.start_line : s.end_line]).strip()
    return (path, old, "".join(s.new_lines).strip())


class Engine:
    """Suggestions for the open documents, with ids, feedback and suppression."""

    def __init__(
        self,
        history: EditHistory,
        predictor: Predictor,
        config: RippleConfig,
        workspace: WorkspaceView | None = None,
        uri_for: Callable[[str], str] | None = None,
    ) -> None:
        self.history = history
        self.predictor = predictor
        self.config = config
        self.workspace = workspace
        self.uri_for = uri_for or (lambda path: Path(path).absolute().as_uri())
        # Whether an edit may target a URI (the server confines edits to the workspace).
        self.allowed: Callable[[str, str], bool] = lambda uri, request_uri: True
        self.debounce = Debounce(config.debounce_ms, config.min_debounce_ms, config.max_debounce_ms)
        self.rejected: set[tuple[str, str, str]] = set()
        self.partly_accepted: set[str] = set()
        self.shown: dict[str, NextEdit] = {}
        self.stats: Counter[str] = Counter()
        self._ids = itertools.count(1)

    def reconfigure(self, config: RippleConfig) -> None:
        self.config = config
        self.debounce = Debounce(config.debounce_ms, config.min_debounce_ms, config.max_debounce_ms)

    # -- context ------------------------------------------------------------------------

    def _other_files(self) -> dict[str, Lines]:
        """Workspace files where identifiers of the recent edits occur, most hits first."""
        if self.workspace is None or self.config.max_context_files == 0:
            return {}
        names: set[str] = set()
        for edit in self.history.edits[-3:]:
            for text in (*edit.old_lines, *edit.new_lines):
                for name in _IDENTIFIER.findall(text):
                    if len(name) >= 3 and not keyword.iskeyword(name):
                        names.add(name)
        hits: Counter[str] = Counter()
        open_paths = {entry.path for entry in self.history.docs.values()}
        for name in sorted(names)[:64]:
            for rel, _line in self.workspace.occurrences(name, limit=2000):
                if rel not in open_paths:
                    hits[rel] += 1
        files: dict[str, Lines] = {}
        for rel, _count in hits.most_common(self.config.max_context_files):
            lines = self.workspace.lines(rel)
            if lines:
                files[rel] = lines
        return files

    def context(self, uri: str, line: int, col: int) -> EditContext:
        # Open documents that no edit may target are not shown to the predictors at all.
        hidden = frozenset(u for u in self.history.docs if not self.allowed(u, uri))
        return self.history.context(uri, line, col, self._other_files(), hidden)

    # -- suggestions --------------------------------------------------------------------

    def servable(self, uri: str) -> bool:
        """Whether suggestions may be made for the open document ``uri`` at all."""
        return self.config.enabled and uri in self.history.docs and self.allowed(uri, uri)

    def suggest(self, uri: str, line: int, col: int, fast: bool = False) -> list[NextEdit]:
        """Ranked next edits for the document ``uri`` with the cursor at (line, code point).

        ``fast`` runs only the members cheap enough for every keystroke (see
        ``Ensemble.slow``); the full set runs when typing pauses (``lsp.py``).
        """
        if not self.servable(uri):
            return []
        ctx = self.context(uri, line, col)
        return self.present(ctx, self.predict(ctx, fast), uri)

    def predict(self, ctx: EditContext, fast: bool = False) -> list[Suggestion]:
        """The predictor's raw suggestions; safe to call off the event loop (``ctx`` is data)."""
        suggest_fast = getattr(self.predictor, "suggest_fast", None)
        if fast and suggest_fast is not None:
            result: list[Suggestion] = suggest_fast(ctx)
            return result
        return self.predictor.suggest(ctx)

    @property
    def has_slow_members(self) -> bool:
        return bool(getattr(self.predictor, "slow", None))

    def present(
        self, ctx: EditContext, suggestions: list[Suggestion], request_uri: str | None = None
    ) -> list[NextEdit]:
        out: list[NextEdit] = []
        for s in suggestions:
            if s.score < self.config.min_score or s.path not in ctx.files:
                continue
            lines = ctx.files[s.path]
            key = _rejection_key(s.path, lines, s)
            if key in self.rejected:
                continue
            edit = minimal_edit(lines, s)
            if edit is None:
                continue
            uri = self.history.uri_of_path(s.path)
            version = self.history.version(uri) if uri is not None else None
            if uri is None:
                uri = self._uri_of(s.path)
            if not self.allowed(uri, request_uri or uri):
                self.stats["refused_outside_workspace"] += 1
                continue
            next_edit = NextEdit(f"r{next(self._ids)}", uri, version, s.path, edit, s, key)
            out.append(next_edit)
            if len(out) >= self.config.max_suggestions:
                break
        for next_edit in out:
            self.shown[next_edit.id] = next_edit
        while len(self.shown) > 1000:  # ids of long-gone suggestions
            self.shown.pop(next(iter(self.shown)))
        return out

    def _uri_of(self, path: str) -> str:
        if self.workspace is not None:
            return self.workspace.path_of(path).absolute().as_uri()
        return self.uri_for(path)

    # -- feedback -----------------------------------------------------------------------

    def did_show(self, edit_id: str) -> None:
        if edit_id in self.shown:
            self.stats["shown"] += 1

    def did_accept(self, edit_id: str, accepted_length: int | None = None) -> None:
        """An accepted suggestion; a partial accept keeps it open for the rest (or a reject)."""
        partial = accepted_length is not None and accepted_length >= 0
        shown = self.shown.get(edit_id) if partial else self.shown.pop(edit_id, None)
        if shown is None:
            return
        if partial:
            if edit_id in self.partly_accepted:
                return  # counted once per suggestion, however many words were taken
            self.partly_accepted.add(edit_id)
        self.stats["accepted_partly" if partial else "accepted"] += 1
        self.debounce.accepted()

    def did_reject(self, edit_id: str) -> None:
        shown = self.shown.pop(edit_id, None)
        if shown is None:
            return
        self.stats["rejected"] += 1
        self.debounce.rejected()
        self.rejected.add(shown.key)
