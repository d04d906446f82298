"""The workspace folders as they are on disk: which source files exist, their text, and
an identifier index over them.

The editor's open buffers live in the edit history; this is the disk. The engine uses it
to find candidate locations for next edits in other files: ``occurrences(name)`` says in
which files and on which lines an identifier appears, ``calls(name)`` where it is called.
Changes made outside the editor (a ``git checkout``, a formatter, generated files) reach
it through :meth:`Workspace.apply_external_changes` (from ``workspace/didChangeWatchedFiles``
or from :class:`~ripple.server.watcher.Watcher`); they update the view and its index and
are reported to the ``on_change`` listeners, never recorded as the user's edits.

**What is in the view.** A file is indexed when its extension is one of
``WorkspaceConfig.extensions`` (by default every extension
``models/edits/languages.py`` knows), it is at most ``max_file_bytes`` long, it has no
NUL byte in its first 8 KiB and it decodes as UTF-8. Directories named in
``exclude_dirs`` (``.git``, ``node_modules``, ``__pycache__``, ``*.egg-info`` ...) and
virtual environments (a directory holding ``pyvenv.cfg`` or ``conda-meta``) are never
entered; a workspace folder itself is never excluded by its own name. ``extra_excludes``
adds the user's globs: a glob without ``/`` matches any file or directory name, a glob
with ``/`` matches the folder-relative POSIX path (``gen/*`` leaves out all of ``gen``).
Symbolic links are not followed and linked files are not indexed (with
``follow_symlinks=True``, links whose target lies inside a workspace folder are; a link
pointing outside the folders never is). At most ``max_files`` files are indexed
(``truncated`` then says so).

**Paths.** Files are named by workspace-relative POSIX paths (``pkg/mod.py``). With
several workspace folders, each path starts with its folder's name (``api/pkg/mod.py``,
``web/src/app.ts``); two folders with the same name become ``name`` and ``name-2``, and a
folder inside another one is covered by the outer folder. Lines are 0-based indexes into
``lines(rel)``, which cuts a text the way ``str.splitlines(keepends=True)`` does, like
``models/suggest/api.py``.

**Index.** ``identifiers="syntax"`` (the default) takes the identifier tokens of
``models/edits/tokens.py`` (tree-sitter leaves: names in code, not in strings or
comments, keywords left out); ``"words"`` takes every word of the text with a regular
expression: on a 176 MB tree it took 4.6x less CPU to build, but it also finds names in
comments and strings and its index was 2.1x larger.
Each file keeps its identifiers as one sorted tuple of names and two packed integer
arrays (the lines of each name, a call flag in the low bit), and a global map sends each
identifier to the files that hold it; a changed file swaps its own entry. File texts are
not kept: ``text``/``lines`` read the file on demand through a small LRU cache
(``text_cache_bytes``), checked against the file's size, mtime and inode so that it
always gives the text on disk now.

**Threads.** The view is read by the server's event loop while a watcher thread or the
scan writes. Readers take one short lock; writers are serialised by a second lock and
do their file reading and tokenizing outside the first, so a read never waits for a
tokenizer. ``on_change`` listeners run on the thread that applied the change (the
watcher's, or the scan's): a server on asyncio hands them to its loop with
``loop.call_soon_threadsafe``. ``on_text`` listeners get each text the view indexes (and
None for a file that leaves it), on the writing thread, in order: the server's function
index (``functions_index.py``) is filled this way without reading a file twice.
"""

from __future__ import annotations

import fnmatch
import keyword
import logging
import os
import re
import stat
import sys
import threading
from array import array
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ripple.models.edits import languages
from ripple.models.edits.languages import language_name_for_path
from ripple.models.edits.tokens import tokenize
from ripple.server.watcher import Watcher

__all__ = [
    "DEFAULT_EXCLUDE_DIRS",
    "ChangeKind",
    "Watcher",
    "Workspace",
    "WorkspaceConfig",
    "glob_patterns",
]

log = logging.getLogger(__name__)

ChangeKind = Literal["created", "changed", "deleted"]
Progress = Callable[[int, int], None]
Listener = Callable[[list[str]], None]
TextListener = Callable[[str, str | None], None]

DEFAULT_EXCLUDE_DIRS: tuple[str, ...] = (
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "env",
    "virtualenvs",
    "node_modules",
    "__pycache__",
    "build",
    "dist",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "site-packages",
    "*.egg-info",
)

# Only the first bytes are searched for NUL: a text file never has one, a binary one
# almost always has one early.
_BINARY_PROBE = 8192


def _known_extensions() -> frozenset[str]:
    """The file extensions that ``models/edits/languages.py`` maps to a grammar."""
    return frozenset(languages._PYTHON_EXTENSIONS | languages._PACK_LANGUAGES.keys())


@dataclass(frozen=True)
class WorkspaceConfig:
    """What the workspace view indexes; every field has a default.

    ``exclude_dirs`` are directory-name globs (never the name of a workspace folder
    itself); ``env_markers`` are entries whose presence makes a directory a virtual
    environment; ``extra_excludes`` are the user's globs (see the module docstring);
    ``extensions`` are lower-case suffixes with their dot.
    """

    max_file_bytes: int = 1 << 20
    max_files: int = 20_000
    exclude_dirs: tuple[str, ...] = DEFAULT_EXCLUDE_DIRS
    env_markers: tuple[str, ...] = ("pyvenv.cfg", "conda-meta")
    extra_excludes: tuple[str, ...] = ()
    extensions: frozenset[str] = field(default_factory=_known_extensions)
    follow_symlinks: bool = False
    identifiers: Literal["syntax", "words"] = "syntax"
    text_cache_bytes: int = 8 << 20


def glob_patterns(config: WorkspaceConfig) -> list[str]:
    """The glob patterns a server registers for ``workspace/didChangeWatchedFiles``.

    One ``**/*.ext`` pattern per indexed extension, sorted. Changes the client reports
    in excluded directories are dropped by :meth:`Workspace.apply_external_changes`, and
    a reported directory (created, moved or deleted) is reconciled as a whole.
    """
    return [f"**/*{ext}" for ext in sorted(config.extensions)]


# -- identifiers ------------------------------------------------------------------------

# Token types that name something besides the ``*identifier`` family of the grammars:
# Ruby constants and variables, PHP names, Bash words; ``word`` is also the plain-text
# tokenizer's type.
_NAME_TYPES = frozenset(
    {
        "constant",
        "name",
        "word",
        "variable_name",
        "instance_variable",
        "class_variable",
        "global_variable",
    }
)
_NAME = re.compile(r"[$@]{0,2}[^\W\d]\w*")
# A name after one of these is being defined, not called, even when "(" follows.
_DEFINERS = frozenset({"def", "class", "function", "fn", "func", "fun"})
_WORD = re.compile(r"(?<![\w$@])(?:(def|class|function|fn|func|fun)\s+)?([^\W\d]\w*)(\s*\()?")
_PYTHON_KEYWORDS = frozenset(keyword.kwlist)
# Line breaks of str.splitlines() other than "\n" and "\r\n"; a text holding one needs its
# tokenizer rows (which count "\n" only) mapped to splitlines() indexes.
_OTHER_BREAKS = re.compile("\r(?!\n)|[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_BYTE_BREAKS = re.compile(rb"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e]|\xc2\x85|\xe2\x80[\xa8\xa9]")


def _splitline_of_byte(text: str) -> Callable[[int], int] | None:
    """Byte offset -> ``splitlines()`` index, or None when tokenizer rows already agree."""
    if _OTHER_BREAKS.search(text) is None:
        return None
    starts = [0, *(m.end() for m in _BYTE_BREAKS.finditer(text.encode("utf-8")))]
    return lambda offset: bisect_right(starts, offset) - 1


def _syntax_identifiers(text: str, language: str | None) -> dict[str, list[int]]:
    """Identifier -> codes (``line << 1 | called``) from the tokenizer's tokens."""
    tokens = tokenize(text, language)
    line_of = _splitline_of_byte(text)
    found: dict[str, list[int]] = {}
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        kind = token.type
        if not (kind.endswith("identifier") or kind in _NAME_TYPES):
            continue
        name = token.text
        if _NAME.fullmatch(name) is None:
            continue
        line = token.start_point[0] if line_of is None else line_of(token.start_byte)
        called = (
            index < last
            and tokens[index + 1].text == "("
            and (index == 0 or tokens[index - 1].text not in _DEFINERS)
        )
        code = line << 1 | called
        codes = found.get(name)
        if codes is None:
            found[name] = [code]
        elif codes[-1] != code:
            codes.append(code)
    return found


def _word_identifiers(text: str, language: str | None) -> dict[str, list[int]]:
    """Identifier -> codes from every word of the text (Python keywords left out)."""
    skip = _PYTHON_KEYWORDS if language == "python" else frozenset()
    found: dict[str, list[int]] = {}
    for line, content in enumerate(text.splitlines()):
        for match in _WORD.finditer(content):
            name = match.group(2)
            if name in skip:
                continue
            code = line << 1 | (match.group(3) is not None and match.group(1) is None)
            codes = found.get(name)
            if codes is None:
                found[name] = [code]
            elif codes[-1] != code:
                codes.append(code)
    return found


def _packed(values: Sequence[int]) -> array[int]:
    """Unsigned integers in the narrowest array that holds them (2 or 4 bytes each)."""
    return array("H" if not values or max(values) < 1 << 16 else "I", values)


class _Entry:
    """One indexed file: its on-disk signature, a content digest and its identifiers.

    ``names`` is sorted; the codes of ``names[i]`` are ``codes[bounds[i]:bounds[i + 1]]``,
    sorted, each ``line << 1 | called``.
    """

    __slots__ = ("bounds", "codes", "digest", "names", "signature")

    def __init__(
        self, signature: tuple[int, int, int], digest: int, found: dict[str, list[int]]
    ) -> None:
        self.signature = signature
        self.digest = digest
        names = sorted(found)
        flat: list[int] = []
        bounds = [0]
        for name in names:
            codes = found[name]
            flat.extend(sorted(set(codes)) if len(codes) > 1 else codes)
            bounds.append(len(flat))
        self.names = tuple(sys.intern(name) for name in names)
        self.codes = _packed(flat)
        self.bounds = _packed(bounds)

    def codes_of(self, name: str) -> array[int]:
        """The codes of ``name`` in this file (empty when it does not occur)."""
        i = bisect_left(self.names, name)
        if i == len(self.names) or self.names[i] != name:
            return array("H")
        return self.codes[self.bounds[i] : self.bounds[i + 1]]


@dataclass(frozen=True)
class _Root:
    """A workspace folder: its path as given, its real path, and its path prefix."""

    path: str
    real: str
    prefix: str


def _make_roots(roots: Sequence[Path | str]) -> list[_Root]:
    """Normalised folders: duplicates and folders inside another folder dropped."""
    unique: dict[str, str] = {}
    for root in roots:
        path = os.path.abspath(root)
        unique.setdefault(os.path.realpath(path), path)
    reals = list(unique)
    kept = [
        real
        for real in reals
        if not any(other != real and _is_under(real, other) for other in reals)
    ]
    for real in reals:
        if real not in kept:
            log.info("workspace folder %s lies inside another folder; indexed there", real)
    if len(kept) == 1:
        return [_Root(unique[kept[0]], kept[0], "")]
    named: list[_Root] = []
    taken: set[str] = set()
    for real in kept:
        path = unique[real]
        base = os.path.basename(path.rstrip(os.sep)) or "root"
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        named.append(_Root(path, real, name + "/"))
    return named


def _is_under(path: str, base: str) -> bool:
    """Whether ``path`` is ``base`` or lies below it (both absolute and normalised)."""
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _inner_path(path: str, base: str) -> str | None:
    """``path`` relative to ``base`` as POSIX ("" for ``base`` itself), or None."""
    if path == base:
        return ""
    head = base.rstrip(os.sep) + os.sep
    if not path.startswith(head):
        return None
    return path[len(head) :].replace(os.sep, "/")


# -- the view ---------------------------------------------------------------------------


class Workspace:
    """The on-disk view of the workspace folders (see the module docstring).

    Nothing is read until :meth:`scan`. Every method may be called from any thread.
    """

    def __init__(self, roots: Sequence[Path | str], config: WorkspaceConfig | None = None) -> None:
        self.config = config if config is not None else WorkspaceConfig()
        self.truncated = False
        self._roots = _make_roots(roots)
        literal = [p for p in self.config.exclude_dirs if not any(c in p for c in "*?[")]
        self._dir_names = frozenset(literal)
        self._dir_globs = tuple(p for p in self.config.exclude_dirs if p not in literal)
        self._name_globs = tuple(p for p in self.config.extra_excludes if "/" not in p)
        self._path_globs = tuple(p.strip("/") for p in self.config.extra_excludes if "/" in p)
        self._markers = frozenset(self.config.env_markers)
        self._extensions = frozenset(ext.lower() for ext in self.config.extensions)
        self._extract = (
            _word_identifiers if self.config.identifiers == "words" else _syntax_identifiers
        )
        # Readers and writers of the structures below hold _lock briefly; writers are
        # serialised by _write_lock, held around each read-tokenize-commit.
        self._lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._sorted: list[str] | None = []
        # identifier -> the one file holding it, or the sorted files holding it
        self._postings: dict[str, str | list[str]] = {}
        self._cache: OrderedDict[str, tuple[tuple[int, int, int], tuple[str, ...], int]] = (
            OrderedDict()
        )
        self._cache_bytes = 0
        self._listeners: list[Listener] = []
        self._text_listeners: list[TextListener] = []

    # -- folders and names ---------------------------------------------------------------

    @property
    def roots(self) -> list[Path]:
        """The workspace folders, as given (after dropping duplicates and nested ones)."""
        return [Path(root.path) for root in self._roots]

    def watch_paths(self) -> list[str]:
        """The real paths of the existing folders: what a file watcher should watch."""
        return [root.real for root in self._roots if os.path.isdir(root.real)]

    def _locate(self, path: str) -> tuple[_Root, str] | None:
        """The folder holding an absolute path and the path inside it (POSIX)."""
        for root in self._roots:
            for base in (root.path, root.real):
                inner = _inner_path(path, base)
                if inner is not None:
                    return root, inner
        # Reached through a link outside the folders: resolve the directory part only,
        # so that a link inside a folder is still seen as a link.
        head, tail = os.path.split(path)
        real = os.path.join(os.path.realpath(head), tail)
        if real != path:
            for root in self._roots:
                inner = _inner_path(real, root.real)
                if inner is not None:
                    return root, inner
        return None

    def path_of(self, rel: str) -> Path:
        """The absolute path of a workspace-relative path (``KeyError`` for no folder)."""
        for root in self._roots:
            if not root.prefix:
                return Path(root.path, rel)
            if rel.startswith(root.prefix):
                return Path(root.path, rel[len(root.prefix) :])
        raise KeyError(rel)

    def rel_of(self, path: Path | str) -> str | None:
        """The workspace-relative path of a file, or None outside the folders or excluded.

        The file need not exist (a deleted file keeps its name); excluded means below an
        excluded directory, a virtual environment or a symbolic link, or matching an
        ``extra_excludes`` glob. The extension is not considered.
        """
        found = self._locate(os.path.abspath(path))
        if found is None or not found[1]:
            return None
        root, inner = found
        if not self._allowed(root, inner):
            return None
        return root.prefix + inner

    def indexes_name(self, name: str) -> bool:
        """Whether a file of this name could be indexed (extension and name globs)."""
        return os.path.splitext(name)[1].lower() in self._extensions and not self._name_excluded(
            name
        )

    def includes_dir(self, path: str, *, parent_checked: bool = False) -> bool:
        """Whether a directory belongs to the view (a folder, or a directory to walk).

        With ``parent_checked``, its parent is known to belong, and only the directory
        itself is checked (what a walk needs).
        """
        found = self._locate(os.path.abspath(path))
        if found is None:
            return False
        root, inner = found
        if not inner:
            return True
        if parent_checked:
            return self._dir_ok(root, inner)
        parts = inner.split("/")
        return all(
            self._dir_ok(root, "/".join(parts[:depth])) for depth in range(1, len(parts) + 1)
        )

    def _name_excluded(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, glob) for glob in self._name_globs)

    def _dir_name_excluded(self, name: str) -> bool:
        return (
            name in self._dir_names
            or any(fnmatch.fnmatchcase(name, glob) for glob in self._dir_globs)
            or self._name_excluded(name)
        )

    def _path_excluded(self, inner: str) -> bool:
        return any(fnmatch.fnmatchcase(inner, glob) for glob in self._path_globs)

    def _dir_ok(self, root: _Root, inner: str) -> bool:
        """One directory below a folder, its parent already allowed: names, globs, disk."""
        name = inner.rsplit("/", 1)[-1]
        if self._dir_name_excluded(name) or self._path_excluded(inner + "/"):
            return False
        path = os.path.join(root.path, inner)
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode) and not self._link_ok(path):
                return False
        except OSError:
            return True  # gone: nothing below it will be found anyway
        return not any(os.path.lexists(os.path.join(path, m)) for m in self._markers)

    def _link_ok(self, path: str) -> bool:
        """Whether a symbolic link may be followed: allowed, and pointing into a folder."""
        if not self.config.follow_symlinks:
            return False
        real = os.path.realpath(path)
        return any(_is_under(real, root.real) for root in self._roots)

    def _allowed(self, root: _Root, inner: str) -> bool:
        """Whether the file ``inner`` of ``root`` is outside every exclusion (disk checked)."""
        parts = inner.split("/")
        if self._name_excluded(parts[-1]) or self._path_excluded(inner):
            return False
        if not all(self._dir_ok(root, "/".join(parts[:depth])) for depth in range(1, len(parts))):
            return False
        path = os.path.join(root.path, inner)
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode) and not self._link_ok(path):
                return False
        except OSError:
            pass
        return True

    # -- reading ---------------------------------------------------------------------------

    def files(self) -> list[str]:
        """The indexed files, workspace-relative, sorted."""
        with self._lock:
            return list(self._sorted_names())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, rel: object) -> bool:
        return rel in self._entries

    def _sorted_names(self) -> list[str]:
        """The sorted file names (call with ``_lock`` held)."""
        if self._sorted is None:
            self._sorted = sorted(self._entries)
        return self._sorted

    def text(self, rel: str) -> str | None:
        """The text of an indexed file as it is on disk now, or None.

        None for a file not in the view, or one that can no longer be read as text.
        """
        lines = self._current_lines(rel)
        return None if lines is None else "".join(lines)

    def lines(self, rel: str) -> tuple[str, ...]:
        """The lines of an indexed file with their endings (``()`` when not readable)."""
        lines = self._current_lines(rel)
        return () if lines is None else lines

    def _current_lines(self, rel: str) -> tuple[str, ...] | None:
        with self._lock:
            if rel not in self._entries:
                return None
            cached = self._cache.get(rel)
        try:
            path = str(self.path_of(rel))
            st = os.stat(path, follow_symlinks=self.config.follow_symlinks)
        except (OSError, KeyError):
            return None
        if cached is not None and cached[0] == (st.st_size, st.st_mtime_ns, st.st_ino):
            with self._lock:
                if rel in self._cache:
                    self._cache.move_to_end(rel)
            return cached[1]
        loaded = self._read(path)
        if loaded is None:
            return None
        signature, text = loaded
        lines = tuple(text.splitlines(keepends=True))
        cost = len(text) + 64 * len(lines)
        if cost <= self.config.text_cache_bytes:
            with self._lock:
                old = self._cache.pop(rel, None)
                if old is not None:
                    self._cache_bytes -= old[2]
                self._cache[rel] = (signature, lines, cost)
                self._cache_bytes += cost
                while self._cache_bytes > self.config.text_cache_bytes:
                    _, (_, _, dropped) = self._cache.popitem(last=False)
                    self._cache_bytes -= dropped
        return lines

    def occurrences(self, name: str, limit: int | None = None) -> list[tuple[str, int]]:
        """Where an identifier occurs: (file, 0-based line), sorted, one per line.

        ``limit`` stops after that many (the first ones in this order), which spares
        building a long list for a name found everywhere.
        """
        return self._lookup(name, calls_only=False, limit=limit)

    def calls(self, name: str, limit: int | None = None) -> list[tuple[str, int]]:
        """Where an identifier is called: (file, line), sorted, one per line.

        Called means directly followed by ``(`` and not named by ``def``, ``class``,
        ``function``, ``fn``, ``func`` or ``fun``; a declaration such as C's ``int f(``
        counts as a call. ``limit`` as for :meth:`occurrences`.
        """
        return self._lookup(name, calls_only=True, limit=limit)

    def _lookup(self, name: str, *, calls_only: bool, limit: int | None) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        if limit is not None and limit <= 0:
            return found
        with self._lock:
            posting = self._postings.get(name)
            if posting is None:
                return found
            for rel in (posting,) if isinstance(posting, str) else posting:
                last = -1
                for code in self._entries[rel].codes_of(name):
                    line = code >> 1
                    if line != last and (code & 1 or not calls_only):
                        found.append((rel, line))
                        if len(found) == limit:
                            return found
                        last = line
        return found

    # -- listeners -------------------------------------------------------------------------

    def on_change(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(changed paths)`` after each batch of changes; returns an undo.

        It runs on the thread that applied the batch (see the module docstring) and is
        called only when something changed: a file added, removed, or with new text.
        """
        with self._lock:
            self._listeners.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return remove

    def on_text(self, callback: TextListener) -> Callable[[], None]:
        """Call ``callback(rel, text)`` whenever a file is indexed from a new text, and
        ``callback(rel, None)`` when it leaves the view; returns an undo.

        It runs on the writing thread (the scan's, a watcher's) with the write lock held,
        so calls come in the order of the changes; a slow callback holds up other writers,
        never readers. The texts of files indexed before it was added are not replayed:
        read them with :meth:`files` and :meth:`text`.
        """
        with self._lock:
            self._text_listeners.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._text_listeners:
                    self._text_listeners.remove(callback)

        return remove

    def _notify_text(self, rel: str, text: str | None) -> None:
        with self._lock:
            listeners = list(self._text_listeners)
        for listener in listeners:
            try:
                listener(rel, text)
            except Exception:
                log.exception("a workspace text listener failed")

    def _notify(self, changed: list[str]) -> None:
        if not changed:
            return
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(list(changed))
            except Exception:
                log.exception("a workspace change listener failed")

    # -- scanning --------------------------------------------------------------------------

    def scan(self, progress: Progress | None = None) -> list[str]:
        """Walk the folders and index every source file; returns the changed paths.

        ``progress(done, total)`` is called with ``(0, total)`` once the walk has found
        the files, then about every 1% and at the end. Scanning again re-reads only the
        files whose size or mtime changed and drops the ones that are gone, so a rescan
        after missed events is cheap; listeners get the changed paths.
        """
        found: list[tuple[_Root, str, str, os.stat_result]] = []
        limit = self.config.max_files
        self.truncated = False
        for root in self._roots:
            if not os.path.isdir(root.path):
                log.warning("workspace folder %s is not a directory; skipped", root.path)
                continue
            for inner, path, st in self._walk(root, root.path, ""):
                if len(found) >= limit:
                    self.truncated = True
                    break
                found.append((root, inner, path, st))
        if self.truncated:
            log.warning("more than %d source files in the workspace; indexed the first", limit)
        found.sort(key=lambda item: item[0].prefix + item[1])
        total = len(found)
        step = max(1, total // 100)
        if progress is not None:
            progress(0, total)
        changed: list[str] = []
        seen: set[str] = set()
        for done, (root, inner, path, st) in enumerate(found, 1):
            seen.add(root.prefix + inner)
            with self._write_lock:
                self._refresh_file(root, inner, path, changed, st=st)
            if progress is not None and (done % step == 0 or done == total):
                progress(done, total)
        with self._write_lock:
            for rel in [rel for rel in self._entries if rel not in seen]:
                # Gone, or added by a change applied while the walk ran: check the disk.
                self._apply_one(str(self.path_of(rel)), "changed", changed)
        self._notify(changed)
        return changed

    def _walk(
        self, root: _Root, start: str, start_inner: str
    ) -> Iterator[tuple[str, str, os.stat_result]]:
        """(inner path, path, stat) of each candidate file below an allowed directory."""
        follow = self.config.follow_symlinks
        visited: set[tuple[int, int]] = set()
        if follow:
            try:
                top = os.stat(start)
                visited.add((top.st_dev, top.st_ino))
            except OSError:
                return
        stack = [(start, start_inner)]
        while stack:
            directory, dir_inner = stack.pop()
            try:
                with os.scandir(directory) as listing:
                    entries = list(listing)
            except OSError:
                continue
            if dir_inner and any(entry.name in self._markers for entry in entries):
                continue  # a virtual environment
            for entry in entries:
                name = entry.name
                inner = f"{dir_inner}/{name}" if dir_inner else name
                try:
                    if entry.is_symlink():
                        if not self._link_ok(entry.path):
                            continue
                        target = os.stat(entry.path)  # a link into a folder
                        st: os.stat_result | None = target
                        is_dir = stat.S_ISDIR(target.st_mode)
                    else:
                        # d_type from the listing: no system call for directories and
                        # for files that are not sources.
                        is_dir = entry.is_dir(follow_symlinks=False)
                        st = entry.stat(follow_symlinks=False) if is_dir and follow else None
                    if is_dir:
                        if self._dir_name_excluded(name) or self._path_excluded(inner + "/"):
                            continue
                        if st is not None:
                            key = (st.st_dev, st.st_ino)
                            if key in visited:
                                continue
                            visited.add(key)
                        stack.append((entry.path, inner))
                        continue
                    if not self.indexes_name(name) or self._path_excluded(inner):
                        continue
                    if st is None:
                        st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_size <= self.config.max_file_bytes:
                    yield inner, entry.path, st

    # -- external changes ----------------------------------------------------------------

    def apply_external_change(self, path: Path | str, kind: ChangeKind) -> bool:
        """Apply one change made outside the editor; whether the view changed.

        ``kind`` is a hint: the disk is checked. A file is re-read (or dropped when it no
        longer qualifies); a missing path drops the file or everything below it; a created
        or deleted directory is walked and reconciled; a directory's own "changed" is
        ignored. A move is a "deleted" of the old path and a "created" of the new one.
        """
        return bool(self.apply_external_changes([(path, kind)]))

    def apply_external_changes(self, changes: Iterable[tuple[Path | str, ChangeKind]]) -> list[str]:
        """Apply a batch of external changes; returns the changed paths (listeners too)."""
        changed: list[str] = []
        with self._write_lock:
            for path, kind in changes:
                self._apply_one(os.path.abspath(path), kind, changed)
        unique = list(dict.fromkeys(changed))
        self._notify(unique)
        return unique

    def _apply_one(self, path: str, kind: ChangeKind, changed: list[str]) -> None:
        found = self._locate(path)
        if found is None:
            return
        root, inner = found
        if not inner:  # the folder itself
            if not os.path.isdir(root.real):
                self._drop_below(root.prefix, changed)
            elif kind != "changed":
                self._reconcile_dir(root, "", root.path, changed)
            return
        try:
            st: os.stat_result | None = os.lstat(path)
        except OSError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            try:
                st = os.stat(path) if self._link_ok(path) else None
            except OSError:
                st = None
            if st is None:  # a link not followed: whatever was indexed here goes
                self._drop(root.prefix + inner, changed)
                return
        parent, _, name = inner.rpartition("/")
        if parent and name in self._markers:
            # A pyvenv.cfg that appears (or goes) turns its directory into a virtual
            # environment (or back): the whole directory leaves (or joins) the view.
            self._reconcile_dir(root, parent, os.path.dirname(path), changed)
        if st is None:
            self._drop(root.prefix + inner, changed)
            self._drop_below(root.prefix + inner + "/", changed)
        elif stat.S_ISDIR(st.st_mode):
            if kind != "changed":
                self._reconcile_dir(root, inner, path, changed)
        else:
            self._refresh_file(root, inner, path, changed, check=True)

    def _reconcile_dir(self, root: _Root, inner: str, path: str, changed: list[str]) -> None:
        """Make the view below a directory match the disk."""
        prefix = root.prefix + inner + "/" if inner else root.prefix
        if inner and not self.includes_dir(path):
            self._drop_below(prefix, changed)
            return
        seen: set[str] = set()
        for file_inner, file_path, st in self._walk(root, path, inner):
            seen.add(root.prefix + file_inner)
            self._refresh_file(root, file_inner, file_path, changed, st=st)
        with self._lock:
            below = self._names_below(prefix)
        for rel in below:
            if rel not in seen:
                self._commit(rel, None, changed)

    def _names_below(self, prefix: str) -> list[str]:
        """The indexed files whose path starts with ``prefix`` (``_lock`` held)."""
        names = self._sorted_names()
        start = bisect_left(names, prefix)
        end = start
        while end < len(names) and names[end].startswith(prefix):
            end += 1
        return names[start:end]

    def _drop(self, rel: str, changed: list[str]) -> None:
        if rel in self._entries:
            self._commit(rel, None, changed)

    def _drop_below(self, prefix: str, changed: list[str]) -> None:
        with self._lock:
            below = self._names_below(prefix)
        for rel in below:
            self._commit(rel, None, changed)

    def _refresh_file(
        self,
        root: _Root,
        inner: str,
        path: str,
        changed: list[str],
        *,
        st: os.stat_result | None = None,
        check: bool = False,
    ) -> None:
        """Re-read one file if it changed on disk (``_write_lock`` held).

        ``st`` is the stat a walk already made; ``check`` asks for the exclusion rules to
        be checked (a walk already did).
        """
        rel = root.prefix + inner
        if check:
            name = inner.rsplit("/", 1)[-1]
            if not self.indexes_name(name) or not self._allowed(root, inner):
                self._drop(rel, changed)
                return
        if st is None:
            try:
                st = os.stat(path, follow_symlinks=self.config.follow_symlinks)
            except OSError:
                self._drop(rel, changed)
                return
        entry = self._entries.get(rel)
        if entry is not None and entry.signature == (st.st_size, st.st_mtime_ns, st.st_ino):
            return
        if entry is None and len(self._entries) >= self.config.max_files:
            self.truncated = True
            log.debug("%s not indexed: the workspace holds max_files files", rel)
            return
        loaded = self._read(path)
        if loaded is None:
            self._drop(rel, changed)
            return
        signature, text = loaded
        digest = hash(text)
        if entry is not None and entry.digest == digest:
            entry.signature = signature  # touched, same text
            return
        found = self._extract(text, language_name_for_path(inner))
        self._commit(rel, _Entry(signature, digest, found), changed)
        self._notify_text(rel, text)

    def _read(self, path: str) -> tuple[tuple[int, int, int], str] | None:
        """(size, mtime_ns, inode) and text of a source file, or None when it is not one.

        Not one: not a regular file, a symbolic link (unless followed), larger than
        ``max_file_bytes``, a NUL byte in its first 8 KiB, or not UTF-8.
        """
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        if not self.config.follow_symlinks:
            flags |= getattr(os, "O_NOFOLLOW", 0)
        limit = self.config.max_file_bytes
        try:
            fd = os.open(path, flags)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
                return None
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read(limit + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(data) > limit or b"\0" in data[:_BINARY_PROBE]:
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_ino), text

    def _commit(self, rel: str, entry: _Entry | None, changed: list[str]) -> None:
        """Swap a file's entry (None removes it) and its postings."""
        rel = sys.intern(rel)
        with self._lock:
            old = self._entries.pop(rel, None)
            if old is not None:
                for name in old.names:
                    self._unpost(name, rel)
            if entry is not None:
                self._entries[rel] = entry
                for name in entry.names:
                    self._post(name, rel)
            if (old is None) != (entry is None):
                self._sorted = None
            cached = self._cache.pop(rel, None)
            if cached is not None:
                self._cache_bytes -= cached[2]
        if old is not None or entry is not None:
            changed.append(rel)
        if old is not None and entry is None:
            self._notify_text(rel, None)

    def _post(self, name: str, rel: str) -> None:
        posting = self._postings.get(name)
        if posting is None:
            self._postings[name] = rel
        elif isinstance(posting, str):
            self._postings[name] = [posting, rel] if posting < rel else [rel, posting]
        else:
            insort(posting, rel)

    def _unpost(self, name: str, rel: str) -> None:
        posting = self._postings.get(name)
        if posting is None:
            return
        if isinstance(posting, str):
            if posting == rel:
                del self._postings[name]
            return
        i = bisect_left(posting, rel)
        if i < len(posting) and posting[i] == rel:
            del posting[i]
        if len(posting) == 1:
            self._postings[name] = posting[0]
