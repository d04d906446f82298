"""AST paths and path-operations for edit completion (C3PO, Brody et al. 2020, §4).

C3PO §4 represents every edit of a program fragment P as a path in P's AST, from a source
node to a target node, with an operation: MOV (move the source's subtree to be the target's
right sibling), UPD (give the target the source's value), INS (insert a copy of the source's
subtree as the target's right sibling), and DEL (a MOV to an artificial DEL node). This
module builds, for a fragment ``P`` (a ``tree.Node`` subtree; C3PO keeps fragments of at
most 50 nodes):

* the augmented tree (§4 (1), (2)): a ``<placeholder>`` first child on every non-leaf, so
  "right sibling of the placeholder" means "first child", and a ``<DEL>`` child on the root;
* every valid path (``enumerate_paths``), under the rules of the paper's reference code
  (IMPLEMENTATION-NOTES.md): the source is not DEL, a placeholder or the root; the target is
  not a descendant of the source (the source itself is allowed: a one-node path, needed for
  "insert a copy of x right after x"); the target is not the root (it has no sibling
  position); optionally, the source's type has been seen in training data as a child of
  the target parent's type;
* the gold sequence of path-operations for an edit script (``gold_operations``) and its
  inverse direction, ``apply_operations``: applying the gold operations to P gives a tree
  isomorphic to P';
* the label sequence the pointer network is trained on (§5.2.2, Eq. 5): indices into
  ``[PAD, EOS] + MOV(n paths) + UPD(n) + INS(n)``, ending with EOS.

Meaning of the operations when applied one after another (the paper leaves it implicit):
the paths, and so the model's inputs, are read off the unedited P, so the *source* of an
INS or UPD is read from P as it was (the copied subtree, the value); MOV and DEL act on
the source node where it is now; a target is a node of P where it is now. Nodes created by
INS can therefore be neither sources nor targets, as in the paper (paths exist only in P).

All nodes are ``tree.Node``s as ``from_tree_sitter`` builds them, anonymous tokens (``(``,
``,``) included, so applying operations rebuilds exactly the tree the diff compared.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

from ripple.models.edits.editscript import EditScript
from ripple.models.edits.tokens import subtokens
from ripple.models.edits.tree import Node, isomorphic

__all__ = [
    "DEL_TYPE",
    "EOS_LABEL",
    "PAD_LABEL",
    "PLACEHOLDER_TYPE",
    "ASTPath",
    "AugmentedTree",
    "NotRepresentable",
    "Operation",
    "PathOperation",
    "PathStep",
    "apply_operations",
    "describe_operation",
    "enumerate_paths",
    "gold_labels",
    "gold_operations",
    "is_valid_path",
    "observed_child_types",
    "order_paths",
]

PLACEHOLDER_TYPE = "<placeholder>"
DEL_TYPE = "<DEL>"
# Label layout of the pointer (notes: "index into [PAD, EOS] + MOV(n) + UPD(n) + INS(n)").
PAD_LABEL = 0
EOS_LABEL = 1


class Operation(enum.Enum):
    """The three projections of a path (C3PO §5.2.2); DEL is MOV to the DEL node (§4 (2))."""

    MOV = 0
    UPD = 1
    INS = 2


class NotRepresentable(ValueError):
    """An edit that path-operations on P cannot express (C3PO §4, last paragraph).

    The paper's dataset drops such samples: an insertion that is not a copy of a subtree of
    P, an update to a value P does not contain, a move into a node P lacks.
    """


@dataclass(frozen=True, slots=True)
class PathStep:
    """One node of an AST path: its type and its index among its siblings (C3PO §3.1, §5.2.1).

    Child indices count the placeholder, which is child 0 of every non-leaf.
    """

    type: str
    child_index: int


@dataclass(frozen=True, slots=True)
class ASTPath:
    """A path between two nodes of the augmented P (C3PO Def. 3.2), as the encoder sees it.

    ``steps`` go from the source up to the lowest common ancestor and down to the target,
    both ends included. ``source_value``/``target_value`` are the sub-tokens of a terminal's
    value (§5.2.1, Eq. 3), empty for non-terminals (the encoder then uses the node itself).
    """

    source: int
    target: int
    steps: tuple[PathStep, ...]
    source_value: tuple[str, ...]
    target_value: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PathOperation:
    """One operation of an edit script as a path-operation (C3PO §4): ids in ``AugmentedTree``."""

    operation: Operation
    source: int
    target: int


def _placeholder(parent: Node) -> Node:
    return Node(PLACEHOLDER_TYPE, None, [], parent, parent.start_point, parent.start_point,
                parent.start_byte, parent.start_byte, -1, False)  # fmt: skip


class AugmentedTree:
    """P with a placeholder first child on every non-leaf and a DEL child on the root (§4).

    ``nodes[i]`` is the node with id ``i`` (pre-order over the augmented tree). The fragment
    is copied; the caller's tree is left as it was.
    """

    def __init__(self, fragment: Node) -> None:
        root = fragment.copy()
        for node in list(root.pre_order()):
            if node.children:
                node.children.insert(0, _placeholder(node))
        self.del_node = Node(DEL_TYPE, None, [], root, root.end_point, root.end_point,
                             root.end_byte, root.end_byte, -1, False)  # fmt: skip
        root.children.append(self.del_node)
        root.renumber()
        self.root = root
        self.nodes: list[Node] = list(root.pre_order())
        # Pre-order intervals make "is a descendant of" a comparison (paths are enumerated
        # for every pair of nodes).
        self._end: list[int] = [0] * len(self.nodes)
        for node in root.post_order():
            self._end[node.id] = max((self._end[c.id] for c in node.children), default=node.id)
        # Per node, computed once: enumeration builds a path for every pair of nodes.
        self._up: list[list[int]] = [[n.id, *(a.id for a in n.ancestors())] for n in self.nodes]
        self._steps: list[PathStep] = [PathStep(n.type, 0) for n in self.nodes]
        for node in self.nodes:
            for index, child in enumerate(node.children):
                self._steps[child.id] = PathStep(child.type, index)
        self._values: list[tuple[str, ...]] = [
            tuple(subtokens(n.value)) if n.value is not None else () for n in self.nodes
        ]

    def __len__(self) -> int:
        return len(self.nodes)

    def is_special(self, node_id: int) -> bool:
        """Placeholder or DEL: nodes of the augmentation, not of P."""
        return _is_special(self.nodes[node_id])

    def is_descendant(self, node_id: int, ancestor_id: int) -> bool:
        """Whether ``node_id`` is strictly below ``ancestor_id``."""
        return ancestor_id < node_id <= self._end[ancestor_id]

    def path(self, source: int, target: int) -> ASTPath:
        """The path source -> common ancestor -> target (C3PO §4, Figure 3)."""
        up, down = self._up[source], self._up[target]
        # Both chains end at the root; drop their common part except the lowest shared node.
        shared = 1
        while shared < min(len(up), len(down)) and up[-shared - 1] == down[-shared - 1]:
            shared += 1
        chain = up[: len(up) - shared + 1] + down[: len(down) - shared][::-1]
        return ASTPath(
            source, target, tuple(self._steps[n] for n in chain), self._values[source],
            self._values[target],
        )  # fmt: skip

    def strip(self) -> Node:
        """P itself: a copy without placeholders and DEL, ids renumbered."""
        return _strip(self.root)


def _strip(root: Node) -> Node:
    clone = root.copy()
    for node in list(clone.pre_order()):
        node.children = [c for c in node.children if not _is_special(c)]
    clone.renumber()
    return clone


def _is_special(node: Node) -> bool:
    return node.type in (PLACEHOLDER_TYPE, DEL_TYPE) and not node.named


def observed_child_types(trees: Iterable[Node]) -> dict[str, frozenset[str]]:
    """Parent type -> the child types seen under it: the training statistics of the validity
    rule "the source's type has been seen as a child of the target parent's type"."""
    seen: dict[str, set[str]] = {}
    for tree in trees:
        for node in tree.pre_order():
            if node.children:
                seen.setdefault(node.type, set()).update(c.type for c in node.children)
    return {parent: frozenset(children) for parent, children in seen.items()}


def is_valid_path(
    tree: AugmentedTree,
    source: int,
    target: int,
    child_types: Mapping[str, Set[str]] | None = None,
) -> bool:
    """The reference code's validity rules for a path (IMPLEMENTATION-NOTES, C3PO).

    ``child_types`` (from ``observed_child_types`` over the training set) adds the type
    rule; None leaves it out. DEL is always a valid target: any subtree can be deleted.
    """
    if source == tree.root.id or tree.is_special(source):
        return False
    # A node is not its own descendant: "copy x after x" (f(x) -> f(x, x)) is an INS.
    if tree.is_descendant(target, source):
        return False
    target_node = tree.nodes[target]
    if target_node is tree.del_node:
        return True
    parent = target_node.parent
    if parent is None:  # the root has no right sibling to become
        return False
    if child_types is not None:
        return tree.nodes[source].type in child_types.get(parent.type, frozenset())
    return True


def enumerate_paths(
    tree: AugmentedTree, child_types: Mapping[str, Set[str]] | None = None
) -> list[ASTPath]:
    """Every valid path of P (C3PO §5.2: ``Paths(P, P̄)``), sources then targets in pre-order.

    Each path stands for three operations (MOV, UPD, INS; §5.2.2); the pointer chooses among
    all of them, so a path is kept if any operation on it can be valid.
    """
    return [
        tree.path(source, target)
        for source in range(len(tree))
        for target in range(len(tree))
        if is_valid_path(tree, source, target, child_types)
    ]


def order_paths(paths: Sequence[ASTPath], gold: Sequence[PathOperation]) -> list[ASTPath]:
    """Paths carrying a gold operation first, in script order, then the rest (the notes)."""
    by_pair = {(p.source, p.target): p for p in paths}
    first: list[ASTPath] = []
    taken: set[tuple[int, int]] = set()
    for op in gold:
        pair = (op.source, op.target)
        if pair not in by_pair:
            raise NotRepresentable(f"gold operation {op} is not on a valid path")
        if pair not in taken:
            taken.add(pair)
            first.append(by_pair[pair])
    return first + [p for p in paths if (p.source, p.target) not in taken]


def gold_labels(paths: Sequence[ASTPath], gold: Sequence[PathOperation]) -> list[int]:
    """Pointer labels (notes, §5.3): ``2 + kind * n + path index`` per operation, then EOS."""
    index = {(p.source, p.target): k for k, p in enumerate(paths)}
    n = len(paths)
    labels: list[int] = []
    for op in gold:
        k = index.get((op.source, op.target))
        if k is None:
            raise NotRepresentable(f"gold operation {op} is not on a valid path")
        labels.append(EOS_LABEL + 1 + op.operation.value * n + k)
    labels.append(EOS_LABEL)
    return labels


def describe_operation(tree: AugmentedTree, op: PathOperation) -> str:
    """A readable line for logs and tests: ``INS keyword_argument -> identifier 'b'``."""

    def show(node: Node) -> str:
        return node.type if node.value is None else f"{node.type} {node.value!r}"

    source, target = tree.nodes[op.source], tree.nodes[op.target]
    if target is tree.del_node:
        return f"DEL {show(source)}"
    return f"{op.operation.name} {show(source)} -> {show(target)}"


# -- applying path-operations ---------------------------------------------------------------


def _detach(node: Node) -> None:
    parent = node.parent
    if parent is None:
        raise ValueError(f"{node!r} is not in the tree")
    parent.children = [c for c in parent.children if c is not node]
    node.parent = None


def _attached(node: Node, root: Node) -> bool:
    top = node
    while top.parent is not None:
        top = top.parent
    return top is root


def _insert_after(node: Node, target: Node) -> None:
    parent = target.parent
    if parent is None:
        raise ValueError(f"{target!r} has no parent to insert into")
    index = next(k for k, c in enumerate(parent.children) if c is target)
    parent.children.insert(index + 1, node)
    node.parent = parent


def _apply_one(tree: AugmentedTree, work: list[Node], op: PathOperation) -> None:
    """One operation on the working copy ``work`` (indexed like ``tree.nodes``)."""
    root = work[tree.root.id]
    source, target = work[op.source], work[op.target]
    if op.source == tree.root.id or tree.is_special(op.source):
        raise ValueError(f"{op}: the source must be a node of P below the root")
    if not _attached(target, root):
        raise ValueError(f"{op}: the target is no longer in the tree")
    if op.operation is Operation.UPD:
        value = tree.nodes[op.source].value  # read from P as it was (module docstring)
        if value is None or target.value is None or target.children:
            raise ValueError(f"{op}: UPD needs two terminals")
        target.value = value
        return
    if target is work[tree.del_node.id]:
        if op.operation is not Operation.MOV:
            raise ValueError(f"{op}: only MOV goes to DEL")
        if not _attached(source, root):
            raise ValueError(f"{op}: the source was already removed")
        _detach(source)
        return
    if op.operation is Operation.MOV:
        if not _attached(source, root) or source in target.ancestors():
            raise ValueError(f"{op}: cannot move a node into its own subtree")
        if target is not source:  # "move x after x" leaves it where it is
            _detach(source)
            _insert_after(source, target)
    else:
        copy = tree.nodes[op.source].copy()  # the subtree as it was in P
        for node in copy.pre_order():
            node.id = -1  # created nodes are never sources or targets
        _insert_after(copy, target)


def apply_operations(tree: AugmentedTree, operations: Iterable[PathOperation]) -> Node:
    """Apply path-operations to a copy of P, in order, and return the edited fragment.

    The result has no placeholders or DEL node; it is isomorphic to P' when the operations
    are ``gold_operations`` of the script P -> P'. Raises ValueError for an operation that
    cannot apply (a removed source or target, a move into its own subtree, UPD of a
    non-terminal).
    """
    root = tree.root.copy()
    work = list(root.pre_order())  # same pre-order as tree.nodes
    for op in operations:
        _apply_one(tree, work, op)
    return _strip(root)


# -- gold operations from an edit script ---------------------------------------------------


def _lis(values: Sequence[int]) -> set[int]:
    """Indices of a longest strictly increasing subsequence (children that stay in order)."""
    if not values:
        return set()
    best_len = [1] * len(values)
    previous = [-1] * len(values)
    for i in range(len(values)):
        for j in range(i):
            if values[j] < values[i] and best_len[j] + 1 > best_len[i]:
                best_len[i], previous[i] = best_len[j] + 1, j
    i = max(range(len(values)), key=lambda k: (best_len[k], -k))
    chosen: set[int] = set()
    while i >= 0:
        chosen.add(i)
        i = previous[i]
    return chosen


class _GoldBuilder:
    """Derive path-operations from the script's node mapping, simulating them as it goes.

    Chawathe's script inserts one node at a time and places each after a left sibling that
    may itself be new; path-operations copy whole subtrees of P and may only name P's nodes.
    So the builder follows the same mapping and the same breadth-first order over P' but
    places each parent's new children (moved or inserted) as runs after the nearest child
    that stays in place, each run right to left, so every target is a node of P.
    """

    def __init__(self, script: EditScript, child_types: Mapping[str, Set[str]] | None) -> None:
        self.tree = AugmentedTree(script.before)
        self.child_types = child_types
        self.after = script.after
        # Augmented ids of the before-tree's nodes: copy() keeps ids and the augmentation
        # only adds nodes, so match the two pre-orders skipping placeholders and DEL.
        real = [n for n in self.tree.nodes if not _is_special(n)]
        by_before = {id(b): real[k].id for k, b in enumerate(script.before.pre_order())}
        self.partner: dict[int, int] = {}  # id(after node) -> augmented id of its P node
        for before_node, after_node in script.mapping():
            self.partner[id(after_node)] = by_before[id(before_node)]
        self.mapped_p = set(self.partner.values())
        root = self.tree.root.copy()
        self.work = list(root.pre_order())
        self.work_root = root
        self.operations: list[PathOperation] = []

    def emit(self, operation: Operation, source: int, target: int) -> None:
        if not is_valid_path(self.tree, source, target, self.child_types):
            raise NotRepresentable(f"{operation.name} {source} -> {target} is not a valid path")
        op = PathOperation(operation, source, target)
        _apply_one(self.tree, self.work, op)
        self.operations.append(op)

    def update_source(self, target: int, value: str, node_type: str) -> int:
        """A terminal of P with the new value (same type first, then pre-order)."""
        candidates = [
            n.id
            for n in self.tree.nodes
            if n.value == value and not n.children and n.id != target and not _is_special(n)
        ]
        candidates.sort(key=lambda i: (self.tree.nodes[i].type != node_type, i))
        for source in candidates:
            if is_valid_path(self.tree, source, target, self.child_types):
                return source
        raise NotRepresentable(f"no terminal of P has the value {value!r}")

    def insert_source(self, subtree: Node, target: int) -> int:
        """A subtree of P isomorphic to the inserted one (placeholders aside)."""
        for node in self.tree.nodes:
            if (
                node.type == subtree.type
                and node.value == subtree.value
                and not _is_special(node)
                and isomorphic(_strip(node), subtree)
                and is_valid_path(self.tree, node.id, target, self.child_types)
            ):
                return node.id
        raise NotRepresentable(f"the inserted {subtree.type} is not a copy of a subtree of P")

    def place_children(self, after_parent: Node, p_parent: int) -> None:
        """Put the children of ``after_parent`` under P node ``p_parent`` in P' order."""
        current = [c.id for c in self.work[p_parent].children if c.id >= 0]
        position = {node_id: k for k, node_id in enumerate(current)}
        kids = after_parent.children
        # Children already under this parent keep their place if they are in LIS order.
        staying = [k for k, c in enumerate(kids) if self.partner.get(id(c), -1) in position]
        in_place = {
            staying[k] for k in _lis([position[self.partner[id(kids[i])]] for i in staying])
        }
        placeholder = self.work[p_parent].children[0] if self.work[p_parent].children else None
        if placeholder is None or not _is_special(placeholder):
            if len(in_place) != len(kids):
                raise NotRepresentable(f"{self.work[p_parent]!r} is a terminal of P")
            return
        anchor = placeholder.id
        run: list[Node] = []
        for k, child in enumerate([*kids, None]):
            if child is not None and k not in in_place:
                run.append(child)
                continue
            for new in reversed(run):  # right to left, all after the same anchor
                self.place(new, anchor)
            run = []
            if child is not None:
                anchor = self.partner[id(child)]

    def place(self, child: Node, anchor: int) -> None:
        source = self.partner.get(id(child))
        if source is not None:
            self.emit(Operation.MOV, source, anchor)
            return
        if any(id(n) in self.partner for n in child.descendants()):
            raise NotRepresentable(f"the inserted {child.type} holds nodes of P")
        self.emit(Operation.INS, self.insert_source(child, anchor), anchor)

    def build(self) -> list[PathOperation]:
        if self.partner.get(id(self.after)) != self.tree.root.id:
            raise NotRepresentable("the roots of P and P' are not mapped to each other")
        queue: deque[Node] = deque([self.after])
        while queue:
            after_node = queue.popleft()
            p_node = self.partner[id(after_node)]
            value = self.work[p_node].value
            if after_node.value != value:
                if after_node.value is None or after_node.children:
                    raise NotRepresentable(f"{after_node!r} changes from terminal to non-terminal")
                source = self.update_source(p_node, after_node.value, after_node.type)
                self.emit(Operation.UPD, source, p_node)
            if after_node.children:
                self.place_children(after_node, p_node)
            queue.extend(c for c in after_node.children if id(c) in self.partner)
        # What is left of P and not mapped goes, largest subtrees first (§4 (2): one DEL
        # removes a whole subtree), in pre-order.
        stack = [self.work_root]
        while stack:
            node = stack.pop()
            if node.id >= 0 and not _is_special(node) and node.id not in self.mapped_p:
                self.emit(Operation.MOV, node.id, self.tree.del_node.id)
                continue
            stack.extend(reversed(node.children))
        result = _strip(self.work_root)
        if not isomorphic(result, self.after):
            raise NotRepresentable("the path-operations do not rebuild P'")
        return self.operations


def gold_operations(
    script: EditScript, child_types: Mapping[str, Set[str]] | None = None
) -> tuple[AugmentedTree, list[PathOperation]]:
    """The augmented P and the gold path-operations for ``script`` (P -> P'), in order.

    The operations follow the script's node mapping (GumTree's) and its breadth-first
    order over P': per node of P', an UPD if its value changed, then its children put in
    place (MOV for mapped nodes, INS of a copy for new subtrees); DELs come last, as in the
    script. ``apply_operations(tree, ops)`` is isomorphic to ``script.after``. Raises
    ``NotRepresentable`` when no such sequence exists (see the class).
    """
    builder = _GoldBuilder(script, child_types)
    return builder.tree, builder.build()
