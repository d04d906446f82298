"""The AST diff (GumTree + Chawathe, C3PO §3.2) and the tree it runs on.

Three kinds of test, all through ``check_roundtrip`` (``apply(diff(a, b), a)`` must be
isomorphic to ``b``):

- a table of before/after/expected-script cases through one ``check`` function;
- property tests (hypothesis): random edits to generated Python, random line edits
  that break the syntax (ERROR nodes), and arbitrary pairs of abstract trees;
- real before/after file pairs from the commit records (skipped only when the data
  folder is absent), plus a fixed set of generated pairs that always runs.
"""

from __future__ import annotations

import itertools
import json
import lzma
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ripple.models.edits.diff_cli import format_action
from ripple.models.edits.editscript import (
    Delete,
    EditScript,
    Insert,
    Move,
    Update,
    apply,
    diff,
    diff_sources,
)
from ripple.models.edits.gumtree import lcs, lis_pairs
from ripple.models.edits.languages import parse_python
from ripple.models.edits.tree import Node, from_tree_sitter, isomorphic, to_sexp

DATA_DIR = Path(
    os.environ.get("RIPPLE_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


def build(source: str) -> Node:
    data = source.encode("utf-8")
    return from_tree_sitter(parse_python(data), data)


def check_roundtrip(before: Node, after: Node, check_input: bool = True) -> EditScript:
    """Diff two trees and check that the script rebuilds the after-tree from a copy."""
    before_sexp = to_sexp(before) if check_input else ""
    script = diff(before, after)
    result = apply(script, before)
    assert isomorphic(result, after), (to_sexp(result), to_sexp(after))
    if check_input:
        assert to_sexp(before) == before_sexp, "diff and apply must not modify their input"
    for action in script.actions:  # node ownership as documented in editscript.py
        if isinstance(action, Insert):
            assert script.before_of(action.node) is None
        elif isinstance(action, Delete):
            assert script.after_of(action.node) is None
        elif isinstance(action, Update):
            assert action.old != action.new
    return script


# -- the table -------------------------------------------------------------------------

CASES: list[tuple[str, str, str, list[str]]] = [
    # (name, before, after, expected script as `ripple diff` prints it)
    ("identical", "x = 1\n", "x = 1\n", []),
    ("comment only", "x = 1  # one\n", "x = 1  # two\n", []),
    ("rename one identifier", "x = foo(1)\ny = foo\n", "x = bar(1)\ny = foo\n",
     ['UPD identifier "foo" -> "bar" @ 0:4']),
    ("rename everywhere", "def foo(a):\n    return a\n\nfoo(1)\nfoo(2)\n",
     "def bar(a):\n    return a\n\nbar(1)\nbar(2)\n",
     ['UPD identifier "foo" -> "bar" @ 0:4', 'UPD identifier "foo" -> "bar" @ 3:0',
      'UPD identifier "foo" -> "bar" @ 4:0']),
    ("add an argument", "def f(a):\n    return g(a)\n", "def f(a):\n    return g(a, timeout)\n",
     ['INS , "," @ 1:14 into argument_list[2]',
      'INS identifier "timeout" @ 1:16 into argument_list[3]']),
    ("remove an argument", "f(a, b)\n", "f(a)\n", ['DEL , "," @ 0:3', 'DEL identifier "b" @ 0:5']),
    ("literal", "n = 1\n", "n = 2\n", ['UPD integer "1" -> "2" @ 0:4']),
    ("string literal", 's = "a\\nb"\n', 's = "a\\nc"\n',
     ['UPD string "\\"a\\\\nb\\"" -> "\\"a\\\\nc\\"" @ 0:4']),
    ("f-string keeps its structure", 's = f"a{x}"\n', 's = f"a{y}"\n',
     ['UPD identifier "x" -> "y" @ 0:8']),
    ("operator", "x = a + b\n", "x = a - b\n",
     ['INS - "-" @ 0:6 into binary_operator[1]', 'DEL + "+" @ 0:6']),
    ("slice bound moves", "y = x[1:]\n", "y = x[:1]\n", ['MOV : ":" @ 0:7 into slice[0]']),
    ("relative import level", "from . import x\n", "from .. import x\n",
     ['INS . "." @ 0:6 into import_prefix[1]']),
    ("swap statements", "if x:\n    a()\n    b()\n", "if x:\n    b()\n    a()\n",
     ["MOV expression_statement @ 2:4 into block[0]"]),
    ("wrap in if", "a()\nb()\n", "if x:\n    a()\nb()\n",
     ["INS if_statement @ 0:0 into module[0]", 'INS if "if" @ 0:0 into if_statement[0]',
      'INS identifier "x" @ 0:3 into if_statement[1]', 'INS : ":" @ 0:4 into if_statement[2]',
      "INS block @ 1:4 into if_statement[3]", "MOV expression_statement @ 0:0 into block[0]"]),
    ("inline a variable", "def f(x):\n    y = x + 1\n    return y\n",
     "def f(x):\n    return x + 1\n",
     ["MOV binary_operator @ 1:8 into return_statement[1]", 'DEL identifier "y" @ 1:4',
      'DEL = "=" @ 1:6', "DEL assignment @ 1:4", "DEL expression_statement @ 1:4",
      'DEL identifier "y" @ 2:11']),
    ("add a decorator", "def f():\n    pass\n", "@cache\ndef f():\n    pass\n",
     ["INS decorated_definition @ 0:0 into module[0]",
      "INS decorator @ 0:0 into decorated_definition[0]",
      "MOV function_definition @ 0:0 into decorated_definition[1]",
      'INS @ "@" @ 0:0 into decorator[0]', 'INS identifier "cache" @ 0:1 into decorator[1]']),
    ("first statement of an empty file", "", "x = 1\n",
     ["INS expression_statement @ 0:0 into module[0]",
      "INS assignment @ 0:0 into expression_statement[0]",
      'INS identifier "x" @ 0:0 into assignment[0]', 'INS = "=" @ 0:2 into assignment[1]',
      'INS integer "1" @ 0:4 into assignment[2]']),
    ("delete everything", "x = 1\n", "",
     ['DEL identifier "x" @ 0:0', 'DEL = "=" @ 0:2', 'DEL integer "1" @ 0:4',
      "DEL assignment @ 0:0", "DEL expression_statement @ 0:0"]),
]


def check(before: str, after: str, expected: list[str]) -> None:
    script = check_roundtrip(build(before), build(after))
    assert [format_action(a) for a in script.actions] == expected


@pytest.mark.parametrize(("before", "after", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_edit_script(before: str, after: str, expected: list[str]) -> None:
    check(before, after, expected)


# -- the tree --------------------------------------------------------------------------

TREE_CASES: list[tuple[str, str, str]] = [
    # (name, source, expected S-expression)
    ("comments and line continuations are left out", "x = 1  # c\nif x: \\\n  pass\n",
     '(module (expression_statement (assignment (identifier "x") (= "=") (integer "1")))'
     ' (if_statement (if "if") (identifier "x") (: ":")'
     ' (block (pass_statement (pass "pass")))))'),
    ("a string literal is one leaf", 's = "a\\nb"\n',
     '(module (expression_statement (assignment (identifier "s") (= "=")'
     ' (string "\\"a\\\\nb\\""))))'),
    ("string_content keeps the text between escapes", 's = f"a\\nb{x}"\n',
     '(module (expression_statement (assignment (identifier "s") (= "=") (string'
     ' (string_start "f\\"") (string_content "a\\\\nb") (interpolation ({ "{")'
     ' (identifier "x") (} "}")) (string_end "\\"")))))'),
    ("an empty module is an inner node without value", "", "(module)"),
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in TREE_CASES],
                         ids=[c[0] for c in TREE_CASES])
def test_tree_from_tree_sitter(source: str, expected: str) -> None:
    assert to_sexp(build(source)) == expected


def test_tree_helpers() -> None:
    root = build("def f(a):\n    return a\n")
    nodes = list(root.pre_order())
    assert [n.id for n in nodes] == list(range(len(nodes)))
    assert root.size == len(nodes)
    post = list(root.post_order())
    assert post[-1] is root and sorted(n.id for n in post) == [n.id for n in nodes]
    assert all(n.parent is not None and n in n.parent.children for n in nodes[1:])
    leaf = next(n for n in nodes if n.value == "return")
    assert leaf.is_leaf and not leaf.named and leaf.height == 1
    assert leaf.start_point == (1, 4) and leaf.end_byte - leaf.start_byte == 6
    assert [a.type for a in leaf.ancestors()] == [
        "return_statement", "block", "function_definition", "module"]
    clone = root.copy()
    assert isomorphic(clone, root) and clone is not root
    assert clone.text_hash() == root.text_hash()
    clone.children[0].children[1].value = "g"
    assert not isomorphic(clone, root)


def test_lcs_and_lis() -> None:
    a, b = "abcbdab", "bdcaba"
    pairs = lcs(a, b)
    assert len(pairs) == 4 and all(a[x] == b[y] for x, y in pairs)
    assert all(p < q for p, q in itertools.pairwise(pairs))
    assert len(lcs(list(range(300)) * 2, list(range(300)))) == 300
    assert lis_pairs([3, 1, 2, 5, 4]) == [1, 2, 4]
    assert lis_pairs([]) == []


# -- property tests: generated Python --------------------------------------------------

NAMES = ["a", "b", "count", "data", "f", "g", "item", "self", "value", "x"]
OPS = ["+", "-", "*", "==", "and", "in"]


def expressions() -> st.SearchStrategy[str]:
    leaves = st.one_of(
        st.sampled_from(NAMES),
        st.integers(0, 20).map(str),
        st.sampled_from(['"s"', '"t\\n"', "None", "True"]),
    )

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(st.sampled_from(NAMES), st.lists(inner, max_size=3)).map(
                lambda t: f"{t[0]}({', '.join(t[1])})"),
            st.tuples(inner, st.sampled_from(OPS), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(inner, st.sampled_from(NAMES)).map(lambda t: f"{t[0]}.{t[1]}"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
        )

    return st.recursive(leaves, extend, max_leaves=6)


Block = list["Stmt"]
Stmt = tuple[str, str, "Block | None"]  # (kind, header text, body)


def statements(depth: int = 2) -> st.SearchStrategy[Stmt]:
    simple = st.one_of(
        st.tuples(st.sampled_from(NAMES), expressions()).map(lambda t: ("s", f"{t[0]} = {t[1]}", None)),
        expressions().map(lambda e: ("s", e, None)),
        expressions().map(lambda e: ("s", f"return {e}", None)),
    )
    if depth == 0:
        return simple
    body = st.lists(statements(depth - 1), min_size=1, max_size=3)
    compound = st.one_of(
        st.tuples(expressions(), body).map(lambda t: ("c", f"if {t[0]}:", t[1])),
        st.tuples(st.sampled_from(NAMES), st.lists(st.sampled_from(NAMES), max_size=2, unique=True),
                  body).map(lambda t: ("c", f"def {t[0]}({', '.join(t[1])}):", t[2])),
        st.tuples(st.sampled_from(NAMES), expressions(), body).map(
            lambda t: ("c", f"for {t[0]} in {t[1]}:", t[2])),
    )
    return st.one_of(simple, simple, compound)


def render(block: Block, indent: str = "") -> str:
    out = []
    for _kind, header, body in block:
        out.append(indent + header + "\n")
        if body is not None:
            out.append(render(body, indent + "    "))
    return "".join(out)


def blocks_of(block: Block) -> list[Block]:
    found = [block]
    for _, _, body in block:
        if body is not None:
            found.extend(blocks_of(body))
    return found


@st.composite
def program_and_edit(draw: st.DrawFn) -> tuple[str, str]:
    """A generated module and the same module after 1-3 random structural edits."""
    program: Block = draw(st.lists(statements(), min_size=1, max_size=5))
    before = render(program)
    for _ in range(draw(st.integers(1, 3))):
        blocks = blocks_of(program)
        block = draw(st.sampled_from(blocks))
        kind = draw(st.sampled_from(["insert", "delete", "swap", "wrap", "unwrap", "rename",
                                     "relabel"]))
        pos = draw(st.integers(0, len(block) - 1)) if block else 0
        if kind == "insert" or not block:
            block.insert(pos, draw(statements(1)))
        elif kind == "delete" and len(block) > 1:
            del block[pos]
        elif kind == "swap":
            other = draw(st.integers(0, len(block) - 1))
            block[pos], block[other] = block[other], block[pos]
        elif kind == "wrap":
            block[pos] = ("c", f"if {draw(expressions())}:", [block[pos]])
        elif kind == "unwrap" and block[pos][2]:
            body = block[pos][2]
            assert body is not None
            block[pos : pos + 1] = body
        elif kind in ("rename", "relabel"):
            old, new = draw(st.sampled_from(NAMES)), draw(st.sampled_from(NAMES))
            header = block[pos][1]
            # rename one name in one statement; relabel a literal
            header = header.replace(old, new, 1) if kind == "rename" else header.replace("1", "7")
            block[pos] = (block[pos][0], header, block[pos][2])
    return before, render(program)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program_and_edit())
def test_random_edits_to_generated_python(pair: tuple[str, str]) -> None:
    check_roundtrip(build(pair[0]), build(pair[1]))


@st.composite
def broken_edit(draw: st.DrawFn) -> tuple[str, str]:
    """Line-level edits (delete, duplicate, move, cut in half) that often break the syntax."""
    program: Block = draw(st.lists(statements(), min_size=1, max_size=4))
    lines = render(program).splitlines(keepends=True)
    edited = list(lines)
    for _ in range(draw(st.integers(1, 3))):
        k = draw(st.integers(0, len(edited) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "move", "cut"]))
        if op == "delete" and len(edited) > 1:
            del edited[k]
        elif op == "duplicate":
            edited.insert(k, edited[k])
        elif op == "move":
            edited.insert(draw(st.integers(0, len(edited) - 1)), edited.pop(k))
        else:
            edited[k] = edited[k][: len(edited[k]) // 2] + "\n"
    return "".join(lines), "".join(edited)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_edit())
def test_random_line_edits_with_syntax_errors(pair: tuple[str, str]) -> None:
    check_roundtrip(build(pair[0]), build(pair[1]))


# -- property tests: arbitrary trees (any two trees, even with different roots) --------

def abstract_trees() -> st.SearchStrategy[Node]:
    leaves = st.builds(lambda t, v: Node(t, v), st.sampled_from(["a", "b", "c"]),
                       st.sampled_from(["x", "y", "z"]))

    def extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
        return st.builds(_inner, st.sampled_from(["P", "Q", "R"]),
                         st.lists(children, min_size=1, max_size=4))

    return st.recursive(leaves, extend, max_leaves=25).map(_numbered)


def _inner(node_type: str, children: list[Node]) -> Node:
    node = Node(node_type, None, [c.copy() for c in children])
    for child in node.children:
        child.parent = node
    return node


def _numbered(root: Node) -> Node:
    root.renumber()
    return root


@settings(max_examples=200, deadline=None)
@given(abstract_trees(), abstract_trees())
def test_any_two_trees(before: Node, after: Node) -> None:
    check_roundtrip(before, after)


# -- generated pairs (always run) and real pairs (when the data is there) --------------

def generated_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Module-sized pairs: ~60 functions, a few of them edited like a real commit would."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        funcs = []
        for k in range(60):
            a, b = rng.sample(NAMES[:-1], 2)
            funcs.append(
                f"def func_{k}({a}, {b}=None):\n"
                f"    if {b} is None:\n        {b} = {rng.randint(0, 9)}\n"
                f"    result = helper_{k % 7}({a}, {b})\n"
                f"    return [result.{rng.choice(NAMES)} for _ in range({rng.randint(1, 5)})]\n"
            )
        edited = list(funcs)
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(len(edited))
            op = rng.choice(["rename", "arg", "delete", "move", "insert"])
            if op == "rename":
                edited[k] = edited[k].replace("result", "outcome")
            elif op == "arg":
                edited[k] = edited[k].replace(")\n    return", ", timeout=5)\n    return")
            elif op == "delete":
                del edited[k]
            elif op == "move":
                edited.insert(rng.randrange(len(edited)), edited.pop(k))
            else:
                edited.insert(k, "def added(x):\n    return x + 1\n")
        pairs.append(("\n\n".join(funcs), "\n\n".join(edited)))
    return pairs


def test_generated_module_pairs() -> None:
    for before, after in generated_pairs(40):
        script = check_roundtrip(build(before), build(after))
        assert len(script) < 400  # a few function-level edits, not a rewrite


def real_pairs(limit: int, per_file: int) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for path in sorted((DATA_DIR / "commits").glob("*.jsonl.xz")):
        taken = 0
        with lzma.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                for change in json.loads(line)["files"]:
                    if change["before"] is not None and change["after"] is not None:
                        pairs.append((change["before"], change["after"]))
                        taken += 1
                if taken >= per_file:
                    break
        if len(pairs) >= limit:
            break
    return pairs[:limit]


def _roundtrip_text(pair: tuple[str, str]) -> str:
    """'' if the pair round-trips, else a short description (runs in a worker process)."""
    try:
        # (input immutability is checked by the other tests; it doubles the cost here)
        check_roundtrip(build(pair[0]), build(pair[1]), check_input=False)
    except AssertionError as exc:
        return f"{pair[0][:80]!r}: {str(exc)[:200]}"
    return ""


@pytest.mark.skipif(not (DATA_DIR / "commits").is_dir(), reason=f"no commit data in {DATA_DIR}")
def test_real_file_pairs() -> None:
    """2,000 real before/after pairs (125 from each repository): the script rebuilds the after-tree."""
    pairs = real_pairs(limit=2000, per_file=125)
    assert len(pairs) >= 2000
    start = time.perf_counter()
    # The pairs are independent: spread them over the machine's cores.
    workers = max(1, min(4, os.cpu_count() or 1))
    with ProcessPoolExecutor(workers) as pool:
        failures = [f for f in pool.map(_roundtrip_text, pairs, chunksize=25) if f]
    assert not failures, failures[:3]
    elapsed = time.perf_counter() - start
    print(f"{len(pairs)} real pairs diffed and applied in {elapsed:.1f} s")


def test_diff_sources_matches_diff() -> None:
    script = diff_sources("x = foo(1)\n", "x = bar(1)\n")
    assert [type(a) for a in script.actions] == [Update]
    pairs = dict((b.id, a.id) for b, a in script.mapping())
    assert len(pairs) == script.before.size  # every node mapped, foo to bar included
    assert not any(isinstance(a, Move | Insert | Delete) for a in script.actions)
