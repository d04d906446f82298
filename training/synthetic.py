"""The synthetic edit-sequence datasets of Zhao et al. 2019 (§5, §6.1, Appendix A, Table 2).

Each task is a regular-expression pattern and replacement over a uniformly random initial
string of length L = 30 over V = 10 symbols (``A`` ... ``J``). Lower-case ``x`` and ``y``
are *meta characters*: each instance replaces them by two different symbols it samples.
With Python ``re.sub`` semantics (§5, footnote 1) the snapshots are the initial string and
the string after each full replacement, left to right: snapshot ``k`` is
``re.sub(pattern, replacement, s, count=k)``. An instance needs at least 4 snapshots
(3 matches); otherwise it is rejected and drawn again. The edits between snapshots are the
project's own Zhao edit sequences (``ripple.models.edits.sequences``: difflib, one token at a
time, left to right), the very functions the server runs on live edits.

Conditioning steps (§5, §6.1). The paper gives "this many edits to the models before
including their predictions in the total loss" but prints no numbers. Here an instance's
conditioning steps are the edits of its first full replacement (``snapshot_steps[1]``) for
the meta tasks and for MultiTask: that is the fewest edits after which every meta character
(and, for MultiTask, the task) is determined; ``x`` is seen by the first edit or deletion and
``y`` by the last insertion of the first replacement. Non-meta tasks need none: the pattern is
fixed by the task, so nothing is ambiguous at step 0.

MultiTask (§5) mixes instances drawn uniformly from the 28 tasks, 10k/1k/1k in all.

The task table below is Table 2 of the appendix, read against its EPR column (edits per
replacement), which pins down the OCR-damaged cells: e.g. Flip33 ``(...)A(...)`` ->
``\\2\\2\\2\\1A\\2\\1\\1\\1`` turns 7 characters into 25, EPR 18.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import torch
from torch.utils.data import Dataset

from ripple.models.edits.sequences import (
    DELETE,
    END,
    START,
    Content,
    ImplicitEditSequence,
    implicit_from_snapshots,
    replay_explicit,
    to_explicit,
    with_sentinels,
)

__all__ = [
    "LENGTH",
    "MIN_SNAPSHOTS",
    "MULTITASK",
    "SPLIT_SIZES",
    "SYMBOLS",
    "TASKS",
    "TASK_NAMES",
    "Batch",
    "SyntheticEditDataset",
    "SyntheticInstance",
    "SyntheticTask",
    "SyntheticVocab",
    "collate_edits",
    "generate_split",
    "generate_splits",
    "snapshots_for",
]

LENGTH: Final = 30  # L (§6.1)
SYMBOLS: Final = "ABCDEFGHIJ"  # V = 10 (§6.1)
MIN_SNAPSHOTS: Final = 4  # §5: "at least four snapshots"
SPLIT_SIZES: Final = {"train": 10_000, "dev": 1_000, "test": 1_000}  # §6.1
MULTITASK: Final = "MultiTask"
_SPLIT_IDS: Final = {"train": 0, "dev": 1, "test": 2}
# Rejection sampling draws candidate strings in blocks: one numpy call per block.
_BLOCK: Final = 4096

Batch = dict[str, torch.Tensor]
# The class attributes of SyntheticVocab shadow the sentinel names inside its body.
_START_TOKEN: Final = START
_END_TOKEN: Final = END


@dataclass(frozen=True, slots=True)
class SyntheticTask:
    """One row of Table 2: a pattern, a replacement, and whether it has meta characters."""

    name: str
    pattern: str
    replacement: str

    @property
    def meta(self) -> bool:
        return self.name.startswith("Meta")

    def instantiate(self, x: str, y: str) -> tuple[str, str]:
        """Pattern and replacement with the meta characters ``x``/``y`` bound (§5)."""
        table = str.maketrans({"x": x, "y": y})
        return self.pattern.translate(table), self.replacement.translate(table)


def _task(name: str, pattern: str, replacement: str) -> SyntheticTask:
    return SyntheticTask(name, pattern, replacement)


# Table 2 (Appendix A), non-meta then meta, in the paper's order.
_NON_META: Final = (
    _task("Append1", "A", "AB"),
    _task("ContextAppend11", "(.)A", r"\1A\1"),
    _task("ContextAppend13", "(.)A", r"\1A\1\1\1"),
    _task("ContextAppend31", "(...)A", r"\1A\1"),
    _task("ContextAppend33", "(...)A", r"\1A\1\1\1"),
    _task("ContextAppend52", "(.....)A", r"\1A\1\1"),
    _task("ContextReverse31", "(.)(.)(.)A", r"\1\2\3A\3\2\1"),
    _task("ContextReverse51", "(.)(.)(.)(.)(.)A", r"\1\2\3\4\5A\5\4\3\2\1"),
    _task("Delete2", "AA", ""),
    _task("Flip11", "(.)A(.)", r"\2\1A\2\1"),
    _task("Flip33", "(...)A(...)", r"\2\2\2\1A\2\1\1\1"),
    _task("Replace2", "AA", "BB"),
    _task("Surround11", "(.)A(.)", r"\1\1A\2\2"),
    _task("Surround33", "(...)A(...)", r"\1\1\1\1A\2\2\2\2"),
)
TASKS: Final[dict[str, SyntheticTask]] = {
    t.name: t
    for t in (
        *_NON_META,
        *(
            _task(
                "Meta" + t.name,
                t.pattern.replace("A", "x"),
                t.replacement.replace("A", "x").replace("B", "y"),
            )
            for t in _NON_META
        ),
    )
}
TASK_NAMES: Final = (*TASKS, MULTITASK)


def snapshots_for(pattern: str, replacement: str, initial: str) -> list[str]:
    """The initial string and the string after each full replacement, left to right (§5).

    ``count=k`` makes ``re.sub`` perform exactly the first ``k`` replacements; the last
    snapshot equals ``re.sub(pattern, replacement, initial)``.
    """
    matches = len(re.findall(pattern, initial))
    return [initial] + [
        re.sub(pattern, replacement, initial, count=k) for k in range(1, matches + 1)
    ]


@dataclass(frozen=True, slots=True)
class SyntheticInstance:
    """One edit sequence of a synthetic dataset (§5).

    ``task`` is the Table 2 task it was drawn from (also inside MultiTask); ``x``/``y`` the
    symbols bound to the meta characters (drawn for every task, used by meta tasks only).
    """

    task: str
    x: str
    y: str
    snapshots: tuple[str, ...]
    sequence: ImplicitEditSequence
    conditioning_steps: int


def _conditioning_steps(
    task: SyntheticTask, multitask: bool, sequence: ImplicitEditSequence
) -> int:
    # See the module docstring: the first full replacement reveals the meta characters.
    return sequence.snapshot_steps[1] if task.meta or multitask else 0


def _draw(
    rng: np.random.Generator, tasks: Sequence[SyntheticTask], multitask: bool
) -> Iterator[SyntheticInstance]:
    """Endless accepted instances; candidates come in numpy blocks (Delete2 keeps ~0.3%)."""
    while True:
        strings = rng.integers(0, len(SYMBOLS), size=(_BLOCK, LENGTH), dtype=np.uint8)
        # x != y (§5: "replaced by different characters"): y is x shifted by 1..V-1.
        xs = rng.integers(0, len(SYMBOLS), size=_BLOCK)
        ys = (xs + rng.integers(1, len(SYMBOLS), size=_BLOCK)) % len(SYMBOLS)
        task_ids = rng.integers(0, len(tasks), size=_BLOCK)
        text = (strings + ord("A")).tobytes().decode("ascii")
        for i in range(_BLOCK):
            task = tasks[int(task_ids[i])]
            x, y = SYMBOLS[int(xs[i])], SYMBOLS[int(ys[i])]
            pattern, replacement = task.instantiate(x, y)
            initial = text[i * LENGTH : (i + 1) * LENGTH]
            if len(re.findall(pattern, initial)) < MIN_SNAPSHOTS - 1:
                continue
            snapshots = snapshots_for(pattern, replacement, initial)
            sequence = implicit_from_snapshots([list(s) for s in snapshots])
            yield SyntheticInstance(
                task=task.name,
                x=x,
                y=y,
                snapshots=tuple(snapshots),
                sequence=sequence,
                conditioning_steps=_conditioning_steps(task, multitask, sequence),
            )


def generate_split(
    task: str, split: str, seed: int, size: int | None = None
) -> list[SyntheticInstance]:
    """``size`` instances (default: the paper's 10k/1k/1k) of ``task`` for ``split``.

    Deterministic in (``task``, ``split``, ``seed``); the three splits use independent
    streams of the same seed.
    """
    if task not in TASK_NAMES:
        raise ValueError(f"unknown synthetic task {task!r}; one of {', '.join(TASK_NAMES)}")
    if split not in _SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; one of train, dev, test")
    n = SPLIT_SIZES[split] if size is None else size
    multitask = task == MULTITASK
    tasks = list(TASKS.values()) if multitask else [TASKS[task]]
    rng = np.random.default_rng([seed, TASK_NAMES.index(task), _SPLIT_IDS[split]])
    draws = _draw(rng, tasks, multitask)
    return [next(draws) for _ in range(n)]


def generate_splits(
    task: str, seed: int, sizes: dict[str, int] | None = None
) -> dict[str, list[SyntheticInstance]]:
    """train/dev/test of ``task`` (§6.1: 10k/1k/1k unless ``sizes`` says otherwise)."""
    wanted = dict(SPLIT_SIZES) if sizes is None else sizes
    return {split: generate_split(task, split, seed, n) for split, n in wanted.items()}


class SyntheticVocab:
    """Token ids shared by every Zhao model: PAD, ``<S>``, ``<E>``, DELETE, then ``A``..``J``.

    Contents (§2: ``c ∈ {DELETE} ∪ V``) and state tokens share one id space, so a content
    can be compared with the token it deletes.
    """

    PAD: Final = 0
    START: Final = 1
    END: Final = 2
    DELETE: Final = 3
    tokens: Final = ("<pad>", _START_TOKEN, _END_TOKEN, "DELETE", *SYMBOLS)

    def __init__(self) -> None:
        self._ids = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def token_id(self, token: str) -> int:
        return self._ids[token]

    def content_id(self, content: Content) -> int:
        return self.DELETE if content is DELETE else self._ids[content]

    def decode_content(self, index: int) -> Content:
        return DELETE if index == self.DELETE else self.tokens[index]


VOCAB: Final = SyntheticVocab()


class SyntheticEditDataset(Dataset[Batch]):
    """Tensors of one split for the implicit models (IA, IR), and for E if ``explicit``.

    Per item (T edits, n initial tokens):

    * ``state`` (n + 2,): ``<S> s(0) <E>`` ids; the implicit index of a token is its slot.
    * ``edit_position`` (T,): implicit positions ``p(t)`` (§2); ``edit_content`` (T,).
    * ``edit_explicit`` (T,): where the edited token sits in ``s(t)`` (an insertion's new
      token, a deletion's gap), the "explicit position" the IA encoder embeds (Appendix D.1).
    * ``loss_mask`` (T,): False for the first ``conditioning_steps`` edits (§5).
    * with ``explicit``: ``states`` (T, W) the ids of ``<S> s(t-1) <E>`` for t = 1..T, and
      ``explicit_position`` (T,) the explicit ``p(t)`` into ``s(t-1)`` (§3, E).
    """

    def __init__(self, instances: Sequence[SyntheticInstance], explicit: bool = False) -> None:
        self.instances = list(instances)
        self.explicit = explicit

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> Batch:
        instance = self.instances[index]
        seq = instance.sequence
        explicit = to_explicit(seq)
        state = [VOCAB.token_id(t) for t in with_sentinels(seq.initial)]
        contents = [VOCAB.content_id(e.content) for e in seq.edits]
        # An insertion after explicit position p puts its token at p + 1; a deletion
        # leaves the gap at p (Appendix D.1 embeds this position).
        landed = [e.position + (0 if e.is_delete else 1) for e in explicit.edits]
        steps = torch.arange(len(seq.edits))
        item: Batch = {
            "state": torch.tensor(state, dtype=torch.long),
            "edit_position": torch.tensor([e.position for e in seq.edits], dtype=torch.long),
            "edit_content": torch.tensor(contents, dtype=torch.long),
            "edit_explicit": torch.tensor(landed, dtype=torch.long),
            "loss_mask": steps >= instance.conditioning_steps,
        }
        if self.explicit:
            states = replay_explicit(explicit)[:-1]  # s(0) .. s(T-1): the inputs of e(1..T)
            width = max(len(s) for s in states) + 2
            grid = torch.full((len(states), width), VOCAB.PAD, dtype=torch.long)
            for t, s in enumerate(states):
                ids = [VOCAB.token_id(tok) for tok in with_sentinels(s)]
                grid[t, : len(ids)] = torch.tensor(ids)
            item["states"] = grid
            item["explicit_position"] = torch.tensor(
                [e.position for e in explicit.edits], dtype=torch.long
            )
        return item


def _pad(tensors: Sequence[torch.Tensor], value: int | bool) -> torch.Tensor:
    shape = [len(tensors), *(max(t.shape[d] for t in tensors) for d in range(tensors[0].dim()))]
    out = torch.full(shape, value, dtype=tensors[0].dtype)
    for i, t in enumerate(tensors):
        index: tuple[int | slice, ...] = (i, *(slice(0, n) for n in t.shape))
        out[index] = t
    return out


def collate_edits(items: Sequence[Batch]) -> Batch:
    """Pad a list of items into a batch; adds ``state_length`` and ``edit_mask`` (B, T)."""
    batch: Batch = {}
    for key in items[0]:
        fill: int | bool = False if key == "loss_mask" else VOCAB.PAD
        batch[key] = _pad([item[key] for item in items], fill)
    batch["state_length"] = torch.tensor([len(item["state"]) for item in items])
    lengths = torch.tensor([len(item["edit_content"]) for item in items])
    batch["edit_mask"] = torch.arange(batch["edit_content"].shape[1])[None, :] < lengths[:, None]
    return batch
