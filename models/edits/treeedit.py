"""Structural edits as incremental tree transformations (Yao et al. 2021).

Yao et al. edit an AST one action at a time, each action applied to the tree at once, the
next one chosen on the tree as it now is:

* ``DELETE`` a node (its subtree goes with it);
* ``ADD`` a node with a label (a grammar type, and a value when it is a token) at an
  insertion point: a position in a field of a node of the current tree. An inner node
  comes with its fields empty; later actions fill them;
* ``SUBTREE``: insert a copy of a subtree of the sources (the original tree, then the
  context trees) at an insertion point;
* ``STOP``.

Every choice is masked to what the grammar allows (``grammar.Grammar``, tree-sitter's
node-types): a field accepts only its types; a single field holds one node; a required
field left empty is a hole, and STOP is valid only without holes. So every tree the editor
can finish with satisfies the grammar.

The trees edited here (``TNode``) are ripple's ``tree.Node``s seen through the grammar:
children grouped by field (``""`` for named children without a field), anonymous tokens
(``(``, ``,``, ``def``) dropped unless they sit in a field (binary_operator's ``+``),
under a virtual ``FRAGMENT`` root whose one field holds the fragment's node, so that the
root itself can be replaced. ``to_node`` and ``render`` write an edited tree back as a
concrete ``Node`` and as text: a node that mirrors a node of the source keeps its own
anonymous tokens where they were; a new node gets the grammar's most common layout.
Tokens outside fields carry no edit: ``def``/``async def``, the place of a slice's ``:``
and the dots of a relative import are not in these trees (a new node gets the common
form).

``gold_actions`` is the expert of Yao et al.'s imitation learning: a Levenshtein dynamic
program over each field's list of children (delete 1, add the subtree's size, a subtree
present in the sources 1 via SUBTREE, same type: recurse, equal tokens 0), from any tree
to the target, its actions in document order (top-down, left to right) with indexes valid
when each is applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ripple.models.edits.completion import NUMBER_VALUE, STRING_VALUE, _spacing
from ripple.models.edits.grammar import FRAGMENT, Grammar, Layout, LayoutItem
from ripple.models.edits.languages import parse_python
from ripple.models.edits.tree import Node, from_tree_sitter

__all__ = [
    "ADD",
    "ADDED",
    "COPIED",
    "DELETE",
    "FRAGMENT",
    "OP_NAMES",
    "ORIGINAL",
    "STOP",
    "SUBTREE",
    "Action",
    "EditState",
    "Slot",
    "TNode",
    "check_tree",
    "from_node",
    "gold_actions",
    "parse_fragment",
    "render",
    "same_tree",
    "to_node",
]

ORIGINAL, ADDED, COPIED = 0, 1, 2
STOP, DELETE, ADD, SUBTREE = 0, 1, 2, 3
OP_NAMES = ("STOP", "DELETE", "ADD", "SUBTREE")

Label = tuple[str, str | None]


@dataclass(eq=False, slots=True)
class TNode:
    """A node of an edit tree: a type, a value for tokens, children grouped by field.

    ``eq=False``: nodes compare by identity; ``same_tree`` compares trees.
    """

    type: str
    value: str | None  # token text of a leaf; None for inner nodes
    named: bool
    fields: dict[str, list[TNode]] = dataclasses.field(default_factory=dict)
    parent: TNode | None = None
    field: str = ""  # the parent's field holding this node
    origin: int = ORIGINAL
    source: Node | None = None  # the concrete node it mirrors (for rendering), if any

    @property
    def label(self) -> Label:
        return (self.type, self.value)

    @property
    def is_leaf(self) -> bool:
        return self.value is not None

    def children(self) -> Iterator[TNode]:
        """Every child, field after field (in ``fields`` order), in order within a field."""
        for kids in self.fields.values():
            yield from kids

    def pre_order(self) -> list[TNode]:
        """This node and its descendants, parents first, fields in order, left to right."""
        out: list[TNode] = []
        stack = [self]
        while stack:
            node = stack.pop()
            out.append(node)
            for kids in reversed(list(node.fields.values())):
                stack.extend(reversed(kids))
        return out

    @property
    def size(self) -> int:
        return len(self.pre_order())

    def copy(self, origin: int | None = None) -> TNode:
        """A deep copy, detached from any parent (``origin`` overrides every node's)."""
        clone = TNode(
            self.type, self.value, self.named, {}, None, self.field,
            self.origin if origin is None else origin, self.source,
        )  # fmt: skip
        stack = [(self, clone)]
        while stack:
            src, dst = stack.pop()
            for name, kids in src.fields.items():
                copies = []
                for kid in kids:
                    c = TNode(
                        kid.type, kid.value, kid.named, {}, dst, name,
                        kid.origin if origin is None else origin, kid.source,
                    )  # fmt: skip
                    copies.append(c)
                    stack.append((kid, c))
                dst.fields[name] = copies
        return clone

    def __repr__(self) -> str:
        shown = f" {self.value!r}" if self.value is not None else ""
        return f"<TNode {self.type}{shown}>"


def _field_of(child: Node) -> str | None:
    if child.field is not None:
        return child.field
    return "" if child.named else None


def _new_fields(node_type: str, grammar: Grammar) -> dict[str, list[TNode]]:
    return {name: [] for name in grammar.fields_of(node_type)}


def from_node(root: Node, grammar: Grammar, *, strict: bool = True) -> TNode:
    """``root`` as an edit tree under a virtual ``FRAGMENT`` root.

    A named child without a field goes to field ``""``; an anonymous token is kept only
    when it sits in a field. Every ``TNode`` keeps the ``Node`` it mirrors (``source``).
    With ``strict``, a tree the grammar does not accept (``check_tree``) is a ValueError.
    """
    fragment = TNode(FRAGMENT, None, True, {"": []})
    stack: list[tuple[Node, TNode, str]] = [(root, fragment, "")]
    while stack:
        node, parent, name = stack.pop()
        value = node.value if not node.children else None
        t = TNode(
            node.type, value, node.named,
            {} if value is not None else _new_fields(node.type, grammar),
            parent, name, ORIGINAL, node,
        )  # fmt: skip
        parent.fields.setdefault(name, []).append(t)
        if value is None:
            for child in reversed(node.children):
                child_field = _field_of(child)
                if child_field is not None:
                    stack.append((child, t, child_field))
    # Children are pushed in reverse, so each parent's are popped (and appended) in order.
    if strict:
        problems = check_tree(fragment, grammar)
        if problems:
            raise ValueError(f"the grammar does not accept this tree: {problems[0]}")
    return fragment


def check_tree(root: TNode, grammar: Grammar, *, allow_holes: bool = False) -> list[str]:
    """What the grammar does not accept in a tree (empty: a valid tree).

    Checked: every child is of a type its parent's field accepts, a single field holds at
    most one node, leaves are token types and inner nodes inner types, and (unless
    ``allow_holes``) no required field is empty. Parent links are checked too.
    """
    problems: list[str] = []
    for node in root.pre_order():
        if node.value is not None:
            if any(node.fields.values()):
                problems.append(f"token {node.type} has children")
            if node is not root and not grammar.is_leaf_type(node.type):
                problems.append(f"{node.type} is not a token type")
            continue
        if node is not root and not grammar.is_inner_type(node.type):
            problems.append(f"{node.type} is not an inner type")
        for name, kids in node.fields.items():
            spec = grammar.field_spec(node.type, name)
            if spec is None:
                if kids:
                    problems.append(f"{node.type} has no field {name!r}")
                continue
            if len(kids) > 1 and not spec.multiple:
                problems.append(f"{node.type}.{name or '<children>'} holds {len(kids)} nodes")
            for kid in kids:
                if kid.parent is not node or kid.field != name:
                    problems.append(f"{kid.type} has a stale parent link")
                if not grammar.accepts(node.type, name, kid.type):
                    problems.append(f"{node.type}.{name or '<children>'} does not take {kid.type}")
        if not allow_holes:
            for name in grammar.fields_of(node.type):
                spec = grammar.field_spec(node.type, name)
                if spec is not None and spec.required and not node.fields.get(name):
                    problems.append(f"{node.type}.{name or '<children>'} is empty")
    return problems


def same_tree(a: TNode, b: TNode) -> bool:
    """Same type and value, and the same children in every field, recursively."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x.type != y.type or x.value != y.value:
            return False
        fx = {k: v for k, v in x.fields.items() if v}
        fy = {k: v for k, v in y.fields.items() if v}
        if fx.keys() != fy.keys():
            return False
        for name, kids in fx.items():
            other = fy[name]
            if len(kids) != len(other):
                return False
            stack.extend(zip(kids, other, strict=True))
    return True


# -- actions and the edit state ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Slot:
    """An insertion point in the current tree."""

    parent: int  # pre-order index of the parent in the current tree
    field: str
    index: int  # position in that field's list where the node goes


@dataclass(frozen=True, slots=True)
class Action:
    """One edit action (``op``: STOP, DELETE, ADD or SUBTREE)."""

    op: int
    node: int = -1  # DELETE: pre-order index in the current tree
    slot: Slot | None = None  # ADD / SUBTREE
    label: Label | None = None  # ADD: (type, value); value only for tokens
    source: int = -1  # SUBTREE: index into EditState.sources

    def __str__(self) -> str:
        name = OP_NAMES[self.op]
        if self.op == DELETE:
            return f"{name} #{self.node}"
        where = "" if self.slot is None else (
            f" @{self.slot.parent}.{self.slot.field or '<children>'}[{self.slot.index}]"
        )
        if self.op == ADD:
            return f"{name}{where} {self.label}"
        if self.op == SUBTREE:
            return f"{name}{where} src#{self.source}"
        return name


class EditState:
    """A tree being edited: the valid actions on it, and ``apply``.

    ``sources`` are trees (the original tree, then each context tree); ``self.sources``
    is their nodes, pre-order, tree after tree: what a SUBTREE action's ``source`` indexes.
    ``tree`` is copied; ``nodes`` is the current tree in pre-order (0: the FRAGMENT root).
    """

    def __init__(self, tree: TNode, grammar: Grammar, sources: Sequence[TNode] = ()) -> None:
        self.grammar = grammar
        self.tree = tree.copy()
        self.source_roots = list(sources)
        self.sources: list[TNode] = [n for r in self.source_roots for n in r.pre_order()]
        self.done = False
        self.nodes: list[TNode] = []
        self._index: dict[int, int] = {}
        self._source_cache: dict[tuple[str, str], list[int]] = {}
        self._refresh()

    def _refresh(self) -> None:
        self.nodes = self.tree.pre_order()
        self._index = {id(n): i for i, n in enumerate(self.nodes)}

    def copy(self) -> EditState:
        """An independent state with the same tree, grammar and sources (for beams)."""
        clone = EditState.__new__(EditState)
        clone.grammar = self.grammar
        clone.tree = self.tree.copy()
        clone.source_roots = self.source_roots
        clone.sources = self.sources
        clone.done = self.done
        clone._source_cache = self._source_cache
        clone._refresh()
        return clone

    def index(self, node: TNode) -> int:
        """The pre-order index of a node of the current tree."""
        return self._index[id(node)]

    # -- the valid choices -----------------------------------------------------------------

    def slots(self) -> list[Slot]:
        """Every valid insertion point, in pre-order of the parents, fields in grammar
        order, positions left to right (a single field only when it is empty)."""
        out: list[Slot] = []
        for i, node in enumerate(self.nodes):
            if node.value is not None:
                continue
            for name in self.grammar.fields_of(node.type):
                spec = self.grammar.field_spec(node.type, name)
                if spec is None:
                    continue
                n = len(node.fields.get(name, ()))
                if spec.multiple:
                    out.extend(Slot(i, name, k) for k in range(n + 1))
                elif n == 0:
                    out.append(Slot(i, name, 0))
        return out

    def holes(self) -> list[Slot]:
        """Required fields left empty (a hole must be filled before STOP)."""
        out: list[Slot] = []
        for i, node in enumerate(self.nodes):
            if node.value is not None:
                continue
            for name in self.grammar.fields_of(node.type):
                spec = self.grammar.field_spec(node.type, name)
                if spec is not None and spec.required and not node.fields.get(name):
                    out.append(Slot(i, name, 0))
        return out

    def can_stop(self) -> bool:
        return not self.done and not self.holes()

    def deletable(self) -> list[int]:
        """Nodes that may be deleted: every node but the FRAGMENT root."""
        return list(range(1, len(self.nodes)))

    def slot_ok(self, slot: Slot) -> bool:
        """Whether ``slot`` is an insertion point of the current tree."""
        if not 0 <= slot.parent < len(self.nodes):
            return False
        parent = self.nodes[slot.parent]
        if parent.value is not None:
            return False
        spec = self.grammar.field_spec(parent.type, slot.field)
        if spec is None:
            return False
        n = len(parent.fields.get(slot.field, ()))
        if spec.multiple:
            return 0 <= slot.index <= n
        return n == 0 and slot.index == 0

    def label_ok(self, slot: Slot, label: Label) -> bool:
        """Whether ADD of ``label`` at ``slot`` is valid (the slot is assumed valid)."""
        parent = self.nodes[slot.parent]
        node_type, value = label
        if not self.grammar.accepts(parent.type, slot.field, node_type):
            return False
        if value is None:
            return self.grammar.is_inner_type(node_type)
        return bool(value) and self.grammar.is_leaf_type(node_type)

    def accepted_types(self, slot: Slot) -> frozenset[str]:
        """The node types that may go to ``slot`` (empty for no valid slot): a label is
        valid there when its type is one of these, its value is None for an inner type
        (``Grammar.is_inner_type``) and a non-empty text for a token type."""
        if not self.slot_ok(slot):
            return frozenset()
        spec = self.grammar.field_spec(self.nodes[slot.parent].type, slot.field)
        return frozenset() if spec is None else spec.types

    def valid_labels(self, slot: Slot) -> Callable[[Label], bool]:
        """A predicate over labels: which (type, value) may be added at ``slot``."""
        ok = self.slot_ok(slot)
        return lambda label: ok and self.label_ok(slot, label)

    def valid_sources(self, slot: Slot) -> list[int]:
        """Indexes into ``sources`` whose subtree may be copied to ``slot``."""
        if not self.slot_ok(slot):
            return []
        parent = self.nodes[slot.parent]
        key = (parent.type, slot.field)
        found = self._source_cache.get(key)
        if found is None:
            found = [
                j for j, s in enumerate(self.sources)
                if s.type != FRAGMENT and self.grammar.accepts(parent.type, slot.field, s.type)
            ]  # fmt: skip
            self._source_cache[key] = found
        return found

    # -- applying an action ----------------------------------------------------------------

    def apply(self, action: Action) -> None:
        """Transform the tree by ``action``; a ValueError (and no change) if it is invalid."""
        if self.done:
            raise ValueError("the edit has already stopped")
        if action.op == STOP:
            holes = self.holes()
            if holes:
                hole = holes[0]
                raise ValueError(
                    f"STOP with a hole: {self.nodes[hole.parent].type}.{hole.field or '<children>'}"
                )
            self.done = True
            return
        if action.op == DELETE:
            if not 0 < action.node < len(self.nodes):
                raise ValueError(f"DELETE of no deletable node ({action.node})")
            node = self.nodes[action.node]
            assert node.parent is not None
            kids = node.parent.fields[node.field]
            kids.pop(next(i for i, k in enumerate(kids) if k is node))
            node.parent = None
            self._refresh()
            return
        if action.op not in (ADD, SUBTREE):
            raise ValueError(f"unknown action {action.op}")
        slot = action.slot
        if slot is None or not self.slot_ok(slot):
            raise ValueError(f"{OP_NAMES[action.op]} at no valid slot ({slot})")
        parent = self.nodes[slot.parent]
        if action.op == ADD:
            if action.label is None or not self.label_ok(slot, action.label):
                raise ValueError(
                    f"ADD of {action.label} into {parent.type}.{slot.field or '<children>'}"
                )
            node_type, value = action.label
            spec = self.grammar.field_spec(parent.type, slot.field)
            named = spec is None or node_type not in spec.anonymous
            new = TNode(
                node_type, value, named,
                {} if value is not None else _new_fields(node_type, self.grammar),
                None, slot.field, ADDED, None,
            )  # fmt: skip
        else:
            if not 0 <= action.source < len(self.sources):
                raise ValueError(f"SUBTREE of no source ({action.source})")
            src = self.sources[action.source]
            if src.type == FRAGMENT or not self.grammar.accepts(
                parent.type, slot.field, src.type
            ):
                raise ValueError(
                    f"SUBTREE of {src.type} into {parent.type}.{slot.field or '<children>'}"
                )
            new = src.copy(origin=COPIED)
        new.parent = parent
        new.field = slot.field
        parent.fields.setdefault(slot.field, []).insert(slot.index, new)
        self._refresh()


# -- the expert: Yao et al.'s dynamic program -----------------------------------------------

_INF = 1 << 40


class _Interner:
    """Hash-consing: one small int per distinct subtree shape (type, value, fields)."""

    def __init__(self) -> None:
        self.ids: dict[tuple[Any, ...], int] = {}
        self.of: dict[int, int] = {}  # id(TNode) -> shape id

    def intern(self, root: TNode) -> int:
        order = root.pre_order()
        for node in reversed(order):
            key = (
                node.type,
                node.value,
                tuple(
                    sorted(
                        (name, tuple(self.of[id(k)] for k in kids))
                        for name, kids in node.fields.items()
                        if kids
                    )
                ),
            )
            shape = self.ids.get(key)
            if shape is None:
                shape = self.ids[key] = len(self.ids)
            self.of[id(node)] = shape
        return self.of[id(root)]


class _Expert:
    def __init__(self, state: EditState, target: TNode) -> None:
        self.state = state
        self.grammar = state.grammar
        self.shapes = _Interner()
        self.source_of: dict[int, int] = {}
        for root in state.source_roots:
            self.shapes.intern(root)
        for j, node in enumerate(state.sources):
            if node.type != FRAGMENT:
                self.source_of.setdefault(self.shapes.of[id(node)], j)
        self.shapes.intern(state.tree)
        self.shapes.intern(target)
        self._add: dict[int, int] = {}
        self._cost: dict[tuple[int, int], int] = {}
        self.actions: list[Action] = []

    def shape(self, node: TNode) -> int:
        return self.shapes.of[id(node)]

    def add_cost(self, b: TNode) -> int:
        """Cost of building ``b``: 1 by SUBTREE when the sources hold it, else 1 + its
        children's."""
        cached = self._add.get(id(b))
        if cached is not None:
            return cached
        if self.shape(b) in self.source_of:
            cost = 1
        else:
            cost = 1 + sum(self.add_cost(c) for c in b.children())
        self._add[id(b)] = cost
        return cost

    def cost(self, a: TNode, b: TNode) -> int:
        """Cost of turning ``a`` into ``b`` in place (``_INF`` if they cannot match)."""
        if self.shape(a) == self.shape(b):
            return 0
        if a.type != b.type or a.value is not None or b.value is not None:
            return _INF
        key = (id(a), id(b))
        cached = self._cost.get(key)
        if cached is not None:
            return cached
        total = 0
        for name in self.field_names(a, b):
            total += self.table(a.fields.get(name, []), b.fields.get(name, []))[-1][-1]
        self._cost[key] = total
        return total

    def field_names(self, a: TNode, b: TNode) -> list[str]:
        names = list(self.grammar.fields_of(a.type))
        names += [n for n in a.fields if n not in names]
        names += [n for n in b.fields if n not in names]
        return names

    def table(self, xs: Sequence[TNode], ys: Sequence[TNode]) -> list[list[int]]:
        """Levenshtein over two children lists: delete 1, add ``add_cost``, match ``cost``."""
        n, m = len(xs), len(ys)
        d = [[0] * (m + 1) for _ in range(n + 1)]
        for j in range(1, m + 1):
            d[0][j] = d[0][j - 1] + self.add_cost(ys[j - 1])
        for i in range(1, n + 1):
            d[i][0] = i
            row, prev = d[i], d[i - 1]
            x = xs[i - 1]
            for j in range(1, m + 1):
                y = ys[j - 1]
                best = prev[j] + 1
                add = row[j - 1] + self.add_cost(y)
                if add < best:
                    best = add
                if prev[j - 1] < best:
                    match = prev[j - 1] + self.cost(x, y)
                    if match < best:
                        best = match
                row[j] = best
        return d

    def align(self, xs: Sequence[TNode], ys: Sequence[TNode]) -> list[tuple[str, int, int]]:
        """The optimal alignment, left to right: ("m", i, j), ("d", i, -1), ("a", -1, j).
        Ties: match, then add, then delete when read from the end (so a deletion comes
        before an addition at the same place)."""
        d = self.table(xs, ys)
        i, j = len(xs), len(ys)
        ops: list[tuple[str, int, int]] = []
        while i or j:
            here = d[i][j]
            if i and j and d[i - 1][j - 1] + self.cost(xs[i - 1], ys[j - 1]) == here:
                ops.append(("m", i - 1, j - 1))
                i, j = i - 1, j - 1
            elif j and d[i][j - 1] + self.add_cost(ys[j - 1]) == here:
                ops.append(("a", -1, j - 1))
                j -= 1
            else:
                ops.append(("d", i - 1, -1))
                i -= 1
        ops.reverse()
        return ops

    def emit(self, action: Action) -> None:
        self.state.apply(action)
        self.actions.append(action)

    def walk(self, a: TNode, b: TNode) -> None:
        """Edit ``a`` (same type as ``b``, both inner) into ``b``, field by field."""
        for name in self.field_names(a, b):
            xs = list(a.fields.get(name, []))
            ys = b.fields.get(name, [])
            if not xs and not ys:
                continue
            pos = 0
            for op, i, j in self.align(xs, ys):
                if op == "d":
                    self.emit(Action(DELETE, node=self.state.index(xs[i])))
                elif op == "a":
                    self.build(a, name, pos, ys[j])
                    pos += 1
                else:
                    if self.shape(xs[i]) != self.shape(ys[j]):
                        self.walk(xs[i], ys[j])
                    pos += 1

    def build(self, parent: TNode, name: str, pos: int, b: TNode) -> None:
        """Add ``b`` at ``parent.name[pos]``: by SUBTREE when a source holds it, else ADD
        its label and build its children."""
        slot = Slot(self.state.index(parent), name, pos)
        source = self.source_of.get(self.shape(b))
        if source is not None:
            self.emit(Action(SUBTREE, slot=slot, source=source))
            return
        self.emit(Action(ADD, slot=slot, label=b.label))
        new = parent.fields[name][pos]
        for field_name in self.field_names(new, b):
            for k, child in enumerate(b.fields.get(field_name, [])):
                self.build(new, field_name, k, child)


def gold_actions(
    current: TNode, target: TNode, grammar: Grammar, sources: Sequence[TNode] = ()
) -> list[Action]:
    """The expert's actions that turn ``current`` into ``target``, ending with STOP.

    Yao et al.'s dynamic program: per field, a Levenshtein alignment of the children lists
    (delete 1; add the subtree's size, or 1 when a subtree of ``sources`` is isomorphic to
    it and is copied by SUBTREE; nodes of the same type are edited in place, recursively;
    equal tokens cost 0). Actions come in document order (top-down, left to right), each
    with indexes valid in the tree it applies to. Both trees are FRAGMENT-rooted (as
    ``from_node`` builds them). A target the grammar does not accept is a ValueError.
    """
    if current.type != target.type:
        raise ValueError("current and target must both be FRAGMENT roots")
    state = EditState(current, grammar, sources)
    expert = _Expert(state, target)
    expert.walk(state.tree, target)
    expert.emit(Action(STOP))
    return expert.actions


# -- back to concrete trees and text --------------------------------------------------------

_NO_POSITION = -1


def _concrete(t: TNode, parent: Node | None, field_name: str | None) -> Node:
    """A ``Node`` for ``t`` (no children yet), with its source node's positions."""
    src = t.source
    node = Node(t.type, t.value, [], parent, named=t.named, field=field_name)
    if src is not None and src.type == t.type:
        node.start_point, node.end_point = src.start_point, src.end_point
        node.start_byte, node.end_byte = src.start_byte, src.end_byte
    else:
        node.start_byte = node.end_byte = _NO_POSITION
    return node


def _token(text: str, parent: Node, like: Node | None = None) -> Node:
    node = Node(text, text, [], parent, named=False)
    if like is not None:
        node.start_point, node.end_point = like.start_point, like.end_point
        node.start_byte, node.end_byte = like.start_byte, like.end_byte
    else:
        node.start_byte = node.end_byte = _NO_POSITION
    return node


# A plan for writing one node: tokens (with the source token they come from, if any) and
# field children (field, index into the field's list).
_Plan = list[tuple[str, Any, int]]  # ("tok", text | Node, 0) or ("kid", field, index)


def _source_plan(t: TNode, grammar: Grammar) -> _Plan | None:
    """The children of ``t`` laid out like its source node's, or None when the source's
    token layout does not fit (a field became empty or non-empty, a field whose elements
    are not one run changed its count)."""
    src = t.source
    if src is None or src.type != t.type or not src.children:
        return None
    items: list[tuple[str | None, Node]] = [(_field_of(c), c) for c in src.children]
    occurrences: dict[str, list[int]] = {}
    for pos, (name, _) in enumerate(items):
        if name is not None:
            occurrences.setdefault(name, []).append(pos)
    counts = {name: len(kids) for name, kids in t.fields.items() if kids}
    if set(counts) != set(occurrences):
        return None
    run_span: dict[str, tuple[int, int, list[Node]]] = {}
    for name, where in occurrences.items():
        if counts[name] == len(where):
            continue
        if counts[name] == 1:  # one element may need other tokens: ``(a,)``
            return None
        first, last = where[0], where[-1]
        inner = items[first : last + 1]
        # One run: only tokens between the occurrences, the same tokens in every gap.
        if any(n is not None and n != name for n, _ in inner):
            return None
        gaps: list[list[Node]] = [[]]
        for n, c in inner[1:]:
            if n is None:
                gaps[-1].append(c)
            else:
                gaps.append([])
        gaps.pop()
        if gaps:
            texts = {tuple(c.value or c.type for c in g) for g in gaps}
            if len(texts) != 1:
                return None
            sep_nodes = gaps[0]
        else:
            sep = grammar.separator(t.type, name)
            if sep is None:
                return None
            sep_nodes = []
        run_span[name] = (first, last, sep_nodes)
    plan: _Plan = []
    seen: dict[str, int] = {}
    pos = 0
    while pos < len(items):
        name, child = items[pos]
        if name is None:
            plan.append(("tok", child, 0))
            pos += 1
            continue
        if name in run_span:
            first, last, sep_nodes = run_span[name]
            between = [c for n, c in items[first : last + 1] if n is None]
            sep_texts = [c.value or c.type for c in sep_nodes] or list(
                grammar.separator(t.type, name) or ()
            )
            for k in range(counts[name]):
                if k:
                    # Reuse the source's separator tokens (their spacing) while they last.
                    for s, text in enumerate(sep_texts):
                        at = (k - 1) * len(sep_texts) + s
                        like = between[at] if at < len(between) else None
                        plan.append(("tok", like if like is not None else text, 0))
                plan.append(("kid", name, k))
            pos = last + 1
            continue
        k = seen.get(name, 0)
        seen[name] = k + 1
        plan.append(("kid", name, k))
        pos += 1
    return plan


def _fit(layout: Layout, counts: dict[str, int]) -> _Plan | None:
    """``layout`` filled with ``counts`` children per field, or None if it does not fit."""
    singles: dict[str, int] = {}
    runs: dict[str, int] = {}
    for item in layout:
        if item.field is not None:
            table = runs if item.sep is not None else singles
            table[item.field] = table.get(item.field, 0) + 1
    for key in set(counts) | set(singles) | set(runs):
        c, s, r = counts.get(key, 0), singles.get(key, 0), runs.get(key, 0)
        if c == 0 and (s or r):
            return None
        if c and (s != c if r == 0 else s + 2 * r > c):
            return None
    plan: _Plan = []
    taken: dict[str, int] = {}
    runs_left = dict(runs)
    singles_left = dict(singles)
    for item in layout:
        if item.token is not None:
            plan.append(("tok", item.token, 0))
            continue
        if item.field is None:
            continue
        name: str = item.field
        k = taken.get(name, 0)
        if item.sep is None:
            plan.append(("kid", name, k))
            taken[name] = k + 1
            singles_left[name] -= 1
            continue
        runs_left[name] -= 1
        n = counts[name] - k - singles_left.get(name, 0) - runs_left[name]
        for r in range(n):
            if r:
                plan.extend(("tok", s, 0) for s in item.sep)
            plan.append(("kid", name, k + r))
        taken[name] = k + n
    return plan


def _adjust(layout: Layout, counts: dict[str, int], t_type: str, grammar: Grammar) -> Layout:
    """The nearest layout that fits: fields without children dropped, a repeated group
    repeated (``a < b < c``), a field's last slot made a run, missing fields appended."""
    items = [i for i in layout if i.field is None or counts.get(i.field, 0) > 0]
    for name, c in counts.items():
        where = [k for k, i in enumerate(items) if i.field == name]
        if not where:
            sep = (grammar.separator(t_type, name) or ()) if c > 1 else None
            items.append(LayoutItem(field=name, sep=sep))
            continue
        run_at = [k for k in where if items[k].sep is not None]
        if run_at:
            if c == 1:  # a run stands for two or more: one child is a single slot
                for k in reversed(run_at[1:]):
                    items.pop(k)
                items[run_at[0]] = LayoutItem(field=name)
            continue
        while len(where) < c and len(where) >= 2:
            group = items[where[-2] + 1 : where[-1] + 1]
            items[where[-1] + 1 : where[-1] + 1] = group
            where = [k for k, i in enumerate(items) if i.field == name]
        if len(where) < c:
            sep = grammar.separator(t_type, name) or ()
            items[where[-1]] = LayoutItem(field=name, sep=sep)
        while len(where) > c:
            items.pop(where.pop())
    # A repeated group may have given other fields extra slots: drop the extras.
    for name, c in counts.items():
        where = [k for k, i in enumerate(items) if i.field == name and i.sep is None]
        runs = sum(1 for i in items if i.field == name and i.sep is not None)
        while len(where) + 2 * runs > c and where:
            items.pop(where.pop())
    return tuple(items)


def _grammar_plan(t: TNode, grammar: Grammar) -> _Plan:
    counts = {name: len(kids) for name, kids in t.fields.items() if kids}
    layouts = grammar.layouts(t.type)
    for layout, _ in layouts:
        plan = _fit(layout, counts)
        if plan is not None:
            return plan
    present = set(counts)
    base: Layout = ()
    for layout, _ in layouts:
        if {i.field for i in layout if i.field is not None} == present:
            base = layout
            break
    else:
        for layout, _ in layouts:
            if present <= {i.field for i in layout if i.field is not None}:
                base = layout
                break
        else:
            base = layouts[0][0] if layouts else ()
    plan = _fit(_adjust(base, counts, t.type, grammar), counts)
    if plan is None:  # no layout known at all: the children in field order
        plan = [("kid", name, k) for name, c in counts.items() for k in range(c)]
    return plan


def to_node(root: TNode, grammar: Grammar) -> Node:
    """The edited tree as a concrete ``Node`` (the FRAGMENT root's one child), anonymous
    tokens re-inserted: where a node mirrors a source node, that node's tokens (with their
    positions, so ``completion.render_fragment`` reuses the source's spacing); elsewhere
    the grammar's layout. Nodes without a source get positions -1."""
    if root.type == FRAGMENT:
        kids = root.fields.get("", [])
        if len(kids) != 1:
            raise ValueError("the fragment is empty")
        root = kids[0]
    top = _concrete(root, None, None)
    stack: list[tuple[TNode, Node]] = [(root, top)]
    while stack:
        t, node = stack.pop()
        if t.value is not None:
            continue
        plan = _source_plan(t, grammar)
        if plan is None:
            plan = _grammar_plan(t, grammar)
        pending: list[tuple[TNode, Node]] = []
        for kind, what, k in plan:
            if kind == "tok":
                if isinstance(what, Node):
                    node.children.append(_token(what.value or what.type, node, what))
                else:
                    node.children.append(_token(str(what), node))
                continue
            child = t.fields[what][k]
            c = _concrete(child, node, what or None)
            node.children.append(c)
            pending.append((child, c))
        stack.extend(reversed(pending))
    top.renumber()
    return top


# Node types whose children start a line of their own, and clauses that start one at the
# indentation of the statement they belong to.
_STATEMENT_LISTS = frozenset({"block", "module"})
_CLAUSES = frozenset({
    "elif_clause", "else_clause", "except_clause", "except_group_clause", "finally_clause",
})  # fmt: skip
# Parts of a string literal's text: no space may be put after an opening part or before
# a closing one (``f"``, ``{``, text | text, ``}``, ``"``).
_OPENING_PARTS = frozenset({"string_start", "string_content", "escape_sequence",
                            "escape_interpolation"})  # fmt: skip
_CLOSING_PARTS = frozenset({"string_end", "string_content", "escape_sequence",
                            "escape_interpolation", "type_conversion", "format_specifier"})  # fmt: skip


def _in_string_text(leaf: Node) -> bool:
    """An anonymous token of an interpolation (``{``, ``}``) or a format specifier."""
    parent = leaf.parent
    if parent is None or leaf.named:
        return False
    return parent.type == "format_specifier" or (
        parent.type == "interpolation" and leaf.type in ("{", "}")
    )


def _tight(previous: Node, leaf: Node) -> bool:
    """Whether the gap between two leaves lies inside a string's text."""
    if previous.type in _OPENING_PARTS or leaf.type in _CLOSING_PARTS:
        return True
    if _in_string_text(previous) or _in_string_text(leaf):
        return True
    return (previous.parent is not None and previous.parent.type == "format_specifier") or (
        leaf.parent is not None and leaf.parent.type == "format_specifier"
    )


def render(edited: TNode, original: Node, source: bytes, grammar: Grammar) -> str:
    """``edited`` as source text, for the place of ``original`` (P) in ``source``.

    Tokens that were neighbours in P keep P's text between them; literals kept from P get
    P's own text back (``edited`` may hold literal-normalised values); elsewhere tokens
    are spaced as PEP 8 usually does, statements of a block start their own line, one
    level deeper than their statement. With an empty ``source`` (a tree without
    positions) every gap is computed.
    """
    node = to_node(edited, grammar)
    known: dict[tuple[int, int, str], tuple[int, str | None]] = {}
    if source:
        leaves = (x for x in original.pre_order() if not x.children and x.value is not None)
        for i, leaf in enumerate(leaves):
            known[(leaf.start_byte, leaf.end_byte, leaf.type)] = (i, leaf.value)
    base = original.start_point[1] if source else 0

    # (leaf, indentation of a line it must start, or None)
    sequence: list[tuple[Node, int | None]] = []

    def visit(n: Node, indent: int, brk: int | None) -> int | None:
        """Collect ``n``'s leaves; ``brk``: a line break is due before its first leaf."""
        if not n.children:
            if n.value is not None:
                sequence.append((n, brk))
                return None
            if n.type == "string_content":  # text that was only spaces (no value kept)
                sequence.append((_token(" ", n), brk))
                return None
            return brk
        if n.type in _STATEMENT_LISTS:
            inner = indent
            if n.type == "block":
                col = n.start_point[1] if source and n.start_byte >= 0 else -1
                inner = col if col > indent else indent + 4
            for k, c in enumerate(n.children):
                first = brk if (n.type == "module" and k == 0) else inner
                brk = visit(c, inner, first)
            return brk
        for k, c in enumerate(n.children):
            if c.type in _CLAUSES or (
                n.type == "decorated_definition" and k > 0 and c.named
            ):
                brk = visit(c, indent, indent)
            else:
                brk = visit(c, indent, brk)
        return brk

    visit(node, base, None)
    out: list[str] = []
    previous: Node | None = None
    previous_order: int | None = None
    for leaf, brk in sequence:
        entry = known.get((leaf.start_byte, leaf.end_byte, leaf.type))
        value = leaf.value or ""
        if entry is not None and entry[1] is not None and (
            entry[1] == value or value in (NUMBER_VALUE, STRING_VALUE)
        ):
            value = entry[1]
        elif entry is not None and entry[1] != value:
            entry = None
        if entry is None and leaf.type == "string_content" and value == STRING_VALUE:
            value = "STR"  # a normalised f-string part, written as text
        elif entry is None and leaf.type == "float" and value == NUMBER_VALUE:
            value = NUMBER_VALUE + ".0"  # a normalised float stays a float
        order = entry[0] if entry is not None else None
        if previous is not None:
            if order is not None and previous_order is not None and order == previous_order + 1:
                gap = source[previous.end_byte : leaf.start_byte].decode("utf-8", "replace")
                if brk is not None:
                    # A new line of a block: P's blank lines and comments, then this
                    # block's indentation (the statement may sit at a new depth).
                    head = gap.rsplit("\n", 1)[0] if "\n" in gap else ""
                    gap = head + "\n" + " " * brk
                out.append(gap)
            elif brk is not None:
                out.append("\n" + " " * brk)
            elif _tight(previous, leaf):
                out.append("")
            else:
                out.append(_spacing(previous, leaf))
        out.append(value)
        previous, previous_order = leaf, order
    return "".join(out)


# How a fragment of a given type can stand in a whole file: text around it.
_WRAPPERS: tuple[tuple[str, str], ...] = (
    ("", ""),
    ("x = ", ""),
    ("f", ""),
    ("def f", ":\n    pass\n"),
    ("def f(", "):\n    pass\n"),
    ("class C", ":\n    pass\n"),
    ("if ", ":\n    pass\n"),
    ("for x in ", ":\n    pass\n"),
    ("for ", " in x:\n    pass\n"),
    ("with ", ":\n    pass\n"),
    ("while ", ":\n    pass\n"),
    ("f(", ")"),
    ("x[", "]"),
    ("lambda ", ": 0"),
    ("import ", ""),
    ("from x import ", ""),
    ("def f() -> ", ":\n    pass\n"),
    ("x: ", " = 0"),
    ("try:\n    pass\n", ""),
    ("if x:\n    pass\n", ""),
    ("@", "\ndef f():\n    pass\n"),
    ("match x:\n    case ", ":\n        pass\n"),
)


def parse_fragment(text: str, node_type: str, indent: int = 0) -> Node | None:
    """Parse ``text`` as a fragment of type ``node_type`` (a statement, or a part of one
    such as ``parameters``, set in a minimal surrounding program); None when no wrapper
    gives a node of that type spanning exactly the text without a parse error.
    ``indent``: the column the text's first line starts at (later lines are dedented by
    it)."""
    if indent:
        lines = text.split("\n")
        text = "\n".join([lines[0]] + [
            line[indent:] if line[:indent].isspace() else line.lstrip(" ") for line in lines[1:]
        ])  # fmt: skip
    body = text.encode("utf-8")
    for prefix, suffix in _WRAPPERS:
        data = prefix.encode() + body + suffix.encode()
        tree = parse_python(data)
        if tree.root_node.has_error:
            continue
        start, end = len(prefix.encode()), len(prefix.encode()) + len(body)
        ts = tree.root_node.descendant_for_byte_range(start, max(start, end - 1))
        found = None
        while ts is not None and ts.start_byte >= start and ts.end_byte <= end:
            if (ts.start_byte, ts.end_byte, ts.type) == (start, end, node_type):
                found = ts
            ts = ts.parent
        if found is not None:
            return from_tree_sitter(found, data)
    return None
