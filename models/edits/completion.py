"""EditCompletion examples (C3PO, Brody et al. 2020, §2 and §6.1), built with tree-sitter.

An example is a changed program fragment P (an AST node of at most ``MAX_FRAGMENT_NODES``
nodes), the edit that turned it into P', and the edits made nearby in the same commit (its
context C: the other hunks within ``CONTEXT_LINES`` lines above and below; optionally the
edits of the same commit in other files). The model reads the context edits and P, and
predicts the path-operations that turn P into P' (``ripple.models.edits.paths``).

The same code serves training and the live server (train/serve parity): the dataset
builder calls ``fragment_edit`` and ``context_paths`` on the hunks of a commit; the server
calls them on the fragments a user has just edited and on the fragments it proposes to
complete.

Representations:

* **P** is kept as its tree (``Node``, literal-normalised: numbers -> ``999``, strings ->
  ``"STR"`` as in the reference code) and its gold operations (ids in
  ``AugmentedTree(P)``); ``ExampleInput.paths`` enumerates its valid paths on load, with
  the type statistics of the training set.
* **Context paths** (§4, Figure 6): every action of a context edit becomes one path in the
  context fragment's tree, with artificial nodes marking the kind: a DEL path ends in a
  ``<DEL>`` node; an UPD path starts at an ``<UPD>`` node carrying the new value and ends
  at the updated leaf; a MOV path goes from the moved node to its new left sibling (or the
  new parent's placeholder); an INS path starts at an ``<INS>`` node and ends at the
  inserted node of the new tree. Paths read in the old tree (DEL, UPD, MOV) come first;
  the model puts a learned separator before the paths read in the new tree (INS).
* **Text** (for the textual baselines and the textual-context ablation): P's and P''s
  leaf tokens, and the context edits as a token sequence with ``<del>``/``<ins>`` marks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

import tree_sitter

from ripple.models.edits.editscript import Delete, EditScript, Insert, Move, Update, diff
from ripple.models.edits.paths import (
    DEL_TYPE,
    ASTPath,
    AugmentedTree,
    NotRepresentable,
    Operation,
    PathOperation,
    PathStep,
    enumerate_paths,
    gold_labels,
    gold_operations,
)
from ripple.models.edits.tokens import subtokens
from ripple.models.edits.tree import Node, from_tree_sitter

__all__ = [
    "CONTEXT_LINES",
    "MAX_CONTEXT_PATHS",
    "MAX_FILE_BYTES",
    "MAX_FRAGMENT_NODES",
    "Change",
    "CompletionExample",
    "ContextPath",
    "ParsedChange",
    "edit_context",
    "example_paths",
    "fragment_nodes",
    "node_from_json",
    "node_to_json",
    "parse_changes",
]

CONTEXT_LINES = 10  # §6.1: "a context of 10 lines above and 10 lines below the edit"
MAX_FRAGMENT_NODES = 50  # §6.1: "we filtered out examples having more than 50 nodes in P"
MAX_CONTEXT_PATHS = 64  # context paths kept per example (the nearest edits first)
MAX_CONTEXT_EDITS = 4  # context edits kept as fragment pairs (the nearest first)
MAX_FILE_BYTES = 400_000  # larger files (generated, vendored) are neither examples nor served
SCOPES = ("window", "commit")

UPD_TYPE = "<UPD>"
INS_TYPE = "<INS>"


@dataclass(frozen=True, slots=True)
class ContextPath:
    """One action of a context edit as an AST path (C3PO §4, Figure 6).

    ``steps``, ``source_value`` and ``target_value`` mean what they mean in ``ASTPath``, so
    one path encoder reads both. ``after`` is True for paths read in the new tree (INS).
    ``line`` (0-based, in the file as it is after the commit) and ``text`` (a short
    description) let a suggestion say which context edit it attended to.
    """

    kind: str  # "DEL" | "UPD" | "MOV" | "INS"
    steps: tuple[PathStep, ...]
    source_value: tuple[str, ...]
    target_value: tuple[str, ...]
    after: bool
    line: int
    text: str

    def to_json(self) -> list[Any]:
        return [
            self.kind,
            [[s.type, s.child_index] for s in self.steps],
            list(self.source_value),
            list(self.target_value),
            self.after,
            self.line,
            self.text,
        ]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> ContextPath:
        kind, steps, source, target, after, line, text = data
        return cls(
            kind,
            tuple(PathStep(t, i) for t, i in steps),
            tuple(source),
            tuple(target),
            bool(after),
            int(line),
            str(text),
        )


@dataclass(slots=True)
class CompletionExample:
    """One EditCompletion example (§2): P, its gold edit, and the context edits.

    ``operations`` are the gold path-operations as ``(operation value, source id, target
    id)`` over ``AugmentedTree(before)`` (MOV=0, UPD=1, INS=2; a DEL is MOV to the DEL
    node). ``tokens_before``/``tokens_after`` are the leaf values of P and P'
    (literal-normalised); ``context_text`` is the textual form of the context edits.
    """

    repo: str
    commit: str
    path: str
    line: int  # P's first line, 0-based, in the file before the commit
    before: Node
    after: Node
    operations: list[tuple[int, int, int]]
    context: list[ContextPath]
    tokens_before: list[str]
    tokens_after: list[str]
    context_text: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    # The context edits as literal-normalised fragment pairs (before, after, old line),
    # nearest first (``context_pairs``): what the structural editor's edit encoder reads.
    context_edits: list[tuple[Node, Node, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "commit": self.commit,
            "path": self.path,
            "line": self.line,
            "before": node_to_json(self.before),
            "after": node_to_json(self.after),
            "operations": [list(op) for op in self.operations],
            "context": [c.to_json() for c in self.context],
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "context_text": self.context_text,
            "meta": self.meta,
            "context_edits": [
                [node_to_json(b), node_to_json(a), line] for b, a, line in self.context_edits
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CompletionExample:
        return cls(
            repo=data["repo"],
            commit=data["commit"],
            path=data["path"],
            line=int(data["line"]),
            before=node_from_json(data["before"]),
            after=node_from_json(data["after"]),
            operations=[(int(a), int(b), int(c)) for a, b, c in data["operations"]],
            context=[ContextPath.from_json(c) for c in data["context"]],
            tokens_before=list(data["tokens_before"]),
            tokens_after=list(data["tokens_after"]),
            context_text=list(data["context_text"]),
            meta=dict(data.get("meta", {})),
            context_edits=[
                (node_from_json(b), node_from_json(a), int(line))
                for b, a, line in data.get("context_edits", ())
            ],
        )


def node_to_json(node: Node) -> list[Any]:
    """A compact nested list ``[type, value, named, [children...]]`` (positions dropped),
    with the node's field name as a fifth item when it has one."""
    item = [node.type, node.value, node.named, [node_to_json(c) for c in node.children]]
    if node.field is not None:
        item.append(node.field)
    return item


def node_from_json(data: Sequence[Any]) -> Node:
    """The inverse of ``node_to_json``; ids are pre-order indexes from 0."""

    def build(item: Sequence[Any], parent: Node | None) -> Node:
        node_type, value, named, children = item[:4]
        field_name = item[4] if len(item) > 4 else None
        node = Node(node_type, value, [], parent, named=bool(named), field=field_name)
        node.children = [build(c, node) for c in children]
        return node

    root = build(data, None)
    root.renumber()
    return root


def example_paths(
    example: CompletionExample, child_types: Mapping[str, Set[str]] | None = None
) -> tuple[AugmentedTree, list[ASTPath], list[int] | None]:
    """P's augmented tree, its valid paths (§5.2: the pointer's classes) and the gold labels.

    Labels are indices into ``[PAD, EOS] + MOV(n) + UPD(n) + INS(n)`` ending with EOS, or
    None when a gold operation is not on a valid path under ``child_types`` (the type rule
    learnt from training data can exclude a rare move: such an example cannot be solved
    and counts as a miss).
    """
    tree = AugmentedTree(example.before)
    paths = enumerate_paths(tree, child_types)
    gold = [PathOperation(Operation(op), s, t) for op, s, t in example.operations]
    try:
        labels: list[int] | None = gold_labels(paths, gold)
    except NotRepresentable:
        labels = None
    return tree, paths, labels


# -- building examples ----------------------------------------------------------------------

# Literal normalisation of the reference code: numbers -> 999, strings -> "STR".
_NUMBER_TYPES = frozenset({"integer", "float"})
_STRING_TYPES = frozenset({"string", "string_content"})
NUMBER_VALUE = "999"
STRING_VALUE = '"STR"'
# Where statements live in tree-sitter-python: a fragment is a whole statement, or one part
# of a compound statement's header (its parameters, its condition ...), never a block.
_STATEMENT_PARENTS = frozenset({"module", "block"})
# Context fragments may be larger than P; past this they are not worth a diff.
MAX_CONTEXT_NODES = 400


def normalise_literals(root: Node) -> Node:
    """A copy of ``root`` with number and string leaves replaced by ``999`` and ``"STR"``."""
    clone = root.copy()
    for node in clone.pre_order():
        if node.value is None or node.children:
            continue
        if node.type in _NUMBER_TYPES:
            node.value = NUMBER_VALUE
        elif node.type in _STRING_TYPES:
            node.value = STRING_VALUE
    clone.renumber()
    return clone


def leaf_tokens(root: Node) -> list[str]:
    """The values of ``root``'s leaves in source order: the fragment as text tokens."""
    return [n.value for n in root.pre_order() if not n.children and n.value is not None]


def _is_fragment_root(node: tree_sitter.Node) -> bool:
    parent = node.parent
    if parent is None:
        return True
    if parent.type in _STATEMENT_PARENTS:
        return True
    # A named part of a compound statement's header (``parameters``, an ``if`` condition):
    # the compound statement itself holds a whole block and is rarely a small fragment.
    grandparent = parent.parent
    return (
        node.is_named
        and node.type != "block"
        and grandparent is not None
        and grandparent.type in _STATEMENT_PARENTS
        and any(c.type == "block" for c in parent.children)
    )


def _covering(root: tree_sitter.Node, start: int, end: int) -> tree_sitter.Node:
    """The smallest node of ``root`` whose bytes contain ``[start, end)``; an insertion
    point (``start == end``) must lie strictly inside it (or it is the root)."""
    node = root.descendant_for_byte_range(start, max(start, end - 1) if end > start else start)
    if node is None:
        return root
    while node.parent is not None and not (
        node.start_byte <= start and end <= node.end_byte
        and (start != end or node.start_byte < start < node.end_byte)
    ):  # fmt: skip
        node = node.parent
    return node


def _outermost(node: tree_sitter.Node) -> tree_sitter.Node:
    """The outermost ancestor-or-self with the same bytes and type."""
    while (
        node.parent is not None
        and node.parent.type == node.type
        and (node.parent.start_byte, node.parent.end_byte) == (node.start_byte, node.end_byte)
    ):
        node = node.parent
    return node


def _partner(
    root: tree_sitter.Node, start: int, end: int, node_type: str
) -> tree_sitter.Node | None:
    """The outermost node of ``root`` spanning exactly ``[start, end)`` with ``node_type``."""
    if end < start:
        return None
    node = root.descendant_for_byte_range(start, max(start, end - 1) if end > start else start)
    found = None
    while node is not None and node.start_byte >= start and node.end_byte <= end:
        if (node.start_byte, node.end_byte, node.type) == (start, end, node_type):
            found = node
        node = node.parent
    return found


# Mirroring a node costs time in proportion to its bytes; past this many bytes per allowed
# node a fragment is taken as too big without counting (a long string is one node, so this
# only skips what is far over the limit).
_BYTES_PER_NODE = 60


def _mirror(node: tree_sitter.Node, source: bytes, max_nodes: int) -> Node | None:
    if node.end_byte - node.start_byte > _BYTES_PER_NODE * max_nodes:
        return None
    tree = from_tree_sitter(node, source)
    return tree if tree.size <= max_nodes else None


@dataclass(frozen=True, slots=True)
class Change:
    """One hunk of a file's change as byte spans: ``old[start:end]`` became
    ``new[new_start:new_end]``, everything outside unchanged (up to other changes)."""

    start: int
    end: int
    new_start: int
    new_end: int
    line: int  # first changed line, 0-based, old file
    new_line: int  # first changed line, 0-based, new file
    last_line: int  # last line the change touches, old file


def _line_offsets(data: bytes) -> list[int]:
    offsets = [0]
    for i, byte in enumerate(data):
        if byte == 10:
            offsets.append(i + 1)
    return offsets


def changes_between(old: bytes, new: bytes) -> list[Change]:
    """The line hunks of ``old`` -> ``new`` (the replay benchmark's recipe, whitespace-only
    hunks dropped) narrowed to the bytes that really differ."""
    from ripple.models.edits.hunks import line_hunks

    old_text, new_text = old.decode("utf-8", "replace"), new.decode("utf-8", "replace")
    old_lines, new_lines = old_text.splitlines(keepends=True), new_text.splitlines(keepends=True)
    old_offsets = [0]
    for line in old_lines:
        old_offsets.append(old_offsets[-1] + len(line.encode("utf-8")))
    new_offsets = [0]
    for line in new_lines:
        new_offsets.append(new_offsets[-1] + len(line.encode("utf-8")))
    changes = []
    for hunk in line_hunks(old_lines, new_lines):
        a, b = old_offsets[hunk.start], old_offsets[hunk.end]
        c, d = new_offsets[hunk.new_start], new_offsets[hunk.new_start + len(hunk.new_lines)]
        for a2, b2, c2, d2 in _split(old, new, a, b, c, d):
            changes.append(
                Change(
                    a2,
                    b2,
                    c2,
                    d2,
                    old.count(b"\n", 0, a2),
                    new.count(b"\n", 0, c2),
                    old.count(b"\n", 0, max(a2, b2 - 1)),
                )
            )
    return changes


_SPLIT_LIMIT = 4000  # bytes; longer hunks are kept whole (quadratic alignment)


def _split(
    old: bytes, new: bytes, a: int, b: int, c: int, d: int
) -> list[tuple[int, int, int, int]]:
    """One line hunk as the byte spans that differ: an alignment of its characters, cut
    wherever an unchanged stretch holds a line break (two statements changed on adjacent
    lines are two changes, as C3PO's fragments are single statements)."""
    import difflib

    # Narrow to the differing bytes: common prefix, then common suffix.
    while a < b and c < d and old[a] == new[c]:
        a, c = a + 1, c + 1
    while a < b and c < d and old[b - 1] == new[d - 1]:
        b, d = b - 1, d - 1
    if b - a > _SPLIT_LIMIT or d - c > _SPLIT_LIMIT or b - a == 0 or d - c == 0:
        return [(a, b, c, d)]
    x, y = old[a:b], new[c:d]
    spans: list[list[int]] = []
    matcher = difflib.SequenceMatcher(None, x, y, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if spans and b"\n" not in x[spans[-1][1] : i1]:
            spans[-1][1], spans[-1][3] = i2, j2
        else:
            spans.append([i1, i2, j1, j2])
    return [(a + i1, a + i2, c + j1, c + j2) for i1, i2, j1, j2 in spans]


def _overlaps(node: tree_sitter.Node, change: Change, changes: Sequence[Change]) -> bool:
    """Whether another change touches the inside of ``node``'s bytes."""
    for other in changes:
        if other is change:
            continue
        if other.start < node.end_byte and other.end > node.start_byte:
            return True
        if other.start == other.end and node.start_byte < other.start < node.end_byte:
            return True
    return False


def _shifted(node: tree_sitter.Node, change: Change) -> tuple[int, int]:
    """``node``'s bytes in the new file, ``change`` being the only change inside it."""
    shift = change.new_start - change.start
    delta = (change.new_end - change.new_start) - (change.end - change.start)
    return node.start_byte + shift, node.end_byte + shift + delta


def fragment_pair(
    old: bytes,
    new: bytes,
    old_root: tree_sitter.Node,
    new_root: tree_sitter.Node,
    change: Change,
    others: Sequence[Change] = (),
    *,
    max_nodes: int = MAX_FRAGMENT_NODES,
) -> tuple[Node, Node] | None:
    """The fragment P around ``change`` and its new version P' (mirrored as ``Node``s, with
    their positions in their files).

    P is the smallest statement (or compound-statement header part, see
    ``_is_fragment_root``) of the old tree covering the changed bytes; P' is the node of
    the new tree with P's type over P's bytes moved by the change. None when P would hold
    another change, P' has no such node (the edit changed the statement's kind or broke
    the parse), or P has more than ``max_nodes`` nodes.
    """
    node = _covering(old_root, change.start, change.end)
    while node.parent is not None and not _is_fragment_root(node):
        node = node.parent
    node = _outermost(node)
    if node.parent is None or _overlaps(node, change, others):
        return None
    partner = _partner(new_root, *_shifted(node, change), node.type)
    if partner is None:
        return None
    before = _mirror(node, old, max_nodes)
    if before is None:
        return None
    after = from_tree_sitter(partner, new)
    return before, after


def _chain(node: Node) -> list[Node]:
    """``node`` and its ancestors, up to the root of its tree."""
    chain = [node]
    while chain[-1].parent is not None:
        chain.append(chain[-1].parent)
    return chain


def _step(node: Node) -> PathStep:
    # Child indices count the placeholder every non-leaf has in C3PO's augmented trees (so
    # the first real child is 1), as ``AugmentedTree`` numbers P's nodes.
    return PathStep(node.type, 0 if node.parent is None else node.child_index() + 1)


def _tree_path(source: Node, target: Node) -> list[PathStep]:
    """Steps from ``source`` up to the lowest common ancestor and down to ``target``."""
    up, down = _chain(source), _chain(target)
    shared = 1
    while shared < min(len(up), len(down)) and up[-shared - 1] is down[-shared - 1]:
        shared += 1
    nodes = up[: len(up) - shared + 1] + down[: len(down) - shared][::-1]
    return [_step(n) for n in nodes]


def _value(node: Node | None) -> tuple[str, ...]:
    if node is None or node.value is None or node.children:
        return ()
    return tuple(subtokens(node.value))


def _show(node: Node) -> str:
    return node.type if node.value is None else repr(node.value)


def edit_context_paths(before: Node, after: Node, line: int) -> list[ContextPath]:
    """The paths of the edit ``before -> after`` (a context edit; §4, Figure 6).

    ``before``/``after`` are literal-normalised fragment trees. One path per action of the
    GumTree edit script, for the top node of each inserted or deleted subtree only (the
    script inserts and deletes node by node). Old-tree paths (DEL, UPD, MOV) first, then
    new-tree ones (INS). ``line`` is where the edit is, for explanations.
    """
    script = diff(before, after)
    inserted = {id(a.node) for a in script.actions if isinstance(a, Insert)}
    deleted = {id(a.node) for a in script.actions if isinstance(a, Delete)}
    old_paths: list[ContextPath] = []
    new_paths: list[ContextPath] = []
    for action in script.actions:
        if isinstance(action, Delete):
            node = action.node
            if node.parent is not None and id(node.parent) in deleted:
                continue
            steps = [*_tree_path(node, before), PathStep(DEL_TYPE, 0)]
            old_paths.append(
                ContextPath(
                    "DEL", tuple(steps), _value(node), (), False, line, f"deleted {_show(node)}"
                )
            )
        elif isinstance(action, Update):
            node = action.node
            steps = [PathStep(UPD_TYPE, 0), *_tree_path(before, node)]
            new_value = tuple(subtokens(action.new)) if action.new else ()
            old_paths.append(
                ContextPath(
                    "UPD",
                    tuple(steps),
                    new_value,
                    _value(node),
                    False,
                    line,
                    f"changed {action.old!r} to {action.new!r}",
                )
            )
        elif isinstance(action, Move):
            node = action.node
            if id(node) in inserted or not _in_tree(node, before):
                continue
            parent = action.parent
            anchor = (
                script.before_of(parent)
                if parent is not None and _in_tree(parent, after)
                else parent
            )
            if anchor is None or not _in_tree(anchor, before):
                anchor = before
            old_paths.append(
                ContextPath(
                    "MOV",
                    tuple(_tree_path(node, anchor)),
                    _value(node),
                    _value(anchor),
                    False,
                    line,
                    f"moved {_show(node)}",
                )
            )
        elif isinstance(action, Insert):
            node = action.node
            if node.parent is not None and id(node.parent) in inserted:
                continue
            steps = [PathStep(INS_TYPE, 0), *_tree_path(after, node)]
            new_paths.append(
                ContextPath(
                    "INS", tuple(steps), (), _value(node), True, line, f"inserted {_show(node)}"
                )
            )
    return old_paths + new_paths


def _in_tree(node: Node, root: Node) -> bool:
    return _chain(node)[-1] is root


def edit_context_text(before: Sequence[str], after: Sequence[str]) -> list[str]:
    """A context edit as text tokens: the changed tokens with ``<del>``/``<ins>`` marks and
    up to two unchanged tokens of context on each side, then ``<sep>`` (the textual edits of
    C3PO §6.2's baselines, from a token alignment)."""
    import difflib

    out: list[str] = []
    matcher = difflib.SequenceMatcher(None, list(before), list(after), autojunk=False)
    for group in matcher.get_grouped_opcodes(2):
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out.extend(before[i1:i2])
                continue
            if i2 > i1:
                out.extend(["<del>", *before[i1:i2], "</del>"])
            if j2 > j1:
                out.extend(["<ins>", *after[j1:j2], "</ins>"])
        out.append("<sep>")
    return out


@dataclass
class BuildStats:
    """Why changes became examples or not (the filters of §6.1 and the notes)."""

    changes: int = 0
    no_fragment: int = 0  # no statement-sized fragment, or P' is not the same kind of node
    too_big: int = 0  # P has more than MAX_FRAGMENT_NODES nodes
    no_context: int = 0  # no other edit within CONTEXT_LINES ("at least 2 changes")
    no_actions: int = 0  # nothing left once literals are normalised
    not_representable: int = 0  # an INS that copies nothing of P, an UPD to a new value ...
    delete_only: int = 0  # only DEL operations (§6.1 (a))
    rename_in_context: int = 0  # only UPDs, all among the context's UPDs (§6.1 (b))
    examples: int = 0

    def add(self, other: BuildStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class ParsedChange:
    """A change of a file with its fragment pair (raw subtrees) and, once asked for, its
    literal-normalised trees and context paths."""

    change: Change
    before: Node | None
    after: Node | None
    statement: bool = False  # the pair is P-shaped (``fragment_pair``), not context-only
    _normalised: tuple[Node, Node] | None = None
    _paths: list[ContextPath] | None = None

    def normalised(self) -> tuple[Node, Node]:
        assert self.before is not None and self.after is not None
        if self._normalised is None:
            self._normalised = (normalise_literals(self.before), normalise_literals(self.after))
        return self._normalised

    def context_paths(self) -> list[ContextPath]:
        if self._paths is None:
            before, after = self.normalised()
            self._paths = edit_context_paths(before, after, self.change.new_line)
        return self._paths

    def context_text(self) -> list[str]:
        before, after = self.normalised()
        return edit_context_text(leaf_tokens(before), leaf_tokens(after))


def parse_changes(
    old: bytes, new: bytes, old_root: tree_sitter.Node, new_root: tree_sitter.Node
) -> list[ParsedChange]:
    """Every change of a file with its fragment pair: P-sized (a statement, see
    ``fragment_pair``) when there is one, else, for use as context only, the smallest node
    covering the change that has a partner in the new tree (up to ``MAX_CONTEXT_NODES``)."""
    changes = changes_between(old, new)
    parsed = []
    for change in changes:
        pair = fragment_pair(
            old, new, old_root, new_root, change, changes, max_nodes=MAX_CONTEXT_NODES
        )
        statement = pair is not None
        if pair is None:
            pair = _context_pair(old, new, old_root, new_root, change, changes)
        before, after = pair if pair is not None else (None, None)
        parsed.append(ParsedChange(change, before, after, statement=statement))
    return parsed


def _context_pair(
    old: bytes,
    new: bytes,
    old_root: tree_sitter.Node,
    new_root: tree_sitter.Node,
    change: Change,
    changes: Sequence[Change],
) -> tuple[Node, Node] | None:
    node: tree_sitter.Node | None = _covering(old_root, change.start, change.end)
    while node is not None and node.parent is not None:
        if _overlaps(node, change, changes):
            return None
        partner = _partner(new_root, *_shifted(node, change), node.type)
        if partner is not None:
            before = _mirror(node, old, MAX_CONTEXT_NODES)
            return None if before is None else (before, from_tree_sitter(partner, new))
        node = node.parent
    return None


def assemble_context(
    target: Change, candidates: Iterable[ParsedChange], max_paths: int = MAX_CONTEXT_PATHS
) -> tuple[list[ContextPath], list[str]]:
    """Context paths and text of the edits in ``candidates`` (nearest first until
    ``max_paths`` paths; then in file order, old-tree paths before new-tree ones)."""
    chosen: list[tuple[int, list[ContextPath], list[str]]] = []
    total = 0
    ranked = sorted(candidates, key=lambda c: abs(c.change.line - target.line))
    for rank, item in enumerate(ranked):
        paths = item.context_paths()
        if not paths:
            continue
        if total + len(paths) > max_paths:
            paths = paths[: max(0, max_paths - total)]
            if not paths:
                break
        total += len(paths)
        chosen.append((rank, paths, item.context_text()))
    chosen.sort(key=lambda c: ranked[c[0]].change.line)
    old_paths = [p for _, paths, _ in chosen for p in paths if not p.after]
    new_paths = [p for _, paths, _ in chosen for p in paths if p.after]
    text = [t for _, _, tokens in chosen for t in tokens]
    return old_paths + new_paths, text


def _in_window(change: Change, other: Change, lines: int) -> bool:
    return other.last_line >= change.line - lines and other.line <= change.last_line + lines


def _context_sets(
    target: Change,
    parsed: Sequence[ParsedChange],
    exclude: ParsedChange | None,
    scope: str,
    other_files: Sequence[ParsedChange],
) -> tuple[list[ParsedChange], list[ParsedChange]]:
    """The edits within ``CONTEXT_LINES`` of ``target``, and (scope ``commit``) the rest."""
    nearby = [
        other
        for other in parsed
        if other is not exclude
        and other.before is not None
        and _in_window(target, other.change, CONTEXT_LINES)
    ]
    farther: list[ParsedChange] = []
    if scope == "commit":
        farther = [
            other
            for other in parsed
            if other is not exclude and other.before is not None and other not in nearby
        ] + list(other_files)
    return nearby, farther


def _assemble(
    target: Change, nearby: Sequence[ParsedChange], farther: Sequence[ParsedChange]
) -> tuple[list[ContextPath], list[str]]:
    context, text = assemble_context(target, nearby)
    if farther and len(context) < MAX_CONTEXT_PATHS:
        extra, extra_text = assemble_context(target, farther, MAX_CONTEXT_PATHS - len(context))
        context = (
            [p for p in context if not p.after]
            + [p for p in extra if not p.after]
            + [p for p in context if p.after]
            + [p for p in extra if p.after]
        )
        text = text + extra_text
    return context, text


def context_pairs(
    target: Change,
    nearby: Sequence[ParsedChange],
    farther: Sequence[ParsedChange],
    max_edits: int = MAX_CONTEXT_EDITS,
) -> list[tuple[Node, Node, int]]:
    """The context edits as normalised fragment pairs ``(before, after, old line)``: those
    within the window nearest first, then (scope ``commit``) the rest nearest first, at
    most ``max_edits``."""
    out: list[tuple[Node, Node, int]] = []
    for group in (nearby, farther):
        for item in sorted(group, key=lambda c: abs(c.change.line - target.line)):
            if len(out) >= max_edits:
                return out
            if item.before is None or item.after is None:
                continue
            before, after = item.normalised()
            out.append((before, after, item.change.line))
    return out


def edit_context_edits(
    target: Change,
    parsed: Sequence[ParsedChange],
    *,
    scope: str = "window",
    other_files: Sequence[ParsedChange] = (),
    exclude: ParsedChange | None = None,
) -> list[tuple[Node, Node, int]]:
    """``context_pairs`` of a fragment at ``target``, chosen as ``edit_context`` chooses
    (the structural editor's context, the same for training and live requests)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown context scope {scope!r} (one of {', '.join(SCOPES)})")
    nearby, farther = _context_sets(target, parsed, exclude, scope, other_files)
    return context_pairs(target, nearby, farther)


def edit_context(
    target: Change,
    parsed: Sequence[ParsedChange],
    *,
    scope: str = "window",
    other_files: Sequence[ParsedChange] = (),
    exclude: ParsedChange | None = None,
) -> tuple[list[ContextPath], list[str]]:
    """The context C of a fragment at ``target`` (old-file lines): paths and text of the
    edits ``parsed`` of its file (and, scope ``commit``, of ``other_files``), exactly as
    ``file_examples`` assembles it for training. The server calls this for the fragments
    it proposes to complete, with the user's edits since the last snapshot."""
    if scope not in SCOPES:
        raise ValueError(f"unknown context scope {scope!r} (one of {', '.join(SCOPES)})")
    nearby, farther = _context_sets(target, parsed, exclude, scope, other_files)
    return _assemble(target, nearby, farther)


def fragment_nodes(
    root: tree_sitter.Node, first_line: int, last_line: int
) -> list[tree_sitter.Node]:
    """The nodes a fragment P can be (``fragment_pair``'s choice: a statement, or a named
    part of a compound statement's header) that start within lines ``[first_line,
    last_line]`` (0-based), in source order, compound statements that hold a block left
    out (they are never small enough)."""
    found: list[tree_sitter.Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.end_point[0] < first_line or node.start_point[0] > last_line:
            continue
        if (
            node.parent is not None
            and node.is_named
            and _is_fragment_root(node)
            and _outermost(node) == node
            and node.start_point[0] >= first_line
            and not any(c.type == "block" for c in node.children)
        ):
            found.append(node)
        stack.extend(reversed(node.children))
    return found


def file_examples(
    repo: str,
    commit: str,
    path: str,
    old: bytes,
    new: bytes,
    *,
    old_root: tree_sitter.Node,
    new_root: tree_sitter.Node,
    stats: BuildStats,
    scope: str = "window",
    other_files: Sequence[ParsedChange] = (),
) -> list[CompletionExample]:
    """The EditCompletion examples of one file of one commit (§6.1).

    Every change whose fragment is at most ``MAX_FRAGMENT_NODES`` nodes, has at least one
    other edit in its context, and passes the filters of ``BuildStats``. The context is
    the edits within ``CONTEXT_LINES`` lines (``scope="window"``, C3PO's), or those first
    and then the commit's other edits, nearest first: the rest of the file and
    ``other_files`` (``scope="commit"``, the extension; what a user's recent edits are).
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown context scope {scope!r} (one of {', '.join(SCOPES)})")
    parsed = parse_changes(old, new, old_root, new_root)
    examples = []
    for item in parsed:
        stats.changes += 1
        if item.before is None or item.after is None or not item.statement:
            stats.no_fragment += 1
            continue
        if item.before.size > MAX_FRAGMENT_NODES:
            stats.too_big += 1
            continue
        nearby, farther = _context_sets(item.change, parsed, item, scope, other_files)
        if not nearby and not farther:
            stats.no_context += 1
            continue
        before, after = item.normalised()
        script = diff(before, after)
        if not script.actions:
            stats.no_actions += 1
            continue
        try:
            tree, operations = gold_operations(script)
        except ValueError:  # NotRepresentable, or an operation the path rules refuse
            stats.not_representable += 1
            continue
        if all(tree.nodes[op.target] is tree.del_node for op in operations):
            stats.delete_only += 1
            continue
        context, text = _assemble(item.change, nearby, farther)
        if not context:
            stats.no_context += 1
            continue
        if _rename_in_context(script, context):
            stats.rename_in_context += 1
            continue
        stats.examples += 1
        examples.append(
            CompletionExample(
                repo=repo,
                commit=commit,
                path=path,
                line=item.before.start_point[0],
                before=before,
                after=after,
                operations=[(op.operation.value, op.source, op.target) for op in operations],
                context=context,
                tokens_before=leaf_tokens(before),
                tokens_after=leaf_tokens(after),
                context_text=text,
                context_edits=context_pairs(item.change, nearby, farther),
            )
        )
    return examples


def _rename_in_context(script: EditScript, context: Sequence[ContextPath]) -> bool:
    """§6.1 (b): P's edit and its context are only UPDs, and P's are among the context's."""
    if not all(isinstance(a, Update) for a in script.actions):
        return False
    if not all(p.kind == "UPD" for p in context):
        return False
    context_updates = {(p.target_value, p.source_value) for p in context}
    return all(
        (_value(a.node), tuple(subtokens(a.new)) if a.new else ()) in context_updates
        for a in script.actions
        if isinstance(a, Update)
    )


# -- writing a predicted P' back as source text ----------------------------------------------

_NO_SPACE_BEFORE = frozenset({")", "]", "}", ",", ":", ".", ";"})
_NO_SPACE_AFTER = frozenset({"(", "[", "{", ".", "~", "@"})
_TIGHT_EQUALS = frozenset({"keyword_argument", "default_parameter", "typed_default_parameter"})


def _spacing(previous: Node, token: Node) -> str:
    """The gap between two tokens that were not neighbours in P (PEP 8's usual spacing)."""
    prev, tok = previous.value or "", token.value or ""
    if tok in _NO_SPACE_BEFORE or prev in _NO_SPACE_AFTER:
        return ""
    if "=" in (prev, tok):
        owner = token.parent if tok == "=" else previous.parent
        if owner is not None and owner.type in _TIGHT_EQUALS:
            return ""
    if tok in ("(", "[") and (prev[-1:].isalnum() or prev[-1:] in ("_", ")", "]", '"', "'")):
        return "" if prev not in _KEYWORDS else " "
    return " "


_KEYWORDS = frozenset(
    "and as assert async await del elif else except for from global if import in is lambda "
    "nonlocal not or return while with yield".split()
)


def render_fragment(original: Node, edited: Node, source: bytes) -> str:
    """``edited`` (P' from ``apply_operations`` on the un-normalised ``original`` P, so
    its nodes keep P's byte positions) as source text: the tokens of P' with P's own
    spacing between tokens that were neighbours in P, PEP 8's usual spacing elsewhere."""
    order = {
        (n.start_byte, n.end_byte, n.type): i
        for i, n in enumerate(x for x in original.pre_order() if not x.children)
    }
    out: list[str] = []
    previous: Node | None = None
    for leaf in edited.pre_order():
        if leaf.children or leaf.value is None:
            continue
        if previous is not None:
            a = order.get((previous.start_byte, previous.end_byte, previous.type))
            b = order.get((leaf.start_byte, leaf.end_byte, leaf.type))
            if a is not None and b is not None and b == a + 1:
                out.append(source[previous.end_byte : leaf.start_byte].decode("utf-8", "replace"))
            else:
                out.append(_spacing(previous, leaf))
        out.append(leaf.value)
        previous = leaf
    return "".join(out)
