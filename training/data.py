"""Commit records: streaming readers, writers, splits by repository, leak checks.

A commit file is xz-compressed JSON Lines in the schema of ``data/README.md``::

    {"repo": "OWNER/NAME", "commit": SHA, "parent": SHA, "time": INT, "message": STR,
     "files": [{"path": STR, "before": STR | null, "after": STR | null}, ...]}

Uncompressed, the shipped files hold gigabytes of JSON (consecutive records repeat nearly
the same file texts), so everything here streams one record at a time.

Splits are by repository, never by commit: commits of one repository share files and
near-identical versions of them, so a commit-level split would leak. Licences are data
too: a repository whose licence is not permissive (pylint is GPL-2.0) may be used to
measure, but not to train the models ripple bundles.
"""

from __future__ import annotations

import hashlib
import json
import lzma
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ripple.models.errors import UsageError

# data/README.md suggests these two: moderate size, and no close relative among the others.
VALIDATION_REPOS: tuple[str, ...] = ("marshmallow-code/marshmallow", "PyCQA/flake8")

# Licences as listed in data/README.md (SPDX identifiers).
REPO_LICENSES: dict[str, str] = {
    "PyCQA/flake8": "MIT",
    "aio-libs/aiohttp": "Apache-2.0",
    "encode/httpx": "BSD-3-Clause",
    "encode/starlette": "BSD-3-Clause",
    "marshmallow-code/marshmallow": "MIT",
    "pallets/click": "BSD-3-Clause",
    "pallets/flask": "BSD-3-Clause",
    "pallets/jinja": "BSD-3-Clause",
    "pallets/werkzeug": "BSD-3-Clause",
    "psf/black": "MIT",
    "psf/requests": "Apache-2.0",
    "pylint-dev/pylint": "GPL-2.0",
    "pytest-dev/pytest": "MIT",
    "scrapy/scrapy": "BSD-3-Clause",
    "sphinx-doc/sphinx": "BSD-2-Clause",
    "tiangolo/fastapi": "MIT",
}

# Licences that let weights trained on the code ship under ripple's MIT licence.
PERMISSIVE_LICENSES: frozenset[str] = frozenset(
    {"MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "0BSD", "Unlicense"}
)

COMMIT_FILE_SUFFIX = ".jsonl.xz"


class CommitFileError(UsageError):
    """A commit file that cannot be read or does not follow the schema."""


@dataclass(frozen=True)
class FileChange:
    """One changed file of a commit: its whole text before and after (``None`` = absent)."""

    path: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class CommitRecord:
    """One commit in the schema of ``data/README.md``."""

    repo: str
    commit: str
    parent: str
    time: int
    message: str
    files: tuple[FileChange, ...]

    def to_json(self) -> str:
        """One JSON line (no newline), formatted like the shipped files."""
        obj = {
            "repo": self.repo,
            "commit": self.commit,
            "parent": self.parent,
            "time": self.time,
            "message": self.message,
            "files": [{"path": f.path, "before": f.before, "after": f.after} for f in self.files],
        }
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _field(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CommitFileError(f"{where}: field {key!r} must be {kind.__name__}")
    return value


def _optional_text(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise CommitFileError(f"{where}: field {key!r} must be a string or null")
    return value


def parse_commit(line: str, where: str = "<record>") -> CommitRecord:
    """A :class:`CommitRecord` from one JSON line; ``where`` names it in errors."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CommitFileError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise CommitFileError(f"{where}: a record must be a JSON object")
    files = []
    for entry in _field(obj, "files", list, where):
        if not isinstance(entry, dict):
            raise CommitFileError(f"{where}: every entry of 'files' must be an object")
        files.append(
            FileChange(
                _field(entry, "path", str, where),
                _optional_text(entry, "before", where),
                _optional_text(entry, "after", where),
            )
        )
    return CommitRecord(
        _field(obj, "repo", str, where),
        _field(obj, "commit", str, where),
        _field(obj, "parent", str, where),
        _field(obj, "time", int, where),
        _field(obj, "message", str, where),
        tuple(files),
    )


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".xz"):
        return lzma.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def iter_commits(path: Path) -> Iterator[CommitRecord]:
    """The records of a commit file (``.jsonl.xz``, or plain ``.jsonl``), one at a time.

    Raises :class:`CommitFileError` (a ``UsageError``: one line, exit code 2 on the
    command line) for a missing, unreadable or malformed file.
    """
    if not path.is_file():
        raise CommitFileError(f"{path}: no such commit file")
    try:
        with _open_text(path) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield parse_commit(line, f"{path}:{n}")
    except (lzma.LZMAError, UnicodeDecodeError, EOFError, OSError) as exc:
        raise CommitFileError(f"{path}: cannot read ({exc})") from None


def write_commits(path: Path, records: Iterable[CommitRecord]) -> int:
    """Write ``records`` as xz-compressed JSON Lines; returns how many were written."""
    n = 0
    with lzma.open(path, "wt", encoding="utf-8") as f:
        for record in records:
            f.write(record.to_json())
            f.write("\n")
            n += 1
    return n


# ---------------------------------------------------------------- splits by repository


def repo_of_file(path: Path) -> str:
    """``OWNER/NAME`` from a commit file named ``OWNER__NAME.jsonl.xz``."""
    name = path.name.removesuffix(COMMIT_FILE_SUFFIX)
    owner, sep, repo = name.partition("__")
    if not sep:
        raise CommitFileError(f"{path}: commit files are named OWNER__NAME{COMMIT_FILE_SUFFIX}")
    return f"{owner}/{repo}"


def commit_files(data_dir: Path) -> dict[str, Path]:
    """Every commit file under ``data_dir`` (or ``data_dir/commits``), by repository."""
    folder = data_dir / "commits" if (data_dir / "commits").is_dir() else data_dir
    if not folder.is_dir():
        raise UsageError(f"{data_dir}: no such data directory")
    return {repo_of_file(p): p for p in sorted(folder.glob(f"*{COMMIT_FILE_SUFFIX}"))}


@dataclass(frozen=True)
class Split:
    """Commit files split by repository."""

    train: tuple[Path, ...]
    validation: tuple[Path, ...]


def split_by_repository(
    data_dir: Path, validation: Iterable[str] = VALIDATION_REPOS
) -> Split:
    """Training and validation files: every repository not in ``validation`` trains."""
    held_out = set(validation)
    files = commit_files(data_dir)
    missing = held_out - files.keys()
    if missing:
        raise UsageError(f"{data_dir}: no commit file for {', '.join(sorted(missing))}")
    return Split(
        tuple(p for repo, p in files.items() if repo not in held_out),
        tuple(p for repo, p in files.items() if repo in held_out),
    )


def is_permissive(repo: str) -> bool:
    """True when ``repo``'s licence is known and permissive (unknown counts as not)."""
    return REPO_LICENSES.get(repo) in PERMISSIVE_LICENSES


def permissive_training_repos(
    data_dir: Path, validation: Iterable[str] = VALIDATION_REPOS
) -> list[Path]:
    """The training files whose code may train the models ripple bundles.

    The validation repositories are left out (they measure), and so is every repository
    whose licence is not permissive or not known (pylint-dev/pylint, GPL-2.0).
    """
    split = split_by_repository(data_dir, validation)
    return [p for p in split.train if is_permissive(repo_of_file(p))]


# ---------------------------------------------------------------- leak check


@dataclass(frozen=True)
class ContentSite:
    """Where a file content occurs: repository, commit and path."""

    repo: str
    commit: str
    path: str


@dataclass(frozen=True)
class SharedContent:
    """One exact file content found in both sets (first sighting in each)."""

    digest: str
    chars: int
    train: ContentSite
    evaluation: ContentSite


@dataclass(frozen=True)
class DuplicateReport:
    """Exact-duplicate file contents shared between a training and an evaluation set."""

    train_contents: int
    eval_contents: int
    shared_contents: int
    examples: tuple[SharedContent, ...]

    @property
    def shared_fraction(self) -> float:
        """Shared contents as a fraction of the evaluation set's distinct contents."""
        return self.shared_contents / self.eval_contents if self.eval_contents else 0.0


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def iter_contents(records: Iterable[CommitRecord]) -> Iterator[tuple[str, ContentSite]]:
    """Every non-blank file text of ``records`` (both sides), with where it was seen.

    Blank files (an empty ``__init__.py``) are skipped: every project has them, and
    sharing one teaches a model nothing about the other set.
    """
    for rec in records:
        for f in rec.files:
            for text in (f.before, f.after):
                if text is not None and text.strip():
                    yield text, ContentSite(rec.repo, rec.commit, f.path)


def find_shared_contents(
    train: Iterable[CommitRecord], evaluation: Iterable[CommitRecord], max_examples: int = 10
) -> DuplicateReport:
    """Which exact file contents of ``evaluation`` also occur in ``train``.

    Streams both sets once; memory is one 16-byte digest per distinct training content.
    """
    seen: dict[str, ContentSite] = {}
    for text, site in iter_contents(train):
        seen.setdefault(_digest(text), site)
    eval_digests: set[str] = set()
    shared: set[str] = set()
    examples: list[SharedContent] = []
    for text, site in iter_contents(evaluation):
        digest = _digest(text)
        eval_digests.add(digest)
        if digest in seen and digest not in shared:
            shared.add(digest)
            if len(examples) < max_examples:
                examples.append(SharedContent(digest, len(text), seen[digest], site))
    return DuplicateReport(len(seen), len(eval_digests), len(shared), tuple(examples))


def iter_files(paths: Iterable[Path]) -> Iterator[CommitRecord]:
    """The records of several commit files, one file after another."""
    for path in paths:
        yield from iter_commits(path)


def format_duplicate_report(report: DuplicateReport) -> str:
    """A short human-readable summary of :func:`find_shared_contents`."""
    lines = [
        f"distinct file contents: train {report.train_contents}, eval {report.eval_contents}",
        f"shared exactly: {report.shared_contents} ({report.shared_fraction:.2%} of eval)",
    ]
    for ex in report.examples:
        lines.append(
            f"  {ex.digest[:12]} ({ex.chars} chars): train {ex.train.repo}@{ex.train.commit[:8]}"
            f":{ex.train.path} = eval {ex.evaluation.repo}@{ex.evaluation.commit[:8]}"
            f":{ex.evaluation.path}"
        )
    return "\n".join(lines)
