"""Edit pairs for the span-copying editor, from commit records (Copy That! task data).

Each kept commit is replayed exactly as the replay benchmark replays it
(``ripple.training.replay.replay_steps``); at step ``j`` the example is the next hunk:

* input: the fragment around hunk ``j + 1`` as the file stands after hunks ``1..j``
  (``copy_features.make_fragment``: the hunk's lines plus ``radius`` lines each side), then
  the commit's previous hunks, newest first, as before/after token pairs;
* output: the same fragment with hunk ``j + 1`` applied.

The served predictor builds its inputs with the same ``make_fragment`` on the live
``EditContext``, so training and serving read identical sequences.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ripple.models.edits.languages import language_name_for_path
from ripple.models.suggest.copy_features import (
    EOS,
    CopyVocab,
    EditorConfig,
    fragment_tokens,
    make_fragment,
    run_lengths,
)
from ripple.training.data import iter_commits, repo_of_file
from ripple.training.progress import Progress
from ripple.training.replay import ReplayStep, replay_steps

__all__ = [
    "CopyDataset",
    "CopyExample",
    "build_examples",
    "collate_copy",
    "count_tokens",
    "load_examples",
    "longest_path",
    "save_examples",
    "step_example",
]


@dataclass(frozen=True)
class CopyExample:
    """One edit pair: input tokens (fragment + context) -> output tokens (no ``</s>``)."""

    input: tuple[str, ...]
    output: tuple[str, ...]
    fragment: int  # how many leading input tokens are the fragment itself
    repo: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "in": list(self.input),
            "out": list(self.output),
            "frag": self.fragment,
            "repo": self.repo,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CopyExample:
        return cls(
            tuple(data["in"]), tuple(data["out"]), int(data["frag"]), str(data.get("repo", ""))
        )


def step_example(step: ReplayStep, config: EditorConfig, repo: str = "") -> CopyExample | None:
    """The example of one replay step (its next hunk), or ``None`` when it is too long."""
    truth = step.truth[0]
    ctx = step.ctx
    fragment = make_fragment(ctx, truth.path, truth.start_line, truth.end_line, config)
    if fragment is None:
        return None
    lines = ctx.files[truth.path]
    after = (
        *lines[fragment.start : truth.start_line],
        *truth.new_lines,
        *lines[truth.end_line : fragment.end],
    )
    output = fragment_tokens("".join(after), language_name_for_path(truth.path))
    if len(output) > config.max_output:
        return None
    return CopyExample(fragment.input, tuple(output), len(fragment.tokens), repo)


def iter_examples(
    files: Sequence[Path], config: EditorConfig, max_commits: int | None
) -> Iterator[CopyExample]:
    """Examples of the first ``max_commits`` kept commits of each file, in file order."""
    for path in files:
        repo = repo_of_file(path)
        kept = 0
        for rec in iter_commits(path):
            if max_commits is not None and kept >= max_commits:
                break
            steps = replay_steps(rec)
            if steps is None:
                continue
            kept += 1
            for step in steps:
                example = step_example(step, config, repo)
                if example is not None:
                    yield example


def build_examples(
    files: Sequence[Path],
    config: EditorConfig,
    max_commits: int | None,
    max_examples: int | None = None,
    label: str = "examples",
    quiet: bool = False,
) -> list[CopyExample]:
    """Every example of ``files`` (see ``iter_examples``), with a progress bar per file."""
    out: list[CopyExample] = []
    bar = Progress(len(files), label, quiet=quiet)
    with bar:
        for path in files:
            for example in iter_examples([path], config, max_commits):
                out.append(example)
                if max_examples is not None and len(out) >= max_examples:
                    return out
            bar.advance(note=f"{repo_of_file(path)}: {len(out)} examples")
    return out


def save_examples(examples: Iterable[CopyExample], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        for example in examples:
            f.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
    tmp.replace(path)


def load_examples(path: Path) -> list[CopyExample]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [CopyExample.from_json(json.loads(line)) for line in f]


def count_tokens(examples: Iterable[CopyExample]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for example in examples:
        counts.update(example.input)
        counts.update(example.output)
    return counts


def longest_path(runs: np.ndarray) -> np.ndarray:
    """The "always copy longest" action lengths: l >= 1 copy, 0 generate, -1 inside a copy."""
    n = runs.shape[0]
    out = np.full(n, -1, dtype=np.int64)
    longest = runs.max(axis=1) if runs.shape[1] else np.zeros(n, dtype=runs.dtype)
    k = 0
    while k < n:
        r = int(longest[k])
        out[k] = r
        k += max(r, 1)
    return out


class CopyDataset(Dataset[dict[str, np.ndarray]]):
    """Examples encoded for ``CopyEditor`` (ids, run lengths, the longest-copy path)."""

    def __init__(self, examples: Sequence[CopyExample], vocab: CopyVocab) -> None:
        self.examples = list(examples)
        self.vocab = vocab

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        example = self.examples[index]
        output = (*example.output, EOS)
        runs = run_lengths(example.input, output)
        return {
            "input": np.array(self.vocab.ids(example.input), dtype=np.int64),
            "output": np.array(self.vocab.ids(output), dtype=np.int64),
            "runs": runs,
            "longest": longest_path(runs),
        }


def collate_copy(items: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Pad a list of ``CopyDataset`` items into a batch (padding id 0, runs 0)."""
    n = len(items)
    L = max(1, max(len(item["input"]) for item in items))
    T = max(len(item["output"]) for item in items)
    inputs = np.zeros((n, L), dtype=np.int64)
    outputs = np.zeros((n, T), dtype=np.int64)
    runs = np.zeros((n, T, L), dtype=np.int16)
    longest = np.full((n, T), -1, dtype=np.int64)
    for b, item in enumerate(items):
        li, lo = len(item["input"]), len(item["output"])
        inputs[b, :li] = item["input"]
        outputs[b, :lo] = item["output"]
        runs[b, :lo, :li] = item["runs"]
        longest[b, :lo] = item["longest"]
    return {
        "input": torch.from_numpy(inputs),
        "input_length": torch.tensor([max(1, len(i["input"])) for i in items]),
        "output": torch.from_numpy(outputs),
        "output_length": torch.tensor([len(i["output"]) for i in items]),
        "runs": torch.from_numpy(runs),
        "longest": torch.from_numpy(longest),
    }
