"""C3PO's inputs as arrays (Brody et al. 2020, §5.2): shared by training and the runtime.

numpy only. The same functions cut the features the torch model is trained on
(``ripple.training.c3po_train``) and the ones the exported graphs read
(``ripple.models.runtime.c3po_decode``), so training and serving cannot drift apart.

* ``C3POVocab``: node types (the grammar's, plus the augmentation's ``<placeholder>`` and
  ``<DEL>`` and the context paths' ``<UPD>``/``<INS>``), the most frequent sub-tokens
  (lower-cased, §5.2.1 Eq. 3 and §6.2), the most frequent tokens of the textual context
  (the "textual context" ablation, Table 3), and the largest child index embedded (larger
  indices share the last one).
* ``encode_paths``: a list of ``ASTPath``s or ``ContextPath``s as padded arrays (below).
* ``encode_input``: one example's feed dict for the encoder graph, for a ``context_mode``
  of ``"paths"`` (C3PO), ``"text"`` (context edits as a token sequence) or ``"none"``.

Arrays of ``encode_paths`` (n paths, L <= ``max_len`` nodes, S <= ``max_subtokens``; id 0
is padding everywhere; L and S are the longest in the list, at least 1):

=====================  ========  =========================================================
``types``              [n, L]    node-type ids, source to target
``indices``            [n, L]    child indices, clamped to ``max_child_index``
``lengths``            [n]       nodes kept (a path longer than ``max_len`` keeps its
                                 first ``max_len // 2`` and last ``max_len - max_len // 2``)
``source_values``      [n, S]    sub-token ids of the source's value (first S)
``target_values``      [n, S]    sub-token ids of the target's value
``source_terminal``    [n] bool  the source has a value; else the encoder embeds the node
``target_terminal``    [n] bool  the same for the target (§5.2.1, last paragraph)
``target_del``         [n] bool  the target is the ``<DEL>`` node (only MOV goes there)
=====================  ========  =========================================================

``encode_input`` prefixes the focus paths' arrays with ``path_`` and, for ``"paths"``, the
context's with ``context_`` plus ``context_after`` [m] (read in the new tree); focus and
context arrays are padded to the same L and S (one encoder call reads both). Context
paths are put in ``context_order``: the paths read in the old tree first, then those read
in the new tree, each group in the given order; the model puts its learned separator
between the two groups (the reference code's before-paths, split token, after-paths). For
``"text"`` it adds ``context_text`` [t] (at most ``max_text`` token ids); ``"none"`` adds
nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import numpy as np

from ripple.models.edits.paths import DEL_TYPE, EOS_LABEL, PLACEHOLDER_TYPE, Operation, PathStep

__all__ = [
    "CONTEXT_MODES",
    "MAX_LEN",
    "MAX_SUBTOKENS",
    "MAX_TEXT",
    "PATH_FIELDS",
    "PATH_KEYS",
    "SPECIAL_TYPES",
    "C3POVocab",
    "ContextLike",
    "ContextMode",
    "PathLike",
    "context_attention",
    "context_order",
    "encode_input",
    "encode_paths",
    "label_operation",
]

ContextMode = Literal["paths", "text", "none"]
CONTEXT_MODES: Final = ("paths", "text", "none")
MAX_LEN: Final = 16  # nodes kept per path
MAX_SUBTOKENS: Final = 5  # sub-tokens kept per terminal value
MAX_TEXT: Final = 512  # context tokens kept by the textual-context variant
PAD: Final = "<pad>"
UNK: Final = "<unk>"
# completion.UPD_TYPE / INS_TYPE: the artificial first nodes of context UPD and INS paths.
SPECIAL_TYPES: Final = (PAD, UNK, PLACEHOLDER_TYPE, DEL_TYPE, "<UPD>", "<INS>")
# The arrays of a batch of paths the model's path encoder reads (focus and context paths);
# P's paths also carry ``target_del`` (the pointer's DEL rule).
PATH_KEYS: Final = (
    "types",
    "indices",
    "lengths",
    "source_values",
    "target_values",
    "source_terminal",
    "target_terminal",
)
PATH_FIELDS: Final = (*PATH_KEYS, "target_del")


class PathLike(Protocol):
    """What the encoder reads of a path: ``ASTPath`` and ``ContextPath`` both have it."""

    @property
    def steps(self) -> tuple[PathStep, ...]: ...
    @property
    def source_value(self) -> tuple[str, ...]: ...
    @property
    def target_value(self) -> tuple[str, ...]: ...


class ContextLike(PathLike, Protocol):
    @property
    def after(self) -> bool: ...


@dataclass
class C3POVocab:
    """Node types, sub-tokens and context text tokens; id 0 is padding, 1 unknown."""

    types: list[str]
    subtokens: list[str]
    text: list[str]
    max_child_index: int = 16
    _type_ids: dict[str, int] = field(init=False, repr=False)
    _subtoken_ids: dict[str, int] = field(init=False, repr=False)
    _text_ids: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if tuple(self.types[: len(SPECIAL_TYPES)]) != SPECIAL_TYPES:
            raise ValueError(f"node types start with {', '.join(SPECIAL_TYPES)}")
        for name, tokens in (("subtokens", self.subtokens), ("text", self.text)):
            if tokens[:2] != [PAD, UNK]:
                raise ValueError(f"{name} start with {PAD}, {UNK}")
        if self.max_child_index < 1:
            raise ValueError("max_child_index must be at least 1")
        self._type_ids = {t: i for i, t in enumerate(self.types)}
        self._subtoken_ids = {t: i for i, t in enumerate(self.subtokens)}
        self._text_ids = {t: i for i, t in enumerate(self.text)}

    @classmethod
    def build(
        cls,
        examples_paths: Iterable[Sequence[PathLike]],
        context_paths: Iterable[Sequence[PathLike]] = (),
        context_texts: Iterable[Sequence[str]] = (),
        *,
        max_subtokens: int = 10_000,
        max_text: int = 10_000,
        max_child_index: int = 16,
    ) -> C3POVocab:
        """Count over training data: every node type seen; the ``max_subtokens`` most
        frequent sub-tokens of path ends (lower-cased); the ``max_text`` most frequent
        context text tokens (lower-cased). Sizes include the two specials."""
        types: Counter[str] = Counter()
        subtokens: Counter[str] = Counter()
        for group in (examples_paths, context_paths):
            for paths in group:
                for path in paths:
                    types.update(step.type for step in path.steps)
                    subtokens.update(s.lower() for s in path.source_value)
                    subtokens.update(s.lower() for s in path.target_value)
        text: Counter[str] = Counter()
        for tokens in context_texts:
            text.update(t.lower() for t in tokens)
        type_list = list(SPECIAL_TYPES) + sorted(t for t in types if t not in SPECIAL_TYPES)

        def most_common(counts: Counter[str], size: int) -> list[str]:
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            kept = [t for t, _ in ranked if t not in (PAD, UNK)]
            return [PAD, UNK, *kept[: max(0, size - 2)]]

        return cls(
            type_list,
            most_common(subtokens, max_subtokens),
            most_common(text, max_text),
            max_child_index,
        )

    def type_id(self, node_type: str) -> int:
        return self._type_ids.get(node_type, 1)

    def subtoken_id(self, subtoken: str) -> int:
        return self._subtoken_ids.get(subtoken.lower(), 1)

    def text_id(self, token: str) -> int:
        return self._text_ids.get(token.lower(), 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "types": self.types,
            "subtokens": self.subtokens,
            "text": self.text,
            "max_child_index": self.max_child_index,
        }

    @classmethod
    def from_json(cls, data: Any) -> C3POVocab:
        """The inverse of ``to_json``; ValueError on anything else."""
        if not isinstance(data, dict) or not {"types", "subtokens", "text"} <= set(data):
            raise ValueError("a C3PO vocabulary is an object with types, subtokens and text")
        lists = [data["types"], data["subtokens"], data["text"]]
        if not all(isinstance(x, list) and all(isinstance(t, str) for t in x) for x in lists):
            raise ValueError("types, subtokens and text must be lists of strings")
        index = data.get("max_child_index", 16)
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError("max_child_index must be an integer")
        return cls(list(data["types"]), list(data["subtokens"]), list(data["text"]), index)


def _values(
    values: Iterable[tuple[str, ...]], vocab: C3POVocab, width: int, count: int
) -> np.ndarray:
    out = np.zeros((count, width), dtype=np.int64)
    for row, value in enumerate(values):
        ids = [vocab.subtoken_id(s) for s in value[:width]]
        out[row, : len(ids)] = ids
    return out


def encode_paths(
    paths: Sequence[PathLike],
    vocab: C3POVocab,
    max_len: int = MAX_LEN,
    max_subtokens: int = MAX_SUBTOKENS,
) -> dict[str, np.ndarray]:
    """The arrays of the module docstring for ``paths`` (ids int64, flags bool)."""
    if max_len < 2 or max_subtokens < 1:
        raise ValueError("max_len must be at least 2 and max_subtokens at least 1")
    n = len(paths)
    head, tail = max_len // 2, max_len - max_len // 2
    kept: list[tuple[PathStep, ...]] = []
    for path in paths:
        steps = path.steps
        if not steps:
            raise ValueError("a path has at least one node")
        kept.append(steps if len(steps) <= max_len else steps[:head] + steps[-tail:])
    length = max((len(s) for s in kept), default=1)
    width = max(
        (min(len(v), max_subtokens) for p in paths for v in (p.source_value, p.target_value)),
        default=1,
    )
    width = max(width, 1)
    types = np.zeros((n, length), dtype=np.int64)
    indices = np.zeros((n, length), dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    top = vocab.max_child_index
    for row, steps in enumerate(kept):
        lengths[row] = len(steps)
        types[row, : len(steps)] = [vocab.type_id(s.type) for s in steps]
        indices[row, : len(steps)] = [min(max(s.child_index, 0), top) for s in steps]
    return {
        "types": types,
        "indices": indices,
        "lengths": lengths,
        "source_values": _values((p.source_value for p in paths), vocab, width, n),
        "target_values": _values((p.target_value for p in paths), vocab, width, n),
        "source_terminal": np.array([len(p.source_value) > 0 for p in paths], dtype=bool),
        "target_terminal": np.array([len(p.target_value) > 0 for p in paths], dtype=bool),
        "target_del": np.array([s[-1].type == DEL_TYPE for s in kept], dtype=bool),
    }


def _widen(array: np.ndarray, width: int) -> np.ndarray:
    if array.shape[1] == width:
        return array
    return np.pad(array, ((0, 0), (0, width - array.shape[1])))


def context_order(context: Sequence[ContextLike]) -> list[int]:
    """The order the model reads context paths in: old-tree paths, then new-tree paths."""
    return [i for i, c in enumerate(context) if not c.after] + [
        i for i, c in enumerate(context) if c.after
    ]


def encode_input(
    paths: Sequence[PathLike],
    context: Sequence[ContextLike],
    context_text: Sequence[str],
    vocab: C3POVocab,
    context_mode: str,
    *,
    max_len: int = MAX_LEN,
    max_subtokens: int = MAX_SUBTOKENS,
    max_text: int = MAX_TEXT,
) -> dict[str, np.ndarray]:
    """One example's encoder feeds (module docstring): the graph's input names exactly."""
    if context_mode not in CONTEXT_MODES:
        raise ValueError(f"context_mode must be one of {', '.join(CONTEXT_MODES)}")
    feeds = {f"path_{k}": v for k, v in encode_paths(paths, vocab, max_len, max_subtokens).items()}
    if context_mode == "paths":
        ordered = [context[i] for i in context_order(context)]
        arrays = encode_paths(ordered, vocab, max_len, max_subtokens)
        feeds.update({f"context_{k}": v for k, v in arrays.items() if k != "target_del"})
        feeds["context_after"] = np.array([c.after for c in ordered], dtype=bool)
        # One width for focus and context arrays: the model encodes both in one call.
        for key in ("types", "indices", "source_values", "target_values"):
            focus, ctx = feeds[f"path_{key}"], feeds[f"context_{key}"]
            width = max(focus.shape[1], ctx.shape[1])
            feeds[f"path_{key}"] = _widen(focus, width)
            feeds[f"context_{key}"] = _widen(ctx, width)
    elif context_mode == "text":
        feeds["context_text"] = np.array(
            [vocab.text_id(t) for t in context_text[:max_text]], dtype=np.int64
        )
    return feeds


def context_attention(
    weights: np.ndarray, context: Sequence[ContextLike], context_mode: str, text_length: int = 0
) -> np.ndarray:
    """Attention over the model's context positions -> weights per item as the caller gave
    them: per context path (in ``context``'s order) for ``"paths"``, per context token for
    ``"text"``, nothing for ``"none"``.

    The model's positions hold a learned vector too (the separator between old- and
    new-tree paths; the start of the text), whose weight is dropped, so the weights
    returned sum to at most 1.
    """
    weights = np.asarray(weights, dtype=np.float32).reshape(-1)
    if context_mode == "none":
        return np.zeros(0, dtype=np.float32)
    if context_mode == "text":
        return weights[1 : 1 + text_length].copy()
    order = context_order(context)
    before = sum(1 for c in context if not c.after)
    out = np.zeros(len(context), dtype=np.float32)
    for position, item in enumerate(order):
        out[item] = weights[position if position < before else position + 1]
    return out


def label_operation(label: int, n_paths: int) -> tuple[Operation, int] | None:
    """A pointer label -> (operation, path index); None for PAD and EOS (§5.2.2, Eq. 5)."""
    if label <= EOS_LABEL:
        return None
    kind, index = divmod(label - EOS_LABEL - 1, n_paths)
    if kind > 2:
        raise ValueError(f"label {label} is past the {3 * n_paths + 2} labels of {n_paths} paths")
    return Operation(kind), index
