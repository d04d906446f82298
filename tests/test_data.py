"""Commit-record readers, splits by repository, licences, and the duplicate-content check."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from ripple.models.errors import UsageError
from ripple.training.data import (
    CommitFileError,
    CommitRecord,
    FileChange,
    find_shared_contents,
    format_duplicate_report,
    iter_commits,
    permissive_training_repos,
    repo_of_file,
    split_by_repository,
    write_commits,
)


def record(repo: str, sha: str, *files: tuple[str, str | None, str | None]) -> CommitRecord:
    return CommitRecord(
        repo, sha * 40, "0" * 40, 1_600_000_000, "message", tuple(FileChange(*f) for f in files)
    )


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    records = [
        record("o/r", "a", ("x.py", "a = 1\n", "a = 2\n")),
        record("o/r", "b", ("y.py", None, "caf\u00e9 = '\u2603'\n"), ("z.py", "q\r\n", None)),
    ]
    path = tmp_path / "o__r.jsonl.xz"
    assert write_commits(path, records) == 2
    assert list(iter_commits(path)) == records
    # Compact JSON, UTF-8 kept as is: the format of the shipped files.
    first = lzma.open(path, "rt", encoding="utf-8").readline()
    assert first.startswith('{"repo":"o/r","commit":"aaaa')
    assert "\u2603" in lzma.open(path, "rt", encoding="utf-8").read()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", "not JSON"),
        ("[1]\n", "must be a JSON object"),
        ('{"repo": "o/r"}\n', "field 'files'"),
        (
            '{"repo":"o/r","commit":"a","parent":"b","time":"x","message":"m","files":[]}\n',
            "field 'time'",
        ),
        (
            '{"repo":"o/r","commit":"a","parent":"b","time":1,"message":"m",'
            '"files":[{"path":"p","before":3,"after":null}]}\n',
            "field 'before'",
        ),
    ],
)
def test_malformed_records_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl.xz"
    with lzma.open(path, "wt", encoding="utf-8") as f:
        f.write(content)
    with pytest.raises(CommitFileError, match=message) as info:
        list(iter_commits(path))
    assert f"{path}:1" in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CommitFileError, match="no such commit file"):
        list(iter_commits(tmp_path / "missing.jsonl.xz"))
    garbage = tmp_path / "garbage.jsonl.xz"
    garbage.write_bytes(b"definitely not xz")
    with pytest.raises(CommitFileError, match="cannot read"):
        list(iter_commits(garbage))


REPOS = ["PyCQA/flake8", "marshmallow-code/marshmallow", "psf/requests", "pylint-dev/pylint",
         "someone/unknown-licence"]


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "commits"
    folder.mkdir(parents=True)
    for repo in REPOS:
        write_commits(folder / (repo.replace("/", "__") + ".jsonl.xz"), [])
    return tmp_path / "data"


def test_split_is_by_repository(data_dir: Path) -> None:
    split = split_by_repository(data_dir)
    assert sorted(map(repo_of_file, split.validation)) == [
        "PyCQA/flake8",
        "marshmallow-code/marshmallow",
    ]
    assert sorted(map(repo_of_file, split.train)) == [
        "psf/requests",
        "pylint-dev/pylint",
        "someone/unknown-licence",
    ]
    assert not set(split.train) & set(split.validation)


def test_permissive_training_repos_leave_out_gpl_and_unknown(data_dir: Path) -> None:
    assert [repo_of_file(p) for p in permissive_training_repos(data_dir)] == ["psf/requests"]


def test_split_needs_its_validation_repos(data_dir: Path) -> None:
    with pytest.raises(UsageError, match="no commit file for o/missing"):
        split_by_repository(data_dir, validation=["o/missing"])


def check_shared(
    train: list[CommitRecord], evaluation: list[CommitRecord], shared: int, eval_contents: int
) -> None:
    report = find_shared_contents(train, evaluation)
    assert report.shared_contents == shared
    assert report.eval_contents == eval_contents
    assert len(report.examples) == shared
    assert "shared exactly" in format_duplicate_report(report)


@pytest.mark.parametrize(
    ("train_files", "eval_files", "shared", "eval_contents"),
    [
        # Nothing in common.
        ([("a.py", "x = 1\n", "x = 2\n")], [("b.py", "y = 1\n", "y = 2\n")], 0, 2),
        # A vendored file appears in both, under another path: one shared content.
        ([("six.py", "SIX\n", None)], [("vendor/six.py", None, "SIX\n"), ("c.py", "c\n", "d\n")], 1, 3),
        # Blank files (empty __init__.py) are never counted.
        ([("__init__.py", None, "")], [("pkg/__init__.py", None, "\n")], 0, 0),
        # Whitespace matters: this is an exact check.
        ([("a.py", "x = 1\n", None)], [("a.py", "x  = 1\n", None)], 0, 1),
    ],
)
def test_duplicate_contents_between_sets(
    train_files: list[tuple[str, str | None, str | None]],
    eval_files: list[tuple[str, str | None, str | None]],
    shared: int,
    eval_contents: int,
) -> None:
    check_shared(
        [record("t/t", "a", *train_files)], [record("e/e", "b", *eval_files)], shared, eval_contents
    )
