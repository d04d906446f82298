"""The one interface every next-edit predictor implements.

A predictor is given an :class:`EditContext` (the workspace files as they stand, the edits
that led there since the last settled snapshot, and the cursor) and returns up to a few
ranked :class:`Suggestion` s. The replay benchmark (``ripple eval replay``) and the language
server build the same context and call the same method, so a baseline, a learned model and
the shipped ensemble are measured exactly the way they are served.

Everything here is plain data in editor terms: paths are workspace-relative strings, lines
are 0-based, ranges are half-open ``[start, end)``, and texts are lists of lines that keep
their line endings (``str.splitlines(keepends=True)``). No LSP type ever appears here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ripple.models.edits.editscript import EditScript

Lines = tuple[str, ...]


@dataclass(frozen=True)
class Cursor:
    """Where the user's caret is: a path, a 0-based line and a code-point column."""

    path: str
    line: int
    col: int


@dataclass(frozen=True)
class LiveEdit:
    """One edit the user made: lines ``[start, end)`` of ``path`` became ``new_lines``.

    ``start``/``end`` are line numbers in the file's state just before this edit (so a
    history can be replayed from the base snapshot edit by edit); ``old_lines`` is what
    was there.
    """

    path: str
    start: int
    end: int
    old_lines: Lines
    new_lines: Lines

    @property
    def new_end(self) -> int:
        """The end of the new lines in the state just after this edit."""
        return self.start + len(self.new_lines)


@dataclass(frozen=True)
class EditContext:
    """Everything a predictor may look at: workspace, edit history and cursor.

    ``files`` holds the current text of every workspace file (as lines), in a stable
    order (the replay benchmark uses the commit record's order); ``base`` holds each
    file's settled snapshot, the state before ``edits``; ``edits`` are the live edits
    since then, oldest first, across files. Applying ``edits`` in order to ``base`` gives
    ``files``.
    """

    files: Mapping[str, Lines]
    base: Mapping[str, Lines]
    edits: tuple[LiveEdit, ...]
    cursor: Cursor
    _scripts: dict[str, EditScript | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def last_edit(self) -> LiveEdit | None:
        """The most recent live edit, or ``None`` before the first one."""
        return self.edits[-1] if self.edits else None

    def text(self, path: str) -> str:
        """The current text of ``path``."""
        return "".join(self.files[path])

    def edits_in(self, path: str) -> list[LiveEdit]:
        """The live edits made to ``path``, oldest first."""
        return [edit for edit in self.edits if edit.path == path]

    def ast_script(self, path: str) -> EditScript | None:
        """The AST edit script from ``path``'s settled snapshot to its current text.

        Computed on first use and cached (GumTree matching + Chawathe script, see
        ``models/edits/editscript.py``); ``None`` for a file without live edits or in a
        language ripple cannot parse.
        """
        if path not in self._scripts:
            from ripple.models.edits.editscript import diff_sources
            from ripple.models.edits.languages import language_name_for_path

            script = None
            language = language_name_for_path(path)
            if language is not None and self.edits_in(path) and path in self.files:
                old, new = "".join(self.base.get(path, ())), self.text(path)
                script = diff_sources(old, new, language)
            self._scripts[path] = script
        return self._scripts[path]

    def snapshots(self, path: str) -> list[Lines]:
        """The states of ``path``: its base snapshot, then one state after each of its edits."""
        states = [self.base.get(path, ())]
        for edit in self.edits_in(path):
            lines = states[-1]
            states.append((*lines[: edit.start], *edit.new_lines, *lines[edit.end :]))
        return states


@dataclass(frozen=True)
class Suggestion:
    """Replace lines ``[start_line, end_line)`` of ``path``'s current state by ``new_lines``.

    ``new_lines`` keep their line endings, like the file's own lines (scoring ignores
    trailing whitespace). ``score`` orders suggestions from different sources (higher is
    more confident); ``explanation`` says in a few words why it was made, for the UI.
    """

    path: str
    start_line: int
    end_line: int
    new_lines: Lines
    score: float = 0.0
    explanation: str = ""


@runtime_checkable
class Predictor(Protocol):
    """A next-edit system: a name for reports and one method.

    ``suggest`` returns suggestions best first (the caller keeps at most 5) or an empty
    list to stay silent; staying silent is better than guessing, since a wrong suggestion
    costs the user attention.
    """

    name: str

    def suggest(self, ctx: EditContext) -> list[Suggestion]: ...
