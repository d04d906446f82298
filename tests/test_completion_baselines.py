"""C3PO's textual baselines: LaserTagger tags (conversion, realisation), the tagger and the
SequenceR seq2seq-copy model learning hand-made edits, and the text scores."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ripple.models.edits.completion import CompletionExample, node_from_json
from ripple.models.nets.tagger import ROWS_PER_CALL, Tagger, TaggerConfig, bilstm
from ripple.models.suggest.copy_features import SPECIALS, CopyVocab
from ripple.training.completion_baselines import (
    CTX,
    END,
    Seq2SeqVocab,
    TaggerVocabs,
    _decode_one,
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


def test_batched_greedy_is_copy_decode_greedy(seq2seq: Any) -> None:
    model, vocab, _report, _out = seq2seq
    odd = [example("", "x"), example("q = ping ( ) ; ;", "q", "<del> ; </del> <sep>")]
    examples = [*TINY, *UNSEEN, *odd]
    for limit in (2, 150):
        batched = predict_seq2seq(model, vocab, examples, max_len=limit, batch_size=3)
        one_by_one = [_decode_one(model, vocab, vocab.input(e), 1, limit) for e in examples]
        assert batched == one_by_one
        assert all(p is not None and len(p) <= limit for p in batched)


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
