"""Retrieve-and-edit: the vMF sampler, the retriever net and its ONNX export, the annoy
index with its sidecar, the lexical retriever, editor data, and the Hearthstone scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ripple.models.nets.retriever import RetrieverConfig, VMFRetriever, sample_vmf, wood_w
from ripple.models.runtime import ModelError, load_model
from ripple.models.suggest.copy_features import EDIT, TO
from ripple.models.suggest.retrieval import (
    EXACT_BELOW,
    LexicalRetriever,
    OnnxRetriever,
    VectorIndex,
)
from ripple.server.cli import main
from ripple.training.hearthstone import bleu, load_split, score, tokenize
from ripple.training.retrieve_edit import (
    EditorDataset,
    Pair,
    RetrieverDataset,
    build_vocab,
    collate_retriever,
    editor_input,
    embed_torch,
    export_retriever,
    retrieve,
    retrieve_top,
    train_editor,
    train_retriever,
    warm_start,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the vMF sampler -------------------------------------------------------------------------


@pytest.mark.parametrize(("dim", "kappa"), [(64, 500.0), (3, 5.0), (10, 50.0)])
def test_wood_sampler_matches_the_density_of_w(dim: int, kappa: float) -> None:
    torch.manual_seed(0)
    w = wood_w(20000, dim, kappa).numpy()
    grid = np.linspace(-1, 1, 400001)[1:-1]
    logd = kappa * grid + (dim - 3) / 2 * np.log1p(-grid * grid)
    d = np.exp(logd - logd.max())
    mean = (grid * d).sum() / d.sum()
    std = np.sqrt(((grid - mean) ** 2 * d).sum() / d.sum())
    assert np.all((w > -1) & (w < 1))
    assert abs(w.mean() - mean) < 4 * std / np.sqrt(len(w)) + 1e-4
    assert abs(w.std() - std) / std < 0.05


def test_vmf_samples_are_unit_and_differentiable_in_mu() -> None:
    torch.manual_seed(1)
    mu = torch.nn.functional.normalize(torch.randn(8, 64), dim=-1).requires_grad_(True)
    z = sample_vmf(mu, 500.0)
    assert torch.allclose(z.norm(dim=-1), torch.ones(8), atol=1e-5)
    cos = (z * mu).sum(-1).detach()
    assert float(cos.min()) > 0.85  # kappa 500 in 64-d: w is about 0.94
    z.sum().backward()
    assert mu.grad is not None and float(mu.grad.abs().sum()) > 0


def test_wood_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        wood_w(3, 1, 10.0)
    with pytest.raises(ValueError):
        wood_w(3, 8, 0.0)


# -- the retriever ---------------------------------------------------------------------------

CARDS = [
    ("fire ball deals 6 damage", "class Fireball : deal 6"),
    ("frost bolt deals 3 damage freeze", "class Frostbolt : deal 3 freeze"),
    ("arcane missiles deals 3 damage random", "class ArcaneMissiles : deal 3 random"),
    ("murloc raider minion 2 1", "class MurlocRaider : minion 2 1"),
    ("river crocolisk minion 2 3", "class RiverCrocolisk : minion 2 3"),
    ("boulderfist ogre minion 6 7", "class BoulderfistOgre : minion 6 7"),
]


def _pairs(group: str = "") -> list[Pair]:
    return [Pair(tuple(x.split()), tuple(y.split()), group) for x, y in CARDS]


def test_retriever_batches_decode_the_target_and_training_lowers_the_loss(tmp_path: Path) -> None:
    pairs = _pairs()
    vocab = build_vocab(pairs, 200)
    data = RetrieverDataset(pairs, vocab, "output", 50, 50)
    batch = collate_retriever([data[0], data[3]])
    assert batch["target"].shape[1] == max(len(pairs[0].y), len(pairs[3].y)) + 1
    assert int(batch["target"][0, len(pairs[0].y)]) == vocab.eos_id
    torch.manual_seed(0)
    model = VMFRetriever(RetrieverConfig(vocab_size=len(vocab), embedding=16, hidden=16, dim=8))
    with torch.no_grad():
        before = float(model.eval().loss(batch).loss)
    model, report = train_retriever(
        pairs,
        pairs,
        vocab,
        tmp_path / "run",
        steps=60,
        net={"embedding": 16, "hidden": 32, "dim": 8},
        settings={"batch_size": 6, "eval_every": 30, "quiet": True, "lr": 1e-2},
    )
    assert report["steps"] == 60
    with torch.no_grad():
        assert float(model.eval().loss(batch).loss) < before
    with pytest.raises(ValueError):
        RetrieverDataset(pairs, vocab, "neither", 10, 10)


def test_exported_retriever_matches_torch_and_feeds_the_index(tmp_path: Path) -> None:
    pairs = _pairs()
    vocab = build_vocab(pairs, 200)
    torch.manual_seed(0)
    model = VMFRetriever(RetrieverConfig(vocab_size=len(vocab), embedding=16, hidden=16, dim=8))
    manifest = export_retriever(model, vocab, tmp_path / "retriever", name="r")
    assert manifest.metadata["parity"]["max_abs_diff"] <= 1e-4
    onnx = OnnxRetriever(load_model(tmp_path / "retriever", device="cpu", threads=1))
    xs = [p.x for p in pairs]
    got = onnx.embed(xs)
    assert got.shape == (len(pairs), 8)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, embed_torch(model, vocab, xs), atol=1e-4)
    index = VectorIndex(got, list(range(len(pairs))))
    hits = index.search(got[2], 3)
    assert hits[0][1] == 2 and hits[0][0] == pytest.approx(1.0, abs=1e-5)
    assert [s for s, _ in hits] == sorted((s for s, _ in hits), reverse=True)


def test_an_unknown_kind_is_refused_by_the_retriever(tmp_path: Path) -> None:
    from ripple.models.runtime.manifest import read_manifest

    pairs = _pairs()
    vocab = build_vocab(pairs, 200)
    model = VMFRetriever(RetrieverConfig(vocab_size=len(vocab), embedding=8, hidden=8, dim=4))
    export_retriever(model, vocab, tmp_path / "r", name="r")
    raw = json.loads((tmp_path / "r" / "manifest.json").read_text())
    raw["kind"] = "copy-editor"
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(raw))
    read_manifest(tmp_path / "r")
    with pytest.raises(ModelError, match="not a vmf-retriever"):
        OnnxRetriever(load_model(tmp_path / "r", device="cpu", threads=1))


# -- the annoy index -------------------------------------------------------------------------


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_vector_index_saves_and_loads_with_its_sidecar(tmp_path: Path) -> None:
    vectors = _unit(300, 16)
    keys = [f"k{i}" for i in range(300)]
    index = VectorIndex(vectors, keys)
    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    q = _unit(1, 16, seed=5)[0]
    exact = np.argsort(-(vectors @ q))[:5]
    assert [k for _, k in loaded.search(q, 5)] == [keys[i] for i in exact]
    assert [k for _, k in index.search(q, 5)] == [keys[i] for i in exact]


def test_vector_index_refuses_a_changed_or_truncated_file(tmp_path: Path) -> None:
    VectorIndex(_unit(50, 8), list(range(50))).save(tmp_path / "idx")
    ann = tmp_path / "idx" / "index.ann"
    data = ann.read_bytes()
    ann.write_bytes(data[:-7])
    with pytest.raises(ModelError, match="not a whole number"):
        VectorIndex.load(tmp_path / "idx")
    ann.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ModelError, match="sha256"):
        VectorIndex.load(tmp_path / "idx")
    (tmp_path / "idx" / "index.json").write_text("{not json")
    with pytest.raises(ModelError, match="sidecar"):
        VectorIndex.load(tmp_path / "idx")


def test_large_collections_are_searched_through_annoy() -> None:
    vectors = _unit(EXACT_BELOW + 10, 8)
    index = VectorIndex(vectors, list(range(len(vectors))))
    assert index._annoy is not None
    q = vectors[123]
    assert index.search(q, 1, search_k=20000)[0][1] == 123


# -- lexical retrieval and retrieval of neighbours -------------------------------------------


def test_lexical_retriever_is_bag_of_words_cosine() -> None:
    lex = LexicalRetriever([["a", "b", "b"], ["c"], ["a", "c"], []])
    hits = lex.search(["a", "b"], 3)
    assert hits[0] == (pytest.approx(3 / (np.sqrt(5) * np.sqrt(2))), 0)
    assert hits[1] == (pytest.approx(0.5), 2)
    assert [i for _, i in lex.search(["a", "b"], 3, exclude=0)] == [2]
    assert lex.search([], 3) == [] and lex.search(["zzz"], 3) == []


def test_retrieve_skips_the_query_itself_and_stays_in_its_group() -> None:
    pairs = _pairs("one")[:3] + _pairs("two")[3:]
    found = retrieve(None, pairs, pairs, skip_self=True, lexical=True)
    assert all(f is not None and f != i for i, f in enumerate(found))
    assert all(
        pairs[f].group == p.group for p, f in zip(pairs, found, strict=True) if f is not None
    )
    assert found[1] in (0, 2) and found[4] in (3, 5)

    def embed(seqs):  # type: ignore[no-untyped-def]
        return np.array([[len(s), 1.0 + ("minion" in s)] for s in seqs], dtype=np.float32)

    learned = retrieve(embed, pairs, pairs, skip_self=True)
    assert all(f is not None and f != i for i, f in enumerate(learned))
    assert retrieve(embed, pairs, [Pair(("x",), ("y",), "none")], skip_self=False) == [None]


def test_retrieve_top_ranks_k_neighbours_best_first() -> None:
    pairs = _pairs()

    def embed(seqs):  # type: ignore[no-untyped-def]
        return np.array([[1.0, 0.1 * len(s)] for s in seqs], dtype=np.float32)

    vectors = embed([p.x for p in pairs])
    top = retrieve_top(embed, pairs, pairs, 3, skip_self=True)
    for i, hits in enumerate(top):
        assert len(hits) == 3 and i not in hits
        sims = [float(vectors[i] @ vectors[h]) / np.linalg.norm(vectors[h]) for h in hits]
        assert sims == sorted(sims, reverse=True)
    # the first of the k is what retrieve() returns
    assert [h[0] for h in top] == retrieve(embed, pairs, pairs, skip_self=True)
    lexical = retrieve_top(None, pairs, pairs[:2], 2, skip_self=False, lexical=True)
    assert [h[0] for h in lexical] == [0, 1] and all(len(h) == 2 for h in lexical)


def test_the_editor_can_start_from_another_editors_weights(tmp_path: Path) -> None:
    from ripple.models.errors import UsageError

    pairs = _pairs()
    vocab = build_vocab(pairs, 200)
    settings = {"batch_size": 3, "eval_every": 2, "quiet": True}
    net = {"embedding": 8, "hidden": 8}
    plain = EditorDataset(pairs, [None] * len(pairs), pairs, vocab)
    first, _ = train_editor(plain, plain, vocab, tmp_path / "a", steps=2, net=net, settings=settings)
    with_neighbours = EditorDataset(pairs, [1, 0, 0, 4, 3, 3], pairs, vocab)
    torch.manual_seed(123)  # a fresh editor would start from other weights
    second, report = train_editor(
        with_neighbours, with_neighbours, vocab, tmp_path / "b", steps=1, net=net,
        settings={**settings, "lr": 0.0}, init=tmp_path / "a" / "best",
    )  # fmt: skip
    assert report["init"] == str(tmp_path / "a" / "best")
    for name, tensor in first.state_dict().items():  # lr 0: still exactly the first's weights
        torch.testing.assert_close(second.state_dict()[name], tensor)
    with pytest.raises(UsageError, match="do not fit"):
        train_editor(
            plain, plain, vocab, tmp_path / "c", steps=1, net={"embedding": 8, "hidden": 16},
            settings=settings, init=tmp_path / "a" / "best",
        )  # fmt: skip
    with pytest.raises(UsageError, match=r"no model\.safetensors"):
        warm_start(first, tmp_path / "nowhere")


def test_editor_items_read_x_then_the_retrieved_pair() -> None:
    pairs = _pairs()
    vocab = build_vocab(pairs, 200)
    data = EditorDataset(pairs, [1, 0, 0, 4, 3, 3], pairs, vocab)
    source, target = data.example(0)
    assert source == editor_input(pairs[0].x, pairs[1].x, pairs[1].y)
    assert source.index(EDIT) == len(pairs[0].x) and TO in source
    assert target == pairs[0].y
    source, target = data.example(0, identity=True)
    assert source == editor_input(pairs[1].x, pairs[1].x, pairs[1].y) and target == pairs[1].y
    always = EditorDataset(pairs, [1] * 6, pairs, vocab, identity_p=1.0)
    item = always[0]
    assert list(item["output"][:-1]) == vocab.ids(pairs[1].y)
    never = EditorDataset(pairs, [None] * 6, pairs, vocab)
    assert never.example(2) == (pairs[2].x, pairs[2].y)
    # the copy run lengths see y' inside the input: "minion 2 3" can be copied whole
    item = EditorDataset(pairs, [None, None, None, 4, None, None], pairs, vocab)[3]
    assert int(item["runs"].max()) >= 3


# -- Hearthstone -----------------------------------------------------------------------------


def test_tokenize_follows_yin_and_neubig() -> None:
    assert tokenize('class AcidicSwampOoze(MinionCard):§    x = "a b"') == [
        "class", "Acidic", "Swamp", "Ooze", "(", "Minion", "Card", ")", ":", "§",
        "x", "=", "`", "a", "b", "`",
    ]  # fmt: skip
    assert tokenize("CHARACTER_CLASS.ALL") == ["CHARACTER_CLASS", ".", "ALL"]


@pytest.mark.parametrize(
    ("ref", "hyp", "nltk"),
    [  # nltk.translate.bleu_score.sentence_bleu(..., smoothing_function=method3)
        ("a b c d e f", "a b c d e f", 1.0),
        ("a b c d e f", "a b x d e f", 0.37991784282579627),
        ("a b c d e f g", "a b", 0.04880803219926451),
        ("a b c", "a b c d e", 0.3976353643835253),
        ("a b c d", "x y", 0.0),
    ],
)
def test_bleu_is_nltks_sentence_bleu_with_smoothing_3(ref: str, hyp: str, nltk: float) -> None:
    assert bleu(ref.split(), hyp.split()) == pytest.approx(nltk, abs=1e-12)


def test_score_drops_line_breaks_and_averages() -> None:
    refs = [["a", "§", "b", "c", "d"], ["x", "y", "z", "w"]]
    outs = [["a", "b", "c", "d", "§"], ["q"]]
    assert score(refs, outs) == {"bleu": 50.0, "exact": 0.5}
    assert score([], []) == {"bleu": 0.0, "exact": 0.0}


def _hearthstone(folder: Path) -> Path:
    folder.mkdir()
    rows = [
        (f"Card{i} NAME_END {i % 5} ATK_END {i % 3} DEF_END Minion TYPE_END",
         f"class Card{i}(MinionCard):§    def create_minion(self, player):§        return Minion({i % 5}, {i % 3})§")
        for i in range(12)
    ]  # fmt: skip
    for split, part in (("train", rows[:8]), ("dev", rows[8:10]), ("test", rows[10:])):
        (folder / f"{split}_hs.in").write_text("\n".join(r[0] for r in part) + "\n")
        (folder / f"{split}_hs.out").write_text("\n".join(r[1] for r in part) + "\n")
    return folder


def test_load_split_checks_the_files(tmp_path: Path) -> None:
    from ripple.models.errors import UsageError

    data = _hearthstone(tmp_path / "hs")
    pairs = load_split(data, "train")
    assert len(pairs) == 8 and pairs[0].y[:3] == ("class", "Card0", "(")
    (data / "dev_hs.out").write_text("one line\n")
    with pytest.raises(UsageError, match="has 2 lines"):
        load_split(data, "dev")
    with pytest.raises(UsageError, match="missing"):
        load_split(tmp_path, "test")


def test_train_and_eval_hearthstone_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _hearthstone(tmp_path / "hs")
    out = tmp_path / "run"
    code = main(
        ["train", "hearthstone", "--data", str(data), "--out", str(out), "--retriever-steps", "4",
         "--editor-steps", "4", "--eval-every", "2", "--batch-size", "4", "--quiet"]
    )  # fmt: skip
    assert code == 0
    for name in ("retriever", "input-retriever", "editor", "seq2seq"):
        assert (out / "models" / name / "manifest.json").is_file()
    result_file = tmp_path / "hs.json"
    code = main(
        ["eval", "hearthstone", "--data", str(data), "--models", str(out / "models"),
         "--json", str(result_file), "--quiet", "--beam", "2"]
    )  # fmt: skip
    assert code == 0
    result = json.loads(result_file.read_text())
    assert result["examples"] == 2
    for name in ("retrieve-edit", "retriever", "seq2seq", "lexical-edit", "retrieve-edit-top3"):
        row = result["systems"][name]
        assert 0 <= row["bleu"] <= 100 and 0 <= row["exact"] <= 1
    # the editor started from the seq2seq baseline's best weights
    trained = json.loads((out / "results.json").read_text())
    assert trained["editor"]["init"] == "seq2seq/best"
    assert trained["seq2seq"]["init"] is None
    # the retriever alone returns a training card's code: "class Card N ..." shares most tokens
    assert result["systems"]["retriever"]["bleu"] > 30
    assert "retrieve-edit" in capsys.readouterr().out
    # a second run refuses to overwrite the models unless forced
    assert main(["train", "hearthstone", "--data", str(data), "--out", str(out), "--quiet"]) == 2
    # --resume continues the editor from its step-4 checkpoint to the new step budget
    code = main(
        ["train", "hearthstone", "--data", str(data), "--out", str(out), "--only", "editor",
         "--editor-steps", "6", "--eval-every", "2", "--batch-size", "4", "--force", "--resume"]
    )  # fmt: skip
    assert code == 0
    assert "resumed at step 4" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["editor"]["steps"] == 6
    assert main(["eval", "hearthstone", "--data", str(data), "--models", str(tmp_path)]) == 2
    assert main(
        ["eval", "hearthstone", "--data", str(data), "--models", str(out / "models"),
         "--neighbours", "0", "--quiet"]
    ) == 2  # fmt: skip
    # the editor alone, in a fresh run, has no seq2seq to start from unless told not to
    fresh = tmp_path / "fresh"
    only_editor = ["train", "hearthstone", "--data", str(data), "--out", str(fresh), "--only",
                   "editor", "--export", str(out / "models"), "--force", "--editor-steps", "2",
                   "--eval-every", "2", "--batch-size", "4", "--quiet"]  # fmt: skip
    assert main(only_editor) == 2
    assert "--editor-init none" in capsys.readouterr().err
    assert main([*only_editor, "--editor-init", "none"]) == 0
    assert json.loads((fresh / "results.json").read_text())["editor"]["init"] is None
