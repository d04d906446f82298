"""The replay benchmark on hand-made commits whose right answers are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ripple.models.edits.hunks import text_hunks
from ripple.models.suggest.api import Cursor, EditContext, LiveEdit, Predictor, Suggestion
from ripple.models.suggest.baselines import RepeatLastEdit, Silent
from ripple.models.suggest.registry import make_predictor, system_names
from ripple.models.suggest.rules import RuleEngine
from ripple.server.cli import main
from ripple.training.data import CommitRecord, FileChange, write_commits
from ripple.training.replay import (
    ReplayResult,
    is_exact,
    is_location,
    percentile,
    replay_steps,
    run_replay,
)


def commit(*files: tuple[str, str | None, str | None], sha: str = "c") -> CommitRecord:
    return CommitRecord(
        "o/r", sha * 40, "0" * 40, 0, "m", tuple(FileChange(*f) for f in files)
    )


def lines(*items: str) -> str:
    return "".join(f"{item}\n" for item in items)


# compute(x) -> compute(x, y) at three separate places: three hunks, two steps.
ADD_ARG = commit(
    (
        "a.py",
        lines("a = compute(x)", "b = 2", "c = compute(x)", "d = 4", "e = compute(x)"),
        lines("a = compute(x, y)", "b = 2", "c = compute(x, y)", "d = 4", "e = compute(x, y)"),
    ),
)
# A rename across two files: the second file's hunk is the truth of the last step.
RENAME = commit(
    ("a.py", lines("def load(url):", "    pass", "", "load(url)"),
     lines("def load(address):", "    pass", "", "load(address)")),
    ("b.py", lines("import a", "a.load(url)"), lines("import a", "a.load(address)")),
    ("new.py", None, lines("added = 1")),
    sha="d",
)
# One hunk only (and a whitespace-only one, which does not count): not replayed.
ONE_HUNK = commit(("a.py", lines("x = 1", "y = 2"), lines("x = 2", "y  =  2")), sha="e")


# ---------------------------------------------------------------- hunks and steps


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        # (start, end, new lines) per hunk; whitespace-only hunks are dropped.
        (lines("a", "b", "c"), lines("a", "B", "c"), [(1, 2, ("B\n",))]),
        (lines("a", "b"), lines("a", "x", "b"), [(1, 1, ("x\n",))]),
        (lines("a", "b", "c"), lines("a", "c"), [(1, 2, ())]),
        (lines("a", "b", "c", "d"), lines("a", "  b", "c", "D"), [(3, 4, ("D\n",))]),
        (lines("a", "b"), lines("a", "b", "", ""), []),
    ],
)
def test_hunks(before: str, after: str, expected: list[tuple[int, int, tuple[str, ...]]]) -> None:
    assert [(h.start, h.end, h.new_lines) for h in text_hunks(before, after)] == expected


def check_steps(
    rec: CommitRecord, expected: list[tuple[Cursor, list[tuple[str, int, int, str]]]] | None
) -> None:
    """The steps' cursors and truths (path, start, end, joined new text), or not kept."""
    steps = replay_steps(rec)
    if expected is None:
        assert steps is None
        return
    assert steps is not None
    got = [
        (s.ctx.cursor, [(t.path, t.start_line, t.end_line, "".join(t.new_lines)) for t in s.truth])
        for s in steps
    ]
    assert got == expected


def test_steps_of_added_argument() -> None:
    check_steps(
        ADD_ARG,
        [
            (Cursor("a.py", 0, 17), [("a.py", 2, 3, "c = compute(x, y)\n"),
                                     ("a.py", 4, 5, "e = compute(x, y)\n")]),
            (Cursor("a.py", 2, 17), [("a.py", 4, 5, "e = compute(x, y)\n")]),
        ],
    )


def test_steps_of_rename_across_files() -> None:
    check_steps(
        RENAME,
        [
            (Cursor("a.py", 0, 18), [("a.py", 3, 4, "load(address)\n"),
                                     ("b.py", 1, 2, "a.load(address)\n")]),
            (Cursor("a.py", 3, 13), [("b.py", 1, 2, "a.load(address)\n")]),
        ],
    )
    steps = replay_steps(RENAME)
    assert steps is not None
    # Added files are not in the workspace; the history replays to the current state.
    ctx = steps[-1].ctx
    assert list(ctx.files) == ["a.py", "b.py"]
    assert ctx.snapshots("a.py")[-1] == ctx.files["a.py"]
    assert len(ctx.edits) == 2


def test_commits_outside_2_to_20_hunks_are_not_replayed() -> None:
    check_steps(ONE_HUNK, None)
    many = commit(
        ("a.py", lines(*[f"v{i} = 0\n" for i in range(42)]),
         lines(*[f"v{i} = {1 if i % 2 == 0 else 0}\n" for i in range(42)])),
    )
    check_steps(many, None)  # 21 hunks


# ---------------------------------------------------------------- scoring


def s(start: int, end: int, *new: str, path: str = "a.py") -> Suggestion:
    return Suggestion(path, start, end, tuple(new))


@pytest.mark.parametrize(
    ("sug", "truth", "exact", "location"),
    [
        (s(1, 2, "x\n"), s(1, 2, "x  \n"), True, True),  # trailing whitespace ignored
        (s(1, 2, "x\n"), s(1, 2, " x\n"), False, True),  # leading whitespace is not
        (s(1, 2, "x\n"), s(1, 3, "x\n"), False, True),
        (s(1, 2, "x\n"), s(2, 3, "x\n"), False, False),  # adjacent non-empty ranges
        (s(2, 2, "x\n"), s(1, 2, "y\n"), False, True),  # an insertion touching a range
        (s(1, 2, "y\n"), s(2, 2, "x\n"), False, True),
        (s(3, 3, "x\n"), s(1, 2, "y\n"), False, False),
        (s(1, 2, "x\n"), s(1, 2, "x\n", path="b.py"), False, False),
    ],
)
def test_exact_and_location(sug: Suggestion, truth: Suggestion, exact: bool, location: bool) -> None:
    assert is_exact(sug, truth) is exact
    assert is_location(sug, truth) is location


class Oracle:
    """Knows every step's truth (tests only): must score exact@1 = 1.0."""

    name = "oracle"

    def __init__(self, records: list[CommitRecord]) -> None:
        self.truth: dict[tuple[LiveEdit, ...], Suggestion] = {}
        for rec in records:
            for step in replay_steps(rec) or []:
                self.truth[step.ctx.edits] = step.truth[0]

    def suggest(self, ctx: EditContext) -> list[Suggestion]:
        return [self.truth[ctx.edits]]


class Broken:
    """Always raises: counts as silent, never stops the run."""

    name = "broken"

    def suggest(self, ctx: EditContext) -> list[Suggestion]:
        raise RuntimeError("boom")


def check_scores(
    records: list[CommitRecord], predictor: Predictor, expected: dict[str, float], tmp_path: Path
) -> ReplayResult:
    path = tmp_path / "o__r.jsonl.xz"
    write_commits(path, records)
    result = run_replay([path], [predictor])
    metrics = result.to_json()["systems"]
    assert isinstance(metrics, dict)
    got = metrics[predictor.name]
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    return result


RECORDS = [ADD_ARG, RENAME, ONE_HUNK]


@pytest.mark.parametrize(
    ("predictor", "expected"),
    [
        (Silent(), {"exact@1": 0, "exact@5": 0, "location@1": 0, "coverage": 0, "precision@1": 0}),
        (Broken(), {"exact@1": 0, "coverage": 0}),
        (Oracle(RECORDS), {"exact@1": 1, "exact@5": 1, "location@1": 1, "coverage": 1,
                           "precision@1": 1}),
        # ADD_ARG: both steps exact. RENAME step 1: `( url )` is found below the cursor
        # (exact); step 2: found in b.py (exact).
        (RepeatLastEdit(), {"exact@1": 1, "coverage": 1, "precision@1": 1}),
        (RuleEngine(), {"exact@1": 1, "coverage": 1}),
    ],
)
def test_systems_on_known_commits(
    predictor: Predictor, expected: dict[str, float], tmp_path: Path
) -> None:
    result = check_scores(RECORDS, predictor, expected, tmp_path)
    assert (result.commits, result.steps) == (2, 4)


def test_max_commits_counts_kept_commits(tmp_path: Path) -> None:
    path = tmp_path / "o__r.jsonl.xz"
    write_commits(path, [ONE_HUNK, ADD_ARG, RENAME])
    result = run_replay([path], [Silent()], max_commits=1)
    assert (result.commits, result.steps) == (1, 2)


def test_rule_engine_propagates_a_multi_line_rename() -> None:
    # The last edit renamed `url` on two lines at once; the rule engine repeats it on the
    # next block of two lines as ONE suggestion (a hunk covers both lines).
    base = (
        "def f(url):\n", "    get(url)\n", "\n", "def g(url):\n", "    put(url)\n",
    )
    edit = LiveEdit("a.py", 0, 2, base[:2], ("def f(address):\n", "    get(address)\n"))
    files = {"a.py": (*edit.new_lines, *base[2:])}
    ctx = EditContext(files, {"a.py": base}, (edit,), Cursor("a.py", 1, 16))
    top = RuleEngine().suggest(ctx)[0]
    assert (top.start_line, top.end_line) == (3, 5)
    assert top.new_lines == ("def g(address):\n", "    put(address)\n")
    assert RepeatLastEdit().suggest(ctx) == []  # its substitution spans two lines


def test_registry_has_the_shipped_system_and_baselines() -> None:
    assert system_names()[0] == "ripple"
    assert {"silent", "repeat-last-edit"} <= set(system_names())
    assert make_predictor("silent").name == "silent"


def test_percentile_interpolates() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([1.0, 2.0], 99) == pytest.approx(1.99)


def test_command_writes_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "o__r.jsonl.xz"
    write_commits(path, RECORDS)
    out = tmp_path / "r.json"
    code = main(["eval", "replay", "--commits", str(path), "--json", str(out), "--quiet",
                 "--systems", "silent,repeat-last-edit"])
    assert code == 0
    data = json.loads(out.read_text())
    assert (data["commits"], data["steps"]) == (2, 4)
    assert set(data["systems"]) == {"silent", "repeat-last-edit"}
    keys = {"exact@1", "exact@5", "location@1", "precision@1", "coverage",
            "latency_ms_p50", "latency_ms_p99"}
    assert all(set(m) == keys for m in data["systems"].values())
    assert "repeat-last-edit" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--systems", "nope"], "unknown system nope"),
        (["--max-commits", "0"], "--max-commits"),
    ],
)
def test_command_bad_input(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "o__r.jsonl.xz"
    write_commits(path, RECORDS)
    code = main(["eval", "replay", "--commits", str(path), "--json", str(tmp_path / "r.json"),
                 "--quiet", *argv])
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_commit_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "replay", "--commits", str(tmp_path / "none.jsonl.xz"),
                 "--json", str(tmp_path / "r.json")])
    assert code == 2
    assert "no such commit file" in capsys.readouterr().err
