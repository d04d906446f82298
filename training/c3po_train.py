"""Training and evaluating C3PO (Brody et al. 2020, §5-6) on ``CompletionExample``s.

* ``C3PODataset``: each example's features, cut by ``c3po_features.encode_input`` (the
  function the runtime uses, so training and serving read the same arrays), stored in
  compact dtypes, and its gold labels. Examples the model cannot get right are kept out of
  training and counted in ``unsolvable``: a gold operation not on a valid path under the
  training set's child types (``example_paths`` gives no labels), a gold operation the
  model masks (UPD of a non-terminal, INS into ``<DEL>``), or more than ``max_paths``
  paths (the runtime refuses those too). ``evaluate_c3po`` counts them as misses.
* ``collate_c3po``: padded batch tensors, keys in ``ripple.models.nets.c3po``'s docstring;
  labels move to the batch layout ``2 + kind * N + path`` (N: the batch's most paths).
* ``train_c3po``: the shared ``Trainer`` (Adam 1e-3, batch 64, clip 5, early stopping on
  dev accuracy under teacher forcing; the reference code's settings), the vocabulary and
  the child types (``observed_child_types`` over the training examples' before and after
  trees) built from the training examples only.
* ``predict_c3po`` / ``evaluate_c3po``: greedy decoding in torch; exact match of the whole
  label sequence (the paper's metric) over every example given.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ripple.models.edits.completion import CompletionExample, example_paths
from ripple.models.edits.paths import ASTPath, observed_child_types
from ripple.models.nets import Batch
from ripple.models.nets.c3po import C3PO, C3POConfig
from ripple.models.suggest.c3po_features import (
    CONTEXT_MODES,
    C3POVocab,
    context_attention,
    encode_input,
)

__all__ = [
    "C3PODataset",
    "ChildTypes",
    "EncodedExample",
    "build_vocab",
    "collate_c3po",
    "encode_example",
    "evaluate_c3po",
    "load_c3po_run",
    "load_child_types",
    "predict_c3po",
    "save_child_types",
    "train_c3po",
]

ChildTypes = Mapping[str, Set[str]]
Prediction = tuple[list[int] | None, list[np.ndarray]]
VOCAB_FILE = "vocab.json"
CHILD_TYPES_FILE = "child_types.json"
# Feeds whose last axis is a path's nodes or a value's sub-tokens: padded to the batch's
# widest, focus and context alike (the model encodes both in one call).
_NODE_KEYS = ("types", "indices")
_VALUE_KEYS = ("source_values", "target_values")


def _compact(array: np.ndarray) -> np.ndarray:
    """ids in the smallest integer type that holds them: a dataset of 40k examples of
    ~500 paths then takes ~1 GB (``collate_c3po`` widens them back to int64)."""
    if array.dtype == np.int64:
        top = int(array.max(initial=0))
        for dtype in (np.int8, np.int16, np.int32):
            if top <= np.iinfo(dtype).max:
                return array.astype(dtype)
    return array


@dataclass
class EncodedExample:
    """One example's features (``encode_input``), its gold labels, its path count."""

    feeds: dict[str, np.ndarray]
    labels: list[int] | None
    n_paths: int


def _gold_allowed(labels: Sequence[int], feeds: Mapping[str, np.ndarray]) -> bool:
    """Whether the model's operation mask (``C3PO.operation_vectors``) allows every label."""
    n = len(feeds["path_lengths"])
    for label in labels:
        if label < 2:
            continue
        kind, k = divmod(label - 2, n)
        if kind == 1 and not (
            feeds["path_source_terminal"][k] and feeds["path_target_terminal"][k]
        ):
            return False
        if kind == 2 and feeds["path_target_del"][k]:
            return False
    return True


def encode_example(
    example: CompletionExample,
    vocab: C3POVocab,
    child_types: ChildTypes | None,
    context_mode: str,
) -> EncodedExample:
    """``encode_input`` for an example plus its gold labels (None when unsolvable)."""
    _, paths, labels = example_paths(example, child_types)
    feeds = encode_input(paths, example.context, example.context_text, vocab, context_mode)
    if labels is not None and not _gold_allowed(labels, feeds):
        labels = None
    return EncodedExample(feeds, labels, len(paths))


class C3PODataset(Dataset[dict[str, np.ndarray]]):
    """The solvable examples' features (module docstring); ``len`` counts those only.

    ``total`` is the number of examples given, ``unsolvable`` the positions (in the list
    given) of those left out, ``example_index[i]`` the position of item ``i``.
    """

    def __init__(
        self,
        examples: Sequence[CompletionExample],
        vocab: C3POVocab,
        child_types: ChildTypes | None,
        context_mode: str,
        max_paths: int | None = None,
    ) -> None:
        if context_mode not in CONTEXT_MODES:
            raise ValueError(f"context_mode must be one of {', '.join(CONTEXT_MODES)}")
        self.context_mode = context_mode
        self.total = len(examples)
        self.items: list[dict[str, np.ndarray]] = []
        self.example_index: list[int] = []
        self.unsolvable: list[int] = []
        for position, example in enumerate(examples):
            encoded = encode_example(example, vocab, child_types, context_mode)
            too_many = max_paths is not None and encoded.n_paths > max_paths
            if encoded.labels is None or too_many:
                self.unsolvable.append(position)
                continue
            item = {key: _compact(value) for key, value in encoded.feeds.items()}
            item["labels"] = np.asarray(encoded.labels, dtype=np.int32)
            self.items.append(item)
            self.example_index.append(position)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.items[index]


def _pad(arrays: Sequence[np.ndarray], shape: tuple[int, ...], dtype: Any) -> torch.Tensor:
    out = np.zeros((len(arrays), *shape), dtype=dtype)
    for row, array in enumerate(arrays):
        index: tuple[Any, ...] = (row, *(slice(0, d) for d in array.shape))
        out[index] = array
    return torch.from_numpy(out)


def prefix_trie(
    types: np.ndarray, indices: np.ndarray, lengths: np.ndarray
) -> dict[str, np.ndarray]:
    """The distinct prefixes of K paths (rows of ``types``/``indices`` [K, L], ``lengths``
    [K] >= 1), depth by depth, for ``C3PO.prefix_states``.

    Returns ``trie_types``/``trie_indices`` [U] (each prefix's last node), ``trie_parents``
    [U] (the prefix one node shorter, numbered within its depth; 0 at depth 0),
    ``trie_sizes`` [D] (prefixes per depth) and ``trie_rows`` [K] (each path's full
    prefix, numbered over all U). Prefixes are equal when their nodes' types and child
    indices are, wherever the paths come from: the LSTM cannot tell them apart.
    """
    count = len(lengths)
    type_span = int(types.max(initial=0)) + 1
    index_span = int(indices.max(initial=0)) + 1
    prefix = np.zeros(count, dtype=np.int64)
    rows = np.zeros(count, dtype=np.int64)
    out_types: list[np.ndarray] = []
    out_indices: list[np.ndarray] = []
    out_parents: list[np.ndarray] = []
    sizes: list[int] = []
    offset = 0
    for depth in range(types.shape[1] if count else 0):
        active = np.flatnonzero(lengths > depth)
        if not len(active):
            break
        key = (prefix[active] * type_span + types[active, depth]) * index_span
        key += indices[active, depth]
        unique, inverse = np.unique(key, return_inverse=True)
        rest, node_index = np.divmod(unique, index_span)
        parent, node_type = np.divmod(rest, type_span)
        out_types.append(node_type)
        out_indices.append(node_index)
        out_parents.append(parent)
        sizes.append(len(unique))
        prefix[active] = inverse
        ends = lengths[active] == depth + 1
        rows[active[ends]] = offset + inverse[ends]
        offset += len(unique)
    empty = np.zeros(0, dtype=np.int64)
    return {
        "trie_types": np.concatenate(out_types) if out_types else empty,
        "trie_indices": np.concatenate(out_indices) if out_indices else empty,
        "trie_parents": np.concatenate(out_parents) if out_parents else empty,
        "trie_sizes": np.asarray(sizes, dtype=np.int64),
        "trie_rows": rows,
    }


def collate_c3po(items: Sequence[Mapping[str, np.ndarray]], trie: bool = True) -> Batch:
    """Pad a list of dataset items into one batch (``ripple.models.nets.c3po`` keys).

    ``trie`` adds the ``trie_*`` keys of ``prefix_trie`` over the batch's real paths,
    focus then context, in the order ``C3PO.encode`` reads them.
    """
    has_paths = "context_types" in items[0]
    parts = ["path", "context"] if has_paths else ["path"]
    n = max(1, max(len(item["path_lengths"]) for item in items))
    m = max((len(item["context_lengths"]) for item in items), default=0) if has_paths else 0
    width = max(item[f"{p}_types"].shape[1] for item in items for p in parts)
    values = max(item[f"{p}_source_values"].shape[1] for item in items for p in parts)
    batch: Batch = {}
    for part, count in zip(parts, (n, m), strict=False):
        for key in _NODE_KEYS:
            batch[f"{part}_{key}"] = _pad(
                [i[f"{part}_{key}"] for i in items], (count, width), np.int64
            )
        for key in _VALUE_KEYS:
            batch[f"{part}_{key}"] = _pad(
                [i[f"{part}_{key}"] for i in items], (count, values), np.int64
            )
        batch[f"{part}_lengths"] = _pad([i[f"{part}_lengths"] for i in items], (count,), np.int64)
        for key in ("source_terminal", "target_terminal"):
            batch[f"{part}_{key}"] = _pad([i[f"{part}_{key}"] for i in items], (count,), bool)
    batch["path_target_del"] = _pad([i["path_target_del"] for i in items], (n,), bool)
    if has_paths:
        batch["context_after"] = _pad([i["context_after"] for i in items], (m,), bool)
    if "context_text" in items[0]:
        t = max(len(i["context_text"]) for i in items)
        batch["context_text"] = _pad([i["context_text"] for i in items], (t,), np.int64)
        batch["context_text_lengths"] = torch.tensor([len(i["context_text"]) for i in items])
    if "labels" in items[0]:
        rows = []
        for item in items:
            own = len(item["path_lengths"])
            labels = item["labels"].astype(np.int64)
            kind, path = np.divmod(np.maximum(labels - 2, 0), max(own, 1))
            rows.append(np.where(labels >= 2, 2 + kind * n + path, labels))
        batch["labels"] = _pad(rows, (max(len(r) for r in rows),), np.int64)
    if trie:
        types = torch.cat([batch[f"{p}_types"].flatten(0, 1) for p in parts]).numpy()
        indices = torch.cat([batch[f"{p}_indices"].flatten(0, 1) for p in parts]).numpy()
        lengths = torch.cat([batch[f"{p}_lengths"].flatten(0, 1) for p in parts]).numpy()
        real = lengths > 0
        trie_arrays = prefix_trie(types[real], indices[real], lengths[real])
        batch.update({k: torch.from_numpy(v) for k, v in trie_arrays.items()})
    return batch


# -- training ---------------------------------------------------------------------------


def _vocab_sources(
    examples: Sequence[CompletionExample], child_types: ChildTypes
) -> Iterator[list[ASTPath]]:
    for example in examples:  # paths one example at a time: never all in memory at once
        yield example_paths(example, child_types)[1]


def build_vocab(
    examples: Sequence[CompletionExample],
    child_types: ChildTypes,
    *,
    max_subtokens: int = 10_000,
    max_text: int = 10_000,
    max_child_index: int = 16,
) -> C3POVocab:
    """The vocabulary of the training examples (their focus paths, context, text)."""
    return C3POVocab.build(
        _vocab_sources(examples, child_types),
        (e.context for e in examples),
        (e.context_text for e in examples),
        max_subtokens=max_subtokens,
        max_text=max_text,
        max_child_index=max_child_index,
    )


def save_child_types(child_types: ChildTypes, path: Path) -> None:
    data = {parent: sorted(children) for parent, children in sorted(child_types.items())}
    path.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")


def load_child_types(path: Path) -> dict[str, frozenset[str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {parent: frozenset(children) for parent, children in data.items()}


def train_c3po(
    train_examples: Sequence[CompletionExample],
    dev_examples: Sequence[CompletionExample],
    out_dir: Path,
    *,
    context_mode: str = "paths",
    steps: int | None = None,
    epochs: int = 100,
    batch_size: int = 64,
    lr: float = 1e-3,
    grad_clip: float = 5.0,
    patience: int = 10,
    eval_every: int = 0,
    threads: int = 0,
    quiet: bool = False,
    seed: int = 0,
    max_paths: int | None = None,
    net: Mapping[str, Any] | None = None,
    vocab_sizes: Mapping[str, int] | None = None,
    resume: bool = False,
) -> tuple[C3PO, C3POVocab, dict[str, frozenset[str]], dict[str, Any]]:
    """Train C3PO with the shared trainer; returns the best model (by dev accuracy under
    teacher forcing; the last one without dev examples), its vocabulary, the child types
    and a report. ``out_dir`` gets the trainer's checkpoints, ``vocab.json``,
    ``child_types.json`` and ``results.json``. ``net`` overrides ``C3POConfig`` sizes
    (embedding, hidden, dropout, max_steps); ``vocab_sizes`` the vocabulary's
    (max_subtokens, max_text, max_child_index)."""
    from ripple.training.trainer import TrainConfig, Trainer, seed_everything

    started = time.monotonic()
    if threads:
        torch.set_num_threads(threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    child_types = observed_child_types(tree for e in train_examples for tree in (e.before, e.after))
    vocab = build_vocab(train_examples, child_types, **dict(vocab_sizes or {}))
    (out_dir / VOCAB_FILE).write_text(
        json.dumps(vocab.to_json(), ensure_ascii=False) + "\n", encoding="utf-8"
    )
    save_child_types(child_types, out_dir / CHILD_TYPES_FILE)
    train = C3PODataset(train_examples, vocab, child_types, context_mode, max_paths)
    dev = C3PODataset(dev_examples, vocab, child_types, context_mode, max_paths)
    if not len(train):
        raise ValueError("no training example is solvable (see C3PODataset)")
    seed_everything(seed)
    config = C3POConfig(
        type_vocab=len(vocab.types),
        subtoken_vocab=len(vocab.subtokens),
        text_vocab=len(vocab.text),
        max_child_index=vocab.max_child_index,
        context_mode=context_mode,  # type: ignore[arg-type]
        **dict(net or {}),
    )
    model = C3PO(config)
    trainer = Trainer(
        model,
        TrainConfig(
            out_dir=str(out_dir),
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            grad_clip=grad_clip,
            seed=seed,
            eval_every=eval_every,
            patience=patience,
            max_steps=steps,
            cpu_threads=threads,
            quiet=quiet,
            resume=resume,
        ),
        train,  # type: ignore[arg-type]
        dev if len(dev) else None,  # type: ignore[arg-type]
        collate_c3po,  # type: ignore[arg-type]
        model_config=config.to_dict(),
    )
    result = trainer.run()
    trainer.load_best()
    model.eval()
    report: dict[str, Any] = {
        "context_mode": context_mode,
        "parameters": model.parameter_count(),
        "steps": result.steps,
        "best_step": result.best_step,
        "best_dev_teacher_forced_accuracy": result.best_metric,
        "stopped_early": result.stopped_early,
        "train_examples": train.total,
        "train_unsolvable": len(train.unsolvable),
        "dev_examples": dev.total,
        "dev_unsolvable": len(dev.unsolvable),
        "vocab": {
            "types": len(vocab.types),
            "subtokens": len(vocab.subtokens),
            "text": len(vocab.text),
        },
        "wall_s_training": round(time.monotonic() - started, 1),
    }
    if dev_examples:
        report["dev"] = evaluate_c3po(model, vocab, child_types, dev_examples, max_paths=max_paths)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return model, vocab, child_types, report


def load_c3po_run(run_dir: Path) -> tuple[C3PO, C3POVocab, dict[str, frozenset[str]]]:
    """The best (else latest) model of a ``train_c3po`` run, its vocabulary and child types."""
    from ripple.training.checkpoints import latest_checkpoint, load_checkpoint

    folder = run_dir / "best"
    if not (folder / "model.safetensors").is_file():
        latest = latest_checkpoint(run_dir / "checkpoints")
        if latest is None:
            raise FileNotFoundError(f"{run_dir}: no best/ model and no checkpoint")
        folder = latest
    ckpt = load_checkpoint(folder)
    model = C3PO(C3POConfig.from_dict(dict(ckpt.state["model_config"])))
    model.load_state_dict(ckpt.model)
    vocab = C3POVocab.from_json(json.loads((run_dir / VOCAB_FILE).read_text(encoding="utf-8")))
    return model.eval(), vocab, load_child_types(run_dir / CHILD_TYPES_FILE)


# -- evaluation -------------------------------------------------------------------------


def _greedy_all(
    model: C3PO,
    vocab: C3POVocab,
    child_types: ChildTypes | None,
    examples: Sequence[CompletionExample],
    batch_size: int,
    max_paths: int | None,
) -> list[tuple[list[int] | None, list[np.ndarray], list[int] | None]]:
    """(predicted labels or None, attention per step, gold labels or None) per example."""
    mode = model.config.context_mode
    out: list[tuple[list[int] | None, list[np.ndarray], list[int] | None]] = [
        (None, [], None) for _ in examples
    ]
    pending: list[tuple[int, EncodedExample]] = []

    def flush() -> None:
        if not pending:
            return
        batch = collate_c3po([encoded.feeds for _, encoded in pending])
        device = next(model.parameters()).device
        results = model.greedy({k: v.to(device) for k, v in batch.items()})
        for (position, encoded), result in zip(pending, results, strict=True):
            example = examples[position]
            length = len(encoded.feeds.get("context_text", ()))
            attention = [
                context_attention(w.cpu().numpy(), example.context, mode, length)
                for w in result.attention
            ]
            out[position] = (result.labels, attention, encoded.labels)
        pending.clear()

    for position, example in enumerate(examples):
        encoded = encode_example(example, vocab, child_types, mode)
        if max_paths is not None and encoded.n_paths > max_paths:
            continue
        pending.append((position, encoded))
        if len(pending) >= batch_size:
            flush()
    flush()
    return out


def predict_c3po(
    model: C3PO,
    vocab: C3POVocab,
    child_types: ChildTypes | None,
    examples: Sequence[CompletionExample],
    *,
    batch_size: int = 32,
    max_paths: int | None = None,
) -> list[Prediction]:
    """Greedy predictions in torch, one per example: the labels (the example's own layout,
    over ``example_paths(example, child_types)``; EOS last unless ``max_steps`` ran out)
    or None for an example with more than ``max_paths`` paths; and per step the attention
    over the example's context (``c3po_features.context_attention``)."""
    return [
        (labels, attention)
        for labels, attention, _ in _greedy_all(
            model, vocab, child_types, examples, batch_size, max_paths
        )
    ]


def evaluate_c3po(
    model: C3PO,
    vocab: C3POVocab,
    child_types: ChildTypes | None,
    examples: Sequence[CompletionExample],
    *,
    batch_size: int = 32,
    max_paths: int | None = None,
) -> dict[str, Any]:
    """Exact match of the whole operation sequence (the paper's metric) over *every*
    example: the unsolvable ones (see ``C3PODataset``; beyond ``max_paths`` too) are misses."""
    correct = unsolvable = 0
    for labels, _, gold in _greedy_all(model, vocab, child_types, examples, batch_size, max_paths):
        if gold is None or labels is None:
            unsolvable += 1
            continue
        correct += int(labels == gold)
    total = len(examples)
    return {
        "exact_match": correct / total if total else float("nan"),
        "correct": correct,
        "total": total,
        "unsolvable": unsolvable,
    }
