"""EditCompletion datasets (C3PO §6.1) from commit records, and their statistics.

``commit_examples`` runs the builder of ``ripple.models.edits.completion`` (the code the
server runs on live edits) on every modified Python file of a commit. Datasets are kept as
xz-compressed JSON Lines of ``CompletionExample.to_json()``; paths are enumerated when an
example is read for a model, with the type statistics of the training set.
"""

from __future__ import annotations

import json
import lzma
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter

from ripple.models.edits.completion import (
    MAX_FILE_BYTES,
    BuildStats,
    CompletionExample,
    ParsedChange,
    example_paths,
    file_examples,
    parse_changes,
)
from ripple.models.edits.languages import language_name_for_path, parse_python
from ripple.models.errors import UsageError
from ripple.training.data import CommitRecord, iter_commits, repo_of_file
from ripple.training.progress import Progress

__all__ = [
    "RepoStats",
    "commit_examples",
    "examples_from_files",
    "read_examples",
    "statistics",
    "write_examples",
]

# The examples' format: 2 added field names to the trees and the context edits as
# fragment pairs (``CompletionExample.context_edits``); older caches are rebuilt.
FORMAT = 2


def _parse(data: bytes) -> tree_sitter.Node:
    return parse_python(data).root_node


def commit_examples(
    record: CommitRecord, stats: BuildStats, *, scope: str = "window"
) -> list[CompletionExample]:
    """The examples of one commit: every modified Python file (added and deleted files have
    no P). With ``scope="commit"``, all the commit's other edits (other files included)
    join the context after the 10-line window's (C3PO's context is the window only)."""
    files = []
    for change in record.files:
        if change.before is None or change.after is None or change.before == change.after:
            continue
        if language_name_for_path(change.path) != "python":
            continue
        old, new = change.before.encode("utf-8"), change.after.encode("utf-8")
        if len(old) > MAX_FILE_BYTES or len(new) > MAX_FILE_BYTES:
            continue
        files.append((change.path, old, new, _parse(old), _parse(new)))
    parsed: dict[str, list[ParsedChange]] = {}
    if scope == "commit" and len(files) > 1:
        for path, old, new, old_root, new_root in files:
            parsed[path] = [
                c for c in parse_changes(old, new, old_root, new_root) if c.before is not None
            ]
    examples: list[CompletionExample] = []
    for path, old, new, old_root, new_root in files:
        others = [c for p, items in parsed.items() if p != path for c in items]
        examples.extend(
            file_examples(
                record.repo,
                record.commit,
                path,
                old,
                new,
                old_root=old_root,
                new_root=new_root,
                stats=stats,
                scope=scope,
                other_files=others,
            )
        )
    return examples


def examples_from_files(
    paths: Sequence[Path],
    *,
    max_commits: int | None = None,
    scope: str = "window",
    quiet: bool = False,
    stats: dict[str, BuildStats] | None = None,
) -> Iterator[CompletionExample]:
    """Examples of every commit of the given commit files (at most ``max_commits`` per file,
    the most recent ones are not preferred: files are read oldest first, as stored)."""
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such commit file")
        repo = repo_of_file(path)
        repo_stats = BuildStats()
        if stats is not None:
            stats[repo] = repo_stats
        with Progress(max_commits, f"examples {repo}", quiet=quiet) as bar:
            for count, record in enumerate(iter_commits(path)):
                if max_commits is not None and count >= max_commits:
                    break
                yield from commit_examples(record, repo_stats, scope=scope)
                bar.advance(note=f"{repo_stats.examples} examples")


def write_examples(path: Path, examples: Iterable[CompletionExample]) -> int:
    """Write examples as xz JSON Lines (atomically: a temporary file renamed at the end)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    count = 0
    with lzma.open(tmp, "wt", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps(example.to_json(), separators=(",", ":")) + "\n")
            count += 1
    tmp.replace(path)
    return count


def read_examples(path: Path) -> list[CompletionExample]:
    """Read a dataset written by ``write_examples``; a clear error names a bad line."""
    if not path.is_file():
        raise UsageError(f"{path}: no such dataset (build it with `ripple train completion`)")
    examples = []
    with lzma.open(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                examples.append(CompletionExample.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"{path}:{number}: not an EditCompletion example ({exc})") from exc
    return examples


@dataclass
class RepoStats:
    """Per repository, as C3PO's Table 5: examples, operations and paths per example."""

    examples: int = 0
    operations: int = 0
    paths: int = 0
    unsolvable: int = 0  # a gold operation is not on a valid path under the type rule
    kinds: dict[str, int] = field(default_factory=lambda: {"MOV": 0, "DEL": 0, "UPD": 0, "INS": 0})

    def to_json(self) -> dict[str, Any]:
        n = max(self.examples, 1)
        ops = max(self.operations, 1)
        return {
            "examples": self.examples,
            "operations_per_example": round(self.operations / n, 3),
            "paths_per_example": round(self.paths / n, 1),
            "unsolvable": self.unsolvable,
            "operation_share": {k: round(v / ops, 3) for k, v in self.kinds.items()},
        }


def statistics(
    examples: Iterable[CompletionExample], child_types: Mapping[str, Set[str]] | None = None
) -> dict[str, RepoStats]:
    """Table 5 of C3PO per repository (paths counted under ``child_types``)."""
    table: dict[str, RepoStats] = {}
    for example in examples:
        row = table.setdefault(example.repo, RepoStats())
        tree, paths, labels = example_paths(example, child_types)
        row.examples += 1
        row.operations += len(example.operations)
        row.paths += len(paths)
        row.unsolvable += labels is None
        for op, _source, target in example.operations:
            kind = "DEL" if tree.nodes[target] is tree.del_node else ("MOV", "UPD", "INS")[op]
            row.kinds[kind] += 1
    return table


def _build_repo(job: tuple[Path, Path, str, int | None]) -> tuple[str, int, dict[str, int]]:
    path, out, scope, max_commits = job
    stats: dict[str, BuildStats] = {}
    count = write_examples(
        out,
        examples_from_files([path], max_commits=max_commits, scope=scope, quiet=True, stats=stats),
    )
    repo = repo_of_file(path)
    return repo, count, stats[repo].to_json()


def build_datasets(
    files: Sequence[Path],
    out_dir: Path,
    *,
    scope: str = "window",
    max_commits: int | None = None,
    workers: int = 1,
    quiet: bool = False,
) -> dict[str, dict[str, Any]]:
    """One dataset file per repository, ``out_dir/OWNER__NAME.jsonl.xz``, built in
    ``workers`` processes; returns the builder's counts per repository (also written to
    ``out_dir/build.json``). A repository whose file exists is not built again, unless
    it was built by an older format of the examples (``FORMAT``)."""
    import multiprocessing

    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / "build.json"
    report: dict[str, dict[str, Any]] = (
        json.loads(report_path.read_text()) if report_path.is_file() else {}
    )
    jobs = []
    for path in files:
        target = out_dir / path.name
        entry = report.get(repo_of_file(path))
        if target.is_file() and entry is not None and entry.get("format") == FORMAT:
            continue
        jobs.append((path, target, scope, max_commits))
    with Progress(len(jobs), "completion datasets", quiet=quiet) as bar:
        if workers <= 1:
            results: Iterable[tuple[str, int, dict[str, int]]] = map(_build_repo, jobs)
            for repo, count, stats in results:
                report[repo] = {
                    "examples": count,
                    "scope": scope,
                    "builder": stats,
                    "format": FORMAT,
                }
                report_path.write_text(json.dumps(report, indent=2, sort_keys=True))
                bar.advance(note=repo)
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for repo, count, stats in pool.imap_unordered(_build_repo, jobs):
                    report[repo] = {
                        "examples": count,
                        "scope": scope,
                        "builder": stats,
                        "format": FORMAT,
                    }
                    report_path.write_text(json.dumps(report, indent=2, sort_keys=True))
                    bar.advance(note=repo)
    return report
