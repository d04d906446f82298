"""C3PO's textual baselines: LaserTagger tags (conversion, realisation), the tagger, the
SequenceR seq2seq-copy model and the span-copying copy-span model learning hand-made edits,
and the text scores."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ripple.models.edits.completion import CompletionExample, node_from_json
from ripple.models.nets.tagger import ROWS_PER_CALL, Tagger, TaggerConfig, bilstm
from ripple.models.runtime.copy_decode import action_log_probs, span_mask
from ripple.models.suggest.copy_features import SPECIALS, CopyVocab
from ripple.training.completion_baselines import (
    CTX,
    END,
    SEQ2SEQ_MAX_SPAN,
    Seq2SeqVocab,
    TaggerVocabs,
    _best_spans,
    _decode_one,
    _search_one,
    added_phrases,
    build_phrase_vocab,
    collate_tagger,
    load_seq2seq,
    load_tagger,
    parameter_count,
    predict_seq2seq,
    predict_tagger,
    realise,
    seq2seq_input,
    tags_for,
    text_scores,
    train_seq2seq,
    train_tagger,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def example(before: str, after: str, context: str = "") -> CompletionExample:
    node = node_from_json(["module", None, True, []])
    return CompletionExample(
        repo="r",
        commit="c",
        path="a.py",
        line=0,
        before=node,
        after=node,
        operations=[],
        context=[],
        tokens_before=before.split(),
        tokens_after=after.split(),
        context_text=context.split(),
    )


# -- tags --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "tags"),
    [
        ("b c", "a b c", ["KEEP|a", "KEEP", "KEEP"]),  # insert at the start
        ("a c", "a b c", ["KEEP", "KEEP|b", "KEEP"]),  # in the middle
        ("a b", "a b c", ["KEEP", "KEEP", "KEEP|c"]),  # at the end: the sentinel's tag
        ("a b c", "a c", ["KEEP", "DELETE", "KEEP", "KEEP"]),
        ("x = foo ( )", "x = bar ( )", ["KEEP", "KEEP", "DELETE|bar", "KEEP", "KEEP", "KEEP"]),
        # a replaced run: the phrase goes before the first deleted token (LaserTagger)
        ("a b c d", "a x y d", ["KEEP", "DELETE|x y", "DELETE", "KEEP", "KEEP"]),
        ("", "a b", ["KEEP|a b"]),
        ("a", "", ["DELETE", "KEEP"]),
        ("a b", "a b", ["KEEP", "KEEP", "KEEP"]),
    ],
)
def test_tags_for_and_realise(before: str, after: str, tags: list[str]) -> None:
    b, a = before.split(), after.split()
    phrases = set(added_phrases(b, a))
    assert tags_for(b, a, phrases) == tags
    assert realise(b, tags) == a


def test_odd_tokens_survive_the_tag_strings() -> None:
    before = ["s", "x y", "|"]
    after = ["s", "", "a|b\\ c", "x y", " ", "|", "\\s"]
    tags = tags_for(before, after, set(added_phrases(before, after)))
    assert tags is not None
    assert realise(before, tags) == after


def test_a_phrase_outside_the_vocabulary_gives_none() -> None:
    assert tags_for(["a"], ["a", "z"], {("y",)}) is None
    assert tags_for(["a", "b"], ["a", "c", "b"], set()) is None
    # A deletion needs no phrase.
    assert tags_for(["a", "b"], ["a"], set()) == ["KEEP", "DELETE", "KEEP"]


def test_greedy_converter_when_the_alignment_phrase_is_missing() -> None:
    # The alignment inserts "b" before "a"; with only "a" in the vocabulary LaserTagger's
    # greedy converter deletes "a" and inserts it after "b" instead.
    before, after = list("abc"), list("bac")
    assert added_phrases(before, after) == [("b",)]
    tags = tags_for(before, after, {("a",)})
    assert tags == ["DELETE", "KEEP", "KEEP|a", "KEEP"]
    assert realise(before, tags) == after


def test_tags_round_trip_on_random_edits() -> None:
    rng = random.Random(0)
    pairs = []
    for _ in range(1500):
        before = [rng.choice("abcdefg") for _ in range(rng.randint(0, 12))]
        after = list(before)
        for _ in range(rng.randint(0, 4)):
            roll = rng.random()
            if roll < 0.4:
                after.insert(rng.randint(0, len(after)), rng.choice("abcxyz"))
            elif roll < 0.7 and after:
                del after[rng.randrange(len(after))]
            elif after:
                after[rng.randrange(len(after))] = rng.choice("abxyz")
        pairs.append((before, after))
    counts: Counter[tuple[str, ...]] = Counter()
    for before, after in pairs:
        counts.update(added_phrases(before, after))
    every = set(counts)
    common = {p for p, _ in counts.most_common(15)}
    missed = 0
    for before, after in pairs:
        tags = tags_for(before, after, every)
        assert tags is not None  # its own alignment's phrases always suffice
        assert realise(before, tags) == after
        tags = tags_for(before, after, common)
        if tags is None:
            missed += 1
        else:
            assert realise(before, tags) == after
    assert 0 < missed < len(pairs) // 2


def test_phrase_vocab_is_the_most_frequent_phrases() -> None:
    examples = [
        example("a", "a b"),
        example("c", "c b"),
        example("x", "y"),
        example("d", "e f d b"),
    ]
    assert build_phrase_vocab(examples, 2) == [("b",), ("y",)]
    assert set(build_phrase_vocab(examples, 10)) == {("b",), ("y",), ("e", "f")}


def test_realise_checks_the_number_of_tags() -> None:
    with pytest.raises(ValueError):
        realise(["a"], ["KEEP"])
    with pytest.raises(ValueError):
        realise(["a"], ["KEEP", "SWAP"])


# -- scores ------------------------------------------------------------------------------------


def test_text_scores_by_hand() -> None:
    examples = [
        example("a b c", "a x c"),  # replace(1, 2, x): predicted exactly
        example("f ( )", "f ( y )"),  # insert(2, y); predicted insert(2, z)
        example("a b", "a"),  # delete(1, 2); no prediction
        example("p q", "p q r"),  # insert(2, r); predicted unchanged: no operation
        example("a b c d", "x b c"),  # replace(0, 1, x) + delete(3, 4); one of two predicted
    ]
    predictions: list[list[str] | None] = [
        ["a", "x", "c"],
        ["f", "(", "z", ")"],
        None,
        ["p", "q"],
        ["x", "b", "c", "d"],
    ]
    scores = text_scores(examples, predictions)
    assert scores["exact"] == pytest.approx(1 / 5)
    assert scores["precision"] == pytest.approx(2 / 3)  # 2 right of 3 predicted
    assert scores["recall"] == pytest.approx(2 / 6)  # 2 found of 6 expected
    assert text_scores(examples[:1], [["a", "x", "c"]]) == {
        "exact": 1.0,
        "precision": 1.0,
        "recall": 1.0,
    }
    assert text_scores(examples[2:3], [None]) == {"exact": 0.0, "precision": 0.0, "recall": 0.0}
    with pytest.raises(ValueError):
        text_scores(examples, predictions[:2])


# -- the models --------------------------------------------------------------------------------

WORDS = iter(
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu ant bee cat "
    "dog eel fox gnu hen ibis jay koi lark mole newt owl pig".split()
)


def _word() -> str:
    return next(WORDS)


def _tiny_set() -> list[CompletionExample]:
    """Three kinds of edit, every identifier used by one example only."""
    out = []
    for _ in range(6):  # rename a call to the function the context renamed
        r, old, new = _word(), _word(), _word()
        out.append(
            example(f"{r} = {old} ( )", f"{r} = {new} ( )", f"def <del> {old} <ins> {new} ( ) :")
        )
    for _ in range(4):  # add the argument the context's signature gained
        f, a = _word(), _word()
        out.append(
            example(f"{f} ( {a} )", f"{f} ( {a} , None )", f"def {f} ( self <ins> , timeout ) :")
        )
    for _ in range(2):  # drop a semicolon, as the context did
        r, g = _word(), _word()
        out.append(example(f"{r} = {g} ( ) ;", f"{r} = {g} ( )", "x = 1 <del> ; <sep>"))
    return out


TINY = _tiny_set()
# Identifiers never seen in training: SequenceR must copy them.
UNSEEN = [
    example("q = ping ( )", "q = pong ( )", "def <del> ping <ins> pong ( ) :"),
    example("run ( arg )", "run ( arg , None )", "def run ( self <ins> , timeout ) :"),
]


@pytest.fixture(scope="module")
def one_thread_for_module() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tagger(
    tmp_path_factory: pytest.TempPathFactory, one_thread_for_module: None
) -> tuple[Any, TaggerVocabs, dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("tagger")
    model, vocabs, report = train_tagger(
        TINY, TINY, out, steps=200, batch_size=16, quiet=True, min_count=1, eval_every=200
    )
    return model, vocabs, report, out


@pytest.fixture(scope="module")
def seq2seq(
    tmp_path_factory: pytest.TempPathFactory, one_thread_for_module: None
) -> tuple[Any, Any, dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("seq2seq")
    # min_count 4: every identifier is <unk>, so the only way to write one is to copy it.
    model, vocab, report = train_seq2seq(
        TINY, TINY, out, steps=300, batch_size=16, quiet=True, min_count=4, eval_every=300
    )
    return model, vocab, report, out


@pytest.fixture(scope="module")
def copy_span(
    tmp_path_factory: pytest.TempPathFactory, one_thread_for_module: None
) -> tuple[Any, Any, dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("copy_span")
    model, vocab, report = train_seq2seq(
        TINY, TINY, out, steps=300, batch_size=16, quiet=True, min_count=4, eval_every=300,
        max_span=SEQ2SEQ_MAX_SPAN["copy-span"],
    )  # fmt: skip
    return model, vocab, report, out


def test_tagger_learns_the_tiny_set(tagger: Any) -> None:
    model, vocabs, report, out = tagger
    assert report["train_expressible"] == len(TINY)
    assert report["best_dev_accuracy"] == 1.0
    predictions = predict_tagger(model, vocabs, TINY)
    assert text_scores(TINY, predictions) == {"exact": 1.0, "precision": 1.0, "recall": 1.0}
    loaded, loaded_vocabs = load_tagger(out)
    assert loaded_vocabs.tags == vocabs.tags
    assert predict_tagger(loaded, loaded_vocabs, TINY) == predictions


def test_seq2seq_learns_the_tiny_set_and_copies_unseen_identifiers(seq2seq: Any) -> None:
    model, vocab, _report, out = seq2seq
    assert "pong" not in vocab.tokens.index and "alpha" not in vocab.tokens.index
    greedy = predict_seq2seq(model, vocab, TINY)
    assert text_scores(TINY, greedy)["exact"] == 1.0
    assert predict_seq2seq(model, vocab, UNSEEN) == [e.tokens_after for e in UNSEEN]
    assert predict_seq2seq(model, vocab, UNSEEN, beam=5) == [e.tokens_after for e in UNSEEN]
    loaded, loaded_vocab = load_seq2seq(out)
    assert predict_seq2seq(loaded, loaded_vocab, UNSEEN) == [e.tokens_after for e in UNSEEN]


def test_copy_span_reloads_with_its_max_span_and_copies_spans_in_one_action(
    copy_span: Any,
) -> None:
    model, vocab, _report, out = copy_span
    assert SEQ2SEQ_MAX_SPAN == {"seq2seq-copy": 1, "copy-span": None}  # Copy That!'s default
    assert json.loads((out / "vocabs.json").read_text())["max_span"] is None
    loaded, loaded_vocab = load_seq2seq(out)
    assert loaded_vocab.max_span is None and loaded.config.max_span is None
    assert loaded.config.objective == "marginal"
    assert predict_seq2seq(loaded, loaded_vocab, TINY) == predict_seq2seq(model, vocab, TINY)
    assert text_scores(TINY, predict_seq2seq(loaded, loaded_vocab, TINY))["exact"] == 1.0
    unseen = UNSEEN[0]  # q = ping ( ) -> q = pong ( ): "q" and "pong" are <unk>, copied
    tokens = loaded_vocab.input(unseen)
    # The first decision of the reloaded model: copying "q =" (or more) in one action.
    ids = torch.tensor([loaded_vocab.tokens.ids(tokens)])
    with torch.no_grad():
        memory, keys, starts, ends, state = loaded.encode(ids, torch.tensor([len(tokens)]))
        pad = torch.zeros(1, len(tokens), dtype=torch.bool)
        bos = torch.tensor([loaded_vocab.tokens.bos_id])
        _, gen, start, end = loaded.step(bos, state, memory, keys, starts, ends, pad)
    gen_logp, span_logp = action_log_probs(
        gen[0].numpy(), start[0].numpy(), end[0].numpy(), len(tokens), None,
        loaded_vocab.decode_vocab().blocked,
    )  # fmt: skip
    i, j = np.unravel_index(np.argmax(span_logp), span_logp.shape)
    assert span_logp[i, j] > gen_logp.max() and i == 0 and j >= 1
    # The whole greedy decode: the right tokens in fewer actions than tokens (EOS counted);
    # the same model decoded one token per copy needs one action per token.
    greedy = _search_one(loaded, loaded_vocab, tokens, 1, 150)[0]
    assert greedy.tokens == tuple(unseen.tokens_after) and greedy.finished
    assert greedy.actions < len(greedy.tokens)
    single = _search_one(loaded, replace(loaded_vocab, max_span=1), tokens, 1, 150)[0]
    assert single.actions == len(single.tokens) + 1
    # Batched greedy and the merged-ray beam search read the span limit back too.
    want = [e.tokens_after for e in UNSEEN]
    assert predict_seq2seq(loaded, loaded_vocab, UNSEEN) == want
    assert predict_seq2seq(loaded, loaded_vocab, UNSEEN, beam=5) == want


def test_a_model_and_vocabulary_with_other_max_spans_do_not_load(
    copy_span: Any, tmp_path: Path
) -> None:
    _model, _vocab, _report, out = copy_span
    shutil.copytree(out / "best", tmp_path / "best")  # the copy-span model (max_span None)
    data = json.loads((out / "vocabs.json").read_text())
    (tmp_path / "vocabs.json").write_text(json.dumps({**data, "max_span": 1}))
    with pytest.raises(ValueError, match="spans of None tokens at most"):
        load_seq2seq(tmp_path)
    with pytest.raises(ValueError, match="max_span"):
        train_seq2seq(TINY, [], tmp_path / "x", steps=1, max_span=3)


@pytest.mark.parametrize("name", ["seq2seq-copy", "copy-span"])
def test_batched_greedy_is_copy_decode_greedy(name: str, request: pytest.FixtureRequest) -> None:
    model, vocab, _report, _out = request.getfixturevalue(
        "seq2seq" if name == "seq2seq-copy" else "copy_span"
    )
    assert vocab.max_span == SEQ2SEQ_MAX_SPAN[name]
    odd = [example("", "x"), example("q = ping ( ) ; ;", "q", "<del> ; </del> <sep>")]
    examples = [*TINY, *UNSEEN, *odd]
    for limit in (0, 1, 2, 3, 150):  # short limits: spans cut to the room left
        batched = predict_seq2seq(model, vocab, examples, max_len=limit, batch_size=3)
        one_by_one = [_decode_one(model, vocab, vocab.input(e), 1, limit) for e in examples]
        assert batched == one_by_one
        assert all(p is not None and len(p) <= limit for p in batched)


@pytest.mark.parametrize("max_span", [None, 1, 2, 3])
def test_best_spans_is_the_best_valid_span(max_span: int | None) -> None:
    # The batched greedy's span choice: the argmax of copy_decode's valid spans, no
    # longer than max_span nor than the room left (at least 1 where a decision is taken).
    rng = torch.Generator().manual_seed(0)
    B, L = 40, 7
    start, end = torch.randn(B, L, generator=rng), torch.randn(B, L, generator=rng)
    real = torch.randint(0, L + 1, (B,), generator=rng)
    room = torch.randint(1, L + 2, (B,), generator=rng)
    score, first, last = _best_spans(start, end, real, max_span, room)
    for b in range(B):
        width = min(int(room[b]), max_span or L)
        pairs = (start[b][:, None] + end[b][None, :]).double().numpy()
        ok = span_mask(L, int(real[b]), width)
        if not ok.any():
            assert score[b] == float("-inf")
            continue
        i, j = np.unravel_index(np.argmax(np.where(ok, pairs, -np.inf)), pairs.shape)
        assert (int(first[b]), int(last[b])) == (i, j)
        assert float(score[b]) == pytest.approx(pairs[i, j], abs=1e-5)


def test_seq2seq_vocab_round_trips_its_max_span() -> None:
    tokens = CopyVocab([*SPECIALS, CTX, "a"])
    for span in (None, 1):
        vocab = Seq2SeqVocab(tokens, max_span=span)
        again = Seq2SeqVocab.from_json(json.loads(json.dumps(vocab.to_json())))
        assert again.max_span == span and again.tokens.tokens == tokens.tokens
    old = {k: v for k, v in Seq2SeqVocab(tokens).to_json().items() if k != "max_span"}
    assert Seq2SeqVocab.from_json(old).max_span == 1  # saved before copy-span: one token


def test_seq2seq_input_and_blocked_separator() -> None:
    e = example("a b", "a", "<del> b")
    assert seq2seq_input(e) == ("a", "b", CTX, "<del>", "b")
    assert seq2seq_input(e, use_context=False) == ("a", "b")
    assert seq2seq_input(e, max_input=3) == ("a", "b", CTX)
    vocab = Seq2SeqVocab(CopyVocab([*SPECIALS, CTX, "a"]))
    assert vocab.tokens.id(CTX) in vocab.decode_vocab().blocked
    assert vocab.tokens.id("a") not in vocab.decode_vocab().blocked


def test_tagger_sizes_and_a_batch_without_context() -> None:
    config = TaggerConfig(vocab_size=100, n_tags=12, use_context=False)
    assert TaggerConfig.from_dict(config.to_dict()) == config
    model = Tagger(config)
    with_context = Tagger(TaggerConfig(vocab_size=100, n_tags=12))
    lstm = 2 * 4 * 128 * (64 + 128 + 2) + 2 * 4 * 128 * (256 + 128 + 2)  # 2 BiLSTM layers
    assert parameter_count(model) == 100 * 64 + lstm + 256 * 12 + 12
    assert parameter_count(with_context) == 100 * 64 + 2 * lstm + 512 * 12 + 12
    item = {
        "source": np.array([7, 6], dtype=np.int64),
        "context": np.array([], dtype=np.int64),
        "tags": np.array([0, 2], dtype=np.int64),
    }
    batch = collate_tagger([item])
    model.eval()
    assert model.predict(batch).shape == (1, 2)
    out = model.loss(batch)
    assert int(out.total) == 1 and float(out.loss.detach()) > 0


@pytest.mark.parametrize("rows", [3, 2 * ROWS_PER_CALL + 5])  # one call; groups by length
def test_bilstm_is_the_packed_lstm(rows: int) -> None:
    # The tagger's padded BiLSTM computes what nn.LSTM computes on a packed sequence:
    # outputs (zero past each length), final states and the gradients of both.
    torch.manual_seed(0)
    lstm = nn.LSTM(6, 5, num_layers=2, bidirectional=True, batch_first=True, dropout=0.5)
    lstm = lstm.double().eval()
    x = torch.randn(rows, 9, 6, dtype=torch.float64)
    lengths = torch.randint(1, 10, (rows,))
    lengths[0] = 9
    packed, (h_n, _) = lstm(
        pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    )
    want = pad_packed_sequence(packed, batch_first=True, total_length=9)[0]
    want_final = torch.cat([h_n[-2], h_n[-1]], dim=-1)
    out, final = bilstm(lstm, x, lengths)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(final, want_final)
    w_out, w_final = torch.randn_like(want), torch.randn_like(want_final)

    def grads(a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        lstm.zero_grad()
        ((a * w_out).sum() + (b * w_final).sum()).backward()
        return [p.grad.clone() for p in lstm.parameters() if p.grad is not None]

    for got, expected in zip(grads(out, final), grads(want, want_final), strict=True):
        torch.testing.assert_close(got, expected)


def test_tagger_vocabs_round_trip_through_json() -> None:
    vocabs = TaggerVocabs(CopyVocab([*SPECIALS, END, "a"]), [("b",), ("c", "d")], False, 8)
    assert vocabs.tags == ["KEEP", "DELETE", "KEEP|b", "DELETE|b", "KEEP|c d", "DELETE|c d"]
    again = TaggerVocabs.from_json(vocabs.to_json())
    assert (again.tags, again.tokens.tokens, again.max_context) == (
        vocabs.tags,
        vocabs.tokens.tokens,
        8,
    )
