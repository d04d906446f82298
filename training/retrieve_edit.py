"""Retrieve-and-edit training (Hashimoto et al. 2018): retriever, retrievals, editor.

A task is a list of ``Pair``s (input tokens ``x`` -> output tokens ``y``). Training runs:

1. the retriever (``ripple.models.nets.retriever.VMFRetriever``): a noisy encoder-decoder
   that rebuilds ``y`` from the vMF-noised unit vector ``mu(x)`` (``target="output"``; the
   paper's task retriever), or ``x`` itself (``target="input"``; the InputRetriever);
   exported as ONNX (``export_retriever``, parity-checked against torch);
2. retrievals through the exported retriever: for a training pair the nearest *other*
   training pair (the 2nd neighbour, the 1st being the pair itself), for a dev or test pair
   the nearest training pair (``retrieve``); a pair's ``group`` (its repository) restricts
   retrieval to pairs of the same group, as a workspace index would;
3. the editor: the span-copying ``CopyEditor`` of ``ripple.models.nets.copy_span`` reading
   ``x <edit> x' <to> y'`` (``editor_input``) and writing ``y``; with probability 0.1 a
   training item is replaced by ``(x', x', y') -> y'`` (drawn anew each time the item is
   read). The seq2seq baseline is the same editor reading ``x`` alone.

The editor is exported by ``ripple.training.copy_export`` and served by ``OnnxEditor``.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ripple.models.nets.copy_span import CopyConfig, CopyEditor
from ripple.models.nets.retriever import RetrieverConfig, VMFRetriever
from ripple.models.runtime import Manifest, ModelError, load_model
from ripple.models.suggest.copy_features import EOS, CopyVocab, run_lengths
from ripple.models.suggest.retrieval import (
    RETRIEVER_KIND,
    VOCAB_FILE,
    OnnxRetriever,
    VectorIndex,
)
from ripple.models.suggest.retrieve_edit import editor_input
from ripple.training.copy_data import longest_path
from ripple.training.export import (
    ExportError,
    _check_out_dir,
    _exporter_quiet,
    _model_folder_in_progress,
    record_parity,
    write_model_manifest,
)

__all__ = [
    "IDENTITY_P",
    "EditorDataset",
    "Pair",
    "RetrieverDataset",
    "build_vocab",
    "collate_retriever",
    "editor_input",
    "export_retriever",
    "retrieve",
    "retrieve_top",
    "train_editor",
    "train_retriever",
    "warm_start",
]

IDENTITY_P: Final = 0.1  # the (x', x', y') -> y' replacement rate (IMPLEMENTATION-NOTES.md)
PARITY_TOLERANCE: Final = 1e-4
ENCODER_FILE: Final = "encoder.onnx"


@dataclass(frozen=True)
class Pair:
    x: tuple[str, ...]
    y: tuple[str, ...]
    group: str = ""


def build_vocab(pairs: Sequence[Pair], size: int, min_count: int = 1) -> CopyVocab:
    counts: Counter[str] = Counter()
    for pair in pairs:
        counts.update(pair.x)
        counts.update(pair.y)
    return CopyVocab.build(counts, size, min_count=min_count)


# -- the retriever -------------------------------------------------------------------------


class RetrieverDataset(Dataset[dict[str, np.ndarray]]):
    def __init__(
        self, pairs: Sequence[Pair], vocab: CopyVocab, target: str, max_input: int, max_target: int
    ) -> None:
        if target not in ("output", "input"):
            raise ValueError("target is 'output' (task retriever) or 'input' (InputRetriever)")
        self.pairs = list(pairs)
        self.vocab = vocab
        self.target = target
        self.max_input = max_input
        self.max_target = max_target

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        pair = self.pairs[index]
        target = pair.y if self.target == "output" else pair.x
        return {
            "input": np.array(self.vocab.ids(pair.x[: self.max_input]), dtype=np.int64),
            "target": np.array(self.vocab.ids((*target[: self.max_target], EOS)), dtype=np.int64),
        }


def collate_retriever(items: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    n = len(items)
    L = max(1, max(len(i["input"]) for i in items))
    T = max(len(i["target"]) for i in items)
    inputs = np.zeros((n, L), dtype=np.int64)
    targets = np.zeros((n, T), dtype=np.int64)
    for b, item in enumerate(items):
        inputs[b, : len(item["input"])] = item["input"]
        targets[b, : len(item["target"])] = item["target"]
    return {
        "input": torch.from_numpy(inputs),
        "input_length": torch.tensor([max(1, len(i["input"])) for i in items]),
        "target": torch.from_numpy(targets),
        "target_length": torch.tensor([len(i["target"]) for i in items]),
    }


def _fit(
    model: nn.Module,
    out: Path,
    train: Dataset[Any],
    dev: Dataset[Any],
    collate: Callable[..., Any],
    model_config: dict[str, Any],
    steps: int,
    settings: dict[str, Any],
) -> dict[str, Any]:
    from ripple.training.trainer import TrainConfig, Trainer, seed_everything

    seed_everything(int(settings.get("seed", 0)))
    config = TrainConfig(
        out_dir=str(out),
        epochs=10_000,
        batch_size=int(settings.get("batch_size", 16)),
        lr=float(settings.get("lr", 1e-3)),
        seed=int(settings.get("seed", 0)),
        eval_every=int(settings.get("eval_every", 100)),
        patience=int(settings.get("patience", 1000)),
        max_steps=steps,
        quiet=bool(settings.get("quiet", False)),
        cpu_threads=int(settings.get("threads", 0)),
        resume=bool(settings.get("resume", False)),
    )
    trainer = Trainer(model, config, train, dev, collate, model_config=model_config)  # type: ignore[arg-type]
    result = trainer.run()
    trainer.load_best()
    model.eval()
    return {
        "steps": result.steps,
        "best_step": result.best_step,
        "best_dev_accuracy": result.best_metric,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def train_retriever(
    train: Sequence[Pair],
    dev: Sequence[Pair],
    vocab: CopyVocab,
    out: Path,
    *,
    target: str = "output",
    steps: int = 1000,
    max_input: int = 400,
    max_target: int = 400,
    net: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[VMFRetriever, dict[str, Any]]:
    """Train a vMF retriever (``target`` 'output' = task retriever, 'input' = InputRetriever)."""
    config = RetrieverConfig(vocab_size=len(vocab), bos_id=vocab.bos_id, **(net or {}))
    model = VMFRetriever(config)
    report = _fit(
        model,
        out,
        RetrieverDataset(train, vocab, target, max_input, max_target),
        RetrieverDataset(dev, vocab, target, max_input, max_target),
        collate_retriever,
        {"retriever": config.to_dict(), "target": target},
        steps,
        settings or {},
    )
    return model, {**report, "target": target}


class _Encoder(nn.Module):
    def __init__(self, model: VMFRetriever) -> None:
        super().__init__()
        self.model = model

    def forward(self, input: torch.Tensor, input_length: torch.Tensor) -> torch.Tensor:
        return self.model.encode(input, input_length)


def export_retriever(
    model: VMFRetriever,
    vocab: CopyVocab,
    out_dir: Path,
    *,
    name: str,
    max_input: int = 400,
    metadata: dict[str, Any] | None = None,
) -> Manifest:
    """Write ``out_dir``: encoder.onnx (input, input_length) -> mu, vocab.json, manifest."""
    from ripple.models.runtime import TensorSpec

    _check_out_dir(out_dir)
    model = model.cpu().eval()
    with _model_folder_in_progress(out_dir) as built:
        ids = torch.randint(6, len(vocab), (2, 9))
        lengths = torch.tensor([9, 6])
        with _exporter_quiet(), torch.no_grad():
            try:
                torch.onnx.export(
                    _Encoder(model),
                    (ids, lengths),
                    str(built / ENCODER_FILE),
                    dynamo=False,
                    input_names=["input", "input_length"],
                    output_names=["mu"],
                    dynamic_axes={
                        "input": {0: "batch", 1: "length"},
                        "input_length": {0: "batch"},
                        "mu": {0: "batch"},
                    },
                    opset_version=17,
                )
            except Exception as exc:
                raise ExportError(f"torch.onnx.export failed: {str(exc).splitlines()[0]}") from exc
        model.eval()
        vocab.save(built / VOCAB_FILE)
        manifest = write_model_manifest(
            built,
            name=name,
            kind=RETRIEVER_KIND,
            main_file=ENCODER_FILE,
            inputs=(
                TensorSpec("input", "int64", ("batch", "length")),
                TensorSpec("input_length", "int64", ("batch",)),
            ),
            outputs=(TensorSpec("mu", "float32", ("batch", model.config.dim)),),
            other_files=(VOCAB_FILE,),
            config={"net": model.config.to_dict(), "max_input": max_input},
            description="Hashimoto et al. 2018, vMF noisy encoder-decoder retriever",
            parameters=sum(p.numel() for p in model.parameters()),
            exporter="torch.onnx.export(dynamo=False)",
            opset=17,
            metadata=metadata,
        )
        try:
            onnx = OnnxRetriever(load_model(built, device="cpu", threads=1))
        except ModelError as exc:
            raise ExportError(f"the export does not load: {exc}") from exc
        worst = _retriever_parity(model, onnx, vocab)
        if worst > PARITY_TOLERANCE:
            raise ExportError(f"ONNX and torch disagree on mu by {worst:.2g}")
        manifest = record_parity(built, manifest, worst)
    return manifest


def _retriever_parity(model: VMFRetriever, onnx: OnnxRetriever, vocab: CopyVocab) -> float:
    rng = np.random.default_rng(1)
    worst = 0.0
    for length in (1, 5, 23):
        seqs = [
            [
                vocab.tokens[int(t)]
                for t in rng.integers(6, len(vocab), size=rng.integers(1, length + 1))
            ]
            for _ in range(4)
        ]
        have = onnx.embed(seqs)
        want = embed_torch(model, vocab, seqs)
        worst = max(worst, float(np.abs(have - want).max()))
    return worst


def embed_torch(
    model: VMFRetriever, vocab: CopyVocab, seqs: Sequence[Sequence[str]], max_input: int = 400
) -> np.ndarray:
    out = []
    with torch.no_grad():
        for seq in seqs:
            ids = torch.tensor([vocab.ids(list(seq)[:max_input]) or [0]])
            out.append(
                model.encode(ids, torch.tensor([max(1, min(len(seq), max_input))]))[0].numpy()
            )
    return np.array(out, dtype=np.float32)


# -- retrieval ---------------------------------------------------------------------------


def retrieve(
    embed: Callable[[Sequence[Sequence[str]]], np.ndarray] | None,
    memory: Sequence[Pair],
    queries: Sequence[Pair],
    *,
    skip_self: bool,
    lexical: bool = False,
) -> list[int | None]:
    """For each query the index in ``memory`` of its nearest pair (same group only).

    ``skip_self``: the queries are ``memory`` itself (training), so each takes its nearest
    *other* pair, the paper's 2nd neighbour. ``None`` where nothing can be retrieved.
    """
    found = retrieve_top(embed, memory, queries, 1, skip_self=skip_self, lexical=lexical)
    return [hits[0] if hits else None for hits in found]


def retrieve_top(
    embed: Callable[[Sequence[Sequence[str]]], np.ndarray] | None,
    memory: Sequence[Pair],
    queries: Sequence[Pair],
    k: int,
    *,
    skip_self: bool,
    lexical: bool = False,
) -> list[list[int]]:
    """For each query the indices in ``memory`` of its ``k`` nearest pairs, best first."""
    from ripple.models.suggest.retrieval import LexicalRetriever

    groups: dict[str, list[int]] = {}
    for i, pair in enumerate(memory):
        groups.setdefault(pair.group, []).append(i)
    out: list[list[int]] = [[] for _ in queries]
    by_group: dict[str, list[int]] = {}
    for q, pair in enumerate(queries):
        by_group.setdefault(pair.group, []).append(q)
    for group, qs in by_group.items():
        members = groups.get(group, [])
        if not members:
            continue
        if lexical:
            lex = LexicalRetriever([memory[i].x for i in members])
            position = {m: j for j, m in enumerate(members)}
            for q in qs:
                own = position.get(q) if skip_self else None
                out[q] = [members[j] for _, j in lex.search(queries[q].x, k, exclude=own)]
            continue
        assert embed is not None
        index = VectorIndex(embed([memory[i].x for i in members]), members)
        vectors = embed([queries[q].x for q in qs])
        for q, vector in zip(qs, vectors, strict=True):
            hits = index.search(vector, k + 1 if skip_self else k)
            out[q] = [h[1] for h in hits if not (skip_self and h[1] == q)][:k]
    return out


# -- the editor --------------------------------------------------------------------------


class EditorDataset(Dataset[dict[str, np.ndarray]]):
    """Editor items: ``x <edit> x' <to> y' -> y``; ``neighbours[i] = None`` reads ``x`` alone
    (and ``with_retrieval=False`` makes every item the seq2seq baseline's)."""

    def __init__(
        self,
        pairs: Sequence[Pair],
        neighbours: Sequence[int | None],
        memory: Sequence[Pair],
        vocab: CopyVocab,
        *,
        identity_p: float = 0.0,
        seed: int = 0,
        max_input: int = 600,
        max_output: int = 400,
    ) -> None:
        self.pairs = list(pairs)
        self.neighbours = list(neighbours)
        self.memory = memory
        self.vocab = vocab
        self.identity_p = identity_p
        self.rng = random.Random(seed)
        self.max_input = max_input
        self.max_output = max_output

    def __len__(self) -> int:
        return len(self.pairs)

    def example(
        self, index: int, identity: bool = False
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        pair = self.pairs[index]
        n = self.neighbours[index]
        if n is None:
            return pair.x[: self.max_input], pair.y[: self.max_output]
        other = self.memory[n]
        if identity:  # (x', x', y') -> y'
            return editor_input(other.x, other.x, other.y)[: self.max_input], other.y[
                : self.max_output
            ]
        return editor_input(pair.x, other.x, other.y)[: self.max_input], pair.y[: self.max_output]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        identity = self.identity_p > 0 and self.rng.random() < self.identity_p
        source, target = self.example(index, identity)
        output = (*target, EOS)
        runs = run_lengths(source, output)
        return {
            "input": np.array(self.vocab.ids(source), dtype=np.int64),
            "output": np.array(self.vocab.ids(output), dtype=np.int64),
            "runs": runs,
            "longest": longest_path(runs),
        }


def train_editor(
    train: EditorDataset,
    dev: EditorDataset,
    vocab: CopyVocab,
    out: Path,
    *,
    steps: int = 3000,
    net: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    init: Path | None = None,
) -> tuple[CopyEditor, dict[str, Any]]:
    """Train the span-copying editor (marginalised objective) on ``train``.

    ``init``: a checkpoint folder (``best/`` of an earlier run, e.g. the seq2seq baseline's)
    whose weights the editor starts from; it must be an editor of the same sizes and
    vocabulary.
    """
    from ripple.training.copy_data import collate_copy

    config = CopyConfig(
        vocab_size=len(vocab),
        blocked=tuple(sorted(vocab.blocked - {vocab.unk_id})),
        **(net or {}),
    )
    model = CopyEditor(config)
    if init is not None:
        warm_start(model, init)
    report = _fit(
        model,
        out,
        train,
        dev,
        collate_copy,
        {"system": "copy-span", **config.to_dict()},
        steps,
        settings or {},
    )
    return model, {**report, "init": str(init) if init is not None else None}


def warm_start(model: nn.Module, folder: Path) -> None:
    """Load the weights of the checkpoint in ``folder`` into ``model`` (same shapes)."""
    from ripple.models.errors import UsageError
    from ripple.training.checkpoints import load_checkpoint

    if not (folder / "model.safetensors").is_file():
        raise UsageError(f"{folder}: no model.safetensors to start the editor from")
    weights = load_checkpoint(folder).model
    own = model.state_dict()
    wrong = sorted(
        k
        for k in own.keys() | weights.keys()
        if k not in own or k not in weights or own[k].shape != weights[k].shape
    )
    if wrong:
        raise UsageError(
            f"{folder}: its weights do not fit this editor (differs in {', '.join(wrong[:3])})"
        )
    model.load_state_dict(weights)


def log(line: str, quiet: bool = False) -> None:
    if not quiet:
        print(line, file=sys.stderr, flush=True)


def train_settings(args: Any) -> dict[str, Any]:
    """The trainer settings every retrieve-and-edit ``ripple train`` command takes."""
    return {
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "eval_every": args.eval_every,
        "quiet": args.quiet,
        "threads": args.threads,
        "resume": bool(getattr(args, "resume", False)),
    }


def check_export(export: Path, names: Sequence[str], force: bool) -> None:
    """Refuse to start when a model folder to be written exists, unless ``force``."""
    for name in names:
        if (export / name).exists() and not force:
            from ripple.models.errors import UsageError

            raise UsageError(
                f"{export / name} exists; pass --force to replace it or another --export"
            )


def fresh_folder(folder: Path, force: bool) -> Path:
    """``folder``, emptied first when ``force`` (exporters refuse a folder that exists)."""
    if folder.exists() and force:
        shutil.rmtree(folder)
    return folder


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
