"""AST edit scripts: INS, DEL, UPD, MOV between two trees (C3PO §3.2; Chawathe et al. 1996).

C3PO §3.2 represents an edit as the operations that turn the before-AST into the
after-AST, each one of MOV, DEL, UPD or INS, computed in two stages: a node mapping
(GumTree, ``gumtree.py``) and an edit script from the mapping (Chawathe et al.'s
algorithm, here). C3PO §4 then reads each operation as AST paths between its nodes.

Which tree each node of an action belongs to:

* ``Insert.node`` is the after-tree node being created (its positions are in the NEW
  file); its ``parent`` is a before-tree node, or an after-tree node that an earlier
  ``Insert`` created, or ``None`` for the virtual root above both trees.
* ``Delete.node``, ``Update.node`` and ``Move.node`` are before-tree nodes (positions in
  the OLD file), except that a ``Move`` may move a node an earlier ``Insert`` created.

``Move`` removes the node from its parent first and then inserts it at ``index`` in the
new parent's children (so a move within the same parent counts positions without it).
Deletions come last, children before their parents, as in Chawathe's algorithm.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .gumtree import IndexedTree, Mapping, MatcherConfig, lis_pairs, match
from .languages import make_parser
from .tree import Node, from_tree_sitter

Op = Literal["INS", "DEL", "UPD", "MOV"]


@dataclass(frozen=True, eq=False)
class Insert:
    """INS (C3PO §3.2): create ``node`` (an after-tree node) as child ``index`` of ``parent``."""

    op: ClassVar[Op] = "INS"
    node: Node
    parent: Node | None
    index: int


@dataclass(frozen=True, eq=False)
class Delete:
    """DEL (C3PO §3.2): remove ``node`` (a before-tree leaf, by then: children go first)."""

    op: ClassVar[Op] = "DEL"
    node: Node


@dataclass(frozen=True, eq=False)
class Update:
    """UPD (C3PO §3.2): change the value of the leaf ``node`` from ``old`` to ``new``."""

    op: ClassVar[Op] = "UPD"
    node: Node
    old: str | None
    new: str | None


@dataclass(frozen=True, eq=False)
class Move:
    """MOV (C3PO §3.2): move the subtree of ``node`` to child ``index`` of ``parent``."""

    op: ClassVar[Op] = "MOV"
    node: Node
    parent: Node | None
    index: int


Action = Insert | Delete | Update | Move


@dataclass(eq=False)
class EditScript:
    """The actions that turn ``before`` into ``after``, and the node mapping behind them."""

    before: Node
    after: Node
    actions: list[Action]
    _mapping: Mapping = field(repr=False)

    def __len__(self) -> int:
        return len(self.actions)

    def __iter__(self) -> Iterator[Action]:
        return iter(self.actions)

    def mapping(self) -> Iterator[tuple[Node, Node]]:
        """(before-node, after-node) pairs that GumTree mapped (C3PO §3.2, first stage)."""
        nodes1, nodes2 = self._mapping.before.nodes, self._mapping.after.nodes
        for i, j in enumerate(self._mapping.src.tolist()):
            if j >= 0:
                yield nodes1[i], nodes2[j]

    def after_of(self, node: Node) -> Node | None:
        """The after-tree node mapped to a before-tree node (None: deleted)."""
        i = _find(self._mapping.before, node)
        j = int(self._mapping.src[i])
        return self._mapping.after.nodes[j] if j >= 0 else None

    def before_of(self, node: Node) -> Node | None:
        """The before-tree node mapped to an after-tree node (None: inserted)."""
        j = _find(self._mapping.after, node)
        i = int(self._mapping.dst[j])
        return self._mapping.before.nodes[i] if i >= 0 else None


def _find(tree: IndexedTree, node: Node) -> int:
    # Trees built by from_tree_sitter use pre-order ids, so this is usually one lookup.
    if 0 <= node.id < len(tree.nodes) and tree.nodes[node.id] is node:
        return node.id
    for i, candidate in enumerate(tree.nodes):
        if candidate is node:
            return i
    raise KeyError(f"{node!r} is not in this edit script's trees")


def diff(before: Node, after: Node, config: MatcherConfig | None = None) -> EditScript:
    """GumTree mapping + Chawathe edit script from ``before`` to ``after`` (C3PO §3.2)."""
    t1, t2 = IndexedTree(before), IndexedTree(after)
    mapping = match(t1, t2, config)
    actions = _ChawatheScript(mapping).generate()
    return EditScript(before, after, actions, mapping)


def diff_sources(old: str, new: str, language: str = "python") -> EditScript:
    """Parse two versions of a file with tree-sitter and diff their trees."""
    parser = make_parser(language)
    old_bytes, new_bytes = old.encode("utf-8"), new.encode("utf-8")
    before = from_tree_sitter(parser.parse(old_bytes), old_bytes)
    after = from_tree_sitter(parser.parse(new_bytes), new_bytes)
    return diff(before, after)


class _ChawatheScript:
    """Chawathe et al. (1996) §4's edit script generation, on pre-order indexes.

    The working tree W starts as the before-tree; W index ``i < n1`` is before-node
    ``i``, ``n1 + j`` the node inserted for after-node ``j``, and ``FAKE`` the virtual
    root above both trees (so a root can be inserted, moved or deleted like any node).
    W's children lists are copied from the before-tree only when first touched, and
    subtrees that GumTree mapped isomorphically are never entered: nothing inside them
    changes, which makes the usual small edit to a big file cost little more than a
    breadth-first walk over the changed region.
    """

    def __init__(self, mapping: Mapping) -> None:
        self.t1, self.t2 = mapping.before, mapping.after
        self.n1, self.n2 = len(self.t1), len(self.t2)
        self.fake = self.n1 + self.n2
        self.fake2 = self.n2  # the after-tree's virtual root
        self.partner1: list[int] = mapping.src.tolist()  # W -> after (extended for inserts)
        self.partner1.extend([-1] * (self.n2 + 1))
        self.partner1[self.fake] = self.fake2
        self.partner2: list[int] = mapping.dst.tolist()  # after -> W
        self.partner2.append(self.fake)
        self.whole: list[bool] = mapping.whole_src.tolist()
        self.w_parent: list[int] = list(self.t1.parent)
        self.w_parent[0] = self.fake
        self.w_parent.extend([-1] * (self.n2 + 1))
        self.w_kids: dict[int, list[int]] = {self.fake: [0]}
        self.in_order_w: set[int] = set()
        self.in_order_2: set[int] = set()
        self.actions: list[Action] = []

    # -- node references for actions --
    def _w_node(self, w: int) -> Node | None:
        if w == self.fake:
            return None
        return self.t1.nodes[w] if w < self.n1 else self.t2.nodes[w - self.n1]

    def _kids_w(self, w: int) -> list[int]:
        kids = self.w_kids.get(w)
        if kids is None:
            kids = list(self.t1.kids[w]) if w < self.n1 else []
            self.w_kids[w] = kids
        return kids

    def _kids_2(self, x: int) -> list[int]:
        return [0] if x == self.fake2 else self.t2.kids[x]

    def _parent_2(self, x: int) -> int:
        return self.fake2 if x == 0 else self.t2.parent[x]

    def generate(self) -> list[Action]:
        queue: deque[int] = deque([0])
        t1, t2 = self.t1, self.t2
        while queue:
            x = queue.popleft()
            w = self.partner2[x]
            y = self._parent_2(x)
            z = self.partner2[y]
            if w < 0:
                # INS: a new W node with x's label, at x's place among the in-order siblings.
                k = self._find_pos(x)
                w = self.n1 + x
                self.partner1[w] = x
                self.partner2[x] = w
                self._kids_w(z).insert(k, w)
                self.w_parent[w] = z
                self.w_kids[w] = []
                self.actions.append(Insert(t2.nodes[x], self._w_node(z), k))
                self.in_order_w.add(w)
                self.in_order_2.add(x)
            else:
                if w < self.n1:
                    old, new = t1.nodes[w].value, t2.nodes[x].value
                    if old != new:
                        self.actions.append(Update(t1.nodes[w], old, new))
                v = self.w_parent[w]
                if v != z:
                    self._kids_w(v).remove(w)
                    k = self._find_pos(x)
                    self._kids_w(z).insert(k, w)
                    self.w_parent[w] = z
                    node = self._w_node(w)
                    assert node is not None
                    self.actions.append(Move(node, self._w_node(z), k))
                    self.in_order_w.add(w)
                    self.in_order_2.add(x)
                if w < self.n1 and self.whole[w]:
                    continue  # an isomorphic subtree: nothing inside it changes
            self._align_children(w, x)
            queue.extend(t2.kids[x])
        self._delete_unmapped()
        return self.actions

    def _align_children(self, w: int, x: int) -> None:
        """Chawathe's AlignChildren: move mapped children that are out of order (LCS)."""
        kids_w = self._kids_w(w)
        kids_x = self._kids_2(x)
        if not kids_w or not kids_x:
            return
        for c in kids_w:
            self.in_order_w.discard(c)
        for c in kids_x:
            self.in_order_2.discard(c)
        partner2, w_parent = self.partner2, self.w_parent
        # S2: x's children whose partner is a child of w, in x's order.
        s2 = [b for b in kids_x if partner2[b] >= 0 and w_parent[partner2[b]] == w]
        if not s2:
            return
        # The LCS of two duplicate-free sequences is a LIS (gumtree.lis_pairs).
        position_in_w = {c: pos for pos, c in enumerate(kids_w)}
        positions = [position_in_w[partner2[b]] for b in s2]
        in_lcs = set(lis_pairs(positions))
        for k, b in enumerate(s2):
            if k in in_lcs:
                self.in_order_w.add(partner2[b])
                self.in_order_2.add(b)
        for k, b in enumerate(s2):
            if k in in_lcs:
                continue
            a = partner2[b]
            kids_w.remove(a)
            pos = self._find_pos(b)
            kids_w.insert(pos, a)
            node = self._w_node(a)
            assert node is not None
            self.actions.append(Move(node, self._w_node(w), pos))
            self.in_order_w.add(a)
            self.in_order_2.add(b)

    def _find_pos(self, x: int) -> int:
        """Chawathe's FindPos: just right of the partner of x's nearest in-order left sibling."""
        y = self._parent_2(x)
        siblings = self._kids_2(y)
        ci = 0 if x == 0 else self.t2.child_index[x]
        for k in range(ci - 1, -1, -1):
            v = siblings[k]
            if v in self.in_order_2:
                u = self.partner2[v]
                return self._kids_w(self.w_parent[u]).index(u) + 1
        return 0

    def _delete_unmapped(self) -> None:
        # Unmapped before-nodes, children before parents (left-to-right post-order).
        t1 = self.t1
        partner1, whole = self.partner1, self.whole
        unmapped: list[int] = []
        # Walk pre-order to skip isomorphically mapped subtrees, then sort by post-order rank.
        i = 0
        n1 = self.n1
        while i < n1:
            if partner1[i] >= 0 and whole[i]:
                i += t1.size[i]
                continue
            if partner1[i] < 0:
                unmapped.append(i)
            i += 1
        depth, size = t1.depth, t1.size
        # post-order rank = pre-order index - depth + size - 1 (see IndexedTree.post_order)
        unmapped.sort(key=lambda i: i - depth[i] + size[i])
        self.actions.extend(Delete(t1.nodes[i]) for i in unmapped)


def apply(script: EditScript, before: Node) -> Node:
    """Apply an edit script to a copy of ``before``; the result is isomorphic to the after-tree.

    ``before`` is the tree the script was computed from (or an isomorphic tree with the
    same pre-order ids); it is not modified. Inserted nodes carry their after-tree
    positions, the rest keep their before-tree ones; ids are renumbered in pre-order.
    """
    root = before.copy()
    by_id = {node.id: node for node in root.pre_order()}
    virtual = Node("<virtual root>", None, [root])
    root.parent = virtual
    inserted: dict[int, Node] = {}  # id(after-node) -> its copy in the result

    def resolve(node: Node | None) -> Node:
        if node is None:
            return virtual
        created = inserted.get(id(node))
        return created if created is not None else by_id[node.id]

    for action in script.actions:
        if isinstance(action, Insert):
            src = action.node
            new = Node(
                src.type, src.value, [], None, src.start_point, src.end_point,
                src.start_byte, src.end_byte, -1, src.named,
            )
            parent = resolve(action.parent)
            parent.children.insert(action.index, new)
            new.parent = parent
            inserted[id(src)] = new
        elif isinstance(action, Delete):
            target = resolve(action.node)
            _detach(target)
        elif isinstance(action, Update):
            resolve(action.node).value = action.new
        else:
            target = resolve(action.node)
            _detach(target)
            parent = resolve(action.parent)
            parent.children.insert(action.index, target)
            target.parent = parent
    if len(virtual.children) != 1:
        raise ValueError(f"edit script left {len(virtual.children)} roots")
    result = virtual.children[0]
    result.parent = None
    result.renumber()
    return result


def _detach(node: Node) -> None:
    parent = node.parent
    if parent is not None:
        siblings = parent.children
        for k in range(len(siblings)):
            if siblings[k] is node:
                del siblings[k]
                break
        node.parent = None
