"""EditCompletion examples (C3PO §6.1) built from commits with tree-sitter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tree_sitter

from ripple.models.edits.completion import (
    DEL_TYPE,
    INS_TYPE,
    UPD_TYPE,
    BuildStats,
    CompletionExample,
    changes_between,
    edit_context_paths,
    edit_context_text,
    example_paths,
    file_examples,
    fragment_pair,
    leaf_tokens,
    normalise_literals,
)
from ripple.models.edits.languages import parse_python
from ripple.models.edits.paths import (
    EOS_LABEL,
    AugmentedTree,
    Operation,
    PathOperation,
    apply_operations,
)
from ripple.models.edits.tree import Node, from_tree_sitter, isomorphic
from ripple.models.errors import UsageError
from ripple.training.completion_data import (
    commit_examples,
    examples_from_files,
    read_examples,
    statistics,
    write_examples,
)
from ripple.training.data import CommitRecord, FileChange, write_commits


def parse(data: bytes) -> Node:
    return from_tree_sitter(parse_python(data), data)


def ts(data: bytes) -> tree_sitter.Node:
    return parse_python(data).root_node


def build(old: str, new: str, **kwargs: object) -> tuple[list[CompletionExample], BuildStats]:
    stats = BuildStats()
    a, b = old.encode(), new.encode()
    examples = file_examples(
        "o/r",
        "c" * 40,
        "m.py",
        a,
        b,
        old_root=parse_python(a).root_node,
        new_root=parse_python(b).root_node,
        stats=stats,
        **kwargs,  # type: ignore[arg-type]
    )
    return examples, stats


SWAP_OLD = "def f(a, b):\n    x = g(a, b)\n    y = h(a, b)\n    return x + y\n"
SWAP_NEW = "def f(a, b):\n    x = g(b, a)\n    y = h(b, a)\n    return x + y\n"


def test_changes_split_adjacent_statements() -> None:
    """One line hunk over two statements is two changes: C3PO's P is one statement."""
    changes = changes_between(SWAP_OLD.encode(), SWAP_NEW.encode())
    assert [(c.line, c.new_line) for c in changes] == [(1, 1), (2, 2)]
    first = changes[0]
    assert SWAP_OLD.encode()[first.start : first.end] in (b"a, b", b"a, ", b"a")
    # A pure insertion is an empty old span.
    (insertion,) = changes_between(b"x = 1\n", b"x = 1\ny = 2\n")
    assert insertion.start == insertion.end


def test_fragment_is_a_statement_or_a_header_part() -> None:
    old, new = SWAP_OLD.encode(), SWAP_NEW.encode()
    a, b = parse_python(old).root_node, parse_python(new).root_node
    changes = changes_between(old, new)
    before, after = fragment_pair(old, new, a, b, changes[0], changes)  # type: ignore[misc]
    assert before.type == after.type == "expression_statement"
    assert old[before.start_byte : before.end_byte] == b"x = g(a, b)"
    assert new[after.start_byte : after.end_byte] == b"x = g(b, a)"
    # A change in a def line: the parameters, not the whole function.
    old2, new2 = b"def f(a, b):\n    return a\n", b"def f(b, a):\n    return a\n"
    (change,) = changes_between(old2, new2)
    pair = fragment_pair(old2, new2, ts(old2), ts(new2), change)
    assert pair is not None and pair[0].type == "parameters"
    # The statement changed kind (print statement -> call): no P'.
    old3, new3 = b"x = 1\nif x:\n    pass\n", b"x = 1\nwhile x:\n    pass\n"
    (change,) = changes_between(old3, new3)
    assert fragment_pair(old3, new3, ts(old3), ts(new3), change) is None


def test_swap_examples_use_each_other_as_context() -> None:
    examples, stats = build(SWAP_OLD, SWAP_NEW)
    assert stats.changes == 2 and stats.examples == 2
    first, second = examples
    assert first.tokens_before == ["x", "=", "g", "(", "a", ",", "b", ")"]
    assert first.tokens_after == ["x", "=", "g", "(", "b", ",", "a", ")"]
    assert first.line == 1 and second.line == 2
    # The context is the other statement's edit: moves read in the old tree.
    assert {p.kind for p in first.context} == {"MOV"}
    assert all(p.line == 2 for p in first.context)
    assert "<del>" in first.context_text and "<ins>" in first.context_text
    # Gold operations rebuild P'; the labels point at them and end with EOS.
    tree = AugmentedTree(first.before)
    ops = [PathOperation(Operation(o), s, t) for o, s, t in first.operations]
    assert isomorphic(apply_operations(tree, ops), first.after)
    _, paths, labels = example_paths(first)
    assert labels is not None and labels[-1] == EOS_LABEL and len(labels) == len(ops) + 1
    assert all(2 <= label < 2 + 3 * len(paths) for label in labels[:-1])


def test_json_round_trip_keeps_labels() -> None:
    (example, _), _ = build(SWAP_OLD, SWAP_NEW)
    again = CompletionExample.from_json(json.loads(json.dumps(example.to_json())))
    assert again.to_json() == example.to_json()
    assert example_paths(again)[2] == example_paths(example)[2]


def test_filters() -> None:
    # A change with no other edit within 10 lines has no context (window scope).
    far = "x = g(a, b)\n" + "pass\n" * 30 + "y = h(a, b)\n"
    examples, stats = build(far, far.replace("g(a, b)", "g(b, a)").replace("h(a, b)", "h(b, a)"))
    assert examples == [] and stats.no_context == 2
    # ... but the commit scope takes the far edit as context.
    examples, _ = build(
        far, far.replace("g(a, b)", "g(b, a)").replace("h(a, b)", "h(b, a)"), scope="commit"
    )
    assert len(examples) == 2
    # Only deletions: §6.1 (a).
    old = "x = g(a, b)\ny = h(a, b)\n"
    _, stats = build(old, "x = g(a)\ny = h(a)\n")
    assert stats.delete_only == 2
    # P's edit is a rename the context already shows: §6.1 (b).
    _, stats = build(old, "x = g(b, b)\ny = h(b, b)\n")
    assert stats.rename_in_context == 2
    # Inserting code P does not hold cannot be a path-operation.
    _, stats = build(old, "x = g(a, b, c)\ny = h(a, b, c)\n")
    assert stats.not_representable == 2
    # A fragment over 50 nodes.
    big = "x = f(" + ", ".join(f"a{i}" for i in range(40)) + ")\ny = 1\n"
    _, stats = build(big, big.replace("a0, a1", "a1, a0").replace("y = 1", "y = 2"))
    assert stats.too_big == 1


def test_literals_are_normalised() -> None:
    data = b"x = f('a', 1, 2.5, y)\n"
    tree = normalise_literals(parse(data))
    assert leaf_tokens(tree) == ["x", "=", "f", "(", '"STR"', ",", "999", ",", "999", ",", "y", ")"]
    # A literal-only change is no edit once normalised, so it is no context either.
    examples, stats = build("x = f('a', b)\ny = 1\n", "x = f(b, 'a')\ny = 2\n")
    assert examples == [] and stats.no_context == 1 and stats.no_actions == 1
    examples, _ = build("x = f('a', b)\ny = g(c)\n", "x = f(b, 'a')\ny = g(c, c)\n")
    assert examples[0].tokens_after == ["x", "=", "f", "(", "b", ",", '"STR"', ")"]


def test_context_paths_mark_their_kind() -> None:
    def pair(old: bytes, new: bytes) -> tuple[Node, Node]:
        return normalise_literals(parse(old)), normalise_literals(parse(new))

    paths = edit_context_paths(*pair(b"f(a, b)\n", b"f(a)\n"), line=3)
    assert paths[0].kind == "DEL" and paths[0].steps[-1].type == DEL_TYPE
    assert paths[0].line == 3 and not paths[0].after
    paths = edit_context_paths(*pair(b"f(a)\n", b"f(bar)\n"), line=0)
    (update,) = [p for p in paths if p.kind == "UPD"]
    assert update.steps[0].type == UPD_TYPE and update.source_value == ("bar",)
    assert update.target_value == ("a",) and update.steps[-1].type == "identifier"
    paths = edit_context_paths(*pair(b"f(a)\n", b"f(a, g(b))\n"), line=0)
    inserted = [p for p in paths if p.kind == "INS"]
    assert inserted and all(p.after and p.steps[0].type == INS_TYPE for p in inserted)
    # Old-tree paths come before new-tree ones.
    assert [p.after for p in paths] == sorted(p.after for p in paths)
    assert edit_context_text(["f", "(", "a", ")"], ["f", "(", "b", ")"]) == [
        "f",
        "(",
        "<del>",
        "a",
        "</del>",
        "<ins>",
        "b",
        "</ins>",
        ")",
        "<sep>",
    ]


def _record(files: list[tuple[str, str, str]]) -> CommitRecord:
    return CommitRecord(
        "o/r", "c" * 40, "p" * 40, 0, "m", tuple(FileChange(p, a, b) for p, a, b in files)
    )


def test_commit_scope_reads_other_files(tmp_path: Path) -> None:
    record = _record(
        [
            ("a.py", "x = g(a, b)\n", "x = g(b, a)\n"),
            ("b.py", "y = h(a, b)\n", "y = h(b, a)\n"),
            ("c.txt", "a", "b"),
        ]
    )
    stats = BuildStats()
    assert commit_examples(record, stats) == []
    assert stats.no_context == 2
    examples = commit_examples(record, BuildStats(), scope="commit")
    assert [e.path for e in examples] == ["a.py", "b.py"]
    assert all(p.kind == "MOV" for e in examples for p in e.context)


def test_dataset_files(tmp_path: Path) -> None:
    commits = tmp_path / "o__r.jsonl.xz"
    write_commits(commits, [_record([("a.py", SWAP_OLD, SWAP_NEW)])])
    examples = list(examples_from_files([commits], quiet=True))
    assert len(examples) == 2
    out = tmp_path / "d.jsonl.xz"
    assert write_examples(out, examples) == 2
    again = read_examples(out)
    assert [e.to_json() for e in again] == [e.to_json() for e in examples]
    table = statistics(again)
    row = table["o/r"].to_json()
    assert row["examples"] == 2 and row["operations_per_example"] > 0
    assert row["operation_share"]["MOV"] + row["operation_share"]["DEL"] > 0
    bad = tmp_path / "bad.jsonl.xz"
    import lzma

    with lzma.open(bad, "wt") as handle:
        handle.write("{}\n")
    with pytest.raises(UsageError, match=r"bad\.jsonl\.xz:1"):
        read_examples(bad)
    with pytest.raises(UsageError, match="no such"):
        read_examples(tmp_path / "missing.jsonl.xz")
