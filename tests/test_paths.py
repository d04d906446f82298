"""AST paths and path-operations (C3PO §4; rules of the reference code, IMPLEMENTATION-NOTES)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ripple.models.edits.editscript import diff, diff_sources
from ripple.models.edits.languages import parse_python
from ripple.models.edits.paths import (
    EOS_LABEL,
    AugmentedTree,
    NotRepresentable,
    Operation,
    PathOperation,
    PathStep,
    apply_operations,
    describe_operation,
    enumerate_paths,
    gold_labels,
    gold_operations,
    is_valid_path,
    observed_child_types,
    order_paths,
)
from ripple.models.edits.tree import Node, from_tree_sitter, isomorphic, to_sexp


def parse(source: str) -> Node:
    data = source.encode("utf-8")
    return from_tree_sitter(parse_python(data), data)


def check_gold(before: str, after: str, expected: list[str]) -> None:
    """The gold operations read as ``expected`` and rebuild P' from P."""
    script = diff_sources(before, after)
    tree, operations = gold_operations(script)
    assert [describe_operation(tree, op) for op in operations] == expected
    check_rebuilds(tree, operations, script.after)


def check_rebuilds(tree: AugmentedTree, operations: list[PathOperation], after: Node) -> None:
    """Applying the gold operations gives P'; each one is among the enumerated paths."""
    assert isomorphic(apply_operations(tree, operations), after)
    paths = enumerate_paths(tree)
    ordered = order_paths(paths, operations)
    labels = gold_labels(ordered, operations)
    assert labels[-1] == EOS_LABEL and len(labels) == len(operations) + 1
    # Gold paths come first, in script order (the notes), so the first label of each kind
    # points into the head of the list.
    n = len(ordered)
    for op, label in zip(operations, labels, strict=False):
        path = ordered[(label - 2) % n]
        assert (path.source, path.target) == (op.source, op.target)
        assert (label - 2) // n == op.operation.value


GOLD_CASES: list[tuple[str, str, str, list[str]]] = [
    (
        "rename: UPD from a value P already has",
        "x = foo(a)\ny = bar(b)\n",
        "x = foo(b)\ny = bar(b)\n",
        ["UPD identifier 'b' -> identifier 'a'"],
    ),
    (
        "added argument copied from the other call site (runs go right to left)",
        "f(a, timeout=t)\ng(b)\n",
        "f(a, timeout=t)\ng(b, timeout=t)\n",
        [
            "INS keyword_argument -> identifier 'b'",
            "INS , ',' -> identifier 'b'",
        ],
    ),
    (
        "moved statement: MOV to the placeholder = first child",
        "a = 1\nb = 2\nc = 3\n",
        "c = 3\na = 1\nb = 2\n",
        ["MOV expression_statement -> <placeholder>"],
    ),
    (
        "swapped arguments",
        "f(a, b)\n",
        "f(b, a)\n",
        ["MOV identifier 'a' -> identifier 'b'", "MOV , ',' -> identifier 'b'"],
    ),
    (
        "deleted statement: one DEL for the whole subtree",
        "x = 1\ny = 2\n",
        "x = 1\n",
        ["DEL expression_statement"],
    ),
    (
        "inserted copy of a node after itself (a one-node path)",
        "f(x, y)\n",
        "f(x, y, y)\n",
        # The old `y` maps to the last new `y` (same right neighbour), so the copies go
        # in before it: a `,` after the `,` (a one-node path), then `y` after that.
        ["INS , ',' -> , ','", "INS identifier 'y' -> , ','"],
    ),
    (
        "unwrapping a call: MOV the argument out, DEL the rest",
        "x = wrap(value)\n",
        "x = value\n",
        ["MOV identifier 'value' -> = '='", "DEL call"],
    ),
    ("no edit, no operation", "f(a)\n", "f(a)\n", []),
]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [case[1:] for case in GOLD_CASES],
    ids=[case[0] for case in GOLD_CASES],
)
def test_gold_operations(before: str, after: str, expected: list[str]) -> None:
    check_gold(before, after, expected)


NOT_REPRESENTABLE_CASES: list[tuple[str, str, str]] = [
    ("a new token P does not contain", "f(x)\n", "f(x, y)\n"),
    ("a new value P does not contain", "x = a\n", "x = b\n"),
    ("a new node wrapping nodes of P", "x = value\ny = g(z)\n", "x = g(value)\ny = g(z)\n"),
]


@pytest.mark.parametrize(
    ("before", "after"),
    [case[1:] for case in NOT_REPRESENTABLE_CASES],
    ids=[case[0] for case in NOT_REPRESENTABLE_CASES],
)
def test_not_representable(before: str, after: str) -> None:
    with pytest.raises(NotRepresentable):
        gold_operations(diff_sources(before, after))


def test_fragment_below_the_root() -> None:
    """P is a subtree (a function body); the caller's tree is left untouched."""
    source = b"def f(a, b):\n    x = g(a, b)\n    return x\n"
    edited = b"def f(a, b):\n    x = g(a, b)\n    return b\n"
    body = from_tree_sitter(parse_python(source).root_node.children[0].children[-1], source)
    new_body = from_tree_sitter(parse_python(edited).root_node.children[0].children[-1], edited)
    assert body.type == "block"
    snapshot = to_sexp(body)
    tree, operations = gold_operations(diff(body, new_body))
    assert [describe_operation(tree, op) for op in operations] == [
        "UPD identifier 'b' -> identifier 'x'"
    ]
    check_rebuilds(tree, operations, new_body)
    assert to_sexp(body) == snapshot
    assert isomorphic(tree.strip(), body)


def test_augmented_tree() -> None:
    """A placeholder first on every non-leaf, DEL last under the root (C3PO §4 (1), (2))."""
    tree = AugmentedTree(parse("f(a)\n"))
    assert to_sexp(tree.root) == (
        "(module (<placeholder>) (expression_statement (<placeholder>) (call (<placeholder>)"
        ' (identifier "f") (argument_list (<placeholder>) (( "(") (identifier "a")'
        ' () ")")))) (<DEL>))'
    )
    assert [node.id for node in tree.nodes] == list(range(len(tree)))


def test_path_steps_and_values() -> None:
    """Types with child indices (placeholder = 0), values split into sub-tokens (§5.2.1)."""
    tree = AugmentedTree(parse("f(myArg, other_arg)\n"))
    first = next(n.id for n in tree.nodes if n.value == "myArg")
    second = next(n.id for n in tree.nodes if n.value == "other_arg")
    path = tree.path(first, second)
    assert path.steps == (
        PathStep("identifier", 2),
        PathStep("argument_list", 2),
        PathStep("identifier", 4),
    )
    assert path.source_value == ("my", "arg")
    assert path.target_value == ("other", "arg")
    call = next(n.id for n in tree.nodes if n.type == "call")
    to_del = tree.path(call, tree.del_node.id)
    assert [s.type for s in to_del.steps] == ["call", "expression_statement", "module", "<DEL>"]
    assert to_del.source_value == () and to_del.target_value == ()


ENUMERATION_SOURCES = [
    "f(a, b)\n",
    "x = foo(a)\ny = bar(b)\n",
    "def f(a):\n    return a + 1\n",
    "if x:\n    y = [1, 2]\n",
]


@pytest.mark.parametrize("source", ENUMERATION_SOURCES)
def test_enumeration_rules(source: str) -> None:
    tree = AugmentedTree(parse(source))
    paths = enumerate_paths(tree)
    pairs = {(p.source, p.target) for p in paths}
    assert len(pairs) == len(paths)
    for path in paths:
        source_node, target_node = tree.nodes[path.source], tree.nodes[path.target]
        assert source_node is not tree.root and not tree.is_special(path.source)
        assert target_node is not tree.root
        assert source_node not in target_node.ancestors()  # target not below the source
        # The steps walk the tree: each consecutive pair is parent and child.
        assert path.steps[0].type == source_node.type
        assert path.steps[-1].type == target_node.type
    # Nothing valid is missing (brute force over all pairs, by the rules' own words).
    expected = {
        (s.id, t.id)
        for s in tree.nodes
        for t in tree.nodes
        if s is not tree.root
        and s.type not in ("<placeholder>", "<DEL>")
        and t is not tree.root
        and s not in t.ancestors()
    }
    assert pairs == expected


def test_enumeration_with_child_types() -> None:
    """The type rule: the source's type was seen as a child of the target parent's type."""
    tree = AugmentedTree(parse("f(a, b)\nx = 1\n"))
    child_types = observed_child_types([parse("g(c, d)\n")])
    paths = enumerate_paths(tree, child_types)
    assert paths and len(paths) < len(enumerate_paths(tree))
    for path in paths:
        target = tree.nodes[path.target]
        if target is tree.del_node:
            continue
        assert target.parent is not None
        assert tree.nodes[path.source].type in child_types[target.parent.type]
    integer = next(n.id for n in tree.nodes if n.type == "integer")
    first_arg = next(n.id for n in tree.nodes if n.value == "a")
    assert not is_valid_path(tree, integer, first_arg, child_types)  # never seen in args
    assert is_valid_path(tree, integer, tree.del_node.id, child_types)  # DEL: always


def test_labels() -> None:
    """[PAD, EOS] + MOV(n) + UPD(n) + INS(n), gold paths first, EOS last (the notes)."""
    script = diff_sources("f(a, timeout=t)\ng(b)\n", "f(a, timeout=t)\ng(b, timeout=t)\n")
    tree, operations = gold_operations(script)
    paths = order_paths(enumerate_paths(tree), operations)
    n = len(paths)
    assert gold_labels(paths, operations) == [2 + 2 * n + 0, 2 + 2 * n + 1, EOS_LABEL]


INVALID_OPERATIONS: list[tuple[str, str, str, str, Operation]] = [
    # (name, source, source node, target node, operation); nodes by "type" or "type=value"
    ("move into its own subtree", "f(a)\n", "call", "identifier=a", Operation.MOV),
    ("UPD of a non-terminal", "f(a)\n", "identifier=a", "call", Operation.UPD),
    ("INS to DEL", "f(a)\n", "identifier=a", "<DEL>", Operation.INS),
    ("the root as source", "f(a)\n", "module", "identifier=a", Operation.MOV),
]


def _find(tree: AugmentedTree, spec: str) -> int:
    kind, _, value = spec.partition("=")
    return next(n.id for n in tree.nodes if n.type == kind and (not value or n.value == value))


@pytest.mark.parametrize(
    ("source", "source_node", "target_node", "operation"),
    [case[1:] for case in INVALID_OPERATIONS],
    ids=[case[0] for case in INVALID_OPERATIONS],
)
def test_invalid_operations(
    source: str, source_node: str, target_node: str, operation: Operation
) -> None:
    tree = AugmentedTree(parse(source))
    op = PathOperation(operation, _find(tree, source_node), _find(tree, target_node))
    with pytest.raises(ValueError):
        apply_operations(tree, [op])


def test_removed_target() -> None:
    tree = AugmentedTree(parse("x = 1\ny = 2\n"))
    statement = _find(tree, "expression_statement")
    inside = _find(tree, "integer=1")
    ops = [
        PathOperation(Operation.MOV, statement, tree.del_node.id),
        PathOperation(Operation.INS, _find(tree, "integer=2"), inside),
    ]
    with pytest.raises(ValueError):
        apply_operations(tree, ops)


# -- generated fragments ---------------------------------------------------------------

FRAGMENTS = [
    "x = foo(a, b)\ny = bar(c)\nz = [a, c]\n",
    "def f(a, b=1):\n    if a:\n        return g(a, b)\n    return b\n",
    "total = first + second * third\nprint(total, first)\n",
    "for item in items:\n    out.append(item.name)\n",
]


def _random_edit(tree: AugmentedTree, rng: random.Random, steps: int) -> Node:
    """P' from P by random valid path-operations (the kinds of edit C3PO can express)."""
    paths = enumerate_paths(tree)
    applied: list[PathOperation] = []
    for _ in range(steps):
        path = rng.choice(paths)
        op = PathOperation(rng.choice(list(Operation)), path.source, path.target)
        try:
            apply_operations(tree, [*applied, op])
        except ValueError:
            continue
        applied.append(op)
    return apply_operations(tree, applied) if applied else tree.strip()


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(FRAGMENTS), st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_generated_edits_rebuild(fragment: str, seed: int, steps: int) -> None:
    """Whenever gold operations exist for a random edit, they rebuild P' exactly."""
    before = parse(fragment)
    after = _random_edit(AugmentedTree(before), random.Random(seed), steps)
    script = diff(before, after)
    try:
        tree, operations = gold_operations(script)
    except NotRepresentable:
        return
    check_rebuilds(tree, operations, after)


def test_generated_edits_are_mostly_representable() -> None:
    """Edits made of path-operations come back as path-operations most of the time (GumTree
    may map a copy to its original, which makes the script a move plus a new node)."""
    rng = random.Random(7)
    total = representable = 0
    for fragment in FRAGMENTS:
        before = parse(fragment)
        for _ in range(25):
            after = _random_edit(AugmentedTree(before), rng, rng.randint(1, 3))
            total += 1
            try:
                tree, operations = gold_operations(diff(before, after))
            except NotRepresentable:
                continue
            representable += 1
            check_rebuilds(tree, operations, after)
    assert representable >= 0.7 * total, (representable, total)
