"""The workspace's functions for the server, and the "Draft body from ..." code action.

:class:`WorkspaceFunctions` keeps a :class:`~ripple.models.suggest.functions.FunctionIndex`
of every Python file: the workspace scan and changes on disk feed it through
:meth:`Workspace.on_text <ripple.server.workspace.Workspace.on_text>`, open documents
through the editor's text (which overrides the disk while the document is open). Every
write is serialised here, so the index holds the latest text of each file whatever
thread delivered it.

:meth:`WorkspaceFunctions.draft_at` is the code action's work: the innermost function at
the requested lines, if its body is empty (:func:`is_empty_body`), gets the body the
drafter writes from its nearest neighbour; :func:`body_edit` places it, keeping the
docstring and replacing ``pass`` / ``...``. Positions here are (line, code point); the
LSP edge converts them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ripple.models.edits.languages import language_name_for_path
from ripple.models.suggest.functions import (
    CopyBodyDrafter,
    Drafter,
    Embedder,
    FunctionIndex,
    FunctionRecord,
    HashedBagOfWords,
    default_drafter_and_embedder,
    extract_functions,
    is_empty_body,
)

__all__ = ["BodyDraft", "WorkspaceFunctions", "body_edit", "is_python"]

log = logging.getLogger(__name__)

Factory = Callable[[], tuple[Drafter, Embedder]]


def is_python(path: str) -> bool:
    """Whether the functions of ``path`` are indexed (Python files only)."""
    return language_name_for_path(path) == "python"


@dataclass(frozen=True)
class BodyDraft:
    """A drafted body and where it goes: replace ``[start, end)`` with ``new_text``."""

    title: str
    start: tuple[int, int]  # (line, code point)
    end: tuple[int, int]
    new_text: str
    function: FunctionRecord  # the function being written
    neighbour: FunctionRecord  # the function the draft comes from
    score: float  # the neighbour's cosine similarity


def body_edit(
    text: str, record: FunctionRecord, body: str
) -> tuple[tuple[int, int], tuple[int, int], str]:
    """The replacement that makes ``body`` the body of ``record`` in ``text``.

    Lines ``[body_start_line, end_line)`` (what follows the header: blank, ``pass`` or
    ``...``) become ``body``; a one-line function (``def f(): ...``) gets its body on the
    lines below. The text's own line break (``"\\r\\n"`` or ``"\\n"``) is used.
    """
    lines = text.split("\n")
    crlf = lines[record.start_line].endswith("\r") if record.start_line < len(lines) else False
    eol = "\r\n" if crlf else "\n"
    body = body if body.endswith("\n") else body + "\n"
    body = body.replace("\r\n", "\n")
    if crlf:
        body = body.replace("\n", "\r\n")

    def line_end(row: int) -> tuple[int, int]:
        line = lines[row]
        return row, len(line) - (1 if line.endswith("\r") else 0)

    if record.one_line:
        row = record.start_line + record.header.count("\n")
        start = (row, len(record.header.rsplit("\n", 1)[-1]))
        end = line_end(min(record.end_line, len(lines)) - 1)
        return start, end, eol + body[: -len(eol)]
    if record.body_start_line >= len(lines):  # the header ends the text, with no line break
        end = line_end(len(lines) - 1)
        return end, end, eol + body
    start = (record.body_start_line, 0)
    if record.end_line < len(lines):
        return start, (record.end_line, 0), body
    # The body runs to the end of a text without a final line break.
    return start, (len(lines) - 1, len(lines[-1])), body


class WorkspaceFunctions:
    """The function index of the workspace and the open documents (thread-safe).

    Paths are the names the server knows files by (workspace-relative inside a folder).
    """

    def __init__(self, drafter: Drafter, embedder: Embedder) -> None:
        self.drafter = drafter
        self.index = FunctionIndex(embedder)
        self._write_lock = threading.RLock()
        self._open: set[str] = set()
        self._pending: dict[str, int] = {}
        self._tick = 0

    @classmethod
    def load(cls, use_models: bool = True, factory: Factory | None = None) -> WorkspaceFunctions:
        """With the bundled models (or the lexical fallback when they do not load), or,
        when ``use_models`` is false, with the lexical retriever and the copying drafter."""
        if not use_models:
            return cls(CopyBodyDrafter(), HashedBagOfWords())
        drafter, embedder = (factory or default_drafter_and_embedder)()
        return cls(drafter, embedder)

    @property
    def kind(self) -> str:
        """What drafts: ``"lexical"`` for the fallback pair, else the classes' names."""
        if isinstance(self.drafter, CopyBodyDrafter) and isinstance(
            self.index.embedder, HashedBagOfWords
        ):
            return "lexical"
        return f"{type(self.index.embedder).__name__}+{type(self.drafter).__name__}"

    # -- feeding ----------------------------------------------------------------------------

    def disk_text(self, path: str, text: str | None) -> None:
        """A file's text on disk (None: it left the workspace); ignored while it is open."""
        if not is_python(path):
            return
        with self._write_lock:
            if path in self._open:
                return
            self._write(path, text)

    def opened(self, path: str) -> int | None:
        """The editor opened ``path``: its buffer now overrides the disk. Returns the
        ticket for the first :meth:`buffer_text` (None when the file is not Python)."""
        if not is_python(path):
            return None
        with self._write_lock:
            self._open.add(path)
        return self.ticket(path)

    def ticket(self, path: str) -> int:
        """A ticket for a buffer update about to be scheduled: only the newest one counts."""
        with self._write_lock:
            self._tick += 1
            self._pending[path] = self._tick
            return self._tick

    def buffer_text(self, path: str, text: str, ticket: int) -> bool:
        """The editor's text of an open file; dropped when a newer ticket was issued or the
        file was closed since. Whether it was applied."""
        with self._write_lock:
            if path not in self._open or self._pending.get(path) != ticket:
                return False
            self._pending.pop(path, None)
            self._write(path, text)
            return True

    def closed(self, path: str, disk: str | None) -> None:
        """The editor closed ``path``; ``disk`` is its text in the workspace view (None
        when it is not there: the file is forgotten)."""
        if not is_python(path):
            return
        with self._write_lock:
            self._open.discard(path)
            self._pending.pop(path, None)
            self._write(path, disk)

    def _write(self, path: str, text: str | None) -> None:
        try:
            if text is None:
                self.index.remove_file(path)
            else:
                self.index.update_file(path, text)
        except Exception:  # an embedder that fails leaves the file out, not the server down
            log.exception("indexing the functions of %s failed", path)

    # -- drafting ---------------------------------------------------------------------------

    def function_at(self, path: str, text: str, first: int, last: int) -> FunctionRecord | None:
        """The innermost function holding line ``first`` (a def line, a body line, or the
        blank line right below a function with an empty body)."""
        lines = text.split("\n")
        best: FunctionRecord | None = None
        for record in extract_functions(text, path):
            inside = record.start_line <= first < record.end_line
            below = (
                first == record.end_line
                and first < len(lines)
                and not lines[first].strip()
                and is_empty_body(record)
            )
            if (inside or below) and (best is None or record.start_line >= best.start_line):
                best = record
        if best is not None and last < best.start_line:
            return None
        return best

    def draft_at(self, path: str, text: str, first: int, last: int) -> BodyDraft | None:
        """The drafted body for the function at lines ``[first, last]`` of ``text``, or
        None: no function there, its body is written, nothing similar is indexed
        (similarity <= 0), or the drafter declines."""
        if not is_python(path):
            return None
        function = self.function_at(path, text, first, last)
        if function is None or not is_empty_body(function):
            return None
        found = self.index.query(function.header, k=1, exclude=(path, function.start_line))
        if not found or found[0][0] <= 0.0:
            return None
        score, neighbour = found[0]
        body = self.drafter.draft(function.header, neighbour)
        if body is None or not body.strip():
            return None
        start, end, new_text = body_edit(text, function, body)
        title = f"Draft body from `{neighbour.name}` ({neighbour.path}:{neighbour.start_line + 1})"
        return BodyDraft(title, start, end, new_text, function, neighbour, score)
