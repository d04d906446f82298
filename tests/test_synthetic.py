"""Zhao et al.'s synthetic datasets (§5, §6.1, Table 2, Figure 2)."""

from __future__ import annotations

import re

import pytest

from ripple.models.edits.sequences import (
    END,
    START,
    Edit,
    implicit_from_snapshots,
    replay_explicit,
    replay_implicit,
    to_explicit,
    token_edits,
)
from ripple.training.synthetic import (
    LENGTH,
    MIN_SNAPSHOTS,
    MULTITASK,
    SPLIT_SIZES,
    SYMBOLS,
    TASK_NAMES,
    TASKS,
    VOCAB,
    SyntheticEditDataset,
    collate_edits,
    generate_split,
    generate_splits,
    snapshots_for,
)

# Table 2: pattern, replacement, EPR (edits per replacement). Meta rows are the same with
# A -> x and B -> y.
TABLE_2 = {
    "Append1": ("A", "AB", 1),
    "ContextAppend11": ("(.)A", r"\1A\1", 1),
    "ContextAppend13": ("(.)A", r"\1A\1\1\1", 3),
    "ContextAppend31": ("(...)A", r"\1A\1", 3),
    "ContextAppend33": ("(...)A", r"\1A\1\1\1", 9),
    "ContextAppend52": ("(.....)A", r"\1A\1\1", 10),
    "ContextReverse31": ("(.)(.)(.)A", r"\1\2\3A\3\2\1", 3),
    "ContextReverse51": ("(.)(.)(.)(.)(.)A", r"\1\2\3\4\5A\5\4\3\2\1", 5),
    "Delete2": ("AA", "", 2),
    "Flip11": ("(.)A(.)", r"\2\1A\2\1", 2),
    "Flip33": ("(...)A(...)", r"\2\2\2\1A\2\1\1\1", 18),
    "Replace2": ("AA", "BB", 4),
    "Surround11": ("(.)A(.)", r"\1\1A\2\2", 2),
    "Surround33": ("(...)A(...)", r"\1\1\1\1A\2\2\2\2", 18),
}


def _meta(text: str) -> str:
    return text.replace("A", "x").replace("B", "y")


EXPECTED = {
    **{name: row for name, row in TABLE_2.items()},
    **{"Meta" + name: (_meta(p), _meta(r), epr) for name, (p, r, epr) in TABLE_2.items()},
}


def test_there_are_14_plus_14_tasks_and_multitask() -> None:
    assert len(TASKS) == 28
    assert sum(task.meta for task in TASKS.values()) == 14
    assert TASK_NAMES[-1] == MULTITASK and len(TASK_NAMES) == 29


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_task_is_table_2(name: str) -> None:
    pattern, replacement, epr = EXPECTED[name]
    task = TASKS[name]
    assert (task.pattern, task.replacement) == (pattern, replacement)
    # EPR: the edits one replacement takes, on a match whose groups hold distinct symbols.
    bound_pattern, bound_replacement = task.instantiate("A", "B")
    fill = iter("CDEFGHIJ" * 2)
    match = "".join(next(fill) if c == "." else c for c in bound_pattern if c not in "()")
    replaced = re.sub(bound_pattern, bound_replacement, match)
    assert len(token_edits(list(match), list(replaced))) == epr


def test_figure_2_and_footnote_1() -> None:
    # §5: '(.)x' -> '\1x\1\1' with x = A on BACA; Figure 2 (b) shows the implicit edits.
    snapshots = snapshots_for("(.)A", r"\1A\1\1", "BACA")
    assert snapshots == ["BACA", "BABBCA", "BABBCACC"]
    sequence = implicit_from_snapshots([list(s) for s in snapshots])
    assert sequence.edits == (Edit(2, "B"), Edit(6, "B"), Edit(4, "C"), Edit(8, "C"))
    assert snapshots_for("(.)B", r"\1B\1\1", "DBBA")[-1] == "DBDDBA"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_instances_follow_section_5(name: str) -> None:
    instances = generate_split(name, "dev", seed=3, size=12)
    for inst in instances:
        task = TASKS[inst.task]
        pattern, replacement = task.instantiate(inst.x, inst.y)
        initial = inst.snapshots[0]
        assert len(initial) == LENGTH and set(initial) <= set(SYMBOLS)
        assert inst.x != inst.y
        assert len(inst.snapshots) >= MIN_SNAPSHOTS
        # Snapshot k is re.sub after exactly k replacements; the last one is all of them.
        for k, snapshot in enumerate(inst.snapshots[1:], start=1):
            assert snapshot == re.sub(pattern, replacement, initial, count=k)
        assert inst.snapshots[-1] == re.sub(pattern, replacement, initial)
        # Replaying the implicit (and explicit) edits reproduces every snapshot.
        seq = inst.sequence
        for states in (replay_implicit(seq), replay_explicit(to_explicit(seq))):
            assert ["".join(states[step]) for step in seq.snapshot_steps] == list(inst.snapshots)
        # Conditioning steps: the first replacement for meta tasks and MultiTask, else none.
        expected = seq.snapshot_steps[1] if task.meta or name == MULTITASK else 0
        assert inst.conditioning_steps == expected
        assert name == MULTITASK or inst.task == name


def test_meta_characters_vary_and_multitask_mixes_tasks() -> None:
    meta = generate_split("MetaAppend1", "train", seed=0, size=60)
    assert len({inst.x for inst in meta}) > 3
    mixed = generate_split(MULTITASK, "train", seed=0, size=200)
    assert len({inst.task for inst in mixed}) > 20


def test_sizes_and_seeds() -> None:
    assert SPLIT_SIZES == {"train": 10_000, "dev": 1_000, "test": 1_000}
    assert len(generate_split("Append1", "dev", seed=0)) == 1_000
    a = generate_splits("ContextAppend11", seed=5, sizes={"train": 8, "dev": 4})
    b = generate_splits("ContextAppend11", seed=5, sizes={"train": 8, "dev": 4})
    c = generate_splits("ContextAppend11", seed=6, sizes={"train": 8, "dev": 4})
    assert a == b and a != c
    assert {s.snapshots for s in a["train"]}.isdisjoint({s.snapshots for s in a["dev"]})
    with pytest.raises(ValueError):
        generate_split("Append2", "dev", seed=0)


def test_dataset_tensors() -> None:
    instances = generate_split("MetaSurround11", "dev", seed=1, size=5)
    dataset = SyntheticEditDataset(instances, explicit=True)
    batch = collate_edits([dataset[i] for i in range(len(dataset))])
    for i, inst in enumerate(instances):
        seq = inst.sequence
        n, t = len(seq.initial), len(seq.edits)
        state = batch["state"][i, : n + 2].tolist()
        assert state == [VOCAB.token_id(tok) for tok in (START, *seq.initial, END)]
        assert int(batch["state_length"][i]) == n + 2
        assert batch["edit_position"][i, :t].tolist() == [e.position for e in seq.edits]
        assert [VOCAB.decode_content(c) for c in batch["edit_content"][i, :t].tolist()] == [
            e.content for e in seq.edits
        ]
        assert batch["edit_mask"][i].sum() == t
        assert batch["loss_mask"][i, : inst.conditioning_steps].sum() == 0
        assert batch["loss_mask"][i].sum() == t - inst.conditioning_steps
        # E's input at step t is s(t-1), framed by <S> and <E>.
        explicit = to_explicit(seq)
        for step in range(t):
            ids = batch["states"][i, step].tolist()
            tokens = [VOCAB.tokens[j] for j in ids if j != VOCAB.PAD]
            assert tokens == [START, *explicit.states[step], END]
        assert batch["explicit_position"][i, :t].tolist() == [e.position for e in explicit.edits]
