"""GumTree node matching between two ASTs (C3PO §3.2; Falleri et al. 2014, GumTree 3).

C3PO §3.2 splits AST differencing into two stages: first map nodes of the before-tree
to nodes of the after-tree (each node in at most one pair, pairs share a type), then
derive a short edit script from the mapping (``editscript.py``, Chawathe et al. 1996).
This module is the first stage, in GumTree's three phases:

1. top-down (anchors): greedy matching of isomorphic subtrees, tallest first, down to
   ``min_height`` (1: single tokens too). A subtree with exactly one isomorphic partner
   is mapped at once with all its descendants; ambiguous ones (several partners) are
   ranked by how similar their parents are (dice), then by their siblings (same
   left/right neighbours), then by how close their positions are, and mapped greedily.
2. bottom-up (containers): an unmapped inner node is mapped to the same-type ancestor
   of its descendants' partners with the best dice coefficient, if that is >= 0.5.
3. recovery: under every mapped container pair, unmapped children are matched by
   LCS over isomorphism hashes, then by LCS over shape hashes (same structure, other
   token values: the renamed identifier), then by node types that occur once on each
   side (recursing into those pairs). Only unmapped subtrees of at most
   ``max_recovery_size`` nodes are matched by the two LCS passes.

Trees are indexed in pre-order, so a subtree is the index range ``[i, i + size[i])``
and two isomorphic subtrees map element by element: ``i + k <-> j + k``. That turns
"map all descendants" and the dice coefficient into numpy slice operations.
"""

from __future__ import annotations

import difflib
import heapq
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .tree import Node

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class MatcherConfig:
    """GumTree's parameters (Falleri et al. 2014 §3; defaults of GumTree 3's greedy matcher)."""

    # Smallest subtree height anchored top-down; 1 anchors single tokens too.
    min_height: int = 1
    # Containers are mapped bottom-up only with dice >= this (GumTree's simThreshold).
    min_dice: float = 0.5
    # Recovery maps unmapped subtrees of at most this many nodes (GumTree's maxSize).
    max_recovery_size: int = 1000
    # An ambiguous group of isomorphic subtrees (k1 copies before, k2 after) is ranked
    # pair by pair only when k1 * k2 <= this; larger groups (hundreds of "," tokens) are
    # left to the bottom-up and recovery phases, which match them positionally inside
    # their containers instead of through a quadratic candidate list.
    max_ambiguous_pairs: int = 4096


class IndexedTree:
    """A ``Node`` tree flattened in pre-order, with the per-node figures GumTree needs.

    ``hash`` is the isomorphism hash (type, value and children, recursively: GumTree's
    subtree hash); ``shape`` ignores token values (for the recovery's structure LCS).
    """

    __slots__ = (
        "child_index", "depth", "hash", "height", "kids", "nodes", "parent", "shape", "size",
    )

    def __init__(self, root: Node) -> None:
        nodes: list[Node] = []
        parent: list[int] = []
        kids: list[list[int]] = []
        child_index: list[int] = []
        depth: list[int] = []
        stack: list[tuple[Node, int, int, int]] = [(root, -1, -1, 0)]
        while stack:
            node, p, ci, d = stack.pop()
            i = len(nodes)
            nodes.append(node)
            parent.append(p)
            kids.append([])
            child_index.append(ci)
            depth.append(d)
            if p >= 0:
                kids[p].append(i)
            children = node.children
            for k in range(len(children) - 1, -1, -1):
                stack.append((children[k], i, k, d + 1))
        n = len(nodes)
        size = [1] * n
        height = [1] * n
        hashes = [0] * n
        shape = [0] * n
        # Reverse pre-order visits children before their parent.
        for i in range(n - 1, -1, -1):
            node = nodes[i]
            ks = kids[i]
            if ks:
                size[i] = 1 + sum(size[k] for k in ks)
                height[i] = 1 + max(height[k] for k in ks)
                hashes[i] = hash((node.type, node.value, *[hashes[k] for k in ks]))
                shape[i] = hash((node.type, *[shape[k] for k in ks]))
            else:
                hashes[i] = hash((node.type, node.value))
                shape[i] = hash(node.type)
        self.nodes = nodes
        self.parent = parent
        self.kids = kids
        self.child_index = child_index
        self.depth = depth
        self.size = size
        self.height = height
        self.hash = hashes
        self.shape = shape

    def __len__(self) -> int:
        return len(self.nodes)

    def post_order(self) -> list[int]:
        """Indexes in post-order (children left to right, then the parent)."""
        # post(v) = pre(v) - depth(v) + size(v) - 1: nodes finished before v are the
        # earlier non-ancestors plus v's own descendants.
        order = [0] * len(self.nodes)
        for i, (d, s) in enumerate(zip(self.depth, self.size, strict=True)):
            order[i - d + s - 1] = i
        return order


class Mapping:
    """A one-to-one node mapping between two indexed trees (C3PO §3.2's first stage).

    ``src[i]`` is the after-index mapped to before-index ``i`` (-1: none), ``dst`` the
    reverse. ``whole_src[i]`` marks the roots of subtrees mapped isomorphically (every
    descendant to its counterpart, in order): the script generator skips their insides.
    """

    __slots__ = ("after", "before", "dst", "src", "whole_src")

    def __init__(self, before: IndexedTree, after: IndexedTree) -> None:
        self.before = before
        self.after = after
        self.src: IntArray = np.full(len(before), -1, dtype=np.int64)
        self.dst: IntArray = np.full(len(after), -1, dtype=np.int64)
        self.whole_src = np.zeros(len(before), dtype=bool)

    def add(self, i: int, j: int) -> None:
        self.src[i] = j
        self.dst[j] = i

    def add_subtree(self, i: int, j: int, isomorphic: bool) -> None:
        """Map two same-shape subtrees node by node (pre-order offsets line up)."""
        n = self.before.size[i]
        self.src[i : i + n] = np.arange(j, j + n, dtype=np.int64)
        self.dst[j : j + n] = np.arange(i, i + n, dtype=np.int64)
        if isomorphic:
            self.whole_src[i] = True

    def subtree_unmapped(self, i: int, j: int) -> bool:
        """Neither subtree has a mapped node (so they can be mapped as a whole)."""
        return bool(
            (self.src[i : i + self.before.size[i]] < 0).all()
            and (self.dst[j : j + self.after.size[j]] < 0).all()
        )

    def dice(self, i: int, j: int) -> float:
        """Dice coefficient of the descendants of ``i`` and ``j`` (GumTree §3.2)."""
        si, sj = self.before.size[i], self.after.size[j]
        if si + sj <= 2:
            return 0.0
        partners = self.src[i + 1 : i + si]
        common = int(np.count_nonzero((partners > j) & (partners < j + sj)))
        return 2.0 * common / (si - 1 + sj - 1)


def match(before: IndexedTree, after: IndexedTree, config: MatcherConfig | None = None) -> Mapping:
    """GumTree's three phases (module doc) on two indexed trees."""
    cfg = config or MatcherConfig()
    mapping = Mapping(before, after)
    _top_down(mapping, cfg)
    _bottom_up(mapping, cfg)
    return mapping


# -- phase 1: top-down anchors ---------------------------------------------------------


def _pop_level(heap: list[tuple[int, int]]) -> list[int]:
    height = heap[0][0]
    level = []
    while heap and heap[0][0] == height:
        level.append(heapq.heappop(heap)[1])
    return level


def _open(heap: list[tuple[int, int]], tree: IndexedTree, nodes: Sequence[int]) -> None:
    for i in nodes:
        for k in tree.kids[i]:
            heapq.heappush(heap, (-tree.height[k], k))


def _top_down(m: Mapping, cfg: MatcherConfig) -> None:
    t1, t2 = m.before, m.after
    # Max-heaps by height (negated), as in GumTree's PriorityTreeQueue.
    heap1: list[tuple[int, int]] = [(-t1.height[0], 0)]
    heap2: list[tuple[int, int]] = [(-t2.height[0], 0)]
    ambiguous: list[tuple[int, int]] = []
    while heap1 and heap2:
        h1, h2 = -heap1[0][0], -heap2[0][0]
        if max(h1, h2) < cfg.min_height:
            break
        if h1 != h2:
            # Only same-height subtrees can be isomorphic: open the taller side's level.
            if h1 > h2:
                _open(heap1, t1, _pop_level(heap1))
            else:
                _open(heap2, t2, _pop_level(heap2))
            continue
        level1, level2 = _pop_level(heap1), _pop_level(heap2)
        groups1: dict[int, list[int]] = defaultdict(list)
        groups2: dict[int, list[int]] = defaultdict(list)
        for i in level1:
            groups1[t1.hash[i]].append(i)
        for j in level2:
            groups2[t2.hash[j]].append(j)
        for key, g1 in groups1.items():
            g2 = groups2.get(key)
            if g2 is None:
                _open(heap1, t1, g1)
            elif len(g1) == 1 and len(g2) == 1:
                if t1.size[g1[0]] == t2.size[g2[0]]:  # guards a (never seen) hash collision
                    m.add_subtree(g1[0], g2[0], isomorphic=True)
            elif len(g1) * len(g2) <= cfg.max_ambiguous_pairs:
                ambiguous.extend((i, j) for i in g1 for j in g2)
        for key, g2 in groups2.items():
            if key not in groups1:
                _open(heap2, t2, g2)
    if ambiguous:
        _map_ambiguous(m, ambiguous)


def _map_ambiguous(m: Mapping, pairs: list[tuple[int, int]]) -> None:
    """Rank ambiguous isomorphic pairs by parent dice, then sibling position (GumTree 3)."""
    t1, t2 = m.before, m.after
    n1, n2 = len(t1), len(t2)
    dice_cache: dict[tuple[int, int], float] = {}

    def sibling_similarity(i: int, j: int) -> int:
        # How many of the two neighbours are the same subtree on both sides: the ","
        # after `a=1` maps to the "," after `a=1`, not to the one at the same index.
        p, q = t1.parent[i], t2.parent[j]
        if p < 0 or q < 0:
            return 0
        k1, k2 = t1.kids[p], t2.kids[q]
        c1, c2 = t1.child_index[i], t2.child_index[j]
        same = 0
        if c1 > 0 and c2 > 0 and t1.hash[k1[c1 - 1]] == t2.hash[k2[c2 - 1]]:
            same += 1
        if c1 + 1 < len(k1) and c2 + 1 < len(k2) and t1.hash[k1[c1 + 1]] == t2.hash[k2[c2 + 1]]:
            same += 1
        return same

    def rank(pair: tuple[int, int]) -> tuple[float, int, int, float]:
        i, j = pair
        p, q = t1.parent[i], t2.parent[j]
        if p < 0 or q < 0:
            parent_dice = 0.0
        elif m.src[p] == q:
            parent_dice = 2.0  # parents already mapped to each other beat any dice
        else:
            key = (p, q)
            if key not in dice_cache:
                dice_cache[key] = m.dice(p, q)
            parent_dice = dice_cache[key]
        # Then the same slot among the siblings, then the same place in the file.
        slot = abs(t1.child_index[i] - t2.child_index[j])
        return (-parent_dice, -sibling_similarity(i, j), slot, abs(i / n1 - j / n2))

    pairs.sort(key=rank)
    for i, j in pairs:
        if m.src[i] < 0 and m.dst[j] < 0 and t1.size[i] == t2.size[j]:
            m.add_subtree(i, j, isomorphic=True)


# -- phase 2: bottom-up containers, 3: recovery ----------------------------------------


def _bottom_up(m: Mapping, cfg: MatcherConfig) -> None:
    t1, t2 = m.before, m.after
    parent2 = np.asarray(t2.parent, dtype=np.int64)
    for i in t1.post_order():
        if i == 0:
            break  # the roots are handled below
        if m.src[i] >= 0 or not t1.kids[i]:
            continue
        size = t1.size[i]
        seeds = m.src[i + 1 : i + size]
        seeds = seeds[seeds >= 0]
        if seeds.size == 0:
            continue
        # Candidates: unmapped same-type ancestors of the descendants' partners.
        node_type = t1.nodes[i].type
        visited: set[int] = set()
        best, best_dice = -1, -1.0
        for start in np.unique(parent2[seeds]).tolist():
            a = start
            while a > 0 and a not in visited:
                visited.add(a)
                if m.dst[a] < 0 and t2.nodes[a].type == node_type:
                    d = m.dice(i, a)
                    if d > best_dice:
                        best, best_dice = a, d
                a = t2.parent[a]
        if best >= 0 and best_dice >= cfg.min_dice:
            m.add(i, best)
            _recover(m, i, best, cfg)
    if m.src[0] < 0 and m.dst[0] < 0 and t1.nodes[0].type == t2.nodes[0].type:
        m.add(0, 0)
    if m.src[0] == 0:
        _recover(m, 0, 0, cfg)


def _recover(m: Mapping, i: int, j: int, cfg: MatcherConfig) -> None:
    """GumTree's recovery ("last chance") matching under a mapped container pair."""
    t1, t2 = m.before, m.after
    stack = [(i, j)]
    while stack:
        a, b = stack.pop()
        for key1, key2 in ((t1.hash, t2.hash), (t1.shape, t2.shape)):
            # Both LCS passes only take whole unmapped subtrees that are small enough.
            kids1 = [
                k for k in t1.kids[a]
                if m.src[k] < 0 and t1.size[k] <= cfg.max_recovery_size
            ]
            kids2 = [
                k for k in t2.kids[b]
                if m.dst[k] < 0 and t2.size[k] <= cfg.max_recovery_size
            ]
            if not kids1 or not kids2:
                break
            for x, y in lcs([key1[k] for k in kids1], [key2[k] for k in kids2]):
                c1, c2 = kids1[x], kids2[y]
                if t1.size[c1] == t2.size[c2] and m.subtree_unmapped(c1, c2):
                    m.add_subtree(c1, c2, isomorphic=key1 is t1.hash)
        # Histogram: a node type occurring once among each side's unmapped children.
        by_type1: dict[str, list[int]] = defaultdict(list)
        by_type2: dict[str, list[int]] = defaultdict(list)
        for k in t1.kids[a]:
            if m.src[k] < 0:
                by_type1[t1.nodes[k].type].append(k)
        for k in t2.kids[b]:
            if m.dst[k] < 0:
                by_type2[t2.nodes[k].type].append(k)
        for node_type, g1 in by_type1.items():
            g2 = by_type2.get(node_type)
            if g2 is not None and len(g1) == 1 and len(g2) == 1:
                m.add(g1[0], g2[0])
                stack.append((g1[0], g2[0]))


def lcs(a: Sequence[Hashable], b: Sequence[Hashable]) -> list[tuple[int, int]]:
    """Index pairs of a longest common subsequence of ``a`` and ``b``.

    Common prefix and suffix are matched directly (the usual case: a few children
    changed); the middle by the O(n*m) dynamic program when small, else by difflib's
    matching blocks (not always longest, but linear-ish on the long child lists of
    big modules).
    """
    n, m = len(a), len(b)
    lo = 0
    while lo < n and lo < m and a[lo] == b[lo]:
        lo += 1
    hi_a, hi_b = n, m
    while hi_a > lo and hi_b > lo and a[hi_a - 1] == b[hi_b - 1]:
        hi_a -= 1
        hi_b -= 1
    pairs = [(k, k) for k in range(lo)]
    mid_a, mid_b = a[lo:hi_a], b[lo:hi_b]
    if mid_a and mid_b:
        if len(mid_a) * len(mid_b) <= 40_000:
            pairs.extend((x + lo, y + lo) for x, y in _lcs_dp(mid_a, mid_b))
        else:
            matcher = difflib.SequenceMatcher(None, mid_a, mid_b, autojunk=False)
            for block in matcher.get_matching_blocks():
                pairs.extend((block.a + k + lo, block.b + k + lo) for k in range(block.size))
    pairs.extend((hi_a + k, hi_b + k) for k in range(n - hi_a))
    return pairs


def _lcs_dp(a: Sequence[Hashable], b: Sequence[Hashable]) -> list[tuple[int, int]]:
    n, m = len(a), len(b)
    # table[x][y] = LCS length of a[x:], b[y:]
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for x in range(n - 1, -1, -1):
        row, below = table[x], table[x + 1]
        ax = a[x]
        for y in range(m - 1, -1, -1):
            row[y] = below[y + 1] + 1 if ax == b[y] else max(below[y], row[y + 1])
    pairs = []
    x = y = 0
    while x < n and y < m:
        if a[x] == b[y]:
            pairs.append((x, y))
            x += 1
            y += 1
        elif table[x + 1][y] >= table[x][y + 1]:
            x += 1
        else:
            y += 1
    return pairs


def lis_pairs(seq: Sequence[int]) -> list[int]:
    """Positions of a longest strictly increasing subsequence (patience sorting, O(n log n)).

    The LCS of two sequences without repeated elements (children lists under a
    one-to-one mapping, Chawathe's alignChildren) is the LIS of one's positions in the other.
    """
    import bisect

    tails: list[int] = []  # tails[k] = smallest tail value of an increasing run of length k+1
    tail_pos: list[int] = []
    prev = [-1] * len(seq)
    for pos, value in enumerate(seq):
        k = bisect.bisect_left(tails, value)
        if k == len(tails):
            tails.append(value)
            tail_pos.append(pos)
        else:
            tails[k] = value
            tail_pos[k] = pos
        prev[pos] = tail_pos[k - 1] if k > 0 else -1
    out: list[int] = []
    pos = tail_pos[-1] if tail_pos else -1
    while pos >= 0:
        out.append(pos)
        pos = prev[pos]
    out.reverse()
    return out
