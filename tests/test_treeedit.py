"""Structural edits (Yao et al. 2021): the grammar, the edit state, the expert, rendering."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ripple.models.edits.completion import normalise_literals
from ripple.models.edits.grammar import (
    FRAGMENT,
    PYTHON_NODE_TYPES,
    Grammar,
    main,
    python_grammar,
)
from ripple.models.edits.languages import parse_python
from ripple.models.edits.tree import Node, from_tree_sitter
from ripple.models.edits.treeedit import (
    ADD,
    ADDED,
    COPIED,
    DELETE,
    STOP,
    SUBTREE,
    Action,
    EditState,
    Slot,
    TNode,
    check_tree,
    from_node,
    gold_actions,
    parse_fragment,
    render,
    same_tree,
    to_node,
)

GRAMMAR = python_grammar()

CORPUS = [
    b"import os\nfrom a.b import c as d\n\n\ndef f(x, y=1, *args, **kw) -> int:\n"
    b"    '''doc'''\n    if x < y <= 3:\n        return x + y\n    elif not x:\n"
    b"        pass\n    else:\n        raise ValueError(f'bad {x!r}')\n"
    b"    return [i for i in range(x) if i % 2]\n",
    b"class C(Base, metaclass=M):\n    a: int = 0\n\n    @property\n    def g(self):\n"
    b"        with open(p) as fh, lock:\n            data = fh.read()[1:-1]\n"
    b"        try:\n            del self.x, y[0]\n        except (A, B) as e:\n"
    b"            print(e, file=sys.stderr)\n        finally:\n            z = lambda q: q * 2\n",
    b"x = {'a': 1, **rest}\ny = a if b else c\nwhile True:\n    x += 1\n    break\n",
]


# -- grammar ---------------------------------------------------------------------------------


def test_derive_save_load_round_trip(tmp_path: Path) -> None:
    grammar = Grammar.derive(CORPUS)
    path = tmp_path / "node-types.json"
    grammar.save(path)
    data = json.loads(path.read_text())
    assert isinstance(data, list)
    assert all({"type", "named"} <= set(e) for e in data)
    loaded = Grammar.load(path)
    assert loaded.entries == grammar.entries
    for t in grammar.types():
        assert loaded.fields_of(t) == grammar.fields_of(t)
        assert loaded.is_leaf_type(t) == grammar.is_leaf_type(t)
        assert loaded.layouts(t) == grammar.layouts(t)
        for f in grammar.fields_of(t):
            assert loaded.field_spec(t, f) == grammar.field_spec(t, f)
    # What the corpus showed.
    assert grammar.accepts("binary_operator", "operator", "+")
    assert grammar.accepts("binary_operator", "operator", "*")
    assert not grammar.accepts("binary_operator", "operator", "identifier")
    assert grammar.accepts("comparison_operator", "operators", "<=")
    spec = grammar.field_spec("call", "arguments")
    assert spec is not None and not spec.multiple and spec.required
    spec = grammar.field_spec("argument_list", "")
    assert spec is not None and spec.multiple and not spec.required
    spec = grammar.field_spec("function_definition", "return_type")
    assert spec is not None and not spec.required
    assert grammar.fields_of("function_definition") == ["name", "parameters", "return_type", "body"]
    assert grammar.is_leaf_type("identifier") and not grammar.is_inner_type("identifier")
    assert grammar.is_inner_type("call") and not grammar.is_leaf_type("call")
    assert grammar.is_leaf_type("string")  # a plain literal is one token in ripple's trees
    assert grammar.separator("argument_list", "") == (",",)


def test_cli_derives_a_file(tmp_path: Path) -> None:
    corpus = tmp_path / "src"
    corpus.mkdir()
    for i, data in enumerate(CORPUS):
        (corpus / f"m{i}.py").write_bytes(data)
    (corpus / "broken.py").write_bytes(b"def (:\n")
    out = tmp_path / "out.json"
    assert main(["--corpus", str(corpus), "--out", str(out)]) == 0
    grammar = Grammar.load(out)
    assert grammar.accepts("call", "arguments", "argument_list")


def test_load_tree_sitter_own_format_with_supertypes(tmp_path: Path) -> None:
    entries = [
        {"type": "expression", "named": True, "subtypes": [
            {"type": "identifier", "named": True}, {"type": "call", "named": True}]},
        {"type": "call", "named": True, "fields": {
            "function": {"multiple": False, "required": True,
                         "types": [{"type": "expression", "named": True}]},
            "arguments": {"multiple": False, "required": True,
                          "types": [{"type": "argument_list", "named": True}]}}},
        {"type": "argument_list", "named": True, "fields": {}, "children": {
            "multiple": True, "required": False,
            "types": [{"type": "expression", "named": True}]}},
        {"type": "identifier", "named": True},
        {"type": "(", "named": False},
    ]  # fmt: skip
    path = tmp_path / "node-types.json"
    path.write_text(json.dumps(entries))
    grammar = Grammar.load(path)
    assert grammar.accepts("call", "function", "identifier")
    assert grammar.accepts("argument_list", "", "call")
    assert not grammar.accepts("argument_list", "", "argument_list")
    assert grammar.fields_of("call") == ["arguments", "function"]
    assert grammar.is_leaf_type("identifier")
    assert "expression" not in grammar.types()  # supertypes are expanded, not listed
    # Without layouts, a new node is written with its children in field order.
    tree = TNode(FRAGMENT, None, True, {"": []})
    state = EditState(tree, grammar)
    state.apply(Action(ADD, slot=Slot(0, "", 0), label=("call", None)))
    state.apply(Action(ADD, slot=Slot(1, "arguments", 0), label=("argument_list", None)))
    state.apply(Action(ADD, slot=Slot(1, "function", 0), label=("identifier", "f")))
    state.apply(Action(STOP))
    assert [n.value for n in to_node(state.tree, grammar).pre_order() if n.value] == ["f"]


def test_python_grammar_knows_python() -> None:
    g = GRAMMAR
    assert PYTHON_NODE_TYPES.is_file()
    assert g.accepts("binary_operator", "operator", "+")
    assert g.accepts("call", "arguments", "argument_list")
    assert g.accepts("block", "", "return_statement")
    assert g.accepts("argument_list", "", "keyword_argument")
    assert g.accepts("attribute", "attribute", "identifier")
    assert g.accepts("if_statement", "alternative", "else_clause")
    assert not g.accepts("call", "arguments", "identifier")
    assert not g.accepts("attribute", "attribute", "call")
    assert not g.accepts("binary_operator", "operator", "and")
    assert g.accepts(FRAGMENT, "", "expression_statement")
    spec = g.field_spec("binary_operator", "left")
    assert spec is not None and spec.required and not spec.multiple
    spec = g.field_spec("block", "")
    assert spec is not None and spec.multiple
    assert "+" in g.field_spec("binary_operator", "operator").anonymous  # type: ignore[union-attr]
    assert g.fields_of("call") == ["function", "arguments"]
    assert g.fields_of("if_statement") == ["condition", "consequence", "alternative"]
    assert g.fields_of(FRAGMENT) == [""]
    # The shipped file stays small: counts of layouts, no per-instance data.
    assert PYTHON_NODE_TYPES.stat().st_size < 400_000


# -- helpers ---------------------------------------------------------------------------------


def fragment(src: str) -> tuple[Node, bytes]:
    """The first statement of ``src`` as ripple's Node (raw, with positions)."""
    data = src.encode()
    root = parse_python(data).root_node
    assert not root.has_error, src
    return from_tree_sitter(root.named_children[0], data), data


def tree_of(src: str) -> TNode:
    node, _ = fragment(src)
    return from_node(normalise_literals(node), GRAMMAR)


def replay(current: TNode, actions: list[Action], sources: list[TNode]) -> EditState:
    state = EditState(current, GRAMMAR, sources)
    for action in actions:
        state.apply(action)
    return state


# -- trees -----------------------------------------------------------------------------------


def test_from_node_groups_children_by_field() -> None:
    root = tree_of("x = foo(a, b + 1)")
    assert root.type == FRAGMENT and [c.type for c in root.fields[""]] == ["expression_statement"]
    statement = root.fields[""][0]
    assignment = statement.fields[""][0]
    assert assignment.type == "assignment"
    assert assignment.fields["left"][0].label == ("identifier", "x")
    call = assignment.fields["right"][0]
    assert [c.type for c in call.fields["arguments"][0].fields[""]] == ["identifier", "binary_operator"]
    op = call.fields["arguments"][0].fields[""][1]
    assert op.fields["operator"][0].label == ("+", "+")
    assert not op.fields["operator"][0].named
    assert op.fields["right"][0].label == ("integer", "999")  # literal-normalised
    # "=", "(", "," and ")" sit in no field: dropped.
    assert all(n.named or n.field for n in root.pre_order())
    assert all(c.parent is n for n in root.pre_order() for c in n.children())
    assert root.size == len(root.pre_order()) == 12


def test_same_tree_and_copy() -> None:
    a, b = tree_of("f(a, b)"), tree_of("f(a,   b)")
    assert same_tree(a, b)
    assert not same_tree(a, tree_of("f(a, c)"))
    assert not same_tree(a, tree_of("f(a)"))
    clone = a.copy(origin=COPIED)
    assert same_tree(clone, a) and all(n.origin == COPIED for n in clone.pre_order())
    assert clone.parent is None


def test_from_node_rejects_what_the_grammar_does_not_accept() -> None:
    node, _ = fragment("f(a)")
    node.children[0].children[0].field = "arguments"  # the callee in the wrong field
    with pytest.raises(ValueError, match=r"does not take|holds"):
        from_node(node, GRAMMAR)
    assert from_node(node, GRAMMAR, strict=False) is not None


# -- the edit state --------------------------------------------------------------------------


def test_edit_state_rejects_invalid_actions() -> None:
    root = tree_of("y = foo(a)")
    state = EditState(root, GRAMMAR, [root])
    types = [n.type for n in state.nodes]
    call = types.index("call")
    args = types.index("argument_list")
    ident = types.index("identifier")
    # ADD into a field that does not take the type.
    with pytest.raises(ValueError):
        state.apply(Action(ADD, slot=Slot(call, "arguments", 0), label=("identifier", "x")))
    # A single field that is full.
    with pytest.raises(ValueError):
        state.apply(Action(ADD, slot=Slot(call, "function", 0), label=("identifier", "x")))
    # A field the type does not have; a slot past the end; a token as parent.
    with pytest.raises(ValueError):
        state.apply(Action(ADD, slot=Slot(call, "body", 0), label=("identifier", "x")))
    with pytest.raises(ValueError):
        state.apply(Action(ADD, slot=Slot(args, "", 5), label=("identifier", "x")))
    with pytest.raises(ValueError):
        state.apply(Action(ADD, slot=Slot(ident, "", 0), label=("identifier", "x")))
    # A token type without a value, an inner type with one, an empty value.
    with pytest.raises(ValueError):
        state.apply(Action(ADD, slot=Slot(args, "", 0), label=("identifier", None)))
    with pytest.raises(ValueError):
        state.apply(Action(ADD, slot=Slot(args, "", 0), label=("call", "x")))
    with pytest.raises(ValueError):
        state.apply(Action(ADD, slot=Slot(args, "", 0), label=("identifier", "")))
    # SUBTREE of a source the field does not take; of no source; of the FRAGMENT root.
    with pytest.raises(ValueError):
        state.apply(Action(SUBTREE, slot=Slot(call, "arguments", 0), source=ident))
    with pytest.raises(ValueError):
        state.apply(Action(SUBTREE, slot=Slot(args, "", 0), source=len(state.sources)))
    with pytest.raises(ValueError):
        state.apply(Action(SUBTREE, slot=Slot(args, "", 0), source=0))
    # DELETE of the root or of no node.
    with pytest.raises(ValueError):
        state.apply(Action(DELETE, node=0))
    with pytest.raises(ValueError):
        state.apply(Action(DELETE, node=len(state.nodes)))
    # Nothing above changed the tree.
    assert same_tree(state.tree, root)
    # Deleting the callee leaves a hole: STOP is refused until it is filled.
    state.apply(Action(DELETE, node=state.nodes.index(state.nodes[call].fields["function"][0])))
    assert state.holes() == [Slot(call, "function", 0)]
    assert not state.can_stop()
    with pytest.raises(ValueError, match="hole"):
        state.apply(Action(STOP))
    assert Slot(call, "function", 0) in state.slots()
    assert state.valid_labels(Slot(call, "function", 0))(("identifier", "bar"))
    assert "identifier" in state.accepted_types(Slot(call, "function", 0))
    assert "argument_list" not in state.accepted_types(Slot(call, "function", 0))
    assert state.accepted_types(Slot(call, "arguments", 0)) == frozenset()  # full
    assert not state.valid_labels(Slot(call, "function", 0))(("argument_list", None))
    state.apply(Action(ADD, slot=Slot(call, "function", 0), label=("identifier", "bar")))
    assert state.can_stop()
    state.apply(Action(STOP))
    with pytest.raises(ValueError):
        state.apply(Action(STOP))  # already stopped
    assert state.nodes[call].fields["function"][0].origin == ADDED


def test_slots_and_sources() -> None:
    root = tree_of("f(a)")
    state = EditState(root, GRAMMAR, [root])
    slots = state.slots()
    args = [n.type for n in state.nodes].index("argument_list")
    assert [s for s in slots if s.parent == args] == [Slot(args, "", 0), Slot(args, "", 1)]
    assert all(state.slot_ok(s) for s in slots)
    assert not any(s.parent == 0 for s in slots)  # the fragment's one field is full
    sources = state.valid_sources(Slot(args, "", 0))
    assert sources and all(state.sources[j].type != FRAGMENT for j in sources)
    assert {state.sources[j].type for j in sources} >= {"call", "identifier"}
    assert state.deletable() == list(range(1, len(state.nodes)))
    # SUBTREE copies: the copy is independent of the source.
    j = next(j for j in sources if state.sources[j].type == "call")
    state.apply(Action(SUBTREE, slot=Slot(args, "", 1), source=j))
    copied = state.nodes[args].fields[""][1]
    assert copied.origin == COPIED and copied is not state.sources[j]
    assert same_tree(copied, state.sources[j])
    assert check_tree(state.tree, GRAMMAR) == []


# -- the expert -----------------------------------------------------------------------------

PAIRS = [
    # renames
    ("x = foo(a)", "x = bar(a)"),
    ("total = count + offset", "total = count + delta"),
    # added / removed arguments
    ("f(a)", "f(a, b)"),
    ("result = compute(a, b=2, *args, **kwargs)", "result = compute(b=2, *args)"),
    ("log.info(msg)", "log.info(msg, exc_info=True)"),
    ("f(a, b)", "f(a, b, key=1)"),
    # changed operators
    ("y = a + b", "y = a - b"),
    ("x += 1", "x -= 1"),
    ("ok = a and b", "ok = a or not b"),
    ("x = a < b", "x = a < b < c"),
    # wrapped calls
    ("x = y", "x = int(y)"),
    ("foo()", "await foo()"),
    ("x = y[0]", "x = y[0].strip()"),
    ("print(x)", "logger.info(x)"),
    # replaced return values
    ("return x", "return None"),
    ("return a", "return a, b"),
    ("return result", 'return {"result": result, "ok": True}'),
    # attribute chains
    ("self.a.b()", "self.c.b()"),
    ("value = obj.config.get(name)", "value = obj.settings.get(name, default)"),
    # lists, dicts, subscripts, lambdas, conditionals
    ("x = [1, 2, 3]", "x = [1, 2]"),
    ("types = (UserDict, DictMixin, dict)", "types = (dict,)"),
    ('d = {"a": 1}', 'd = {"a": 1, "b": 2}'),
    ("del x[0]", "del x[1:]"),
    ("x = lambda a: a + 1", "x = lambda a, b: a + b"),
    ("x = a if c else b", "x = b if c else a"),
    ('x = f"v={a}"', 'x = f"v={a} w={b}"'),
    # statements
    ("import os", "import os, sys"),
    ("from a import b", "from a import b as c"),
    ('raise ValueError("bad")', 'raise TypeError("bad") from err'),
    ("assert x == 1", 'assert x == 1, "message"'),
    ("global a", "global a, b"),
    # root type change
    ("x = f(y)", "return f(y)"),
    ("pass", "continue"),
    # blocks: deleted, added and changed statements
    ("if x:\n    a()\n    b()\n", "if x:\n    b()\n"),
    ("while i < n:\n    i += 1\n", "while i < n:\n    i += 2\n    j += 1\n"),
    ("if a and b:\n    pass\n", "if a or b:\n    pass\nelse:\n    return\n"),
    (
        "for i in range(n):\n    total += i\n",
        "for i in range(len(items)):\n    total += items[i]\n",
    ),
    (
        "with open(p) as f:\n    data = f.read()\n",
        'with open(p, "rb") as f:\n    data = f.read()\n    f.close()\n',
    ),
    (
        "try:\n    a()\nexcept ValueError:\n    pass\n",
        "try:\n    a()\nexcept (ValueError, TypeError) as e:\n    log(e)\n",
    ),
    (
        "def f(a, b):\n    return a\n",
        "def f(a, b=None) -> int:\n    if b:\n        return b\n    return a\n",
    ),
    ("@decorator\ndef f():\n    pass\n", "@decorator(1)\n@other\ndef f():\n    pass\n"),
]


@pytest.mark.parametrize(("before", "after"), PAIRS)
def test_gold_actions_replay_to_the_target(before: str, after: str) -> None:
    tb, ta = tree_of(before), tree_of(after)
    actions = gold_actions(tb, ta, GRAMMAR, [tb])
    assert actions[-1] == Action(STOP)
    assert all(a.op != STOP for a in actions[:-1])
    state = replay(tb, actions, [tb])
    assert state.done
    assert same_tree(state.tree, ta)
    assert check_tree(state.tree, GRAMMAR) == []
    # The expert is deterministic and the input tree is not touched.
    assert gold_actions(tb, ta, GRAMMAR, [tb]) == actions
    assert same_tree(tb, tree_of(before))


def test_gold_costs_follow_the_dynamic_program() -> None:
    # Equal trees: nothing but STOP.
    t = tree_of("x = foo(a, b)")
    assert gold_actions(t, tree_of("x = foo(a, b)"), GRAMMAR, [t]) == [Action(STOP)]
    # A renamed token: DELETE then ADD in the (single, required) field.
    tb, ta = tree_of("x = foo(a)"), tree_of("x = bar(a)")
    ops = [a.op for a in gold_actions(tb, ta, GRAMMAR, [tb])]
    assert ops == [DELETE, ADD, STOP]
    # Wrapping: the wrapped expression comes back by one SUBTREE (cost 1), not node by node.
    tb, ta = tree_of("x = a.b.c(d)"), tree_of("x = list(a.b.c(d))")
    actions = gold_actions(tb, ta, GRAMMAR, [tb])
    assert [a.op for a in actions].count(SUBTREE) == 1
    # Cheapest: keep the call node, replace its callee (2), move the old call into its
    # arguments (delete ``d`` 1, SUBTREE 1); rebuilding the call would cost 5.
    assert [a.op for a in actions] == [DELETE, ADD, DELETE, SUBTREE, STOP]
    # Without sources, every added node is an ADD (cost = subtree size).
    no_sources = gold_actions(tb, ta, GRAMMAR, [])
    assert SUBTREE not in [a.op for a in no_sources]
    assert same_tree(replay(tb, no_sources, []).tree, ta)
    # Deleting a statement in a block: one DELETE.
    tb, ta = tree_of("if x:\n    a()\n    b()\n"), tree_of("if x:\n    b()\n")
    assert [a.op for a in gold_actions(tb, ta, GRAMMAR, [tb])] == [DELETE, STOP]


def test_gold_order_is_top_down_left_to_right() -> None:
    tb, ta = tree_of("f(a, b, c)"), tree_of("g(x, b, y)")
    actions = gold_actions(tb, ta, GRAMMAR, [tb])
    state = EditState(tb, GRAMMAR, [tb])
    types = [n.type for n in state.nodes]
    call, args = types.index("call"), types.index("argument_list")
    # The callee (a child of the call) first, then the arguments left to right, each
    # deletion just before the addition that takes its place.
    assert actions == [
        Action(DELETE, node=call + 1),
        Action(ADD, slot=Slot(call, "function", 0), label=("identifier", "g")),
        Action(DELETE, node=args + 1),
        Action(ADD, slot=Slot(args, "", 0), label=("identifier", "x")),
        Action(DELETE, node=args + 3),
        Action(ADD, slot=Slot(args, "", 2), label=("identifier", "y")),
        Action(STOP),
    ]


@pytest.mark.parametrize(("before", "after"), PAIRS)
def test_gold_from_an_intermediate_state(before: str, after: str) -> None:
    """The DAgger expert: from any state the editor reaches, gold still reaches the target."""
    tb, ta = tree_of(before), tree_of(after)
    actions = gold_actions(tb, ta, GRAMMAR, [tb])
    rng = random.Random(len(before) * 31 + len(after))
    for k in range(len(actions)):
        state = replay(tb, actions[:k], [tb])
        # One extra valid action the expert did not take.
        extra = _random_action(state, rng, allow_stop=False)
        if extra is not None:
            state.apply(extra)
        fixed = gold_actions(state.tree, ta, GRAMMAR, [tb])
        end = replay(state.tree, fixed, [tb])
        assert same_tree(end.tree, ta), (k, str(extra))


# -- random edits stay in the grammar ---------------------------------------------------------

_LEAF_VALUES = {"identifier": "name", "integer": "999", "string": '"STR"', "float": "1.5"}


def _labels_for(state: EditState, slot: Slot) -> list[tuple[str, str | None]]:
    parent = state.nodes[slot.parent]
    spec = GRAMMAR.field_spec(parent.type, slot.field)
    assert spec is not None
    labels: list[tuple[str, str | None]] = []
    for t in sorted(spec.types):
        if GRAMMAR.is_inner_type(t):
            labels.append((t, None))
        if GRAMMAR.is_leaf_type(t):
            labels.append((t, t if t in spec.anonymous else _LEAF_VALUES.get(t, "v")))
    return labels


def _random_action(state: EditState, rng: random.Random, allow_stop: bool = True) -> Action | None:
    choices: list[str] = []
    if state.deletable():
        choices.append("delete")
    slots = state.slots()
    if slots:
        choices += ["add", "subtree"]
    if allow_stop and state.can_stop():
        choices.append("stop")
    if not choices:
        return None
    kind = rng.choice(choices)
    if kind == "stop":
        return Action(STOP)
    if kind == "delete":
        return Action(DELETE, node=rng.choice(state.deletable()))
    slot = rng.choice(slots)
    if kind == "subtree":
        sources = state.valid_sources(slot)
        if sources:
            return Action(SUBTREE, slot=slot, source=rng.choice(sources))
    labels = [lab for lab in _labels_for(state, slot) if state.valid_labels(slot)(lab)]
    return Action(ADD, slot=slot, label=rng.choice(labels)) if labels else None


def test_random_valid_actions_keep_the_tree_in_the_grammar() -> None:
    rng = random.Random(7)
    sources_text = [before for before, _ in PAIRS[:12]]
    for step in range(60):
        root = tree_of(sources_text[step % len(sources_text)])
        state = EditState(root, GRAMMAR, [root])
        for _ in range(25):
            action = _random_action(state, rng)
            if action is None:
                continue
            state.apply(action)
            assert check_tree(state.tree, GRAMMAR, allow_holes=True) == []
            assert [s for s in state.holes() if not state.slot_ok(s)] == []
            if state.done:
                break
        while not state.done:  # fill the holes, then stop
            holes = state.holes()
            if not holes:
                state.apply(Action(STOP))
                break
            slot = holes[0]
            sources = state.valid_sources(slot)
            labels = [lab for lab in _labels_for(state, slot) if state.valid_labels(slot)(lab)]
            leaf_labels = [lab for lab in labels if lab[1] is not None]
            if sources:
                state.apply(Action(SUBTREE, slot=slot, source=sources[0]))
            else:
                state.apply(Action(ADD, slot=slot, label=(leaf_labels or labels)[0]))
        assert check_tree(state.tree, GRAMMAR) == []
        if state.tree.fields[""]:
            to_node(state.tree, GRAMMAR)  # every finished tree can be written back


# -- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "after"), PAIRS)
def test_render_reparses_to_the_target(before: str, after: str) -> None:
    raw, data = fragment(before)
    tb = from_node(normalise_literals(raw), GRAMMAR)
    ta = tree_of(after)
    state = replay(tb, gold_actions(tb, ta, GRAMMAR, [tb]), [tb])
    text = render(state.tree, raw, data, GRAMMAR)
    node = parse_fragment(text, ta.fields[""][0].type)
    assert node is not None, text
    back = from_node(normalise_literals(node), GRAMMAR)
    assert same_tree(back, ta), text
    # Without positions (a tree read back from a dataset) the text still parses to it.
    bare = render(state.tree, raw, b"", GRAMMAR)
    node = parse_fragment(bare, ta.fields[""][0].type)
    assert node is not None, bare
    assert same_tree(from_node(normalise_literals(node), GRAMMAR), ta), bare


@pytest.mark.parametrize("src", [before for before, _ in PAIRS])
def test_render_of_an_unedited_tree_is_the_source(src: str) -> None:
    raw, data = fragment(src)
    tree = from_node(normalise_literals(raw), GRAMMAR)
    assert render(tree, raw, data, GRAMMAR) == data.decode().rstrip("\n")


def test_render_keeps_spacing_and_literals_of_the_original() -> None:
    raw, data = fragment('x = foo( "a b",  1 )')
    tb = from_node(normalise_literals(raw), GRAMMAR)
    ta = tree_of('x = bar( "a b",  1 )')
    state = replay(tb, gold_actions(tb, ta, GRAMMAR, [tb]), [tb])
    assert render(state.tree, raw, data, GRAMMAR) == 'x = bar( "a b",  1 )'
    ta = tree_of('x = foo( "a b",  1, y)')
    state = replay(tb, gold_actions(tb, ta, GRAMMAR, [tb]), [tb])
    # The new argument gets the source's separator and PEP 8 spacing around itself.
    assert render(state.tree, raw, data, GRAMMAR) == 'x = foo( "a b",  1, y)'


def test_to_node_reinserts_tokens() -> None:
    tb, ta = tree_of("x = f(a)"), tree_of("x = f(a, g(b), c=[1, 2])")
    state = replay(tb, gold_actions(tb, ta, GRAMMAR, [tb]), [tb])
    node = to_node(state.tree, GRAMMAR)
    tokens = [n.value for n in node.pre_order() if not n.children and n.value is not None]
    assert tokens == ["x", "=", "f", "(", "a", ",", "g", "(", "b", ")", ",", "c", "=", "[",
                      "999", ",", "999", "]", ")"]  # fmt: skip
    assert node.type == "expression_statement"
    assert [c.field for c in node.children[0].children] == ["left", None, "right"]


@pytest.mark.parametrize("i", range(0, len(PAIRS), 4))
def test_render_new_nodes_from_the_grammar_layouts(i: int) -> None:
    """From one fragment to every other one: most nodes are new (ADD, SUBTREE), so their
    tokens come from the grammar's layouts; the text must still parse to the target."""
    raw, data = fragment(PAIRS[i][0])
    tb = from_node(normalise_literals(raw), GRAMMAR)
    for _, after in PAIRS:
        ta = tree_of(after)
        state = replay(tb, gold_actions(tb, ta, GRAMMAR, [tb]), [tb])
        for source in (data, b""):
            text = render(state.tree, raw, source, GRAMMAR)
            node = parse_fragment(text, ta.fields[""][0].type)
            assert node is not None, text
            assert same_tree(from_node(normalise_literals(node), GRAMMAR), ta), text
