"""Functions of a workspace as retrieve-and-edit examples: header -> body.

A *header* is a function's ``def`` line(s) with their leading indentation (decorators
left out) plus its docstring statement when it has one; the *body* is every source line
after the header up to the function's end. :func:`extract_functions` reads both off a
tree-sitter parse of a Python file (methods and nested functions included; code
tree-sitter cannot recover yields fewer records, never an exception).

:class:`FunctionIndex` keeps the functions of every file, embedded by an
:class:`Embedder`, and answers the nearest headers by cosine similarity (an exact numpy
search). A :class:`Drafter` then turns the header a user has just written and the
retrieved neighbour into a body for the new function. The learned pair ships as ONNX
models (``retrieve_edit.load_function_models``); :func:`default_drafter_and_embedder`
falls back to the lexical :class:`HashedBagOfWords` and the retriever-only
:class:`CopyBodyDrafter` when they are missing or do not load.

Lines are 0-based, separated by ``"\\n"`` (tree-sitter rows, as in
``models/edits/positions.py``), and ranges are half-open.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import tree_sitter

from ripple.models.edits.languages import language_name_for_path, make_parser

__all__ = [
    "CopyBodyDrafter",
    "Drafter",
    "Embedder",
    "FunctionIndex",
    "FunctionRecord",
    "HashedBagOfWords",
    "default_drafter_and_embedder",
    "extract_functions",
    "is_empty_body",
    "reindent",
]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class FunctionRecord:
    """One function of a file (0-based lines, ``end_line`` exclusive).

    ``start_line`` is the line of ``def`` (``async def``), decorators excluded;
    ``body_start_line`` the first line after the header (the header's own last line for
    a one-line function such as ``def f(): return 1``); ``end_line`` the line after the
    function's last one. ``header`` is the exact source from the start of the ``def``
    line (indentation included) to the end of the docstring statement, or to the ``:``
    without one; ``body`` the exact source of lines ``[body_start_line, end_line)``
    (from the first statement on for a one-line function), so it ends with the file's
    line break unless the file ends there without one. ``indent`` is the body's
    indentation: its first statement's, else the docstring's, else the ``def`` line's
    plus one level.
    """

    path: str
    name: str
    start_line: int
    body_start_line: int
    end_line: int
    header: str
    body: str
    indent: str

    @property
    def one_line(self) -> bool:
        """Whether the body shares the header's last line (``def f(): pass``)."""
        return self.body_start_line < self.start_line + self.header.count("\n") + 1


# -- extraction -------------------------------------------------------------------------

# Statements and containers that can hold a function definition; expressions never can,
# so the walk does not descend into them.
_CONTAINERS = frozenset({"module", "block", "ERROR", "decorated_definition"})
_STRING_TYPES = frozenset({"string", "concatenated_string"})
_LEADING_WS = re.compile(r"[ \t\f]*")
_ENCODING = "utf-8"
_ERRORS = "surrogatepass"  # an editor buffer may hold lone surrogates; keep them as is


def _holds_definitions(node: tree_sitter.Node) -> bool:
    kind = node.type
    return kind in _CONTAINERS or (
        kind.endswith(("_statement", "_clause", "_definition"))
        and kind not in ("expression_statement", "return_statement")
    )


def _leading_ws(line: str) -> str:
    match = _LEADING_WS.match(line)
    return match.group(0) if match else ""


def _unit_of(indent: str) -> str:
    """One more indentation level after ``indent``."""
    return "\t" if indent.startswith("\t") else "    "


class _Source:
    """The bytes of a text with the start of every ``"\\n"``-separated line."""

    def __init__(self, text: str) -> None:
        self.data = text.encode(_ENCODING, _ERRORS)
        self.starts = [0, *(m.end() for m in re.finditer(b"\n", self.data))]

    def line_start(self, row: int) -> int:
        return self.starts[row] if row < len(self.starts) else len(self.data)

    def line_end(self, row: int) -> int:
        """The end of ``row`` after its line break."""
        return self.starts[row + 1] if row + 1 < len(self.starts) else len(self.data)

    def slice(self, start: int, end: int) -> str:
        return self.data[start:end].decode(_ENCODING, _ERRORS)

    def line(self, row: int) -> str:
        return self.slice(self.line_start(row), self.line_end(row))


def _docstring(body: tree_sitter.Node | None) -> tree_sitter.Node | None:
    """The docstring statement opening a block, if any."""
    first = _statements(body)
    if not first:
        return None
    statement = first[0]
    if statement.type != "expression_statement" or statement.named_child_count != 1:
        return None
    child = statement.named_children[0]
    return statement if child is not None and child.type in _STRING_TYPES else None


def _statements(body: tree_sitter.Node | None) -> list[tree_sitter.Node]:
    if body is None:
        return []
    return [child for child in body.named_children if child.type != "comment"]


def _record(node: tree_sitter.Node, source: _Source, path: str) -> FunctionRecord | None:
    name = node.child_by_field_name("name")
    colon = next((c for c in node.children if c.type == ":" and not c.is_missing), None)
    if name is None or name.is_missing or colon is None:
        return None
    body = node.child_by_field_name("body")
    docstring = _docstring(body)
    statements = _statements(body)
    first = statements[1 if docstring is not None else 0 :][:1]
    def_row = node.start_point.row
    header_end = docstring if docstring is not None else colon
    header_row = header_end.end_point.row
    header = source.slice(source.line_start(def_row), header_end.end_byte)
    end_point = node.end_point
    end_line = max(end_point.row + (1 if end_point.column > 0 else 0), header_row + 1)
    def_indent = _leading_ws(source.line(def_row))
    if first and first[0].start_point.row == header_row:  # def f(): return 1
        statement = first[0]
        return FunctionRecord(
            path=path,
            name=source.slice(name.start_byte, name.end_byte),
            start_line=def_row,
            body_start_line=header_row,
            end_line=end_line,
            header=header,
            body=source.slice(statement.start_byte, source.line_end(end_line - 1)),
            indent="",
        )
    body_start = header_row + 1
    text = (
        source.slice(source.line_start(body_start), source.line_end(end_line - 1))
        if body_start < end_line
        else ""
    )
    if first:
        indent = _leading_ws(source.line(first[0].start_point.row))
    elif docstring is not None and docstring.start_point.row > colon.end_point.row:
        indent = _leading_ws(source.line(docstring.start_point.row))
    else:
        indent = def_indent + _unit_of(def_indent)
    return FunctionRecord(
        path=path,
        name=source.slice(name.start_byte, name.end_byte),
        start_line=def_row,
        body_start_line=body_start,
        end_line=end_line,
        header=header,
        body=text,
        indent=indent,
    )


def _walk_functions(text: str, path: str) -> list[FunctionRecord]:
    source = _Source(text)
    tree = make_parser("python").parse(source.data)
    found: list[FunctionRecord] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "function_definition":
            record = _record(node, source, path)
            if record is not None:
                found.append(record)
        stack.extend(child for child in reversed(node.named_children) if _holds_definitions(child))
    found.sort(key=lambda r: (r.start_line, r.end_line))
    return found


def extract_functions(text: str, path: str) -> list[FunctionRecord]:
    """Every function of a Python file, in source order (outer before inner).

    Files that are not Python (by ``path``'s extension) give ``[]``; broken code gives
    the functions tree-sitter recovers. Never raises.
    """
    if language_name_for_path(path) != "python":
        return []
    try:
        return _walk_functions(text, path)
    except Exception:  # a bug here must not take a server request down with it
        log.exception("extracting the functions of %s failed", path)
        return []


_EMPTY_LINE = re.compile(r"(?:pass|\.\.\.)\s*;?\s*(?:#.*)?")


def is_empty_body(record: FunctionRecord) -> bool:
    """Whether the function is one the user has just started.

    Its body (what follows the docstring) is blank, or ``pass`` / ``...`` statements
    (with trailing comments); a line of anything else, a comment line included, makes
    it a written function.
    """
    for line in record.body.splitlines():
        stripped = line.strip()
        if stripped and (stripped.startswith("#") or _EMPTY_LINE.fullmatch(stripped) is None):
            return False
    return True


def reindent(body: str, old: str, new: str) -> str:
    """``body`` with each line's leading ``old`` indentation replaced by ``new``.

    Blank lines become empty lines; a line not starting with ``old`` (inside a
    multi-line string, say) is kept as is. The result ends with a line break.
    """
    out: list[str] = []
    for line in body.splitlines(keepends=True):
        content = line.rstrip("\r\n")
        ending = line[len(content) :] or "\n"
        if not content.strip():
            out.append(ending)
        elif content.startswith(old):
            out.append(new + content[len(old) :] + ending)
        else:
            out.append(content + ending)
    return "".join(out)


# -- embedders and drafters ---------------------------------------------------------------


@runtime_checkable
class Embedder(Protocol):
    """Headers -> vectors whose dot products are cosine similarities."""

    def embed(self, headers: Sequence[str]) -> FloatArray:
        """An ``(len(headers), d)`` float32 array of unit rows (a row may be all zeros)."""
        ...


@runtime_checkable
class Drafter(Protocol):
    """Writes a body for a new function from a retrieved neighbour."""

    def draft(self, header: str, neighbour: FunctionRecord) -> str | None:
        """The body text for the function ``header`` starts (indented, each line ending
        with a line break), or None when it cannot draft one."""
        ...


_WORD = re.compile(r"[^\W\d_][^\W_]*|\d+")
_PIECE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^\W\d_]+")
# Words in every header: they would make every pair of functions look alike.
_STOP = frozenset({"def", "async", "self", "cls"})


def header_tokens(header: str) -> list[str]:
    """The lower-case words of a header: each identifier, and its camelCase and
    snake_case pieces when it has several."""
    tokens: list[str] = []
    for match in re.finditer(r"\w+", header):
        identifier = match.group(0)
        pieces = [p.lower() for word in _WORD.findall(identifier) for p in _PIECE.findall(word)]
        whole = identifier.lower().strip("_")
        if not whole or whole in _STOP:
            continue
        if len(pieces) > 1:
            tokens.append(whole)
        tokens.extend(p for p in pieces if p not in _STOP)
    return tokens


class HashedBagOfWords:
    """The lexical embedder: hashed counts of :func:`header_tokens`, L2-normalised.

    Tokens are hashed (CRC-32, stable across processes) into ``dim`` buckets; a header
    without words embeds as a zero row.
    """

    def __init__(self, dim: int = 1024) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim

    def embed(self, headers: Sequence[str]) -> FloatArray:
        out = np.zeros((len(headers), self.dim), dtype=np.float32)
        for row, header in enumerate(headers):
            tokens = header_tokens(header)
            if not tokens:
                continue
            buckets = [zlib.crc32(token.encode(_ENCODING, _ERRORS)) % self.dim for token in tokens]
            counts = np.bincount(buckets, minlength=self.dim).astype(np.float32)
            out[row] = counts / np.linalg.norm(counts)
        return out


def _header_indents(header: str) -> tuple[str, str | None]:
    """The ``def`` line's indentation, and the body's as the header's docstring shows it
    (None without a docstring on a line of its own)."""
    lines = header.split("\n")
    def_indent = _leading_ws(lines[0])
    dedented = "\n".join(
        line[len(def_indent) :] if line.startswith(def_indent) else line for line in lines
    )
    source = _Source(dedented + "\n")
    root = make_parser("python").parse(source.data).root_node
    node = root.named_children[0] if root.named_child_count else None
    if node is None or node.type != "function_definition":
        return def_indent, None
    colon = next((c for c in node.children if c.type == ":" and not c.is_missing), None)
    docstring = _docstring(node.child_by_field_name("body"))
    if colon is None or docstring is None or docstring.start_point.row <= colon.end_point.row:
        return def_indent, None
    return def_indent, def_indent + _leading_ws(source.line(docstring.start_point.row))


class CopyBodyDrafter:
    """The retriever alone: the neighbour's body, re-indented for the new function.

    The new body's indentation is the new docstring's when the header has one on its own
    line, else the ``def`` line's plus the neighbour's own step from its ``def`` line to
    its body.
    """

    def draft(self, header: str, neighbour: FunctionRecord) -> str | None:
        if not neighbour.body.strip():
            return None
        def_indent, body_indent = _header_indents(header)
        if body_indent is None:
            old_def = _leading_ws(neighbour.header.split("\n", 1)[0])
            step = (
                neighbour.indent[len(old_def) :]
                if neighbour.indent.startswith(old_def) and neighbour.indent != old_def
                else _unit_of(def_indent)
            )
            body_indent = def_indent + step
        return reindent(neighbour.body, neighbour.indent, body_indent)


# -- the index ----------------------------------------------------------------------------

# The search matrix is stored in float16 (half the memory of float32: 2 KiB a function
# with the lexical embedder) and scored in float32 blocks of this many rows.
_BLOCK_ROWS = 16384


@dataclass
class _File:
    digest: int
    records: tuple[FunctionRecord, ...]  # the indexed ones: bodies that are not empty
    vectors: npt.NDArray[np.float16]


class FunctionIndex:
    """The functions of a set of files by their headers' embeddings (thread-safe).

    ``update_file`` extracts and embeds outside the lock and swaps the file's entry in
    under it; the search matrix is rebuilt at the first query after a change. Functions
    whose body is empty (:func:`is_empty_body`) are not indexed: they have nothing to
    lend. Two updates of one path racing each other keep whichever commits last: a
    caller that updates from several threads serialises its updates.
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._lock = threading.Lock()
        self._files: dict[str, _File] = {}
        self._matrix: npt.NDArray[np.float16] | None = None
        self._records: tuple[FunctionRecord, ...] = ()

    def update_file(self, path: str, text: str) -> int:
        """Index (or re-index) every function of ``path`` at ``text``; how many are indexed.

        A text the index already holds for ``path`` is not extracted again.
        """
        digest = hash(text)
        with self._lock:
            known = self._files.get(path)
            if known is not None and known.digest == digest:
                return len(known.records)
        records = tuple(r for r in extract_functions(text, path) if not is_empty_body(r))
        vectors = self._embed([r.header for r in records]).astype(np.float16)
        with self._lock:
            old = self._files.get(path)
            self._files[path] = _File(digest, records, vectors)
            if records or (old is not None and old.records):
                self._matrix = None
        return len(records)

    def remove_file(self, path: str) -> bool:
        """Forget ``path``; whether it was known."""
        with self._lock:
            old = self._files.pop(path, None)
            if old is None:
                return False
            if old.records:
                self._matrix = None
            return True

    def paths(self) -> list[str]:
        """The files with at least one indexed function, sorted."""
        with self._lock:
            return sorted(path for path, entry in self._files.items() if entry.records)

    def __len__(self) -> int:
        """How many functions are indexed."""
        with self._lock:
            return sum(len(entry.records) for entry in self._files.values())

    def query(
        self, header: str, k: int = 1, exclude: tuple[str, int] | None = None
    ) -> list[tuple[float, FunctionRecord]]:
        """The ``k`` indexed functions whose headers are nearest to ``header``.

        ``(cosine similarity, record)`` pairs, best first (ties in index order);
        ``exclude`` names one function, ``(path, start_line)``, to leave out (the one
        being written).
        """
        if k <= 0:
            return []
        vector = self._embed([header])[0]
        with self._lock:
            matrix, records = self._search_matrix()
            if not records or vector.shape[0] != matrix.shape[1]:
                return []
            # Scored under the lock: a rebuild never frees the matrix while it is read.
            scores = np.concatenate(
                [
                    matrix[start : start + _BLOCK_ROWS].astype(np.float32) @ vector
                    for start in range(0, len(records), _BLOCK_ROWS)
                ]
            )
        want = min(k + (exclude is not None), len(records))
        top = (
            np.argpartition(-scores, want - 1)[:want]
            if want < len(records)
            else range(len(records))
        )
        order = sorted((int(i) for i in top), key=lambda i: (-float(scores[i]), i))
        out: list[tuple[float, FunctionRecord]] = []
        for i in order:
            record = records[i]
            if exclude is not None and (record.path, record.start_line) == exclude:
                continue
            out.append((float(scores[i]), record))
        return out[:k]

    def _embed(self, headers: Sequence[str]) -> FloatArray:
        if not headers:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = np.asarray(self.embedder.embed(headers), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(headers):
            raise ValueError(
                f"the embedder gave an array of shape {vectors.shape} for {len(headers)} headers"
            )
        return vectors

    def _search_matrix(self) -> tuple[npt.NDArray[np.float16], tuple[FunctionRecord, ...]]:
        """The stacked vectors and their records (``_lock`` held)."""
        if self._matrix is None:
            entries = [entry for entry in self._files.values() if entry.records]
            if not entries:
                self._matrix, self._records = np.zeros((0, 0), dtype=np.float16), ()
            else:
                self._matrix = np.concatenate([entry.vectors for entry in entries])
                self._records = tuple(r for entry in entries for r in entry.records)
                # Each file's vectors become a view into the matrix: no second copy is kept.
                offset = 0
                for entry in entries:
                    entry.vectors = self._matrix[offset : offset + len(entry.records)]
                    offset += len(entry.records)
        return self._matrix, self._records


# -- the models -----------------------------------------------------------------------------


def _model_errors() -> tuple[type[Exception], ...]:
    """The exception classes a failed model load raises (``ModelError``, wherever it lives)."""
    found: list[type[Exception]] = [ImportError, OSError]
    for module in ("ripple.models.errors", "ripple.models.runtime.manifest"):
        try:
            cls = getattr(importlib.import_module(module), "ModelError", None)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, Exception) and cls not in found:
            found.append(cls)
    return tuple(found)


def default_drafter_and_embedder() -> tuple[Drafter, Embedder]:
    """The bundled retrieve-and-edit models, or the lexical fallback when they cannot load.

    The fallback is :class:`CopyBodyDrafter` with :class:`HashedBagOfWords`; why it was
    needed is logged.
    """
    try:
        from ripple.models.suggest.retrieve_edit import load_function_models

        embedder, drafter = load_function_models()
    except _model_errors() as exc:
        log.info("function drafts use the lexical retriever: %s", exc)
        return CopyBodyDrafter(), HashedBagOfWords()
    return drafter, embedder
