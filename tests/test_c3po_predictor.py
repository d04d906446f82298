"""The ``c3po`` next-edit predictor: fragments, rendering, train/serve parity, suggestions."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from ripple.models.edits.completion import (
    BuildStats,
    Change,
    CompletionExample,
    edit_context,
    edit_context_edits,
    fragment_nodes,
    parse_changes,
    render_fragment,
)
from ripple.models.edits.editscript import diff
from ripple.models.edits.languages import parse_python
from ripple.models.edits.paths import AugmentedTree, apply_operations, gold_operations
from ripple.models.edits.tree import from_tree_sitter, isomorphic, to_sexp
from ripple.models.runtime.c3po_decode import C3POModel
from ripple.models.suggest.api import Cursor, EditContext, LiveEdit
from ripple.models.suggest.c3po_predictor import C3POPredictor
from ripple.models.suggest.registry import make_shipped, system_names
from ripple.training.c3po_export import export_c3po
from ripple.training.c3po_train import train_c3po
from ripple.training.completion_data import commit_examples
from ripple.training.data import CommitRecord, FileChange

NAMES = ["alpha", "beta", "gamma", "delta", "size", "count", "name", "value"]


def _fragment(source: str, line: int = 0) -> tuple[bytes, object]:
    data = source.encode()
    root = parse_python(data).root_node
    return data, fragment_nodes(root, line, line)[0]


# Real statement pairs: swapped, removed and duplicated arguments, an unwrapped call, a
# keyword argument copied, operands swapped, a parameter list reordered.
RENDER_PAIRS = [
    ("x = compute(a, b, 1)\n", "x = compute(b, a, 1)\n"),
    ("f(a, b, c)\n", "f(a, c)\n"),
    ("x = wrap(value)\n", "x = value\n"),
    ("call(x, key=x)\n", "call(x, x, key=x)\n"),
    ("total = left + right * 2\n", "total = right * 2 + left\n"),
    ("result = obj.method(first, 'text')\n", "result = obj.method('text', first)\n"),
]


@pytest.mark.parametrize(("old", "new"), RENDER_PAIRS)
def test_render_writes_the_gold_script_back_as_source(old: str, new: str) -> None:
    """Gold operations applied to the real P, rendered: exactly the developer's P'."""
    data, node = _fragment(old)
    before = from_tree_sitter(node, data)
    after_data, after_node = _fragment(new)
    after = from_tree_sitter(after_node, after_data)
    _, operations = gold_operations(diff(before, after))
    edited = apply_operations(AugmentedTree(before), operations)
    assert render_fragment(before, edited, data) == new.rstrip("\n")


def test_fragment_nodes_are_statements_and_header_parts() -> None:
    source = (
        "import os\n"
        "def f(a, b=1):\n"
        "    x = g(a)\n"
        "    if x > b:\n"
        "        return x\n"
        "    return b\n"
    )
    root = parse_python(source.encode()).root_node
    found = [(n.type, n.start_point[0]) for n in fragment_nodes(root, 0, 10)]
    assert found == [
        ("import_statement", 0),
        ("identifier", 1),  # the def's name and parameters: header parts
        ("parameters", 1),
        ("expression_statement", 2),
        ("comparison_operator", 3),
        ("return_statement", 4),
        ("return_statement", 5),
    ]
    assert [n.start_point[0] for n in fragment_nodes(root, 2, 3)] == [2, 3]


def _swap_commit(k: int, rng: random.Random, calls: int = 4) -> CommitRecord:
    a, b = rng.sample(NAMES, 2)
    names = [f"f{i}" for i in range(calls)]
    old = "def run():\n" + "".join(f"    x{i} = {c}({a}, {b})\n" for i, c in enumerate(names))
    new = "def run():\n" + "".join(f"    x{i} = {c}({b}, {a})\n" for i, c in enumerate(names))
    return CommitRecord("o/r", f"{k:040x}", "0" * 40, k, "swap", (FileChange("m.py", old, new),))


def _half_done(record: CommitRecord, done: int) -> EditContext:
    """The commit's first ``done`` changed lines applied as live edits, cursor after them."""
    change = record.files[0]
    assert change.before is not None and change.after is not None
    old = tuple(change.before.splitlines(keepends=True))
    new = change.after.splitlines(keepends=True)
    current = list(old)
    edits = []
    for line in range(1, 1 + done):
        edits.append(LiveEdit("m.py", line, line + 1, (current[line],), (new[line],)))
        current[line] = new[line]
    cursor = Cursor("m.py", done, len(new[done].rstrip("\n")))
    return EditContext({"m.py": tuple(current)}, {"m.py": old}, tuple(edits), cursor)


def test_live_context_equals_the_training_context() -> None:
    """Train/serve parity: the dataset builder's context for P (the commit's last changed
    statement) is what the predictor builds for P when the other statements are done."""
    record = _swap_commit(0, random.Random(3))
    examples = commit_examples(record, BuildStats(), scope="commit")
    last = next(e for e in examples if e.line == 4)
    ctx = _half_done(record, 3)
    base, current = "".join(ctx.base["m.py"]).encode(), ctx.text("m.py").encode()
    parsed = parse_changes(
        base, current, parse_python(base).root_node, parse_python(current).root_node
    )
    node = fragment_nodes(parse_python(current).root_node, 4, 4)[0]
    target = Change(node.start_byte, node.end_byte, node.start_byte, node.end_byte, 4, 4, 4)
    context, text = edit_context(target, parsed, scope="commit")
    assert context == last.context and text == last.context_text
    # The structural editor's context: the same edits as fragment pairs, nearest first.
    pairs = edit_context_edits(target, parsed, scope="commit")
    assert len(pairs) == len(last.context_edits) > 0
    for (b, a, line), (want_b, want_a, want_line) in zip(pairs, last.context_edits, strict=True):
        assert isomorphic(b, want_b) and isomorphic(a, want_a) and line == want_line
    # ... and they survive the dataset files' JSON.
    again = CompletionExample.from_json(json.loads(json.dumps(last.to_json())))
    assert [(to_sexp(b), to_sexp(a), n) for b, a, n in again.context_edits] == [
        (to_sexp(b), to_sexp(a), n) for b, a, n in last.context_edits
    ]
    fields = [n.field for n in last.before.pre_order()]
    assert any(fields) and [n.field for n in again.before.pre_order()] == fields


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small C3PO trained on argument-swap commits, exported to ONNX."""
    torch.set_num_threads(1)
    rng = random.Random(0)
    examples = [
        e
        for k in range(24)
        for e in commit_examples(_swap_commit(k, rng), BuildStats(), scope="commit")
    ]
    out = tmp_path_factory.mktemp("c3po-predictor")
    model, vocab, child_types, _ = train_c3po(
        examples, examples[:16], out / "run", steps=120, epochs=10**6, batch_size=16,
        eval_every=40, patience=3, quiet=True,
        net={"embedding": 32, "hidden": 64, "dropout": 0.0},
    )  # fmt: skip
    folder = out / "models" / "completion" / "c3po"
    export_c3po(model, vocab, child_types, folder, metadata={"scope": "commit"})
    return folder


def test_completes_the_half_done_swap(model_dir: Path) -> None:
    predictor = C3POPredictor(C3POModel.load(model_dir))
    assert predictor.scope == "commit"  # read from the model's manifest
    ctx = _half_done(_swap_commit(99, random.Random(7)), 2)
    suggestions = predictor.suggest(ctx)
    assert suggestions, "the model was trained on exactly this edit"
    top = suggestions[0]
    assert (top.path, top.start_line, top.end_line) in {("m.py", 3, 4), ("m.py", 4, 5)}
    old_line = ctx.files["m.py"][top.start_line]
    a, b = old_line[old_line.index("(") + 1 : old_line.index(")")].split(", ")
    assert top.new_lines == (old_line.replace(f"({a}, {b})", f"({b}, {a})"),)
    assert top.explanation.startswith("because you ")
    assert "line 2" in top.explanation or "line 3" in top.explanation
    # Edited lines are context, never candidates; scores rank the suggestions.
    assert all(s.start_line >= 3 for s in suggestions)
    assert [s.score for s in suggestions] == sorted((s.score for s in suggestions), reverse=True)


def test_silent_without_python_edits(model_dir: Path) -> None:
    predictor = C3POPredictor(C3POModel.load(model_dir))
    ctx = _half_done(_swap_commit(5, random.Random(1)), 2)
    untouched = EditContext(ctx.base, ctx.base, (), Cursor("m.py", 0, 0))
    assert predictor.suggest(untouched) == []
    text_file = EditContext(
        {"notes.txt": ("a\n",)}, {"notes.txt": ("b\n",)},
        (LiveEdit("notes.txt", 0, 1, ("b\n",), ("a\n",)),), Cursor("notes.txt", 0, 1),
    )  # fmt: skip
    assert predictor.suggest(text_file) == []
    # A threshold above every probability keeps it silent.
    assert C3POPredictor(C3POModel.load(model_dir), min_probability=1.01).suggest(ctx) == []


def test_registered_as_a_system_and_a_model_kind(model_dir: Path) -> None:
    assert "c3po" in system_names()
    shipped = make_shipped(model_dir.parent)  # a models folder holding a c3po model
    assert not shipped.problems
    assert "c3po" in shipped.models
    assert any(getattr(m, "name", "") == "c3po" for m in shipped.ensemble.members)


def test_other_files_changes_without_a_fragment_are_left_out(model_dir: Path) -> None:
    """An edit no fragment covers (a new top-level function) in another file is neither
    context nor an error, as in the dataset builder."""
    ctx = _half_done(_swap_commit(11, random.Random(2)), 2)
    old = ("import os\n",)
    new = ("import os\n", "\n", "def added():\n", "    return 1\n")
    both = EditContext(
        {**ctx.files, "n.py": new}, {**ctx.base, "n.py": old},
        (LiveEdit("n.py", 1, 1, (), new[1:]), *ctx.edits), ctx.cursor,
    )  # fmt: skip
    base, current = "".join(old).encode(), "".join(new).encode()
    parsed = parse_changes(
        base, current, parse_python(base).root_node, parse_python(current).root_node
    )
    assert [p.before for p in parsed] == [None]
    predictor = C3POPredictor(C3POModel.load(model_dir))
    assert predictor.suggest(both) == predictor.suggest(ctx)


def test_the_language_server_serves_c3po_with_its_explanation(
    model_dir: Path, tmp_path: Path
) -> None:
    """A models folder holding a C3PO model: the real server (stdio) suggests the rest of
    the swap, and the suggestion says which edit it follows."""
    from ripple.server.client import LspClient, server_command

    record = _swap_commit(42, random.Random(5))
    old = record.files[0].before
    new = record.files[0].after
    assert old is not None and new is not None
    ws = tmp_path / "ws"
    ws.mkdir()
    c = LspClient(server_command("--models", str(model_dir.parent)))
    try:
        c.initialize(ws, {})
        assert "c3po" in c.request("ripple/status", {})["models"]
        uri = c.open(ws / "m.py", old)
        old_lines, new_lines = old.splitlines(), new.splitlines()
        for version, line in ((2, 1), (3, 2)):
            c.change(uri, version, (line, 0), (line, len(old_lines[line])), new_lines[line])
        # The models answer once typing pauses (the rules answer every keystroke).
        deadline = time.monotonic() + 20
        ours: list[dict[str, Any]] = []
        while not ours and time.monotonic() < deadline:
            time.sleep(0.2)
            edits = c.request(
                "ripple/nextEdits",
                {"textDocument": {"uri": uri, "version": 3}, "position": {"line": 2, "character": 0}},
            )["edits"]
            ours = [e for e in edits if "because you " in e["explanation"]]
        assert ours, json.dumps(edits)
        assert any(e["range"]["start"]["line"] in (3, 4) for e in ours)
    finally:
        assert c.close() == 0


def test_token_delta_and_the_analogy_filter(model_dir: Path) -> None:
    from ripple.models.suggest.c3po_predictor import _token_delta

    assert _token_delta("f(a, b)", "f(b, a)") == (set(), set())  # a reordering
    assert _token_delta("g(x, x)", "g(x, y)") == ({"x"}, {"y"})  # counts, not sets
    assert _token_delta("h(old)", "h(new, 2)") == ({"old"}, {"new", ",", "2"})
    ctx = _half_done(_swap_commit(8, random.Random(4)), 2)
    strict = C3POPredictor(C3POModel.load(model_dir)).suggest(ctx)
    loose = C3POPredictor(C3POModel.load(model_dir), analogous=False).suggest(ctx)
    assert {(s.start_line, s.new_lines) for s in strict} <= {
        (s.start_line, s.new_lines) for s in loose
    }
    for s in strict:  # the user's edits only reordered: so do the kept completions
        old = "".join(ctx.files["m.py"][s.start_line : s.end_line])
        assert _token_delta(old, "".join(s.new_lines)) == (set(), set())


def test_the_bundled_model_loads_and_never_saw_validation_or_gpl_code() -> None:
    from ripple.models.suggest.registry import make_predictor

    predictor = make_predictor("c3po")
    assert isinstance(predictor, C3POPredictor)
    meta = predictor.model.metadata()
    repos = set(meta["train_repos"]) | set(meta.get("dev_repos", []))
    assert repos and not repos & {"PyCQA/flake8", "marshmallow-code/marshmallow"}
    assert "pylint-dev/pylint" not in repos
    assert predictor.scope == meta["scope"] == "commit"
    # It serves a live request: the half-done swap gets an answer or silence, no error.
    assert isinstance(predictor.suggest(_half_done(_swap_commit(3, random.Random(9)), 2)), list)
