"""C3PO (Brody et al. 2020, §5): features, the torch model, its ONNX export and decoding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ripple.models.edits.completion import CompletionExample, ContextPath, example_paths
from ripple.models.edits.editscript import diff_sources
from ripple.models.edits.paths import (
    DEL_TYPE,
    EOS_LABEL,
    ASTPath,
    Operation,
    PathOperation,
    PathStep,
    apply_operations,
    gold_operations,
)
from ripple.models.edits.tree import isomorphic
from ripple.models.nets.c3po import C3PO, C3POConfig
from ripple.models.runtime import ModelError
from ripple.models.runtime.c3po_decode import C3POModel, TooManyPaths
from ripple.models.suggest.c3po_features import (
    C3POVocab,
    context_attention,
    context_order,
    encode_input,
    encode_paths,
    label_operation,
)
from ripple.training.c3po_export import export_c3po, random_inputs
from ripple.training.c3po_train import (
    C3PODataset,
    build_vocab,
    collate_c3po,
    evaluate_c3po,
    predict_c3po,
    prefix_trie,
    train_c3po,
)
from ripple.training.export import ExportError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"embedding": 32, "hidden": 64, "dropout": 0.0}


def ctx(kind: str, steps: list[tuple[str, int]], source: list[str], target: list[str],
        after: bool = False) -> ContextPath:  # fmt: skip
    return ContextPath(
        kind, tuple(PathStep(t, i) for t, i in steps), tuple(source), tuple(target), after, 0, kind
    )


def make_example(
    old: str, new: str, context: list[ContextPath], text: list[str]
) -> CompletionExample:
    script = diff_sources(old, new)
    _, operations = gold_operations(script)
    return CompletionExample(
        "repo", "commit", "f.py", 0, script.before, script.after,
        [(op.operation.value, op.source, op.target) for op in operations],
        context, [], [], text,
    )  # fmt: skip


# Real code pairs: swapped, renamed, deleted and added arguments, a moved and a deleted
# statement, an unwrapped call; each with a hand-made context edit.
PAIRS = [
    ("x = foo(a, b)\n", "x = foo(b, a)\n"),
    ("y = bar(a)\nz = baz(b)\n", "y = bar(b)\nz = baz(b)\n"),
    ("f(a, b, c)\n", "f(a, c)\n"),
    ("g(x)\nh(x, timeout=t)\n", "g(x, timeout=t)\nh(x, timeout=t)\n"),
    ("a = 1\nb = 2\nc = 3\n", "c = 3\na = 1\nb = 2\n"),
    ("x = wrap(value)\n", "x = value\n"),
    ("def f(a, b):\n    return a\n", "def f(b, a):\n    return a\n"),
    ("show(name)\nlog(other)\n", "show(other)\nlog(other)\n"),
]


def tiny_examples() -> list[CompletionExample]:
    examples = []
    for i, (old, new) in enumerate(PAIRS):
        context = [ctx("UPD", [("<UPD>", 0), ("identifier", 1)], [f"k{i}"], ["v"])]
        if i % 2:
            context.append(ctx("INS", [("<INS>", 0), ("call", 2)], [], ["z"], after=True))
        examples.append(make_example(old, new, context, ["<del>", f"k{i}", "<ins>", "v"]))
    return examples


@pytest.fixture(scope="module")
def examples() -> list[CompletionExample]:
    return tiny_examples()


@pytest.fixture(scope="module")
def trained(
    examples: list[CompletionExample], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, ...]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("c3po-run")
    model, vocab, child_types, report = train_c3po(
        examples, examples, out, steps=150, epochs=10**6, batch_size=8, eval_every=15,
        patience=3, quiet=True, net=SMALL,
    )  # fmt: skip
    return model, vocab, child_types, report


@pytest.fixture(scope="module")
def exported(trained: tuple[Any, ...], tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, vocab, child_types, _ = trained
    out = tmp_path_factory.mktemp("c3po-export") / "c3po"
    export_c3po(model, vocab, child_types, out, metadata={"test": True})
    return out


# -- features -------------------------------------------------------------------------------


def path(steps: list[tuple[str, int]], source: tuple[str, ...] = (),
         target: tuple[str, ...] = ()) -> ASTPath:  # fmt: skip
    return ASTPath(0, 1, tuple(PathStep(t, i) for t, i in steps), source, target)


def small_vocab() -> C3POVocab:
    paths = [path([("call", 0), ("identifier", 1)], ("foo",), ("bar", "baz"))]
    return C3POVocab.build([paths], [], [["<del>", "Foo"]])


def test_encode_paths_truncates_clamps_and_flags() -> None:
    vocab = small_vocab()
    long = [("call", i) for i in range(20)] + [("identifier", 40)]
    arrays = encode_paths(
        [
            path(long, ("foo", "Bar", "x", "y", "z", "w"), ("baz",)),
            path([("identifier", 2), ("call", 0), (DEL_TYPE, 0)], (), ()),
        ],
        vocab,
    )
    assert arrays["types"].shape == (2, 16)
    assert arrays["lengths"].tolist() == [16, 3]
    # First 8 and last 8 nodes of the 21: indices 0..7, then 13..19 and the target.
    assert arrays["indices"][0].tolist() == [*range(8), 13, 14, 15, 16, 16, 16, 16, 16]
    assert arrays["types"][0, -1] == vocab.type_id("identifier")
    assert arrays["types"][1, 3:].tolist() == [0] * 13
    # Five sub-tokens kept, lower-cased; unknown ones are <unk> (1).
    assert arrays["source_values"].shape == (2, 5)
    assert arrays["source_values"][0].tolist() == [
        vocab.subtoken_id("foo"), vocab.subtoken_id("bar"), 1, 1, 1
    ]  # fmt: skip
    assert vocab.subtoken_id("BAR") == vocab.subtoken_id("bar") > 1
    assert arrays["source_terminal"].tolist() == [True, False]
    assert arrays["target_terminal"].tolist() == [True, False]
    assert arrays["target_del"].tolist() == [False, True]


def test_encode_input_orders_context_and_shares_widths() -> None:
    vocab = small_vocab()
    focus = [path([("call", 0), ("identifier", 1)], ("foo",), ())]
    context = [
        ctx("INS", [("<INS>", 0), ("call", 1), ("identifier", 2)], [], ["foo"], after=True),
        ctx("DEL", [("identifier", 1), (DEL_TYPE, 0)], ["bar", "baz"], []),
    ]
    feeds = encode_input(focus, context, ["<DEL>", "foo"], vocab, "paths")
    assert context_order(context) == [1, 0]
    assert feeds["context_after"].tolist() == [False, True]
    assert feeds["context_lengths"].tolist() == [2, 3]
    assert feeds["path_types"].shape[1] == feeds["context_types"].shape[1] == 3
    assert feeds["path_source_values"].shape[1] == feeds["context_source_values"].shape[1] == 2
    text = encode_input(focus, context, ["<DEL>", "foo", "never"], vocab, "text")
    assert text["context_text"].tolist() == [vocab.text_id("<del>"), vocab.text_id("FOO"), 1]
    assert "context_types" not in text
    none = encode_input(focus, context, [], vocab, "none")
    assert not any(k.startswith("context") for k in none)
    # Attention over [before..., separator, after...] back to the caller's order.
    weights = np.array([0.5, 0.2, 0.3], dtype=np.float32)
    assert context_attention(weights, context, "paths").tolist() == pytest.approx([0.3, 0.5])
    assert context_attention(weights, context, "text", 2).tolist() == pytest.approx([0.2, 0.3])
    assert context_attention(weights, context, "none").shape == (0,)


def test_vocab_round_trip_and_limits() -> None:
    paths = [path([("call", 0), ("identifier", 1)], (w,), ()) for w in "aabbbc"]
    vocab = C3POVocab.build([paths], [], [], max_subtokens=4)
    assert vocab.subtokens == ["<pad>", "<unk>", "b", "a"]
    assert vocab.types[:6] == ["<pad>", "<unk>", "<placeholder>", "<DEL>", "<UPD>", "<INS>"]
    again = C3POVocab.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again == vocab
    with pytest.raises(ValueError):
        C3POVocab.from_json({"types": ["x"], "subtokens": [], "text": []})


def test_label_operation() -> None:
    assert label_operation(EOS_LABEL, 5) is None
    assert label_operation(2, 5) == (Operation.MOV, 0)
    assert label_operation(2 + 5 + 3, 5) == (Operation.UPD, 3)
    assert label_operation(2 + 10 + 4, 5) == (Operation.INS, 4)


# -- dataset, batches, model ----------------------------------------------------------------


def test_dataset_counts_unsolvable_and_collate_moves_labels(
    examples: list[CompletionExample],
) -> None:
    vocab = build_vocab(examples, None)
    # No child type seen: only deletions stay valid, so most examples cannot be solved.
    data = C3PODataset(examples, vocab, {}, "paths")
    assert data.unsolvable == [i for i, e in enumerate(examples) if example_paths(e, {})[2] is None]
    assert 0 < len(data.unsolvable) and len(data) + len(data.unsolvable) == data.total
    data = C3PODataset(examples, vocab, None, "paths", max_paths=300)
    assert data.total == len(examples)
    assert set(data.unsolvable) == {
        i for i, e in enumerate(examples) if len(example_paths(e)[1]) > 300
    }
    items = [data[i] for i in range(len(data))]
    batch = collate_c3po(items)
    n = batch["path_types"].shape[1]
    for row, item in enumerate(items):
        own = len(item["path_lengths"])
        for label, moved in zip(
            item["labels"].tolist(), batch["labels"][row].tolist(), strict=False
        ):
            if label < 2:
                assert moved == label
            else:
                kind, k = divmod(label - 2, own)
                assert moved == 2 + kind * n + k


def test_prefix_trie_matches_the_padded_lstm(examples: list[CompletionExample]) -> None:
    vocab = build_vocab(examples, None)
    items = list(C3PODataset(examples, vocab, None, "paths"))
    torch.manual_seed(0)
    model = C3PO(C3POConfig(len(vocab.types), len(vocab.subtokens), **SMALL)).eval()
    with torch.no_grad():
        a = model.encode(collate_c3po(items, trie=True))
        b = model.encode(collate_c3po(items, trie=False))
    assert torch.allclose(a.z_op(), b.z_op(), atol=1e-5)
    assert torch.allclose(a.h0, b.h0, atol=1e-5)
    trie = prefix_trie(
        np.array([[3, 4, 5], [3, 4, 6], [3, 0, 0]]), np.zeros((3, 3), dtype=np.int64),
        np.array([3, 3, 1]),
    )  # fmt: skip
    assert trie["trie_sizes"].tolist() == [1, 1, 2]  # the three paths share their first nodes
    assert trie["trie_rows"].tolist() == [2, 3, 0]


def test_teacher_forced_logits_match_the_step(examples: list[CompletionExample]) -> None:
    vocab = build_vocab(examples, None)
    batch = collate_c3po(list(C3PODataset(examples, vocab, None, "paths")))
    torch.manual_seed(0)
    model = C3PO(C3POConfig(len(vocab.types), len(vocab.subtokens), **SMALL)).eval()
    with torch.no_grad():
        forced = model.teacher_forced_logits(batch)
        enc = model.encode(batch)
        z_op = enc.z_op()
        h, c, previous = enc.h0, enc.c0, enc.start
        for t in range(batch["labels"].shape[1]):
            logits, h, c, _ = model.step(previous, h, c, enc.z_c, enc.context_valid, z_op,
                                         enc.op_valid)  # fmt: skip
            assert torch.allclose(logits, forced[:, t], atol=1e-4)
            previous = z_op[torch.arange(len(z_op)), batch["labels"][:, t]]


def test_greedy_never_repeats_and_respects_max_steps(examples: list[CompletionExample]) -> None:
    vocab = build_vocab(examples, None)
    batch = collate_c3po(list(C3PODataset(examples, vocab, None, "paths")))
    torch.manual_seed(3)
    model = C3PO(C3POConfig(len(vocab.types), len(vocab.subtokens), **SMALL, max_steps=21))
    with torch.no_grad():
        model.eos.fill_(-1.0)  # an untrained model that rarely stops
    for steps, results in ((5, model.greedy(batch, max_steps=5)), (21, model.greedy(batch))):
        for result in results:
            assert 1 <= len(result.labels) <= steps
            assert len(set(result.labels)) == len(result.labels)
            assert len(result.attention) == len(result.scores) == len(result.labels)
            assert EOS_LABEL not in result.labels[:-1]
    assert any(len(r.labels) == 21 and r.labels[-1] != EOS_LABEL for r in results)


# -- training, export, decoding -------------------------------------------------------------


def test_learns_the_tiny_set(trained: tuple[Any, ...], examples: list[CompletionExample]) -> None:
    model, vocab, child_types, report = trained
    assert report["dev"]["exact_match"] == 1.0, report
    assert report["train_unsolvable"] == 0
    assert report["parameters"] == model.parameter_count()
    predictions = predict_c3po(model, vocab, child_types, examples)
    for example, (labels, attention) in zip(examples, predictions, strict=True):
        tree, paths, gold = example_paths(example, child_types)
        assert labels == gold
        assert len(attention) == len(labels)
        assert all(a.shape == (len(example.context),) for a in attention)
        ops = [label_operation(label, len(paths)) for label in labels[:-1]]
        applied = apply_operations(
            tree,
            [PathOperation(op, paths[k].source, paths[k].target) for op, k in ops if op],  # type: ignore[misc]
        )
        assert isomorphic(applied, example.after)


def test_export_decodes_like_torch(
    trained: tuple[Any, ...], exported: Path, examples: list[CompletionExample]
) -> None:
    model, vocab, child_types, _ = trained
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["kind"] == "c3po" and manifest["metadata"]["test"] is True
    assert manifest["metadata"]["parity"]["max_abs_diff"] < 1e-4
    assert set(manifest["files"]) == {
        "encoder.onnx",
        "vocab.json",
        "child_types.json",
        "config.json",
    }
    onnx_model = C3POModel.load(exported)
    assert onnx_model.child_types == child_types
    torch_predictions = predict_c3po(model, vocab, child_types, examples)
    for example, (labels, attention) in zip(examples, torch_predictions, strict=True):
        _, paths, gold = example_paths(example, onnx_model.child_types)
        prediction = onnx_model.decode(paths, example.context, example.context_text)
        assert prediction.labels == labels == gold
        assert [label_operation(x, len(paths)) for x in gold[:-1]] == prediction.operations
        assert prediction.score <= 0 and len(prediction.scores) == len(labels)
        for got, want in zip(prediction.attention, attention, strict=True):
            assert np.allclose(got, want, atol=1e-5)
    # Random, unseen inputs: the same labels too, at every step count.
    rng = np.random.default_rng(5)
    for n, m in ((3, 0), (40, 6)):
        paths, context, text = random_inputs(rng, vocab, n, m, 4)
        feeds = encode_input(paths, context, text, vocab, "paths")
        for steps in (2, 21):
            want = model.greedy(collate_c3po([feeds]), max_steps=steps)[0].labels
            assert onnx_model.decode(paths, context, text, max_steps=steps).labels == want


def test_decode_guards(exported: Path) -> None:
    onnx_model = C3POModel.load(exported, max_paths=10)
    paths = [path([("identifier", 1), ("call", 0)], ("a",), ())] * 11
    with pytest.raises(TooManyPaths):
        onnx_model.decode(paths)
    empty = onnx_model.decode([])
    assert empty.labels == [EOS_LABEL] and empty.operations == []


@pytest.mark.parametrize("mode", ["text", "none"])
def test_other_context_modes_train_export_and_decode(
    mode: str, examples: list[CompletionExample], tmp_path: Path
) -> None:
    model, vocab, child_types, report = train_c3po(
        examples[:4], examples[:4], tmp_path / "run", context_mode=mode, steps=4,
        batch_size=4, eval_every=2, quiet=True, net=SMALL,
    )  # fmt: skip
    assert report["context_mode"] == mode and report["steps"] == 4
    export_c3po(model, vocab, child_types, tmp_path / "model")
    onnx_model = C3POModel.load(tmp_path / "model")
    predictions = predict_c3po(model, vocab, child_types, examples)
    for example, (labels, attention) in zip(examples, predictions, strict=True):
        _, paths, _ = example_paths(example, child_types)
        got = onnx_model.decode(paths, example.context, example.context_text)
        assert got.labels == labels
        width = len(example.context_text) if mode == "text" else 0
        assert all(a.shape == (width,) for a in got.attention + attention)
    assert evaluate_c3po(model, vocab, child_types, examples)["total"] == len(examples)


def test_export_refuses_a_failed_parity_check(
    trained: tuple[Any, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ripple.training.c3po_export as c3po_export

    model, vocab, child_types, _ = trained
    monkeypatch.setattr(c3po_export, "PARITY_TOLERANCE", 0.0)
    with pytest.raises(ExportError):
        export_c3po(model, vocab, child_types, tmp_path / "model")
    assert not (tmp_path / "model").exists()
    assert not list(tmp_path.iterdir())  # the folder in progress is gone too


def _rewrite_manifest(folder: Path, change: Any) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    change(data)
    (folder / "manifest.json").write_text(json.dumps(data))


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _set_kind(data: dict[str, Any]) -> None:
    data["kind"] = "copy-editor"


@pytest.mark.parametrize(
    "damage",
    ["encoder bytes", "step bytes", "garbage encoder", "manifest json", "kind", "config",
     "vocab"],
)  # fmt: skip
def test_a_damaged_folder_is_a_model_error(exported: Path, tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "c3po"
    shutil.copytree(exported, folder)
    if damage in ("encoder bytes", "step bytes"):
        target = folder / ("encoder.onnx" if damage == "encoder bytes" else "step.onnx")
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "garbage encoder":  # a damaged graph with a matching sha256
        (folder / "encoder.onnx").write_bytes(b"not an onnx graph")
        _rewrite_manifest(
            folder, lambda d: d["files"].update({"encoder.onnx": _sha(folder / "encoder.onnx")})
        )
    elif damage == "manifest json":
        (folder / "manifest.json").write_text("{")
    elif damage == "kind":
        _rewrite_manifest(folder, _set_kind)
    else:
        name = f"{damage}.json"
        (folder / name).write_text(json.dumps({"net": {}}) if damage == "config" else "[1]")
        _rewrite_manifest(folder, lambda d: d["files"].update({name: _sha(folder / name)}))
    with pytest.raises(ModelError):
        C3POModel.load(folder)
