"""Mining a local git repository into commit records (the schema of ``data/README.md``).

Three long-lived git processes do the work, so a history of thousands of commits takes
seconds: ``git rev-list`` lists the non-merge commits and pipes them straight into
``git diff-tree --stdin`` (raw entries + numstat of the ``.py`` files, NUL-separated),
and ``git cat-file --batch`` answers every commit and blob read over one pipe. Records
are produced one at a time, so memory does not grow with the history.

The selection rules are data/README.md's, and each one is named where it is applied:
non-merge commits reachable from the ref, parents before children, root commits skipped,
no rename detection, 1 to 10 changed ``.py`` files with at most 300 changed lines, and the
file and commit filters of :func:`keep_file` and :func:`keep_commit`.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ripple.models.edits.hunks import strip_whitespace
from ripple.models.errors import UsageError
from ripple.training.data import CommitRecord, FileChange


@dataclass(frozen=True)
class MiningRules:
    """The selection thresholds of data/README.md (change them only to mine differently)."""

    suffix: str = ".py"
    min_files: int = 1
    max_files: int = 10
    max_changed_lines: int = 300
    max_file_bytes: int = 200_000


RULES = MiningRules()

_NULL_SHA = re.compile(r"^0+$")
_HEX = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_REMOTE = re.compile(r"[:/]([^/:]+)/([^/]+?)(?:\.git)?/?$")


class GitError(UsageError):
    """The repository cannot be read (not a repository, no history, missing objects)."""


def _git_env() -> dict[str, str]:
    # A user's configuration must not change what is mined: no pager, no prompts,
    # no replace refs or grafts bending history, and git's own messages in English.
    env = dict(os.environ)
    env.update(
        GIT_PAGER="cat",
        GIT_TERMINAL_PROMPT="0",
        GIT_NO_REPLACE_OBJECTS="1",
        LC_ALL="C",
    )
    return env


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=_git_env(),
        check=False,
    )


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "git failed"


def resolve_repository(repo: Path, ref: str) -> str:
    """The commit SHA ``ref`` names in ``repo``; :class:`GitError` for anything unusable.

    ``repo`` must be the top of a work tree or a git directory (a bare repository): a
    folder merely inside a repository would silently mine the enclosing one.
    """
    if not repo.is_dir():
        raise GitError(f"{repo}: no such directory")
    proc = _git(repo, "rev-parse", "--absolute-git-dir")
    if proc.returncode != 0:
        raise GitError(f"{repo}: not a git repository")
    git_dir = Path(proc.stdout.strip()).resolve()
    here = repo.resolve()
    if git_dir != here:
        top = _git(repo, "rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != here:
            raise GitError(f"{repo}: not the top of a git repository (it is inside {git_dir})")
    if _git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").returncode != 0 and ref == "HEAD":
        raise GitError(f"{repo}: the repository has no commits")
    proc = _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if proc.returncode != 0:
        raise GitError(f"{repo}: {ref!r} does not name a commit")
    return proc.stdout.strip()


def repository_name(repo: Path) -> str:
    """``OWNER/NAME`` from the ``origin`` remote's URL, else ``local/<folder name>``."""
    proc = _git(repo, "config", "--get", "remote.origin.url")
    match = _REMOTE.search(proc.stdout.strip()) if proc.returncode == 0 else None
    if match:
        return f"{match.group(1)}/{match.group(2)}"
    folder = repo.resolve()
    if folder.name == ".git":  # the git dir of a work tree: the work tree names it
        folder = folder.parent
    name = folder.name.removesuffix(".git") or "repository"
    return f"local/{name}"


def count_commits(repo: Path, sha: str) -> int:
    """How many non-merge commits are reachable from ``sha`` (the progress bar's total)."""
    proc = _git(repo, "rev-list", "--count", "--no-merges", sha)
    if proc.returncode != 0:
        raise GitError(f"{repo}: cannot walk history ({_first_line(proc.stderr)})")
    return int(proc.stdout.strip())


class ObjectReader:
    """One ``git cat-file --batch`` process answering object reads in order."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self._proc = subprocess.Popen(
            ["git", "-C", str(repo), "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_git_env(),
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in: IO[bytes] = self._proc.stdin
        self._out: IO[bytes] = self._proc.stdout

    def read(self, sha: str, limit: int | None = None) -> tuple[str, bytes | None]:
        """``(type, content)`` of an object; content is ``None`` when over ``limit`` bytes."""
        return self.read_many([sha], limit)[0]

    def read_many(
        self, shas: Sequence[str], limit: int | None = None
    ) -> list[tuple[str, bytes | None]]:
        """:meth:`read` for several objects with one round trip (both sides of a file)."""
        self._in.write(b"".join(sha.encode("ascii") + b"\n" for sha in shas))
        self._in.flush()
        return [self._answer(sha, limit) for sha in shas]

    def _answer(self, sha: str, limit: int | None) -> tuple[str, bytes | None]:
        header = self._out.readline().decode("ascii", "replace").split()
        if len(header) != 3:
            raise GitError(f"{self.repo}: cannot read object {sha} (missing or corrupt)")
        kind, size = header[1], int(header[2])
        if limit is not None and size > limit:
            # The content must still be drained from the pipe; read it in pieces.
            left = size + 1
            while left:
                piece = self._out.read(min(left, 1 << 20))
                if not piece:
                    raise GitError(f"{self.repo}: git cat-file ended while reading {sha}")
                left -= len(piece)
            return kind, None
        data = self._out.read(size + 1)  # the content and its trailing newline
        if len(data) != size + 1:
            raise GitError(f"{self.repo}: git cat-file ended while reading {sha}")
        return kind, data[:-1]

    def close(self) -> None:
        """End the process."""
        if self._proc.poll() is None:
            self._in.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


@dataclass(frozen=True)
class CommitInfo:
    """The parts of a commit object a record needs."""

    parents: tuple[str, ...]
    time: int
    message: str


def parse_commit_object(data: bytes) -> CommitInfo:
    """Parents, author time and first message line of a raw commit object."""
    head, _, body = data.partition(b"\n\n")
    parents: list[str] = []
    time = 0
    encoding = "utf-8"
    for line in head.split(b"\n"):
        if line.startswith(b"parent "):
            parents.append(line[7:].decode("ascii").strip())
        elif line.startswith(b"author "):
            # "author Name <email> 1234567890 +0100": the time is the next-to-last field.
            fields = line.rsplit(b" ", 2)
            if len(fields) == 3 and fields[1].lstrip(b"-").isdigit():
                time = int(fields[1])
        elif line.startswith(b"encoding "):
            encoding = line[9:].decode("ascii", "replace").strip() or "utf-8"
    try:
        text = body.decode(encoding, "replace")
    except LookupError:  # an encoding name Python does not know
        text = body.decode("utf-8", "replace")
    lines = text.strip("\n").split("\n")
    return CommitInfo(tuple(parents), time, lines[0].rstrip() if lines else "")


@dataclass(frozen=True)
class RawChange:
    """One entry of ``git diff-tree --raw``: modes, blob ids, status and path."""

    old_mode: str
    new_mode: str
    old_sha: str
    new_sha: str
    status: str
    path: str


@dataclass(frozen=True)
class TreeDiff:
    """What diff-tree reported for one commit: raw entries and changed-line counts."""

    commit: str
    changes: tuple[RawChange, ...]
    changed_lines: dict[str, int]


def _nul_fields(stream: IO[bytes]) -> Iterator[bytes]:
    """The NUL-terminated fields of a ``-z`` output, read in large chunks."""
    pending = b""
    while True:
        chunk = stream.read1(1 << 16) if hasattr(stream, "read1") else stream.read(1 << 16)
        if not chunk:
            break
        pending += chunk
        *fields, pending = pending.split(b"\0")
        yield from fields
    if pending:
        yield pending


def _decode_path(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None  # a path JSON cannot carry faithfully; its file is left out


def parse_tree_diffs(stream: IO[bytes]) -> Iterator[TreeDiff]:
    """Per-commit diffs from ``git diff-tree --stdin --always -r --raw --numstat -z``.

    Fields are a commit id, then ``:modes shas status`` fields each followed by a path
    field, then ``added<TAB>deleted<TAB>path`` numstat fields; the next commit id starts
    the next commit. Binary files count ``-`` changed lines, read here as 0.
    """
    commit: str | None = None
    changes: list[RawChange] = []
    counts: dict[str, int] = {}
    fields = _nul_fields(stream)
    for field in fields:
        if field.startswith(b":"):
            meta = field[1:].decode("ascii").split()
            raw_path = next(fields, b"")
            path = _decode_path(raw_path)
            if path is not None and len(meta) == 5:
                changes.append(RawChange(meta[0], meta[1], meta[2], meta[3], meta[4][:1], path))
        elif b"\t" in field:
            added, deleted, raw_path = field.split(b"\t", 2)
            path = _decode_path(raw_path)
            if path is not None:
                n = (int(added) if added.isdigit() else 0) + (int(deleted) if deleted.isdigit() else 0)
                counts[path] = n
        else:
            sha = field.decode("ascii", "replace").strip()
            if not _HEX.match(sha):
                continue
            if commit is not None:
                yield TreeDiff(commit, tuple(changes), counts)
            commit, changes, counts = sha, [], {}
    if commit is not None:
        yield TreeDiff(commit, tuple(changes), counts)


def _regular(mode: str) -> bool:
    # 100644 and 100755 (and the legacy 100664) are files; 120000 symlinks, 160000 submodules.
    return mode.startswith("100")


def _as_text(kind: str, data: bytes | None) -> str | None:
    """A blob as text, or ``None`` when it is too big, has a NUL byte, or is not UTF-8."""
    if kind != "blob" or data is None or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def keep_file(
    reader: ObjectReader, change: RawChange, rules: MiningRules = RULES
) -> FileChange | None:
    """The change as a :class:`FileChange`, or ``None`` when data/README.md drops it.

    Dropped: a side that is not a regular file, over the size limit, not valid UTF-8 or
    with a NUL byte; and a change whose content did not change (mode only).
    """
    sides = [
        (sha, mode)
        for sha, mode in ((change.old_sha, change.old_mode), (change.new_sha, change.new_mode))
        if not _NULL_SHA.match(sha)
    ]
    if not sides or not all(_regular(mode) for _, mode in sides):
        return None
    texts = [_as_text(*answer) for answer in reader.read_many([sha for sha, _ in sides], rules.max_file_bytes)]
    if any(text is None for text in texts):
        return None
    before = texts.pop(0) if not _NULL_SHA.match(change.old_sha) else None
    after = texts.pop(0) if not _NULL_SHA.match(change.new_sha) else None
    if before == after:
        return None
    return FileChange(change.path, before, after)


def keep_commit(files: Sequence[FileChange]) -> bool:
    """False when no file is left or every file differs only in whitespace.

    A missing side counts as empty, so a commit that only adds empty ``__init__.py``
    files is dropped too.
    """
    return any(
        strip_whitespace(f.before or "") != strip_whitespace(f.after or "") for f in files
    )


@dataclass
class MiningStats:
    """Counts for the progress bar and the final summary."""

    seen: int = 0
    kept: int = 0


def mine_commits(
    repo: Path,
    tip: str,
    newest_first: bool = False,
    rules: MiningRules = RULES,
    stats: MiningStats | None = None,
) -> Iterator[CommitRecord]:
    """The kept commits reachable from ``tip``, oldest first (or newest first).

    Oldest first is ``git rev-list --reverse --date-order``: by commit date, parents always
    before their children. ``newest_first`` is exactly the reverse order, which lets
    ``--max-commits`` stop early instead of mining the whole history.
    """
    stats = stats if stats is not None else MiningStats()
    name = repository_name(repo)
    env = _git_env()
    order = ["--date-order"] if newest_first else ["--reverse", "--date-order"]
    rev_list = subprocess.Popen(
        ["git", "-C", str(repo), "rev-list", "--no-merges", *order, tip],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    diff_tree = subprocess.Popen(
        [
            "git", "-C", str(repo), "diff-tree", "--stdin", "--always", "-r", "-z",
            "--no-renames", "--no-ext-diff", "--no-textconv", "--raw", "--numstat",
            "--", f"*{rules.suffix}",
        ],
        stdin=rev_list.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert rev_list.stdout is not None and diff_tree.stdout is not None
    rev_list.stdout.close()  # diff-tree holds it now; rev-list gets SIGPIPE if it goes away
    reader = ObjectReader(repo)
    finished = False
    try:
        for diff in parse_tree_diffs(diff_tree.stdout):
            stats.seen += 1
            record = _commit_record(reader, name, diff, rules)
            if record is not None:
                stats.kept += 1
                yield record
        finished = True
    finally:
        reader.close()
        for proc in (rev_list, diff_tree):
            if proc.poll() is None:
                proc.terminate()
            proc.wait()
    if finished:
        for proc, what in ((rev_list, "rev-list"), (diff_tree, "diff-tree")):
            if proc.returncode != 0:
                assert proc.stderr is not None
                err = proc.stderr.read().decode("utf-8", "replace")
                raise GitError(f"{repo}: git {what} failed ({_first_line(err)})")


def _commit_record(
    reader: ObjectReader, repo_name: str, diff: TreeDiff, rules: MiningRules
) -> CommitRecord | None:
    changes = [c for c in diff.changes if c.path.endswith(rules.suffix)]
    if not rules.min_files <= len(changes) <= rules.max_files:
        return None
    if sum(diff.changed_lines.get(c.path, 0) for c in changes) > rules.max_changed_lines:
        return None
    kind, data = reader.read(diff.commit)
    if kind != "commit" or data is None:
        raise GitError(f"{reader.repo}: {diff.commit} is not a commit")
    info = parse_commit_object(data)
    if len(info.parents) != 1:
        return None  # a root commit (or a merge, which rev-list already left out)
    files = []
    for change in changes:
        kept = keep_file(reader, change, rules)
        if kept is not None:
            files.append(kept)
    if not files or not keep_commit(files):
        return None
    files.sort(key=lambda f: f.path)
    return CommitRecord(
        repo_name, diff.commit, info.parents[0], info.time, info.message, tuple(files)
    )
