"""A light, mutable syntax tree for AST differencing and AST paths (C3PO §3.1-3.2).

C3PO §3.1 defines an AST as nodes with a type, children in order, and values on the
leaves (terminals); §3.2 diffs two such trees with GumTree, and §4 reads AST paths off
them. tree-sitter's own nodes are immutable views into a C tree, so the diff (which
applies edit scripts to copies) and the path extractor work on this Python mirror.

Which tree-sitter nodes become ``Node``s (the policy, kept in one place here):

* every named node and every anonymous token (``(``, ``,``, ``def``, ``+`` ...) is kept.
  Anonymous tokens carry meaning that the named nodes do not: ``a + b`` vs ``a - b``,
  ``x[1:]`` vs ``x[:1]`` (the ``:`` position), ``def`` vs ``async def``, ``from .``
  vs ``from ..``. Keeping them means two isomorphic trees spell the same token sequence.
  Consumers that want only the abstract syntax (e.g. C3PO paths) skip ``named=False``
  nodes.
* "extras" (``comment``, ``line_continuation``) are left out: tree-sitter attaches them
  to whichever node happens to surround them, so they would make the diff report
  moves that are only comment placement. Comment-only edits give an empty script.
* MISSING nodes (zero-width tokens tree-sitter invents to recover from an error) are
  left out, since they are not in the source; ERROR nodes are kept like any node.
* a leaf is a tree-sitter node without children; its ``value`` is its source text.
  Inner nodes (and blank ones, like an empty module) have ``value=None``. Two
  exceptions follow.
* a node whose children do not cover all of its non-blank text becomes a leaf
  carrying its whole text, so no text is lost (tree-sitter-python's ``string_content``
  only has ``escape_sequence`` children: the ``a`` and ``b`` of ``f"a\\nb{x}"``
  belong to no child).
* a string literal (``string`` without ``interpolation`` children) is one leaf carrying
  its whole text, prefix and quotes included, as literals are terminals in C3PO §3.1's
  ASTs; an f-string with interpolations keeps its structure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import tree_sitter


@dataclass(eq=False, slots=True)
class Node:
    """One AST node (C3PO §3.1): a type, a value for leaves, ordered children.

    ``eq=False``: nodes compare by identity (the diff maps node objects to node
    objects); use :func:`isomorphic` to compare trees structurally.
    """

    type: str  # tree-sitter node type ("identifier"; the token itself for anonymous ones)
    value: str | None = None  # source text for leaves (tokens); None for inner nodes
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None
    start_point: tuple[int, int] = (0, 0)  # (row, column in bytes), 0-based, in its own file
    end_point: tuple[int, int] = (0, 0)
    start_byte: int = 0
    end_byte: int = 0
    id: int = -1  # unique within its tree: the pre-order index when built
    named: bool = True  # tree-sitter's is_named: False for anonymous tokens like "(" or "def"
    field: str | None = None  # the parent's field holding this node ("left", "body"), if any

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def label(self) -> tuple[str, str | None]:
        """What must be equal for two nodes to be the same node: (type, value) (GumTree §3)."""
        return (self.type, self.value)

    def pre_order(self) -> Iterator[Node]:
        """This node, then its descendants, parents before children, left to right."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def post_order(self) -> Iterator[Node]:
        """Descendants before this node, children left to right (iterative: trees get deep)."""
        stack: list[tuple[Node, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded or not node.children:
                yield node
            else:
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(node.children))

    def descendants(self) -> Iterator[Node]:
        """Every node below this one, in pre-order (the node itself excluded)."""
        it = self.pre_order()
        next(it)
        return it

    def ancestors(self) -> Iterator[Node]:
        """Parent, grandparent, ... up to the root."""
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    @property
    def size(self) -> int:
        """Number of nodes in this subtree (itself included)."""
        return sum(1 for _ in self.pre_order())

    @property
    def height(self) -> int:
        """1 for a leaf, 1 + the tallest child otherwise (GumTree's height)."""
        heights: dict[int, int] = {}
        for node in self.post_order():
            heights[id(node)] = 1 + max((heights[id(c)] for c in node.children), default=0)
        return heights[id(self)]

    def child_index(self) -> int:
        """This node's position among its parent's children (-1 for a root)."""
        if self.parent is None:
            return -1
        for i, sibling in enumerate(self.parent.children):
            if sibling is self:
                return i
        raise ValueError("node is not among its parent's children")

    def text_hash(self) -> int:
        """Isomorphism hash: equal for isomorphic subtrees (GumTree's hash of a subtree)."""
        hashes: dict[int, int] = {}
        for node in self.post_order():
            hashes[id(node)] = hash((node.type, node.value, *(hashes[id(c)] for c in node.children)))
        return hashes[id(self)]

    def copy(self) -> Node:
        """A deep copy of this subtree (same ids, positions), detached from any parent."""
        clone = Node(
            self.type, self.value, [], None, self.start_point, self.end_point,
            self.start_byte, self.end_byte, self.id, self.named, self.field,
        )
        stack: list[tuple[Node, Node]] = [(self, clone)]
        while stack:
            src, dst = stack.pop()
            for child in src.children:
                c = Node(
                    child.type, child.value, [], dst, child.start_point, child.end_point,
                    child.start_byte, child.end_byte, child.id, child.named, child.field,
                )
                dst.children.append(c)
                stack.append((child, c))
        return clone

    def renumber(self) -> None:
        """Reassign ids as pre-order indexes (after a tree was edited)."""
        for i, node in enumerate(self.pre_order()):
            node.id = i

    def __repr__(self) -> str:
        shown = f" {self.value!r}" if self.value is not None else ""
        return f"<Node {self.type}{shown} #{self.id} @{self.start_point[0]}:{self.start_point[1]}>"


# Node types kept as one leaf with their whole text when they have no interpolation.
_LITERAL_TYPES = frozenset({"string"})


def from_tree_sitter(tree_or_node: tree_sitter.Tree | tree_sitter.Node, source: bytes) -> Node:
    """Mirror a tree-sitter tree (or subtree) as ``Node``s, by the policy in the module doc.

    ``source`` is the exact byte string that was parsed (leaf values are sliced from it).
    Ids are pre-order indexes starting at 0 at the returned root.
    """
    ts_root = tree_or_node.root_node if isinstance(tree_or_node, tree_sitter.Tree) else tree_or_node
    root: Node | None = None
    next_id = 0
    # (tree-sitter node, parent Node); popped in pre-order so ids are pre-order indexes.
    stack: list[tuple[tree_sitter.Node, Node | None, str | None]] = [(ts_root, None, None)]
    while stack:
        ts, parent, field_name = stack.pop()
        kids = ts.children
        start, end = ts.start_byte, ts.end_byte
        keep: list[tuple[tree_sitter.Node, str | None]] = []
        covered = True
        if kids:
            prev = start
            for i, kid in enumerate(kids):
                # Text between children that no child owns (see the module doc).
                if kid.start_byte > prev and source[prev : kid.start_byte].strip():
                    covered = False
                    break
                prev = kid.end_byte
                if not kid.is_extra and not kid.is_missing:
                    keep.append((kid, ts.field_name_for_child(i)))
            if covered and end > prev and source[prev:end].strip():
                covered = False
        # A string literal is one token (C3PO §3.1: literals are terminals with values),
        # unless it has interpolations (f-strings), whose expressions are real syntax.
        is_token = (
            not kids
            or not covered
            or (ts.type in _LITERAL_TYPES and not any(k.type == "interpolation" for k in kids))
        )
        text = source[start:end].decode("utf-8", "replace") if is_token else None
        node = Node(
            ts.type,
            # A childless node without text (an empty module) is no token: None, like the
            # same node with children, so adding the first statement is no UPD.
            text if text and not text.isspace() else None,
            [],
            parent,
            ts.start_point,
            ts.end_point,
            start,
            end,
            next_id,
            ts.is_named,
            field_name,
        )
        next_id += 1
        if parent is None:
            root = node
        else:
            parent.children.append(node)
        if not is_token:
            stack.extend((kid, node, name) for kid, name in reversed(keep))
    assert root is not None
    return root


def isomorphic(a: Node, b: Node) -> bool:
    """Same type, value and children order, recursively (positions and ids are ignored)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x.type != y.type or x.value != y.value or len(x.children) != len(y.children):
            return False
        stack.extend(zip(x.children, y.children, strict=True))
    return True


def to_sexp(node: Node) -> str:
    """An S-expression: ``(type "value")`` for leaves, ``(type child ...)`` otherwise."""
    parts: list[str] = []
    stack: list[Node | str] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
            continue
        if item.is_leaf:
            value = "" if item.value is None else " " + _quote(item.value)
            parts.append(f"({item.type}{value})")
            continue
        parts.append(f"({item.type}")
        stack.append(")")
        for child in reversed(item.children):
            stack.append(child)
            stack.append(" ")
    return "".join(parts)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
