"""Training the structural editor (Yao et al. 2021) on ``CompletionExample``s, with DAgger.

* ``prepare``: an example's P and P' as edit trees (``treeedit.from_node`` on the
  literal-normalised trees the examples hold), its context edits as tree pairs, and the
  sources a SUBTREE may copy from: P itself, then the context edits' after-trees (nearest
  first, while the sources stay under ``MAX_SOURCE_NODES``). The server builds the same
  from a live request (``ripple.models.suggest.treeedit_predictor``).
* ``gold_items``: supervised learning: the states the expert's actions
  (``treeedit.gold_actions``) pass through, each with its next gold action
  (``treeedit_features.training_item``).
* ``dagger_items``: imitation learning: the editor (exported, run by onnxruntime exactly
  as the server runs it) edits P on its own; every state it visits is labelled with the
  expert's next action from that state to P' (the dynamic program run from the current
  tree), so the editor learns to recover from its own mistakes.
* ``train_treeedit``: the shared ``Trainer`` on the gold states, then ``dagger_rounds``
  rounds that add the states the editor visits on ``dagger_examples`` training examples
  to the data and train on; dev exact match by decoding is measured after each phase.
* ``evaluate_treeedit``: greedy decoding through onnxruntime on examples: exact match of
  the edited tree with P' and micro precision/recall of the actions as
  ``(op, type, value, field, parent type)`` tuples.
* ``transfer_pairs`` / ``evaluate_transfer``: Yao et al.'s one-shot transfer: examples
  of one commit whose edits have one pattern (``edit_pattern``: the same tree-edit
  actions, the same tokens added) at different places; the edit of one (its before ->
  after) is the only context of the other.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import torch
from torch.utils.data import Dataset

from ripple.models.edits.completion import CompletionExample
from ripple.models.edits.grammar import Grammar, python_grammar
from ripple.models.edits.treeedit import (
    ADD,
    STOP,
    EditState,
    TNode,
    from_node,
    gold_actions,
    same_tree,
)
from ripple.models.nets import Batch
from ripple.models.nets.treeedit import TreeEditConfig, TreeEditNet
from ripple.models.suggest.treeedit_context import (
    MAX_SOURCE_NODES,
    context_trees,
    prepare_parts,
)
from ripple.models.suggest.treeedit_features import (
    ActionInfo,
    TreeEditVocab,
    collate_items,
    describe_actions,
    edit_features,
    source_features,
    training_item,
)
from ripple.training.progress import Progress

if TYPE_CHECKING:
    from ripple.models.runtime.treeedit_decode import TreeEditModel

__all__ = [
    "MAX_SOURCE_NODES",
    "Prepared",
    "StateDataset",
    "collate_treeedit",
    "dagger_items",
    "evaluate_transfer",
    "evaluate_treeedit",
    "gold_items",
    "prepare",
    "train_treeedit",
    "transfer_pairs",
]

MAX_STEPS: Final = 40  # decoding: actions at most (the gold scripts' p99 is far below)
# The editor's sizes for CPU training (TreeEditConfig's defaults are twice as wide): at
# hidden 64 without dropout a batch of 32 states takes about a third of the time.
DEFAULT_NET: Final = {"hidden": 64, "ffn": 128, "dropout": 0.0}
VOCAB_FILE: Final = "vocab.json"


@dataclass
class Prepared:
    """One example as the structural editor sees it (module docstring)."""

    example: CompletionExample
    before: TNode
    after: TNode
    context: list[tuple[TNode, TNode]]
    sources: list[TNode]  # source trees: P, then context after-trees
    infos: list[ActionInfo]  # the context edits' gold actions, described


def prepare(example: CompletionExample, grammar: Grammar) -> Prepared | None:
    """``Prepared`` for an example; None when P or P' is not a tree the grammar accepts
    (the editor could never produce it) or the expert cannot edit P into P'."""
    try:
        before = from_node(example.before, grammar)
        after = from_node(example.after, grammar)
    except ValueError:
        return None
    context = context_trees(example.context_edits, grammar)
    sources, infos = prepare_parts(before, context, grammar)
    return Prepared(example, before, after, context, sources, infos)


def _features(
    p: Prepared, vocab: TreeEditVocab, grammar: Grammar
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    edit = edit_features(p.infos, vocab)
    src = source_features(p.sources, vocab)
    return edit, src


def gold_items(p: Prepared, vocab: TreeEditVocab, grammar: Grammar) -> list[dict[str, np.ndarray]]:
    """The (state, next gold action) items along the expert's path from P to P'."""
    edit, src = _features(p, vocab, grammar)
    state = EditState(p.before, grammar, p.sources)
    items = []
    for action in gold_actions(p.before, p.after, grammar, p.sources):
        items.append(training_item(state, action, vocab, edit, src))
        if action.op == STOP:
            break
        state.apply(action)
    return items


def dagger_items(
    p: Prepared, model: TreeEditModel, vocab: TreeEditVocab, grammar: Grammar
) -> tuple[list[dict[str, np.ndarray]], bool]:
    """The states the editor visits on its own from P, each with the expert's next action
    towards P' from there; and whether the editor's own result was exact."""
    decoded = model.decode(p.before, p.sources, p.infos, grammar, max_steps=MAX_STEPS)
    exact = decoded.stopped and same_tree(decoded.tree, p.after)
    edit, src = _features(p, vocab, grammar)
    state = EditState(p.before, grammar, p.sources)
    items: list[dict[str, np.ndarray]] = []
    for action in decoded.actions:
        expert = gold_actions(state.tree, p.after, grammar, p.sources)[0]
        items.append(training_item(state, expert, vocab, edit, src))
        if action.op == STOP:
            break
        state.apply(action)
    else:  # stopped by the step limit: the state it ended in is visited too
        if not decoded.stopped:
            expert = gold_actions(state.tree, p.after, grammar, p.sources)[0]
            items.append(training_item(state, expert, vocab, edit, src))
    return items, exact


class StateDataset(Dataset[dict[str, np.ndarray]]):
    """(state, action) items; the arrays of one example's items share its edit and
    source arrays."""

    def __init__(self, items: Sequence[dict[str, np.ndarray]]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.items[index]


def collate_treeedit(items: Sequence[Mapping[str, np.ndarray]]) -> Batch:
    """``collate_items`` as torch tensors (the trainer's batches)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in collate_items(items).items()}


def _items(
    prepared: Sequence[Prepared],
    vocab: TreeEditVocab,
    grammar: Grammar,
    quiet: bool,
    what: str,
) -> tuple[list[dict[str, np.ndarray]], int]:
    items: list[dict[str, np.ndarray]] = []
    failed = 0
    with Progress(len(prepared), what, quiet=quiet) as bar:
        for p in prepared:
            try:
                items.extend(gold_items(p, vocab, grammar))
            except ValueError:  # a gold action the featurisation refuses: counted
                failed += 1
            bar.advance()
    return items, failed


def _prepare_all(
    examples: Sequence[CompletionExample], grammar: Grammar, quiet: bool, what: str
) -> list[Prepared]:
    out = []
    with Progress(len(examples), what, quiet=quiet) as bar:
        for example in examples:
            p = prepare(example, grammar)
            if p is not None:
                out.append(p)
            bar.advance()
    return out


def _export_tmp(net: TreeEditNet, vocab: TreeEditVocab, folder: Path) -> TreeEditModel:
    from ripple.models.runtime.treeedit_decode import TreeEditModel
    from ripple.training.treeedit_export import export_treeedit

    if folder.exists():
        shutil.rmtree(folder)
    export_treeedit(net, vocab, folder)
    return TreeEditModel.load(folder, threads=1)


def _fit(
    net: TreeEditNet,
    config: TreeEditConfig,
    train: StateDataset,
    dev: StateDataset | None,
    out_dir: Path,
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    from ripple.training.trainer import TrainConfig, Trainer

    trainer = Trainer(
        net,
        TrainConfig(out_dir=str(out_dir), **settings),
        train,  # type: ignore[arg-type]
        dev,  # type: ignore[arg-type]
        collate_treeedit,  # type: ignore[arg-type]
        model_config=config.to_dict(),
    )
    result = trainer.run()
    trainer.load_best()
    net.eval()
    return {
        "steps": result.steps,
        "best_step": result.best_step,
        "best_dev_teacher_forced_accuracy": result.best_metric,
        "stopped_early": result.stopped_early,
    }


def train_treeedit(
    train_examples: Sequence[CompletionExample],
    dev_examples: Sequence[CompletionExample],
    out_dir: Path,
    *,
    steps: int | None = 3000,
    dagger_rounds: int = 2,
    dagger_examples: int = 1500,
    dagger_steps: int = 1000,
    epochs: int = 100,
    batch_size: int = 32,
    lr: float = 1e-3,
    grad_clip: float = 1.0,
    patience: int = 5,
    eval_every: int = 250,
    threads: int = 0,
    quiet: bool = False,
    seed: int = 0,
    net: Mapping[str, Any] | None = None,
    max_dev_decode: int = 400,
    log: Callable[[str], None] | None = None,
) -> tuple[TreeEditNet, TreeEditVocab, dict[str, Any]]:
    """Supervised training on the expert's states, then DAgger (module docstring).

    Returns the model of the phase with the best dev exact match by greedy decoding
    through onnxruntime (on at most ``max_dev_decode`` dev examples; ``chosen_phase`` in
    the report), its vocabulary and a report with every phase's dev exact match, which
    is what shows the effect of the imitation rounds."""
    from ripple.training.trainer import seed_everything

    say = log or (lambda line: None)
    started = time.monotonic()
    if threads:
        torch.set_num_threads(threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    grammar = python_grammar()
    train = _prepare_all(train_examples, grammar, quiet, "edit trees (train)")
    dev = _prepare_all(dev_examples, grammar, quiet, "edit trees (dev)")
    if not train:
        raise ValueError("no training example converts to edit trees")
    trees = [
        t for p in train for t in (p.before, p.after, *(x for pair in p.context for x in pair))
    ]
    vocab = TreeEditVocab.build(trees)
    (out_dir / VOCAB_FILE).write_text(json.dumps(vocab.to_json(), ensure_ascii=False) + "\n")
    train_items, train_failed = _items(train, vocab, grammar, quiet, "gold states (train)")
    dev_items, dev_failed = _items(dev, vocab, grammar, quiet, "gold states (dev)")
    say(
        f"treeedit: {len(train)} of {len(train_examples)} training examples convert "
        f"({len(train_items)} states), dev {len(dev)} of {len(dev_examples)}"
    )
    seed_everything(seed)
    config = TreeEditConfig(
        type_vocab=len(vocab.types),
        value_vocab=len(vocab.values),
        field_vocab=len(vocab.fields),
        label_vocab=len(vocab.labels),
        **{**DEFAULT_NET, **dict(net or {})},
    )
    model = TreeEditNet(config)
    settings: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "grad_clip": grad_clip,
        "seed": seed,
        "eval_every": eval_every,
        "patience": patience,
        "max_steps": steps,
        "cpu_threads": threads,
        "quiet": quiet,
    }
    dev_set = StateDataset(dev_items) if dev_items else None
    report: dict[str, Any] = {
        "parameters": model.parameter_count(),
        "train_examples": len(train_examples),
        "train_converted": len(train),
        "train_states": len(train_items),
        "train_featurise_failed": train_failed,
        "dev_examples": len(dev_examples),
        "dev_converted": len(dev),
        "dev_featurise_failed": dev_failed,
        "vocab": {
            "types": len(vocab.types),
            "values": len(vocab.values),
            "fields": len(vocab.fields),
            "labels": len(vocab.labels),
        },
        "phases": [],
    }
    rng = random.Random(seed)
    dev_decode = dev if len(dev) <= max_dev_decode else rng.sample(dev, max_dev_decode)
    phase = _fit(
        model, config, StateDataset(train_items), dev_set, out_dir / "supervised", settings
    )
    exact = _decode_exact(model, vocab, dev_decode, grammar, out_dir / "tmp-model", quiet)
    report["phases"].append({"phase": "supervised", **phase, "dev_exact": exact})
    say(f"treeedit supervised: dev exact {exact:.3f} ({json.dumps(phase)})")
    best = ("supervised", exact, copy.deepcopy(model.state_dict()))
    data = list(train_items)
    for round_ in range(1, dagger_rounds + 1):
        runtime = _export_tmp(model, vocab, out_dir / "tmp-model")
        chosen = train if len(train) <= dagger_examples else rng.sample(train, dagger_examples)
        added: list[dict[str, np.ndarray]] = []
        own_exact = 0
        with Progress(len(chosen), f"DAgger round {round_}: editor runs", quiet=quiet) as bar:
            for p in chosen:
                try:
                    items, ok = dagger_items(p, runtime, vocab, grammar)
                except ValueError:
                    bar.advance()
                    continue
                added.extend(items)
                own_exact += ok
                bar.advance()
        data.extend(added)
        settings = {**settings, "max_steps": dagger_steps}
        phase = _fit(
            model, config, StateDataset(data), dev_set, out_dir / f"dagger-{round_}", settings
        )
        exact = _decode_exact(model, vocab, dev_decode, grammar, out_dir / "tmp-model", quiet)
        report["phases"].append(
            {
                "phase": f"dagger-{round_}",
                "visited_states": len(added),
                "train_exact_before_round": own_exact / max(len(chosen), 1),
                **phase,
                "dev_exact": exact,
            }
        )
        say(f"treeedit DAgger round {round_}: {len(added)} states added, dev exact {exact:.3f}")
        if not exact <= best[1]:  # a better phase (nan, no dev set: the latest)
            best = (f"dagger-{round_}", exact, copy.deepcopy(model.state_dict()))
    # The phase whose editor decodes dev best is the one returned (and exported).
    model.load_state_dict(best[2])
    model.eval()
    report["chosen_phase"] = best[0]
    shutil.rmtree(out_dir / "tmp-model", ignore_errors=True)
    report["dev_decoded"] = len(dev_decode)
    report["wall_s_training"] = round(time.monotonic() - started, 1)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    return model, vocab, report


def _decode_exact(
    net: TreeEditNet,
    vocab: TreeEditVocab,
    prepared: Sequence[Prepared],
    grammar: Grammar,
    folder: Path,
    quiet: bool,
) -> float:
    if not prepared:
        return float("nan")
    runtime = _export_tmp(net, vocab, folder)
    hits = 0
    with Progress(len(prepared), "decoding dev", quiet=quiet) as bar:
        for p in prepared:
            decoded = runtime.decode(
                p.before, p.sources, p.infos, grammar, max_steps=MAX_STEPS)  # fmt: skip
            hits += decoded.stopped and same_tree(decoded.tree, p.after)
            bar.advance()
    return hits / len(prepared)


# -- evaluation ------------------------------------------------------------------------------


def _signature(infos: Sequence[ActionInfo]) -> list[tuple[Any, ...]]:
    return [(i.op, i.type, i.value, i.field, i.parent_type) for i in infos if i.op != STOP]


def evaluate_treeedit(
    model: TreeEditModel,
    examples: Sequence[CompletionExample],
    *,
    beam: int = 1,
    quiet: bool = False,
) -> tuple[list[list[tuple[Any, ...]] | None], list[list[tuple[Any, ...]] | None], list[bool]]:
    """Gold and predicted action signatures (None: the example does not convert, a miss)
    and whether each decoded tree is exactly P'."""
    grammar = python_grammar()
    gold: list[list[tuple[Any, ...]] | None] = []
    predicted: list[list[tuple[Any, ...]] | None] = []
    exact: list[bool] = []
    with Progress(len(examples), "decoding treeedit", quiet=quiet) as bar:
        for example in examples:
            bar.advance()
            p = prepare(example, grammar)
            if p is None:
                gold.append(None)
                predicted.append(None)
                exact.append(False)
                continue
            want = gold_actions(p.before, p.after, grammar, p.sources)
            gold.append(_signature(describe_actions(p.before, want, grammar, p.sources)))
            decoded = model.decode(
                p.before, p.sources, p.infos, grammar, max_steps=MAX_STEPS, beam=beam)  # fmt: skip
            predicted.append(
                _signature(describe_actions(p.before, decoded.actions, grammar, p.sources))
            )
            exact.append(decoded.stopped and same_tree(decoded.tree, p.after))
    return gold, predicted, exact


def edit_pattern(p: Prepared, grammar: Grammar) -> tuple[tuple[Any, ...], ...]:
    """The shape of an example's edit: its gold actions as (op, type, field, parent type),
    with the value only of the tokens it adds (ADD); what a DELETE removes or a SUBTREE
    copies is left abstract, so one edit made at two places has one pattern."""
    actions = gold_actions(p.before, p.after, grammar, p.sources)
    return tuple(
        (i.op, i.type, i.field, i.parent_type, i.value if i.op == ADD else None)
        for i in describe_actions(p.before, actions, grammar, p.sources)
        if i.op != STOP
    )


def transfer_pairs(
    examples: Sequence[CompletionExample], max_pairs: int = 1000, seed: int = 0
) -> list[tuple[int, int]]:
    """(i, j) index pairs of examples of one commit, at different places, whose edits have
    one pattern (``edit_pattern``): one edit repeated across a commit. Each ordered pair
    once; at most ``max_pairs`` (a seeded sample)."""
    grammar = python_grammar()
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        p = prepare(example, grammar)
        if p is None:
            continue
        pattern = edit_pattern(p, grammar)
        if pattern:
            groups[(example.repo, example.commit, pattern)].append(i)
    pairs = [
        (i, j)
        for members in groups.values()
        for i in members
        for j in members
        if i != j
        and (examples[i].path, examples[i].line) != (examples[j].path, examples[j].line)
    ]
    rng = random.Random(seed)
    if len(pairs) > max_pairs:
        pairs = rng.sample(pairs, max_pairs)
    return sorted(pairs)


def evaluate_transfer(
    model: TreeEditModel,
    examples: Sequence[CompletionExample],
    pairs: Sequence[tuple[int, int]],
    *,
    quiet: bool = False,
) -> dict[str, Any]:
    """One-shot transfer (Yao et al. §5.3): the edit of example i (its P -> P') is the
    only context of example j; exact match of j's edited tree with its P'. Beside it, the
    same examples with no context at all and with their own context."""
    grammar = python_grammar()
    cache: dict[int, Prepared | None] = {}

    def get(i: int) -> Prepared | None:
        if i not in cache:
            cache[i] = prepare(examples[i], grammar)
        return cache[i]

    counts = Counter[str]()
    with Progress(len(pairs), "one-shot transfer", quiet=quiet) as bar:
        for i, j in pairs:
            bar.advance()
            donor, p = get(i), get(j)
            if donor is None or p is None:
                counts["skipped"] += 1
                continue
            counts["pairs"] += 1
            for name, context in (
                ("transfer", [(donor.before, donor.after)]),
                ("no_context", []),
            ):
                sources, infos = prepare_parts(p.before, context, grammar)
                decoded = model.decode(
                    p.before, sources, infos, grammar, max_steps=MAX_STEPS)  # fmt: skip
                counts[name] += decoded.stopped and same_tree(decoded.tree, p.after)
            decoded = model.decode(
                p.before, p.sources, p.infos, grammar, max_steps=MAX_STEPS)  # fmt: skip
            counts["own_context"] += decoded.stopped and same_tree(decoded.tree, p.after)
    n = max(counts["pairs"], 1)
    return {
        "pairs": counts["pairs"],
        "skipped": counts["skipped"],
        "exact_transfer": counts["transfer"] / n,
        "exact_own_context": counts["own_context"] / n,
        "exact_no_context": counts["no_context"] / n,
    }


def load_vocab(path: Path) -> TreeEditVocab:
    return TreeEditVocab.from_json(json.loads(path.read_text(encoding="utf-8")))
