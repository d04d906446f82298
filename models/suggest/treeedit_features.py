"""The structural editor's inputs as arrays (Yao et al. 2021): shared by training and serving.

numpy only. The same functions cut the arrays the torch editor
(``ripple.models.nets.treeedit``) is trained on and the ones its exported graphs read
(``ripple.models.runtime.treeedit_decode``), so training and serving cannot drift apart.

* ``TreeEditVocab``: node types, leaf values, field names and the ADD labels (every inner
  type, the frequent ``(type, value)`` leaves, and per leaf type an unknown leaf
  ``(type, UNKNOWN)`` that is a training target but never a valid ADD: unseen tokens come
  in by SUBTREE from the sources). JSON round-trip.
* ``node_arrays`` / ``tree_features`` / ``source_features``: a tree (or the sources'
  forest) in pre-order as ``type``, ``value`` (0 none, 1 unknown), ``field``, ``depth``
  (clipped at ``MAX_DEPTH``), ``origin`` (0 original, 1 added, 2 copied, 3 context) and
  ``parent`` (-1 for a root) arrays, prefixed ``node_`` or ``src_``.
* ``ActionInfo`` / ``describe_actions`` / ``context_actions`` / ``edit_features``: what the
  edit encoder reads of the context edits' gold actions (``act_op``, ``act_type``,
  ``act_value``, ``act_field``, ``act_parent_type``; at most ``MAX_ACTIONS``).
* ``slot_features``: ``slot_parent``, ``slot_field``, ``slot_left``, ``slot_right`` (the
  neighbours' pre-order indexes in the field, -1 none).
* ``state_masks``: which choices are valid in an ``EditState`` (op, node, slot for ADD
  and for SUBTREE, label per slot, source per slot).
* ``action_targets``: a gold ``Action``'s indexes in a state (op, node or slot, label or
  source).
* ``training_item`` / ``collate_items``: one (state, gold action) pair as the arrays of
  ``TreeEditNet.loss``, and a padded batch of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from ripple.models.edits.grammar import Grammar
from ripple.models.edits.treeedit import (
    ADD,
    DELETE,
    ORIGINAL,
    STOP,
    SUBTREE,
    Action,
    EditState,
    Slot,
    TNode,
    gold_actions,
)

__all__ = [
    "ACT_FIELDS",
    "CONTEXT_ORIGIN",
    "MAX_ACTIONS",
    "MAX_DEPTH",
    "NODE_FIELDS",
    "N_OPS",
    "SLOT_FIELDS",
    "UNKNOWN",
    "ActionInfo",
    "ActionTargets",
    "StateMasks",
    "TreeEditVocab",
    "action_targets",
    "collate_items",
    "context_actions",
    "describe_actions",
    "edit_features",
    "node_arrays",
    "slot_features",
    "source_features",
    "state_masks",
    "training_item",
    "tree_features",
]

PAD: Final = "<pad>"
UNKNOWN: Final = "<unk>"
NONE_VALUE: Final = "<none>"
N_OPS: Final = 4  # STOP, DELETE, ADD, SUBTREE
MAX_DEPTH: Final = 31  # depths above it are clipped
MAX_ACTIONS: Final = 64  # context actions read by the edit encoder
CONTEXT_ORIGIN: Final = 3  # the origin id of a context tree's nodes among the sources
NODE_FIELDS: Final = ("type", "value", "field", "depth", "origin", "parent")
ACT_FIELDS: Final = ("op", "type", "value", "field", "parent_type")
SLOT_FIELDS: Final = ("parent", "field", "left", "right")
Label = tuple[str, str | None]


@dataclass
class TreeEditVocab:
    """Types, values, fields (id 0 padding / none, 1 unknown) and ADD labels."""

    types: list[str]
    values: list[str]
    fields: list[str]
    labels: list[Label]
    _type_ids: dict[str, int] = field(init=False, repr=False, compare=False)
    _value_ids: dict[str, int] = field(init=False, repr=False, compare=False)
    _field_ids: dict[str, int] = field(init=False, repr=False, compare=False)
    _label_ids: dict[Label, int] = field(init=False, repr=False, compare=False)
    # (L,) bool: the labels that are not an unknown leaf
    _known: np.ndarray = field(init=False, repr=False, compare=False)
    _rows: dict[tuple[Grammar, str, str], np.ndarray] = field(init=False, repr=False, compare=False)
    _row_any: dict[int, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.types[:2] != [PAD, UNKNOWN] or self.fields[:2] != [PAD, UNKNOWN]:
            raise ValueError(f"types and fields start with {PAD}, {UNKNOWN}")
        if self.values[:2] != [NONE_VALUE, UNKNOWN]:
            raise ValueError(f"values start with {NONE_VALUE}, {UNKNOWN}")
        if not self.labels:
            raise ValueError("a vocabulary needs at least one label")
        self._type_ids = {t: i for i, t in enumerate(self.types)}
        self._value_ids = {v: i for i, v in enumerate(self.values)}
        self._field_ids = {f: i for i, f in enumerate(self.fields)}
        self._label_ids = {label: i for i, label in enumerate(self.labels)}
        if len(self._label_ids) != len(self.labels):
            raise ValueError("a label is listed twice")
        self._known = np.array([value != UNKNOWN for _, value in self.labels], dtype=bool)
        self._rows = {}
        self._row_any = {}

    @classmethod
    def build(
        cls,
        trees: Iterable[TNode],
        *,
        min_value_count: int = 2,
        max_values: int = 20_000,
        min_label_count: int = 2,
        max_labels: int = 5_000,
    ) -> TreeEditVocab:
        """Count over training trees (befores, afters and context trees): every type and
        field seen; the values seen at least ``min_value_count`` times (the
        ``max_values`` most frequent); an ADD label for every inner type, for the leaves
        ``(type, value)`` seen at least ``min_label_count`` times (the ``max_labels`` most
        frequent) and an unknown leaf per leaf type. Sizes include the specials."""
        types: Counter[str] = Counter()
        fields: Counter[str] = Counter()
        values: Counter[str] = Counter()
        inner: Counter[str] = Counter()
        leaves: Counter[Label] = Counter()
        for root in trees:
            for node in root.pre_order():
                types[node.type] += 1
                fields[node.field] += 1
                if node.value is None:
                    inner[node.type] += 1
                else:
                    values[node.value] += 1
                    leaves[(node.type, node.value)] += 1

        def ranked(counts: Counter[Any], least: int, size: int) -> list[Any]:
            items = sorted(counts.items(), key=lambda kv: (-kv[1], repr(kv[0])))
            return [k for k, n in items if n >= least][: max(0, size)]

        leaf_types = sorted({t for t, _ in leaves})
        kept_leaves = [
            label for label in ranked(leaves, min_label_count, max_labels) if label[1] != UNKNOWN
        ]
        labels: list[Label] = [(t, None) for t in sorted(inner)]
        labels += [(t, UNKNOWN) for t in leaf_types]
        labels += kept_leaves
        if not labels:
            labels = [(UNKNOWN, UNKNOWN)]
        return cls(
            [PAD, UNKNOWN, *sorted(t for t in types if t not in (PAD, UNKNOWN))],
            [NONE_VALUE, UNKNOWN]
            + [
                v
                for v in ranked(values, min_value_count, max_values)
                if v not in (NONE_VALUE, UNKNOWN)
            ],
            [PAD, UNKNOWN, *sorted(f for f in fields if f not in (PAD, UNKNOWN))],
            labels,
        )

    # -- ids -------------------------------------------------------------------------------

    def type_id(self, node_type: str) -> int:
        return self._type_ids.get(node_type, 1)

    def value_id(self, value: str | None) -> int:
        return 0 if value is None else self._value_ids.get(value, 1)

    def field_id(self, name: str) -> int:
        return self._field_ids.get(name, 1)

    def label_id(self, node_type: str, value: str | None) -> int:
        """The label of an added node: exact, else the type's unknown leaf, else -1."""
        exact = self._label_ids.get((node_type, value))
        if exact is not None and (value != UNKNOWN):
            return exact
        if value is None:
            return -1
        return self._label_ids.get((node_type, UNKNOWN), -1)

    def known_labels(self) -> np.ndarray:
        """(L,) bool: the labels an ADD may use (every label but the unknown leaves)."""
        return self._known.copy()

    def label_row(self, state: EditState, slot: Slot) -> np.ndarray:
        """(L,) bool: the known labels ``state.valid_labels(slot)`` accepts.

        Cached per grammar, parent type and field (what the validity of a label at a slot
        depends on); the returned row must not be changed.
        """
        parent = state.nodes[slot.parent]
        key = (state.grammar, parent.type, slot.field)
        row = self._rows.get(key)
        if row is None:
            valid = state.valid_labels(slot)
            row = np.array(
                [
                    known and valid(label)
                    for label, known in zip(self.labels, self._known, strict=True)
                ],
                dtype=bool,
            )
            row.flags.writeable = False
            self._rows[key] = row
            self._row_any[id(row)] = bool(row.any())
        return row

    def label_row_any(self, row: np.ndarray) -> bool:
        """Whether a row of ``label_row`` allows any label (cached with the row)."""
        found = self._row_any.get(id(row))
        return bool(row.any()) if found is None else found

    # -- files -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "types": self.types,
            "values": self.values,
            "fields": self.fields,
            "labels": [[t, v] for t, v in self.labels],
        }

    @classmethod
    def from_json(cls, data: Any) -> TreeEditVocab:
        """The inverse of ``to_json``; ValueError on anything else."""
        keys = {"types", "values", "fields", "labels"}
        if not isinstance(data, dict) or not keys <= set(data):
            raise ValueError(
                "a tree-edit vocabulary is an object with types, values, fields, labels"
            )
        lists = [data["types"], data["values"], data["fields"]]
        if not all(isinstance(x, list) and all(isinstance(t, str) for t in x) for x in lists):
            raise ValueError("types, values and fields must be lists of strings")
        labels: list[Label] = []
        for item in data["labels"] if isinstance(data["labels"], list) else [None]:
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not isinstance(item[0], str)
                or not (item[1] is None or isinstance(item[1], str))
            ):
                raise ValueError("labels must be [type, value or null] pairs")
            labels.append((item[0], item[1]))
        return cls(list(data["types"]), list(data["values"]), list(data["fields"]), labels)


# -- trees ---------------------------------------------------------------------------------


def node_arrays(
    nodes: Sequence[TNode],
    vocab: TreeEditVocab,
    prefix: str = "node",
    origins: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of a list of nodes in pre-order (a tree, or trees one after another): a
    node's parent is the index of its parent in the list (-1 when it is not in it), its
    depth counts from the list's root above it. ``origins`` overrides the nodes' own."""
    n = len(nodes)
    index = {id(node): i for i, node in enumerate(nodes)}
    out = {f"{prefix}_{k}": np.zeros(n, dtype=np.int64) for k in NODE_FIELDS}
    types, values, fields = out[f"{prefix}_type"], out[f"{prefix}_value"], out[f"{prefix}_field"]
    depth, origin, parent = out[f"{prefix}_depth"], out[f"{prefix}_origin"], out[f"{prefix}_parent"]
    for i, node in enumerate(nodes):
        types[i] = vocab.type_id(node.type)
        values[i] = vocab.value_id(node.value)
        fields[i] = vocab.field_id(node.field)
        origin[i] = node.origin if origins is None else origins[i]
        p = index.get(id(node.parent), -1) if node.parent is not None else -1
        if p >= i:
            p = -1  # not pre-order: treat as a root
        parent[i] = p
        depth[i] = min(depth[p] + 1, MAX_DEPTH) if p >= 0 else 0
    return out


def tree_features(
    state_or_nodes: EditState | Sequence[TNode], vocab: TreeEditVocab
) -> dict[str, np.ndarray]:
    """``node_*`` arrays of the current tree (``state.nodes``, pre-order)."""
    nodes = state_or_nodes.nodes if isinstance(state_or_nodes, EditState) else state_or_nodes
    return node_arrays(nodes, vocab, "node")


def source_features(roots: Sequence[TNode], vocab: TreeEditVocab) -> dict[str, np.ndarray]:
    """``src_*`` arrays of the sources (``EditState``'s ``sources`` argument: the original
    tree, then the context trees), in the order of ``EditState.sources`` (each tree's
    nodes in pre-order, tree after tree); a context tree's nodes have origin 3."""
    nodes: list[TNode] = []
    origins: list[int] = []
    for k, root in enumerate(roots):
        tree = root.pre_order()
        nodes.extend(tree)
        origins.extend([ORIGINAL if k == 0 else CONTEXT_ORIGIN] * len(tree))
    return node_arrays(nodes, vocab, "src", origins)


# -- edits -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionInfo:
    """What the edit encoder reads of one action: its op, the type and value of the node
    it deletes, adds or copies, the field and the parent type where it happens."""

    op: int
    type: str = ""
    value: str | None = None
    field: str = ""
    parent_type: str = ""


def describe_actions(
    before: TNode, actions: Sequence[Action], grammar: Grammar, sources: Sequence[TNode]
) -> list[ActionInfo]:
    """Replay ``actions`` from ``before`` and describe each one in the state it applies to."""
    state = EditState(before, grammar, list(sources))
    infos: list[ActionInfo] = []
    for action in actions:
        if action.op == STOP:
            infos.append(ActionInfo(STOP))
            break
        if action.op == DELETE:
            node = state.nodes[action.node]
            parent = node.parent.type if node.parent is not None else ""
            infos.append(ActionInfo(DELETE, node.type, node.value, node.field, parent))
        else:
            if action.slot is None:
                raise ValueError(f"{action} has no slot")
            parent = state.nodes[action.slot.parent].type
            if action.op == ADD:
                if action.label is None:
                    raise ValueError(f"{action} has no label")
                node_type, value = action.label
            else:
                copied = state.sources[action.source]
                node_type, value = copied.type, copied.value
            infos.append(ActionInfo(action.op, node_type, value, action.slot.field, parent))
        state.apply(action)
    return infos


def context_actions(edits: Iterable[tuple[TNode, TNode]], grammar: Grammar) -> list[ActionInfo]:
    """The gold actions of each context edit (before -> after, both FRAGMENT-rooted, its
    before tree as the sources), described and concatenated; each edit's actions end with
    STOP."""
    infos: list[ActionInfo] = []
    for before, after in edits:
        sources = [before]
        actions = gold_actions(before, after, grammar, sources)
        infos.extend(describe_actions(before, actions, grammar, sources))
    return infos


def edit_features(
    infos: Sequence[ActionInfo], vocab: TreeEditVocab, max_actions: int = MAX_ACTIONS
) -> dict[str, np.ndarray]:
    """``act_*`` arrays (A <= ``max_actions``; the first ones are kept; A may be 0)."""
    kept = list(infos)[:max_actions]
    return {
        "act_op": np.array([i.op for i in kept], dtype=np.int64),
        "act_type": np.array(
            [vocab.type_id(i.type) if i.type else 0 for i in kept], dtype=np.int64
        ),
        "act_value": np.array([vocab.value_id(i.value) for i in kept], dtype=np.int64),
        "act_field": np.array(
            [vocab.field_id(i.field) if i.op != STOP else 0 for i in kept], dtype=np.int64
        ),
        "act_parent_type": np.array(
            [vocab.type_id(i.parent_type) if i.parent_type else 0 for i in kept], dtype=np.int64
        ),
    }


# -- slots, masks, targets ------------------------------------------------------------------


def slot_features(
    state: EditState, slots: Sequence[Slot], vocab: TreeEditVocab
) -> dict[str, np.ndarray]:
    """``slot_*`` arrays for ``slots`` (``state.slots()``)."""
    index = {id(node): i for i, node in enumerate(state.nodes)}
    s = len(slots)
    out = {
        "slot_parent": np.zeros(s, dtype=np.int64),
        "slot_field": np.zeros(s, dtype=np.int64),
        "slot_left": np.full(s, -1, dtype=np.int64),
        "slot_right": np.full(s, -1, dtype=np.int64),
    }
    for k, slot in enumerate(slots):
        out["slot_parent"][k] = slot.parent
        out["slot_field"][k] = vocab.field_id(slot.field)
        children = state.nodes[slot.parent].fields.get(slot.field, [])
        if 0 < slot.index <= len(children):
            out["slot_left"][k] = index[id(children[slot.index - 1])]
        if 0 <= slot.index < len(children):
            out["slot_right"][k] = index[id(children[slot.index])]
    return out


@dataclass
class StateMasks:
    """The valid choices in a state (True = valid)."""

    op: np.ndarray  # (4,) STOP, DELETE, ADD, SUBTREE
    delete: np.ndarray  # (N,)
    slot_add: np.ndarray  # (S,) some label fits
    slot_subtree: np.ndarray  # (S,) some source fits
    label_rows: list[np.ndarray]  # S rows (L,): the labels valid at each slot (shared rows)
    source: np.ndarray  # (S, M)

    @property
    def label(self) -> np.ndarray:
        """(S, L): the labels valid at each slot."""
        if not self.label_rows:
            return np.zeros((0, 0), dtype=bool)
        return np.stack(self.label_rows)

    def slot(self, op: int) -> np.ndarray:
        """The slots valid for ``op`` (ADD or SUBTREE)."""
        return self.slot_add if op == ADD else self.slot_subtree


def state_masks(state: EditState, slots: Sequence[Slot], vocab: TreeEditVocab) -> StateMasks:
    """Which ops, nodes, slots, labels and sources are valid (``EditState``'s rules; labels
    also known to the vocabulary)."""
    n, s, m = len(state.nodes), len(slots), len(state.sources)
    delete = np.zeros(n, dtype=bool)
    delete[list(state.deletable())] = True
    rows = [vocab.label_row(state, slot) for slot in slots]
    source = np.zeros((s, m), dtype=bool)
    for k, slot in enumerate(slots):
        valid = state.valid_sources(slot)
        if valid:
            source[k, list(valid)] = True
    slot_add = np.array([vocab.label_row_any(row) for row in rows], dtype=bool)
    slot_subtree = np.asarray(source.any(axis=1), dtype=bool)
    op = np.array(
        [state.can_stop(), bool(delete.any()), bool(slot_add.any()), bool(slot_subtree.any())],
        dtype=bool,
    )
    return StateMasks(op, delete, slot_add, slot_subtree, rows, source)


@dataclass(frozen=True)
class ActionTargets:
    """A gold action's indexes in a state (-1 where a level does not apply; ``label`` is
    also -1 for an added node whose type the vocabulary does not know)."""

    op: int
    node: int = -1
    slot: int = -1
    label: int = -1
    source: int = -1


def action_targets(action: Action, slots: Sequence[Slot], vocab: TreeEditVocab) -> ActionTargets:
    """The indexes of ``action`` among the state's choices (``slots``: ``state.slots()``)."""
    if action.op == STOP:
        return ActionTargets(STOP)
    if action.op == DELETE:
        return ActionTargets(DELETE, node=action.node)
    if action.slot is None:
        raise ValueError(f"{action} has no slot")
    try:
        slot = list(slots).index(action.slot)
    except ValueError:
        raise ValueError(f"{action.slot} is not a slot of the state") from None
    if action.op == ADD:
        if action.label is None:
            raise ValueError(f"{action} has no label")
        return ActionTargets(ADD, slot=slot, label=vocab.label_id(*action.label))
    return ActionTargets(SUBTREE, slot=slot, source=action.source)


def training_item(
    state: EditState,
    action: Action,
    vocab: TreeEditVocab,
    edit: Mapping[str, np.ndarray],
    sources: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """One (state, gold action) pair as the unpadded arrays of ``TreeEditNet.loss``.

    ``edit``: ``edit_features`` of the example's context; ``sources``: ``source_features``
    of the state's source trees (both computed once per example). The training masks always
    allow the gold choice (an unknown leaf is a valid target, never a valid ADD when
    decoding); a gold choice that ``EditState`` itself rejects is a ValueError.
    """
    slots = state.slots()
    masks = state_masks(state, slots, vocab)
    target = action_targets(action, slots, vocab)
    if target.op == DELETE and not masks.delete[target.node]:
        raise ValueError(f"{action}: the node may not be deleted")
    if target.op == SUBTREE and not masks.source[target.slot, target.source]:
        raise ValueError(f"{action}: the source does not fit the slot")
    if target.op == STOP and not masks.op[STOP]:
        raise ValueError(f"{action}: STOP with holes left")
    op = masks.op.copy()
    op[target.op] = True
    position = np.zeros(len(slots), dtype=bool)
    label = np.zeros(len(vocab.labels), dtype=bool)
    source = np.zeros(len(state.sources), dtype=bool)
    if target.slot >= 0:
        position = masks.slot(target.op).copy()
        position[target.slot] = True
        label = masks.label_rows[target.slot].copy()
        source = masks.source[target.slot].copy()
        if target.label >= 0:
            label[target.label] = True
    n_src = len(state.sources)
    if len(sources.get("src_type", ())) != n_src:
        raise ValueError("the source features are not those of the state's sources")
    item: dict[str, np.ndarray] = {
        **tree_features(state, vocab),
        **{k: np.asarray(v) for k, v in sources.items()},
        **{k: np.asarray(v) for k, v in edit.items()},
        **slot_features(state, slots, vocab),
        "op_mask": op,
        "delete_mask": masks.delete,
        "position_mask": position,
        "label_mask": label,
        "source_mask": source,
        "target_op": np.array(target.op, dtype=np.int64),
        "target_node": np.array(target.node, dtype=np.int64),
        "target_slot": np.array(target.slot, dtype=np.int64),
        "target_label": np.array(target.label, dtype=np.int64),
        "target_source": np.array(target.source, dtype=np.int64),
    }
    return item


# Padding of the variable-length arrays: (length group, pad value).
_GROUPS: Final = {
    **{f"node_{k}": "node" for k in NODE_FIELDS},
    **{f"src_{k}": "src" for k in NODE_FIELDS},
    **{f"act_{k}": "act" for k in ACT_FIELDS},
    **{f"slot_{k}": "slot" for k in SLOT_FIELDS},
    "delete_mask": "node",
    "position_mask": "slot",
    "source_mask": "src",
}
_PAD_VALUES: Final = {"node_parent": -1, "src_parent": -1, "slot_left": -1, "slot_right": -1}


def collate_items(items: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Pad ``training_item``s into one batch: every array gets a leading batch axis, the
    variable-length ones are padded to the longest (ids 0, parents and neighbours -1,
    masks False) and ``node_valid``, ``src_valid``, ``act_valid``, ``slot_valid`` say
    which positions are real. Fixed-size arrays (``op_mask``, ``label_mask``, targets)
    are stacked."""
    if not items:
        raise ValueError("no items to collate")
    b = len(items)
    lengths = {
        group: [len(item[f"{group}_type" if group != "slot" else "slot_parent"]) for item in items]
        for group in ("node", "src", "slot")
    }
    lengths["act"] = [len(item["act_op"]) for item in items]
    out: dict[str, np.ndarray] = {}
    for key in items[0]:
        group = _GROUPS.get(key)
        if group is None:
            out[key] = np.stack([np.asarray(item[key]) for item in items])
            continue
        first = np.asarray(items[0][key])
        width = max(lengths[group])
        array = np.full((b, width), _PAD_VALUES.get(key, 0), dtype=first.dtype)
        for row, item in enumerate(items):
            value = np.asarray(item[key])
            array[row, : len(value)] = value
        out[key] = array
    for group, sizes in lengths.items():
        width = max(sizes)
        out[f"{group}_valid"] = np.arange(width)[None, :] < np.array(sizes)[:, None]
    return out
