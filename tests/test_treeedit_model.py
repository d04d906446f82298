"""The structural editor (Yao et al. 2021): features, the torch net, its ONNX export and
decoding through onnxruntime."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ripple.models.edits.grammar import Grammar, python_grammar
from ripple.models.edits.treeedit import (
    ADD,
    DELETE,
    FRAGMENT,
    STOP,
    SUBTREE,
    EditState,
    TNode,
    check_tree,
    from_node,
    gold_actions,
    parse_fragment,
    same_tree,
)
from ripple.models.nets.treeedit import TreeEditConfig, TreeEditNet, as_batch
from ripple.models.runtime import ModelError
from ripple.models.runtime.treeedit_decode import TreeEditModel, decode_with
from ripple.models.suggest.treeedit_features import (
    ActionInfo,
    TreeEditVocab,
    action_targets,
    collate_items,
    context_actions,
    edit_features,
    slot_features,
    source_features,
    state_masks,
    training_item,
    tree_features,
)
from ripple.training.export import ExportError
from ripple.training.treeedit_export import TorchBackend, check_parity, export_treeedit

TINY = {"hidden": 16, "heads": 2, "ffn": 32, "dropout": 0.0}

# (before, after, context edits): P -> P' with the edits made nearby.
PAIRS = [
    ("x = foo(a, b)", "x = foo(b, a)", [("z = 1", "z = 2")]),
    ("print(x)", "print(x, y)", []),
    ("y = a + b", "y = compute(a) * b", [("w = 3", "w = compute(q)")]),
]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def frag(text: str, grammar: Grammar) -> TNode:
    node = parse_fragment(text, "expression_statement")
    assert node is not None, text
    return from_node(node, grammar)


class Example:
    def __init__(self, before: str, after: str, context: list[tuple[str, str]]) -> None:
        g = python_grammar()
        self.before = frag(before, g)
        self.after = frag(after, g)
        self.context = [(frag(b, g), frag(a, g)) for b, a in context]
        # SUBTREE copies from the original tree and the context edits' new trees.
        self.sources = [self.before, *(a for _, a in self.context)]

    def infos(self) -> list[ActionInfo]:
        return context_actions(self.context, python_grammar())

    def trees(self) -> list[TNode]:
        return [self.before, self.after, *(t for pair in self.context for t in pair)]


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return [Example(*pair) for pair in PAIRS]


@pytest.fixture(scope="module")
def vocab(examples: list[Example]) -> TreeEditVocab:
    return TreeEditVocab.build(
        [t for e in examples for t in e.trees()], min_value_count=1, min_label_count=1
    )


def make_net(vocab: TreeEditVocab, seed: int = 0, **sizes: Any) -> TreeEditNet:
    torch.manual_seed(seed)
    config = TreeEditConfig(
        len(vocab.types), len(vocab.values), len(vocab.fields), len(vocab.labels), **sizes
    )
    return TreeEditNet(config)


def gold_items(examples: list[Example], vocab: TreeEditVocab) -> list[dict[str, np.ndarray]]:
    """Every (state, gold action) pair of the examples' expert trajectories."""
    g = python_grammar()
    items = []
    for e in examples:
        edit = edit_features(e.infos(), vocab)
        src = source_features(e.sources, vocab)
        state = EditState(e.before, g, e.sources)
        for action in gold_actions(e.before, e.after, g, e.sources):
            items.append(training_item(state, action, vocab, edit, src))
            state.apply(action)
    return items


@pytest.fixture(scope="module")
def trained(examples: list[Example], vocab: TreeEditVocab) -> TreeEditNet:
    torch.set_num_threads(1)
    net = make_net(vocab, **TINY)
    batch = as_batch(collate_items(gold_items(examples, vocab)))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(300):
        out = net.loss(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    net.eval()
    return net


@pytest.fixture(scope="module")
def exported(trained: TreeEditNet, vocab: TreeEditVocab, tmp_path_factory: Any) -> Path:
    folder = Path(tmp_path_factory.mktemp("treeedit")) / "model"
    export_treeedit(trained, vocab, folder, metadata={"test": True})
    return folder


@pytest.fixture(scope="module")
def untrained(vocab: TreeEditVocab, tmp_path_factory: Any) -> tuple[TreeEditNet, Path]:
    net = make_net(vocab, seed=3, **TINY).eval()
    with torch.no_grad():  # an editor that adds more than it stops: holes get left open
        net.op_head[-1].bias += torch.tensor([-1.0, 0.0, 3.0, 0.0])
    folder = Path(tmp_path_factory.mktemp("treeedit-untrained")) / "model"
    export_treeedit(net, vocab, folder)
    return net, folder


# -- features ------------------------------------------------------------------------------


def test_vocab_round_trip_and_unknowns(vocab: TreeEditVocab, examples: list[Example]) -> None:
    again = TreeEditVocab.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again == vocab
    assert vocab.value_id(None) == 0 and vocab.value_id("never-seen") == 1
    assert vocab.type_id("never_seen_type") == 1
    assert vocab.label_id("identifier", "foo") >= 0
    unknown = vocab.label_id("identifier", "never_seen")
    assert unknown >= 0 and vocab.labels[unknown] == ("identifier", "<unk>")
    assert not vocab.known_labels()[unknown]
    assert vocab.label_id("never_seen_type", None) == -1
    with pytest.raises(ValueError):
        TreeEditVocab.from_json({"types": []})


def test_features_follow_the_state(vocab: TreeEditVocab, examples: list[Example]) -> None:
    g = python_grammar()
    for e in examples:
        state = EditState(e.before, g, e.sources)
        for action in gold_actions(e.before, e.after, g, e.sources):
            nodes = tree_features(state, vocab)
            n = len(state.nodes)
            assert all(len(v) == n for v in nodes.values())
            for i, node in enumerate(state.nodes):
                p = nodes["node_parent"][i]
                assert (p == -1) == (node.parent is None)
                if p >= 0:
                    assert state.nodes[p] is node.parent
                    assert nodes["node_depth"][i] == nodes["node_depth"][p] + 1
            slots = state.slots()
            feats = slot_features(state, slots, vocab)
            for k, slot in enumerate(slots):
                kids = state.nodes[slot.parent].fields.get(slot.field, [])
                left, right = feats["slot_left"][k], feats["slot_right"][k]
                assert (left >= 0) == (slot.index > 0)
                assert (right >= 0) == (slot.index < len(kids))
                if left >= 0:
                    assert state.nodes[left] is kids[slot.index - 1]
            masks = state_masks(state, slots, vocab)
            known = vocab.known_labels()
            for k, slot in enumerate(slots):
                ok = state.valid_labels(slot)
                want = np.array([known[j] and ok(lab) for j, lab in enumerate(vocab.labels)])
                assert np.array_equal(masks.label[k], want)
                assert np.flatnonzero(masks.source[k]).tolist() == state.valid_sources(slot)
            assert masks.op[STOP] == state.can_stop()
            target = action_targets(action, slots, vocab)
            assert masks.op[target.op] or target.op == ADD
            if target.op == DELETE:
                assert masks.delete[target.node]
            if target.op == SUBTREE:
                assert masks.source[target.slot, target.source]
            state.apply(action)
    src = source_features(examples[0].sources, vocab)
    origins = src["src_origin"].tolist()
    first = len(examples[0].before.pre_order())
    assert origins == [0] * first + [3] * (len(origins) - first)


def test_edit_features(vocab: TreeEditVocab, examples: list[Example]) -> None:
    infos = examples[0].infos()
    assert [i.op for i in infos] == [DELETE, ADD, STOP]  # "z = 1" -> "z = 2": no 2 to copy
    feats = edit_features(infos, vocab)
    assert feats["act_op"].tolist() == [DELETE, ADD, STOP]
    assert feats["act_type"][0] == vocab.type_id("integer")
    assert feats["act_parent_type"][1] == vocab.type_id("assignment")
    assert all(len(v) == 0 for v in edit_features([], vocab).values())
    assert len(edit_features(infos * 30, vocab)["act_op"]) == 64


# -- the torch net ---------------------------------------------------------------------------


def test_padded_batch_matches_the_graphs(vocab: TreeEditVocab, examples: list[Example]) -> None:
    """The training forward over a padded batch gives each row what the batch-1 graphs
    give it alone (the masks hide the padding)."""
    net = make_net(vocab, seed=1, **TINY).eval()
    items = gold_items(examples, vocab)
    batch = as_batch(collate_items(items))
    with torch.no_grad():
        scores, labels, sources = net.forward_batch(batch)
        out = net.loss(batch)
    assert torch.isfinite(out.loss) and int(out.total) == len(items)
    for row, item in enumerate(items):
        t = {k: torch.from_numpy(np.asarray(v))[None] for k, v in item.items()}
        with torch.no_grad():
            z = net.edit_graph(t["act_op"], t["act_type"], t["act_value"], t["act_field"],
                               t["act_parent_type"])  # fmt: skip
            h = net.encoder_graph(*(t[f"node_{k}"] for k in ("type", "value", "field")),
                                  t["node_depth"], t["node_origin"], t["node_parent"], z)  # fmt: skip
            src = net.encoder_graph(*(t[f"src_{k}"] for k in ("type", "value", "field")),
                                    t["src_depth"], t["src_origin"], t["src_parent"], z)  # fmt: skip
            op, delete, slot, label, source = net.step_graph(
                h, src, z, t["slot_parent"], t["slot_field"], t["slot_left"], t["slot_right"]
            )
        n, s, m = delete.shape[1], slot.shape[1], source.shape[2]
        assert torch.allclose(scores.op[row], op[0], atol=1e-5)
        assert torch.allclose(scores.delete[row, :n], delete[0], atol=1e-5)
        assert torch.allclose(scores.slot[row, :s], slot[0], atol=1e-5)
        k = int(item["target_slot"])
        if k >= 0:
            assert torch.allclose(labels[row], label[0, k], atol=1e-5)
            assert torch.allclose(sources[row, :m], source[0, k], atol=1e-5)


def test_loss_masks_invalid_choices(vocab: TreeEditVocab, examples: list[Example]) -> None:
    net = make_net(vocab, **TINY)
    arrays = collate_items(gold_items(examples, vocab))
    with torch.no_grad():
        base = net.loss(as_batch(arrays)).loss.item()
    # Allowing every choice can only make the gold ones less likely.
    loose = dict(arrays)
    for key in ("op_mask", "delete_mask", "position_mask", "label_mask", "source_mask"):
        loose[key] = np.ones_like(arrays[key])
    with torch.no_grad():
        assert net.loss(as_batch(loose)).loss.item() > base
    out = net.loss(as_batch(arrays))
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


# -- export and decoding ---------------------------------------------------------------------


def test_export_parity_on_every_graph(untrained: tuple[TreeEditNet, Path]) -> None:
    net, folder = untrained
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "treeedit" and manifest["onnx"] == "step.onnx"
    assert set(manifest["files"]) == {"edit.onnx", "encoder.onnx", "vocab.json", "config.json"}
    assert manifest["metadata"]["parity"]["max_abs_diff"] <= 1e-4
    assert [i["name"] for i in manifest["outputs"]] == [
        "op_logits", "delete_logits", "slot_logits", "label_logits", "source_logits",
    ]  # fmt: skip
    graphs = manifest["config"]["graphs"]
    assert [i["name"] for i in graphs["edit.onnx"]["outputs"]] == ["z"]
    assert [i["name"] for i in graphs["encoder.onnx"]["outputs"]] == ["H"]
    model = TreeEditModel.load(folder)
    # (A, N, M, S): no context, one node, one slot, and larger sizes than the export's sample.
    shapes = ((0, 1, 1, 1), (0, 12, 3, 1), (1, 3, 1, 2), (9, 50, 120, 31), (64, 4, 7, 1))
    assert check_parity(net, model, shapes, seed=7) <= 1e-4


@pytest.mark.parametrize("beam", [1, 3])
def test_decoding_always_gives_a_tree_the_grammar_accepts(
    untrained: tuple[TreeEditNet, Path], examples: list[Example], beam: int
) -> None:
    g = python_grammar()
    net, folder = untrained
    model = TreeEditModel.load(folder)
    torch_backend = TorchBackend(net)
    empty = TNode(FRAGMENT, None, True, {"": []})  # a hole at the root: it must be filled
    incomplete = 0
    for e in examples:
        for start in (e.before, empty):
            for max_steps in (0, 3, 25):
                infos = e.infos()
                result = model.decode(start, e.sources, infos, g, max_steps, beam=beam)
                assert check_tree(result.tree, g, allow_holes=not result.complete) == []
                ended = result.stopped or len(result.actions) == max_steps
                assert ended, [str(a) for a in result.actions]
                assert result.stopped == bool(result.actions and result.actions[-1].op == STOP)
                assert result.score <= 0.0
                if result.stopped:
                    assert result.complete
                incomplete += not result.complete
                # The actions replay to the same tree.
                state = EditState(start, g, e.sources)
                for action in result.actions:
                    if action.op != STOP:
                        state.apply(action)
                assert same_tree(state.tree, result.tree)
                # Decoding through torch chooses the same actions.
                want = decode_with(torch_backend, model.vocab, start, e.sources, infos, g,
                                   max_steps, beam)  # fmt: skip
                assert want.actions == result.actions
                assert abs(want.score - result.score) < 1e-3
    assert incomplete  # the open holes of an unfinished edit were met, and stayed valid


def test_tiny_model_reproduces_its_examples(
    trained: TreeEditNet, exported: Path, examples: list[Example], vocab: TreeEditVocab
) -> None:
    g = python_grammar()
    model = TreeEditModel.load(exported)
    assert model.vocab == vocab and model.metadata()["test"] is True
    for e in examples:
        gold = gold_actions(e.before, e.after, g, e.sources)
        for beam in (1, 2):
            result = model.decode(e.before, e.sources, e.infos(), g, beam=beam)
            assert result.stopped and result.complete
            assert same_tree(result.tree, e.after), [str(a) for a in result.actions]
            assert result.actions == gold
            assert result.score < 0.0
    # The third example copies compute(a)'s callee from the context edit's new tree.
    assert any(a.op == SUBTREE for a in gold_actions(
        examples[2].before, examples[2].after, g, examples[2].sources
    ))  # fmt: skip


def test_sha256_mismatch_is_a_model_error(exported: Path, tmp_path: Path) -> None:
    for name in ("encoder.onnx", "edit.onnx", "step.onnx", "vocab.json"):
        folder = tmp_path / name
        shutil.copytree(exported, folder)
        data = bytearray((folder / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / name).write_bytes(bytes(data))
        with pytest.raises(ModelError, match="sha256 mismatch"):
            TreeEditModel.load(folder)


def test_a_model_of_another_kind_is_refused(exported: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    data = json.loads((folder / "manifest.json").read_text())
    data["kind"] = "c3po"
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="treeedit"):
        TreeEditModel.load(folder)


def test_export_refuses_a_failed_parity_check(
    trained: TreeEditNet, vocab: TreeEditVocab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ripple.training.treeedit_export as treeedit_export

    monkeypatch.setattr(treeedit_export, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(ExportError):
        export_treeedit(trained, vocab, tmp_path / "model")
    assert not list(tmp_path.iterdir())  # nothing left behind, not even the folder in progress


def test_export_refuses_a_vocabulary_of_other_sizes(
    trained: TreeEditNet, vocab: TreeEditVocab, tmp_path: Path
) -> None:
    smaller = TreeEditVocab(vocab.types, vocab.values, vocab.fields, vocab.labels[:-1])
    with pytest.raises(ExportError, match="sizes"):
        export_treeedit(trained, smaller, tmp_path / "model")
