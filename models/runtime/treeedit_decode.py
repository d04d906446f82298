"""Decoding with an exported structural editor (Yao et al. 2021) through onnxruntime.

A tree-edit model folder (``ripple.training.treeedit_export``) holds three graphs, batch 1:

    edit.onnx      act_op, act_type, act_value, act_field, act_parent_type [1, A] (A may
                   be 0) -> z [1, D]
    encoder.onnx   node_type, node_value, node_field, node_depth, node_origin,
                   node_parent [1, N], z [1, D] -> H [1, N, D]
    step.onnx      H [1, N, D], src [1, M, D], z [1, D], slot_parent, slot_field,
                   slot_left, slot_right [1, S] -> op_logits [1, 4], delete_logits [1, N],
                   slot_logits [1, S], label_logits [1, S, L], source_logits [1, S, M];
                   the manifest's main graph
    vocab.json     ``TreeEditVocab.to_json``
    config.json    {"net": the net's sizes, "features": {"max_actions", "max_depth"},
                   "graphs": every graph's inputs and outputs}

``TreeEditModel.decode`` edits a tree in numpy: the context is encoded once (z), the
sources once (``src``); at each step the current tree is encoded, the step graph scores
every choice, the state's masks (``treeedit_features.state_masks``) remove the invalid
ones, and the action is chosen as op, then node or slot, then label or source (each the
best valid choice, or the best complete actions with ``beam`` > 1), applied to the
``EditState``, until STOP or ``max_steps``. Since only valid actions are applied, every
tree decoded satisfies the grammar's parent/field/child rules; it is complete (no
required field left empty) when decoding ended with STOP.

The loop is written over a ``Backend`` (the three graphs as numpy functions):
``decode_with`` runs it for any backend, ``score_state`` / ``greedy_action`` /
``best_actions`` are its single steps, so that training can roll the torch net out the
same way (``ripple.training.treeedit_export.TorchBackend``, for DAgger).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np

from ripple.models.edits.grammar import Grammar
from ripple.models.edits.treeedit import ADD, DELETE, STOP, SUBTREE, Action, EditState, Slot, TNode
from ripple.models.runtime.manifest import ModelError
from ripple.models.runtime.session import load_model
from ripple.models.suggest.treeedit_features import (
    MAX_ACTIONS,
    ActionInfo,
    StateMasks,
    TreeEditVocab,
    edit_features,
    slot_features,
    source_features,
    state_masks,
    tree_features,
)

if TYPE_CHECKING:
    from ripple.models.runtime.session import OnnxModel, OnnxPart

__all__ = [
    "CONFIG_FILE",
    "EDIT_FILE",
    "EDIT_INPUTS",
    "EDIT_OUTPUTS",
    "ENCODER_FILE",
    "ENCODER_INPUTS",
    "ENCODER_OUTPUTS",
    "STEP_FILE",
    "STEP_INPUTS",
    "STEP_OUTPUTS",
    "TREEEDIT_KIND",
    "VOCAB_FILE",
    "Backend",
    "Decoded",
    "Scored",
    "TreeEditModel",
    "best_actions",
    "decode_with",
    "encode_context",
    "greedy_action",
    "score_state",
]

TREEEDIT_KIND: Final = "treeedit"
EDIT_FILE: Final = "edit.onnx"
ENCODER_FILE: Final = "encoder.onnx"
STEP_FILE: Final = "step.onnx"
VOCAB_FILE: Final = "vocab.json"
CONFIG_FILE: Final = "config.json"
EDIT_INPUTS: Final = ("act_op", "act_type", "act_value", "act_field", "act_parent_type")
EDIT_OUTPUTS: Final = ("z",)
ENCODER_INPUTS: Final = (
    "node_type",
    "node_value",
    "node_field",
    "node_depth",
    "node_origin",
    "node_parent",
    "z",
)
ENCODER_OUTPUTS: Final = ("H",)
STEP_INPUTS: Final = ("H", "src", "z", "slot_parent", "slot_field", "slot_left", "slot_right")
STEP_OUTPUTS: Final = (
    "op_logits",
    "delete_logits",
    "slot_logits",
    "label_logits",
    "source_logits",
)


@dataclass
class Decoded:
    """One decoding: the edited tree, the actions applied (STOP last when it stopped),
    their total log probability (each level's choice among the valid ones), whether it
    ended with STOP and whether the tree has no required field left empty."""

    tree: TNode
    actions: list[Action]
    score: float
    stopped: bool
    complete: bool


def _log_softmax(logits: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Log probabilities over the valid entries (-inf elsewhere); all -inf if none."""
    logits = np.asarray(logits, dtype=np.float64)
    out = np.full(logits.shape, -np.inf)
    if not valid.any():
        return out
    chosen = logits[valid]
    top = chosen.max()
    out[valid] = chosen - top - np.log(np.exp(chosen - top).sum())
    return out


@dataclass
class _Hypothesis:
    state: EditState
    actions: list[Action]
    score: float
    stopped: bool = False


class TreeEditModel:
    """An exported structural editor: its three graphs, vocabulary and settings."""

    def __init__(self, model: OnnxModel) -> None:
        if model.manifest.kind != TREEEDIT_KIND:
            raise ModelError(
                f"a {model.manifest.kind!r} model, not a {TREEEDIT_KIND!r} one", model.directory
            )
        self.name = model.manifest.name
        self.directory = model.directory
        self.step_model = model
        try:
            config = model.read_json(CONFIG_FILE)
            self.net: dict[str, Any] = dict(config["net"])
            self.hidden = int(self.net["hidden"])
            self.max_actions = int(config.get("features", {}).get("max_actions", MAX_ACTIONS))
            self.vocab = TreeEditVocab.from_json(model.read_json(VOCAB_FILE))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"not a tree-edit model's settings ({exc})", model.directory) from None
        if len(self.vocab.labels) != int(self.net.get("label_vocab", -1)):
            raise ModelError("vocab.json's labels are not the net's", model.directory)
        self.edit_model: OnnxPart = model.part(EDIT_FILE)
        self.encoder: OnnxPart = model.part(ENCODER_FILE)
        for part, inputs, outputs in (
            (self.edit_model, EDIT_INPUTS, EDIT_OUTPUTS),
            (self.encoder, ENCODER_INPUTS, ENCODER_OUTPUTS),
        ):
            if set(part.inputs) != set(inputs) or set(part.outputs) != set(outputs):
                raise ModelError(f"{part.name} is not a tree-edit graph", model.directory)

    @classmethod
    def load(
        cls, directory: Path, device: str = "cpu", threads: int | None = None
    ) -> TreeEditModel:
        """Verify and load a model folder; ``ModelError`` if anything is wrong with it."""
        return cls(load_model(Path(directory), device=device, threads=threads))

    def metadata(self) -> dict[str, Any]:
        return dict(self.step_model.manifest.metadata)

    # -- the graphs ----------------------------------------------------------------------

    def encode_edit(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """z [1, D] from ``edit_features`` arrays (unbatched [A] or [1, A])."""
        return self.edit_model.run({k: _row(feeds[k]) for k in EDIT_INPUTS})["z"]

    def encode_tree(self, feeds: Mapping[str, np.ndarray], z: np.ndarray) -> np.ndarray:
        """H [1, N, D] from ``node_*`` arrays (unbatched or [1, N]) and z."""
        arrays = {k: _row(feeds[k]) for k in ENCODER_INPUTS if k != "z"}
        return self.encoder.run({**arrays, "z": z})["H"]

    def encode_sources(self, feeds: Mapping[str, np.ndarray], z: np.ndarray) -> np.ndarray:
        """src [1, M, D] from ``src_*`` arrays (the encoder reads them as ``node_*``)."""
        renamed = {f"node_{k[4:]}": v for k, v in feeds.items() if k.startswith("src_")}
        return self.encode_tree(renamed, z)

    def step(
        self, h: np.ndarray, src: np.ndarray, z: np.ndarray, slots: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The step graph's five outputs (batch axis kept)."""
        feeds = {"H": h, "src": src, "z": z, **{k: _row(slots[k]) for k in STEP_INPUTS[3:]}}
        return self.step_model.run(feeds)

    # -- decoding ------------------------------------------------------------------------

    def decode(
        self,
        tree: TNode,
        sources: Sequence[TNode],
        context_actions: Sequence[ActionInfo],
        grammar: Grammar,
        max_steps: int = 40,
        beam: int = 1,
    ) -> Decoded:
        """Edit ``tree`` (module docstring; FRAGMENT-rooted, ``treeedit.from_node``).
        ``sources``: the trees SUBTREE copies from (the original tree, then the context
        trees; ``EditState``'s argument); ``context_actions``:
        ``treeedit_features.context_actions`` of the context edits."""
        return decode_with(
            self, self.vocab, tree, sources, context_actions, grammar, max_steps, beam,
            self.max_actions,
        )  # fmt: skip


class Backend(Protocol):
    """What decoding needs of a model: the three graphs as numpy functions (batch 1).
    ``TreeEditModel`` runs them in onnxruntime; training can wrap the torch net."""

    hidden: int

    def encode_edit(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray: ...
    def encode_tree(self, feeds: Mapping[str, np.ndarray], z: np.ndarray) -> np.ndarray: ...
    def encode_sources(self, feeds: Mapping[str, np.ndarray], z: np.ndarray) -> np.ndarray: ...
    def step(
        self, h: np.ndarray, src: np.ndarray, z: np.ndarray, slots: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]: ...


@dataclass
class Scored:
    """One state scored by the step graph: its slots, its masks and the log probabilities
    of the op [4] and DELETE node [N] among the valid ones; the raw slot [S], label [S, L]
    and source [S, M] scores (normalised once the op or slot is chosen)."""

    slots: list[Slot]
    masks: StateMasks
    op: np.ndarray
    delete: np.ndarray
    slot: np.ndarray
    label: np.ndarray
    source: np.ndarray


def encode_context(
    backend: Backend,
    vocab: TreeEditVocab,
    sources: Sequence[TNode],
    context_actions: Sequence[ActionInfo],
    max_actions: int = MAX_ACTIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """z [1, D] of the context actions and src [1, M, D] of the sources (once per edit)."""
    z = backend.encode_edit(edit_features(context_actions, vocab, max_actions))
    src_feeds = source_features(sources, vocab)
    if len(src_feeds["src_type"]):
        return z, backend.encode_sources(src_feeds, z)
    return z, np.zeros((1, 0, backend.hidden), dtype=np.float32)


_NO_SLOT: Final = {
    "slot_parent": np.zeros(1, np.int64),
    "slot_field": np.zeros(1, np.int64),
    "slot_left": np.full(1, -1, np.int64),
    "slot_right": np.full(1, -1, np.int64),
}


def score_state(
    backend: Backend, vocab: TreeEditVocab, state: EditState, src: np.ndarray, z: np.ndarray
) -> Scored:
    """Encode the current tree and run the step graph on it (``encode_context``'s z, src)."""
    slots = state.slots()
    h = backend.encode_tree(tree_features(state, vocab), z)
    masks = state_masks(state, slots, vocab)
    # The step graph needs S >= 1 and M >= 1: placeholders, never valid, where there are none.
    slot_feeds = slot_features(state, slots, vocab) if slots else _NO_SLOT
    if src.shape[1] == 0:
        src = np.zeros((1, 1, backend.hidden), dtype=np.float32)
    out = backend.step(h, src, z, slot_feeds)
    n_slots, n_src = len(slots), len(state.sources)
    return Scored(
        slots,
        masks,
        _log_softmax(out["op_logits"][0], masks.op),
        _log_softmax(out["delete_logits"][0], masks.delete),
        out["slot_logits"][0][:n_slots],
        out["label_logits"][0][:n_slots],
        out["source_logits"][0][:n_slots, :n_src],
    )


def greedy_action(scored: Scored, vocab: TreeEditVocab) -> tuple[Action, float] | None:
    """The best valid action (op, then node or slot, then label or source) and its log
    probability; None when no action is valid."""
    masks = scored.masks
    if not masks.op.any():
        return None
    op = int(np.argmax(scored.op))
    total = float(scored.op[op])
    if op == STOP:
        return Action(STOP), total
    if op == DELETE:
        node = int(np.argmax(scored.delete))
        return Action(DELETE, node=node), total + float(scored.delete[node])
    slot_lp = _log_softmax(scored.slot, masks.slot(op))
    k = int(np.argmax(slot_lp))
    total += float(slot_lp[k])
    if op == ADD:
        label_lp = _log_softmax(scored.label[k], masks.label_rows[k])
        j = int(np.argmax(label_lp))
        return Action(ADD, slot=scored.slots[k], label=vocab.labels[j]), total + float(label_lp[j])
    source_lp = _log_softmax(scored.source[k], masks.source[k])
    j = int(np.argmax(source_lp))
    return Action(SUBTREE, slot=scored.slots[k], source=j), total + float(source_lp[j])


def best_actions(scored: Scored, vocab: TreeEditVocab, width: int) -> list[tuple[float, Action]]:
    """The ``width`` best valid actions of one state by joint log probability, best first."""
    masks = scored.masks
    out: list[tuple[float, Action]] = []
    if masks.op[STOP]:
        out.append((float(scored.op[STOP]), Action(STOP)))
    if masks.op[DELETE]:
        for node in np.flatnonzero(masks.delete):
            lp = float(scored.op[DELETE] + scored.delete[node])
            out.append((lp, Action(DELETE, node=int(node))))
    for op, content_scores, valid in (
        (ADD, scored.label, masks.label_rows),
        (SUBTREE, scored.source, masks.source),
    ):
        if not masks.op[op]:
            continue
        slot_lp = _log_softmax(scored.slot, masks.slot(op))
        for k in np.flatnonzero(masks.slot(op)):
            content = _log_softmax(content_scores[k], valid[k])
            for j in np.argsort(-content, kind="stable")[:width]:
                if not np.isfinite(content[j]):
                    break
                lp = float(scored.op[op] + slot_lp[k] + content[j])
                if op == ADD:
                    action = Action(ADD, slot=scored.slots[k], label=vocab.labels[int(j)])
                else:
                    action = Action(SUBTREE, slot=scored.slots[k], source=int(j))
                out.append((lp, action))
    out.sort(key=lambda c: -c[0])
    return out[:width]


def decode_with(
    backend: Backend,
    vocab: TreeEditVocab,
    tree: TNode,
    sources: Sequence[TNode],
    context_actions: Sequence[ActionInfo],
    grammar: Grammar,
    max_steps: int = 40,
    beam: int = 1,
    max_actions: int = MAX_ACTIONS,
) -> Decoded:
    """``TreeEditModel.decode`` with any ``Backend`` (the torch net in training)."""
    if max_steps < 0 or beam < 1:
        raise ValueError("max_steps must be >= 0 and beam >= 1")
    z, src = encode_context(backend, vocab, sources, context_actions, max_actions)
    state = EditState(tree, grammar, list(sources))
    if beam > 1:
        return _beam(backend, vocab, state, src, z, max_steps, beam)
    actions: list[Action] = []
    total = 0.0
    for _ in range(max_steps):
        chosen = greedy_action(score_state(backend, vocab, state, src, z), vocab)
        if chosen is None:
            break  # nothing is valid (no known label or source fits a hole)
        action, lp = chosen
        total += lp
        actions.append(action)
        if action.op == STOP:
            break
        state.apply(action)
    stopped = bool(actions) and actions[-1].op == STOP
    return Decoded(state.tree, actions, total, stopped, not state.holes())


def _beam(
    backend: Backend,
    vocab: TreeEditVocab,
    start: EditState,
    src: np.ndarray,
    z: np.ndarray,
    max_steps: int,
    beam: int,
) -> Decoded:
    live = [_Hypothesis(start, [], 0.0)]
    done: list[_Hypothesis] = []
    for _ in range(max_steps):
        expanded: list[tuple[float, _Hypothesis, Action]] = []
        for hyp in live:
            scored = score_state(backend, vocab, hyp.state, src, z)
            for lp, action in best_actions(scored, vocab, beam):
                expanded.append((hyp.score + lp, hyp, action))
        expanded.sort(key=lambda c: -c[0])
        live = []
        for score, hyp, action in expanded:
            if action.op == STOP:
                done.append(_Hypothesis(hyp.state, [*hyp.actions, action], score, True))
            elif len(live) < beam:
                state = hyp.state.copy()
                state.apply(action)
                live.append(_Hypothesis(state, [*hyp.actions, action], score))
        done = sorted(done, key=lambda d: -d.score)[:beam]
        if not live or (done and done[0].score >= live[0].score):
            break  # log probabilities only fall: no live hypothesis can beat the best
    pool = done or live or [_Hypothesis(start, [], 0.0)]
    best = max(pool, key=lambda d: d.score)
    return Decoded(best.state.tree, best.actions, best.score, best.stopped, not best.state.holes())


def _row(array: np.ndarray) -> np.ndarray:
    """An unbatched array as a batch of one (a batched one as is), int64 ids kept."""
    array = np.asarray(array)
    return array if array.ndim == 2 else array[None]
