"""The textual baselines of C3PO's EditCompletion task (Brody et al. 2020, §6.2-6.3).

LaserTagger, SequenceR and the span-copying editor read an example's text only: P's leaf tokens (``tokens_before``), the context edits as
a token sequence (``context_text``), and are scored against P''s tokens (``tokens_after``).

**LaserTagger** (Malmi et al. 2019; C3PO's LaserTagger_LSTM, without BERT and without the
CRF): every token of P, plus an end sentinel so that text can be added at the end, gets one
tag: ``KEEP`` or ``DELETE``, each optionally with a phrase inserted before the token
(``KEEP|phrase``, ``DELETE|phrase``). The phrase vocabulary is the ``size`` (500, as
LaserTagger) most frequent phrases the training set inserts, read off the gold alignment of
P and P' (a longest common subsequence; each maximal run of unaligned tokens of P' is one
phrase). ``tags_for`` converts an example with that same alignment (an inserted phrase goes
before the first deleted token of its gap, LaserTagger's convention); when a phrase of the
alignment is outside the vocabulary it falls back to LaserTagger's own greedy converter
(``_compute_tags_fixed_order``: keep a token that is the next token of P'; else, if the
next tokens of P' are a vocabulary phrase followed by this token, insert the shortest such
phrase and keep the token; else delete it). An example neither converter can express is
None: it is skipped in training; in evaluation the tagger's prediction is scored as any
other, and it is a miss in practice (every phrase the tagger can insert is in the
vocabulary, and the alignment needs one that is not).
The net is ``ripple.models.nets.tagger.Tagger``.

**SequenceR** (Chen et al. 2019; C3PO's SequenceR_LSTM): a sequence-to-sequence model with
attention and token copying, reading ``tokens_before + [<ctx>] + context_text`` and writing
``tokens_after``. It is the span-copying editor ``CopyEditor`` with ``max_span=1`` (Copy
That!'s Seq2Seq+CopyTok: generation and copying of single input tokens share one softmax),
trained on the copy-data items of ``ripple.training.retrieve_edit.EditorDataset`` by the
shared trainer; decoded greedily in torch, a batch at a time (what
``copy_decode.greedy_decode`` does for one input), or by ``copy_decode.beam_decode``.

**copy-span** (Panthaplackel et al. 2021, Copy That!'s Seq2Seq+CopySpan): the same code with
Copy That!'s default maximum span length (``CopyConfig.max_span`` None: a ``Copy(i:j)``
action copies any span of the input in one decision), trained with the marginalised
objective (Eq. 2, summing over every action sequence that writes P'), and decoded greedily
or by the merged-ray beam search (Algorithm 1) with that span limit. ``SEQ2SEQ_MAX_SPAN``
maps each system to its ``max_span``; it is saved in ``vocabs.json`` (and the checkpoint's
``CopyConfig``) and read back by ``load_seq2seq``.

**Scores** (``text_scores``): exact match of P' (C3PO's metric), and micro-averaged
precision and recall of token-level edit operations (difflib opcodes of P -> prediction
against those of P -> P').
"""

from __future__ import annotations

import difflib
import json
import time
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ripple.models.edits.completion import CompletionExample
from ripple.models.nets.copy_span import CopyConfig, CopyEditor
from ripple.models.nets.tagger import Tagger, TaggerConfig
from ripple.models.runtime.copy_decode import (
    DecodeConfig,
    DecodeVocab,
    Hypothesis,
    beam_decode,
    greedy_decode,
)
from ripple.models.suggest.copy_features import SPECIALS, CopyVocab
from ripple.training.copy_export import _torch_stepper

__all__ = [
    "CTX",
    "DELETE",
    "END",
    "KEEP",
    "SEQ2SEQ_MAX_SPAN",
    "Phrase",
    "Seq2SeqVocab",
    "TaggerDataset",
    "TaggerVocabs",
    "added_phrases",
    "build_phrase_vocab",
    "collate_tagger",
    "load_seq2seq",
    "load_tagger",
    "parameter_count",
    "predict_seq2seq",
    "predict_tagger",
    "realise",
    "seq2seq_input",
    "tag_string",
    "tags_for",
    "text_scores",
    "train_seq2seq",
    "train_tagger",
]

KEEP: Final = "KEEP"
DELETE: Final = "DELETE"
END: Final = "<end>"  # the tagger's input token for the end sentinel
CTX: Final = "<ctx>"  # SequenceR's separator between P and the context edits
PHRASE_VOCAB_SIZE: Final = 500  # LaserTagger's default vocabulary size
VOCABS_FILE: Final = "vocabs.json"
NEG_INF: Final = float("-inf")
# Each seq2seq system's longest copyable span: SequenceR copies single tokens (Copy That!'s
# Seq2Seq+CopyTok); copy-span copies spans of any length, Copy That!'s default (CopyConfig's
# max_span None, as `ripple train copy`'s copy-span).
SEQ2SEQ_MAX_SPAN: Final[dict[str, int | None]] = {"seq2seq-copy": 1, "copy-span": None}

Phrase = tuple[str, ...]


class _Sentinel:
    """The end of P (and of P'): equal to nothing but itself, so never to a real token."""

    def __repr__(self) -> str:
        return "<END>"


_END = _Sentinel()


# -- tags ----------------------------------------------------------------------------------

# A tag is ``OP`` or ``OP|phrase``; the phrase's tokens are joined by single spaces, each
# escaped so that any token (one holding a space, or an empty one) reads back exactly.


def _escape(token: str) -> str:
    if token == "":
        return "\\0"
    return token.replace("\\", "\\\\").replace(" ", "\\s")


def _unescape(text: str) -> str:
    if text == "\\0":
        return ""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append({"\\": "\\", "s": " "}.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def tag_string(op: str, phrase: Phrase = ()) -> str:
    """``KEEP`` / ``DELETE``, with ``|phrase`` when a phrase is inserted before the token."""
    if op not in (KEEP, DELETE):
        raise ValueError(f"a tag's operation is {KEEP} or {DELETE}, not {op!r}")
    return f"{op}|{' '.join(_escape(t) for t in phrase)}" if phrase else op


def _parse_tag(tag: str) -> tuple[str, Phrase]:
    op, bar, text = tag.partition("|")
    if op not in (KEEP, DELETE) or (bar and not text):
        raise ValueError(f"not a tag: {tag!r}")
    return op, tuple(_unescape(t) for t in text.split(" ")) if bar else ()


def realise(before: Sequence[str], tags: Sequence[str]) -> list[str]:
    """P' from P and its tags (one per token of P, then one for the end sentinel)."""
    if len(tags) != len(before) + 1:
        raise ValueError(f"{len(tags)} tags for {len(before)} tokens (one more is the end's)")
    out: list[str] = []
    for i, tag in enumerate(tags):
        op, phrase = _parse_tag(tag)
        out.extend(phrase)
        if op == KEEP and i < len(before):
            out.append(before[i])
    return out


def _alignment(source: Sequence[object], target: Sequence[object]) -> list[tuple[int, int]]:
    """The (source, target) index pairs of a longest common subsequence, in order.

    LaserTagger's ``_compute_lcs`` table and backtrack (ties go to dropping a source token).
    """
    n, m = len(source), len(target)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n):
        row, nxt = table[i], table[i + 1]
        a = source[i]
        for j in range(m):
            nxt[j + 1] = row[j] + 1 if a == target[j] else max(row[j + 1], nxt[j])
    pairs: list[tuple[int, int]] = []
    i, j = n, m
    while i > 0 and j > 0:
        if source[i - 1] == target[j - 1]:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    pairs.reverse()
    return pairs


def _aligned(before: Sequence[str], after: Sequence[str]) -> list[tuple[int, int]]:
    """The alignment of P and P' with both end sentinels aligned (always the last pair)."""
    pairs = _alignment([*before, _END], [*after, _END])
    assert pairs and pairs[-1] == (len(before), len(after))
    return pairs


def added_phrases(before: Sequence[str], after: Sequence[str]) -> list[Phrase]:
    """The phrases P' inserts: maximal runs of P' tokens outside the gold alignment."""
    out: list[Phrase] = []
    j0 = -1
    for _, j in _aligned(before, after):
        if j > j0 + 1:
            out.append(tuple(after[j0 + 1 : j]))
        j0 = j
    return out


def build_phrase_vocab(
    examples: Iterable[CompletionExample], size: int = PHRASE_VOCAB_SIZE
) -> list[Phrase]:
    """The ``size`` phrases the examples insert most often (ties: first seen first)."""
    counts: Counter[Phrase] = Counter()
    for example in examples:
        counts.update(added_phrases(example.tokens_before, example.tokens_after))
    return [phrase for phrase, _ in counts.most_common(size)]


def _tags_by_alignment(
    before: Sequence[str], after: Sequence[str], phrases: Collection[Phrase]
) -> list[str] | None:
    n = len(before)
    ops = [DELETE] * (n + 1)
    added: list[Phrase] = [()] * (n + 1)
    i0 = j0 = -1
    for i, j in _aligned(before, after):
        ops[i] = KEEP
        if j > j0 + 1:
            phrase = tuple(after[j0 + 1 : j])
            if phrase not in phrases:
                return None
            added[i0 + 1] = phrase  # before the first deleted token of the gap, if any
        i0, j0 = i, j
    return [tag_string(op, p) for op, p in zip(ops, added, strict=True)]


def _tags_greedy(
    before: Sequence[str], after: Sequence[str], phrases: Collection[Phrase]
) -> list[str] | None:
    """LaserTagger's ``TaggingConverter._compute_tags_fixed_order``, with the end sentinel."""
    longest = max((len(p) for p in phrases), default=0)
    source: list[object] = [*before, _END]
    target: list[object] = [*after, _END]
    ops = [DELETE] * len(source)
    added: list[Phrase] = [()] * len(source)
    t = 0
    for s, token in enumerate(source):
        if t >= len(target):
            break
        if token == target[t]:
            ops[s], t = KEEP, t + 1
        else:
            for k in range(1, longest + 1):
                if t + k >= len(target):
                    break
                phrase = cast(Phrase, tuple(target[t : t + k]))  # never holds _END
                if target[t + k] == token and phrase in phrases:
                    ops[s], added[s], t = KEEP, phrase, t + k + 1
                    break
        if added[s]:  # LaserTagger moves the phrase before the first of the deletions
            first = s
            while first > 0 and ops[first - 1] == DELETE:
                first -= 1
            if first != s:
                added[first], added[s] = added[s], ()
    if t < len(target):
        return None
    return [tag_string(op, p) for op, p in zip(ops, added, strict=True)]


def tags_for(
    before: Sequence[str], after: Sequence[str], phrases: Collection[Phrase]
) -> list[str] | None:
    """The tags that turn P into P' with phrases of ``phrases`` only; None if none do.

    One tag per token of P and one for the end sentinel; ``realise(before, tags) == after``.
    The gold alignment first, LaserTagger's greedy converter where it needs a phrase
    outside the vocabulary (see the module docstring).
    """
    vocab = phrases if isinstance(phrases, set | frozenset) else set(phrases)
    tags = _tags_by_alignment(before, after, vocab)
    if tags is None:
        tags = _tags_greedy(before, after, vocab)
    return tags


# -- shared data helpers ---------------------------------------------------------------------


def _token_vocab(
    sequences: Iterable[Sequence[str]], size: int, min_count: int, extra: Sequence[str]
) -> CopyVocab:
    """``CopyVocab``'s specials, then ``extra``, then tokens by frequency (ties: first seen)."""
    counts: Counter[str] = Counter()
    for seq in sequences:
        counts.update(seq)
    tokens = [*SPECIALS, *extra]
    reserved = set(tokens)
    for token, count in counts.most_common():
        if len(tokens) >= size or count < min_count:
            break
        if token not in reserved:
            tokens.append(token)
    return CopyVocab(tokens)


def _fit_settings(
    batch_size: int,
    lr: float,
    threads: int,
    quiet: bool,
    eval_every: int,
    patience: int,
    seed: int,
) -> dict[str, Any]:
    return {
        "batch_size": batch_size,
        "lr": lr,
        "threads": threads,
        "quiet": quiet,
        "eval_every": eval_every,
        "patience": patience,
        "seed": seed,
    }


def _fit_timed(
    model: nn.Module,
    out: Path,
    train: Dataset[Any],
    dev: Dataset[Any] | None,
    collate: Any,
    model_config: dict[str, Any],
    steps: int,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """``retrieve_edit._fit`` (the shared trainer, best dev model kept), timed."""
    from ripple.training.retrieve_edit import _fit

    t0 = time.perf_counter()
    # The trainer takes no dev split as None (no evaluation, the last model is kept).
    report = _fit(
        model, out, train, cast(Dataset[Any], dev), collate, model_config, steps, settings
    )
    wall = time.perf_counter() - t0
    return {**report, "train_s": round(wall, 1), "steps_per_s": round(report["steps"] / wall, 2)}


def parameter_count(model: nn.Module) -> int:
    """The number of learned parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


# -- LaserTagger -----------------------------------------------------------------------------


@dataclass
class TaggerVocabs:
    """What the tagger reads and writes: input tokens, phrases (hence tags), settings."""

    tokens: CopyVocab  # P's tokens, the end sentinel and the context's tokens
    phrases: list[Phrase]
    use_context: bool = True
    max_context: int = 256  # context tokens read (the first ones)
    tags: list[str] = field(init=False)
    tag_ids: dict[str, int] = field(init=False, repr=False)
    phrase_set: frozenset[Phrase] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.phrases = [tuple(p) for p in self.phrases]
        self.tags = [KEEP, DELETE]
        for phrase in self.phrases:
            self.tags += [tag_string(KEEP, phrase), tag_string(DELETE, phrase)]
        self.tag_ids = {t: i for i, t in enumerate(self.tags)}
        self.phrase_set = frozenset(self.phrases)

    def source_ids(self, example: CompletionExample) -> list[int]:
        return [*self.tokens.ids(example.tokens_before), self.tokens.id(END)]

    def context_ids(self, example: CompletionExample) -> list[int]:
        if not self.use_context:
            return []
        return self.tokens.ids(example.context_text[: self.max_context])

    def to_json(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens.tokens,
            "phrases": [list(p) for p in self.phrases],
            "use_context": self.use_context,
            "max_context": self.max_context,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaggerVocabs:
        return cls(
            CopyVocab(list(data["tokens"])),
            [tuple(p) for p in data["phrases"]],
            bool(data["use_context"]),
            int(data["max_context"]),
        )


class TaggerDataset(Dataset[dict[str, np.ndarray]]):
    """Tagger items; ``tags`` None (prediction) gives all-KEEP placeholders."""

    def __init__(
        self,
        examples: Sequence[CompletionExample],
        tags: Sequence[list[str] | None] | None,
        vocabs: TaggerVocabs,
    ) -> None:
        self.examples = list(examples)
        self.tags = list(tags) if tags is not None else [None] * len(self.examples)
        self.vocabs = vocabs

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        example = self.examples[index]
        source = self.vocabs.source_ids(example)
        tags = self.tags[index]
        tag_ids = [self.vocabs.tag_ids[t] for t in tags] if tags is not None else [0] * len(source)
        return {
            "source": np.array(source, dtype=np.int64),
            "context": np.array(self.vocabs.context_ids(example), dtype=np.int64),
            "tags": np.array(tag_ids, dtype=np.int64),
        }


def collate_tagger(items: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Pad tagger items into a batch (padding id 0; an empty context is one padding token)."""
    n = len(items)
    L = max(len(i["source"]) for i in items)
    C = max(1, max(len(i["context"]) for i in items))
    source = np.zeros((n, L), dtype=np.int64)
    tags = np.zeros((n, L), dtype=np.int64)
    context = np.zeros((n, C), dtype=np.int64)
    for b, item in enumerate(items):
        source[b, : len(item["source"])] = item["source"]
        tags[b, : len(item["tags"])] = item["tags"]
        context[b, : len(item["context"])] = item["context"]
    return {
        "source": torch.from_numpy(source),
        "source_length": torch.tensor([len(i["source"]) for i in items]),
        "context": torch.from_numpy(context),
        "context_length": torch.tensor([max(1, len(i["context"])) for i in items]),
        "tags": torch.from_numpy(tags),
    }


def _expressible(
    examples: Sequence[CompletionExample], vocabs: TaggerVocabs
) -> tuple[list[CompletionExample], list[list[str]]]:
    kept: list[CompletionExample] = []
    tags: list[list[str]] = []
    for example in examples:
        found = tags_for(example.tokens_before, example.tokens_after, vocabs.phrase_set)
        if found is not None:
            kept.append(example)
            tags.append(found)
    return kept, tags


def train_tagger(
    train: Sequence[CompletionExample],
    dev: Sequence[CompletionExample],
    out_dir: Path,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    threads: int = 0,
    quiet: bool = False,
    use_context: bool = True,
    phrase_vocab_size: int = PHRASE_VOCAB_SIZE,
    vocab_size: int = 10_000,
    min_count: int = 2,
    max_context: int = 256,
    embedding: int = 64,
    hidden: int = 128,
    dropout: float = 0.25,
    eval_every: int = 200,
    patience: int = 1000,
    seed: int = 0,
) -> tuple[Tagger, TaggerVocabs, dict[str, Any]]:
    """Train the LaserTagger baseline; the best model by dev all-tags-right accuracy is kept.

    Examples the phrase vocabulary cannot express are left out of training (and of the dev
    accuracy the trainer tracks); ``report`` says how many.
    """
    out_dir = Path(out_dir)
    phrases = build_phrase_vocab(train, phrase_vocab_size)
    token_seqs: list[Sequence[str]] = [e.tokens_before for e in train]
    if use_context:
        token_seqs += [e.context_text[:max_context] for e in train]
    vocabs = TaggerVocabs(
        _token_vocab(token_seqs, vocab_size, min_count, [END]), phrases, use_context, max_context
    )
    train_kept, train_tags = _expressible(train, vocabs)
    dev_kept, dev_tags = _expressible(dev, vocabs)
    if not train_kept:
        raise ValueError("no training example is expressible with the phrase vocabulary")
    config = TaggerConfig(
        vocab_size=len(vocabs.tokens),
        n_tags=len(vocabs.tags),
        embedding=embedding,
        hidden=hidden,
        context_hidden=hidden,
        dropout=dropout,
        use_context=use_context,
    )
    model = Tagger(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / VOCABS_FILE).write_text(json.dumps(vocabs.to_json()) + "\n", encoding="utf-8")
    # The context encoder's gradient fades over its hundreds of steps into subnormal
    # floats, which x86 CPUs compute on many times slower (~3x the whole step at 256
    # context tokens); flushed to zero they change nothing a float32 model can tell.
    flushing = torch.set_flush_denormal(True)
    try:
        fitted = _fit_timed(
            model,
            out_dir,
            TaggerDataset(train_kept, train_tags, vocabs),
            TaggerDataset(dev_kept, dev_tags, vocabs) if dev_kept else None,
            collate_tagger,
            {"system": "lasertagger", "tagger": config.to_dict()},
            steps,
            _fit_settings(batch_size, lr, threads, quiet, eval_every, patience, seed),
        )
    finally:
        if flushing:
            torch.set_flush_denormal(False)
    report = {
        **fitted,
        "phrases": len(phrases),
        "tags": len(vocabs.tags),
        "vocab_size": len(vocabs.tokens),
        "train_examples": len(train),
        "train_expressible": len(train_kept),
        "dev_examples": len(dev),
        "dev_expressible": len(dev_kept),
    }
    return model, vocabs, report


def load_tagger(out_dir: Path) -> tuple[Tagger, TaggerVocabs]:
    """The tagger ``train_tagger`` left in ``out_dir`` (its best model, else its latest)."""
    out_dir = Path(out_dir)
    vocabs = TaggerVocabs.from_json(json.loads((out_dir / VOCABS_FILE).read_text("utf-8")))
    state = _load_weights(out_dir)
    model = Tagger(TaggerConfig.from_dict(state.state["model_config"]["tagger"]))
    model.load_state_dict(state.model)
    return model.eval(), vocabs


@torch.no_grad()
def predict_tagger(
    model: Tagger,
    vocabs: TaggerVocabs,
    examples: Sequence[CompletionExample],
    batch_size: int = 256,
) -> list[list[str]]:
    """Each example's predicted P' tokens: its most likely tags (per token), realised."""
    model.eval()
    device = next(model.parameters()).device
    data = TaggerDataset(examples, None, vocabs)
    out: list[list[str]] = []
    for start in range(0, len(data), batch_size):
        items = [data[i] for i in range(start, min(start + batch_size, len(data)))]
        batch = {k: v.to(device) for k, v in collate_tagger(items).items()}
        predicted = model.predict(batch).cpu().tolist()
        for k, row in enumerate(predicted):
            example = examples[start + k]
            tags = [vocabs.tags[t] for t in row[: len(example.tokens_before) + 1]]
            out.append(realise(example.tokens_before, tags))
    return out


# -- SequenceR -------------------------------------------------------------------------------


@dataclass
class Seq2SeqVocab:
    """SequenceR's token vocabulary (``CopyVocab``, with ``<ctx>``), input settings and the
    longest span a copy action takes (1: SequenceR; None: any, copy-span)."""

    tokens: CopyVocab
    use_context: bool = True
    max_input: int = 400
    max_output: int = 150
    max_span: int | None = 1

    def input(self, example: CompletionExample) -> tuple[str, ...]:
        return seq2seq_input(example, self.use_context, self.max_input)

    @property
    def blocked(self) -> frozenset[int]:
        """Ids never generated: ``CopyVocab``'s blocked ones and the ``<ctx>`` separator."""
        return self.tokens.blocked | {self.tokens.id(CTX)}

    def decode_vocab(self) -> DecodeVocab:
        v = self.tokens
        return DecodeVocab.build(
            v.tokens, bos_id=v.bos_id, eos_id=v.eos_id, unk_id=v.unk_id, blocked=self.blocked
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens.tokens,
            "use_context": self.use_context,
            "max_input": self.max_input,
            "max_output": self.max_output,
            "max_span": self.max_span,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Seq2SeqVocab:
        span = data.get("max_span", 1)  # saved before copy-span: single tokens
        return cls(
            CopyVocab(list(data["tokens"])),
            bool(data["use_context"]),
            int(data["max_input"]),
            int(data["max_output"]),
            None if span is None else int(span),
        )


def seq2seq_input(
    example: CompletionExample, use_context: bool = True, max_input: int = 400
) -> tuple[str, ...]:
    """SequenceR's input: P's tokens, then ``<ctx>`` and the context edits (if read)."""
    if not use_context:
        return tuple(example.tokens_before[:max_input])
    return (*example.tokens_before, CTX, *example.context_text)[:max_input]


def train_seq2seq(
    train: Sequence[CompletionExample],
    dev: Sequence[CompletionExample],
    out_dir: Path,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    threads: int = 0,
    quiet: bool = False,
    use_context: bool = True,
    vocab_size: int = 10_000,
    min_count: int = 2,
    embedding: int = 128,
    hidden: int = 128,
    dropout: float = 0.2,
    max_input: int = 400,
    max_output: int = 150,
    max_span: int | None = 1,
    eval_every: int = 200,
    patience: int = 1000,
    seed: int = 0,
) -> tuple[CopyEditor, Seq2SeqVocab, dict[str, Any]]:
    """Train SequenceR (``CopyEditor``, ``max_span=1``) or, with ``max_span=None``,
    copy-span (spans of any length), both by the marginal likelihood (Copy That!'s Eq. 2).

    The trainer keeps the best model by dev token accuracy (the argmax action is right).
    """
    from ripple.training.copy_data import collate_copy
    from ripple.training.retrieve_edit import EditorDataset, Pair

    if max_span not in (None, 1):  # what CopyEditor's normaliser computes
        raise ValueError(f"max_span must be None (any span) or 1 (single tokens), not {max_span}")
    out_dir = Path(out_dir)
    inputs = [seq2seq_input(e, use_context, max_input) for e in train]
    tokens = _token_vocab([*inputs, *(e.tokens_after for e in train)], vocab_size, min_count, [CTX])
    vocab = Seq2SeqVocab(tokens, use_context, max_input, max_output, max_span)
    config = CopyConfig(
        vocab_size=len(tokens),
        embedding=embedding,
        hidden=hidden,
        dropout=dropout,
        max_span=max_span,
        objective="marginal",
        # <unk> stays generable in training: the UNK rule makes it the right action for
        # an output token neither in the vocabulary nor copyable (decoding never emits it).
        blocked=tuple(sorted(vocab.blocked - {tokens.unk_id})),
        unk_id=tokens.unk_id,
        bos_id=tokens.bos_id,
    )
    model = CopyEditor(config)

    def dataset(examples: Sequence[CompletionExample]) -> EditorDataset:
        pairs = [Pair(vocab.input(e), tuple(e.tokens_after)) for e in examples]
        return EditorDataset(
            pairs, [None] * len(pairs), [], tokens, max_input=max_input, max_output=max_output
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / VOCABS_FILE).write_text(json.dumps(vocab.to_json()) + "\n", encoding="utf-8")
    fitted = _fit_timed(
        model,
        out_dir,
        dataset(train),
        dataset(dev) if dev else None,
        collate_copy,
        {"system": "sequencer" if max_span == 1 else "copy-span", "copy": config.to_dict()},
        steps,
        _fit_settings(batch_size, lr, threads, quiet, eval_every, patience, seed),
    )
    report = {
        **fitted,
        "vocab_size": len(tokens),
        "train_examples": len(train),
        "dev_examples": len(dev),
    }
    return model, vocab, report


def load_seq2seq(out_dir: Path) -> tuple[CopyEditor, Seq2SeqVocab]:
    """The model ``train_seq2seq`` left in ``out_dir`` (its best model, else its latest),
    with the ``max_span`` it was trained with (its vocabulary's, its config's)."""
    out_dir = Path(out_dir)
    vocab = Seq2SeqVocab.from_json(json.loads((out_dir / VOCABS_FILE).read_text("utf-8")))
    state = _load_weights(out_dir)
    model = CopyEditor(CopyConfig.from_dict(state.state["model_config"]["copy"]))
    if model.config.max_span != vocab.max_span:
        raise ValueError(
            f"{out_dir}: the model copies spans of {model.config.max_span} tokens at most, "
            f"its {VOCABS_FILE} says {vocab.max_span}"
        )
    model.load_state_dict(state.model)
    return model.eval(), vocab


def _load_weights(out_dir: Path) -> Any:
    from ripple.training.checkpoints import latest_checkpoint, load_checkpoint

    best = out_dir / "best"
    if (best / "model.safetensors").exists():
        return load_checkpoint(best)
    latest = latest_checkpoint(out_dir / "checkpoints")
    if latest is None:
        raise FileNotFoundError(f"{out_dir}: no trained model (best/ or checkpoints/)")
    return load_checkpoint(latest)


@torch.no_grad()
def predict_seq2seq(
    model: CopyEditor,
    vocab: Seq2SeqVocab,
    examples: Sequence[CompletionExample],
    beam: int = 1,
    max_len: int | None = None,
    batch_size: int = 64,
) -> list[list[str] | None]:
    """Each example's predicted P' tokens: greedy (``beam=1``) or the best beam hypothesis,
    copying spans of at most ``vocab.max_span`` tokens (any length when None).

    Greedy decoding runs batched in torch (``batch_size`` examples at a time) and returns
    what it wrote when stopped by ``max_len``; beam search (``copy_decode.beam_decode``, with
    ray merging, one example at a time) gives None where no hypothesis ended within
    ``max_len`` tokens.
    """
    if beam < 1:
        raise ValueError(f"beam must be at least 1, not {beam}")
    model.eval()
    limit = vocab.max_output if max_len is None else max_len
    inputs = [vocab.input(e) for e in examples]
    if beam == 1:
        return list(_greedy_batched(model, vocab, inputs, limit, batch_size))
    return [_decode_one(model, vocab, tokens, beam, limit) for tokens in inputs]


def _search_one(
    model: CopyEditor, vocab: Seq2SeqVocab, tokens: Sequence[str], beam: int, limit: int
) -> list[Hypothesis]:
    """One input through ``copy_decode``'s search (greedy for ``beam=1``), in torch:
    its hypotheses, best first (the greedy one, finished or not; the beam's finished ones)."""
    device = next(model.parameters()).device
    ids = torch.tensor([vocab.tokens.ids(tokens) or [0]], device=device)
    length = torch.tensor([max(1, len(tokens))], device=device)
    with torch.no_grad():
        memory, keys, starts, ends, state0 = model.encode(ids, length)
    pad = torch.zeros(1, ids.shape[1], dtype=torch.bool, device=device)
    step = _torch_stepper(model, memory, keys, starts, ends, pad)
    state = state0[0].cpu().numpy()
    dvocab = vocab.decode_vocab()
    if beam == 1:
        return [greedy_decode(step, state, tokens, dvocab, vocab.max_span, max_len=limit)]
    config = DecodeConfig(beam, max_len=limit, max_span=vocab.max_span)
    return beam_decode(step, state, tokens, dvocab, config)


def _decode_one(
    model: CopyEditor, vocab: Seq2SeqVocab, tokens: Sequence[str], beam: int, limit: int
) -> list[str] | None:
    """The tokens of ``_search_one``'s best hypothesis; None if the beam finished none."""
    hyps = _search_one(model, vocab, tokens, beam, limit)
    return list(hyps[0].tokens) if hyps else None


def _best_spans(
    start: torch.Tensor,
    end: torch.Tensor,
    real: torch.Tensor,
    max_span: int | None,
    room: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row, the best span ``[i, j]`` to copy: ``start[i] + end[j]`` highest over the
    spans of the row's ``real`` input tokens at most ``min(max_span, room)`` tokens long.

    Returns (score, i, j), each (B,); the score is -inf where the row has no input token.
    """
    B, L = start.shape
    pos = torch.arange(L, device=start.device)
    outside = pos[None, :] >= real[:, None]  # no input token there
    if max_span == 1:  # room is never below 1 where a decision is taken
        score, last = (start + end).masked_fill(outside, NEG_INF).max(dim=-1)
        return score, last, last
    width = room.clamp(max=L) if max_span is None else room.clamp(max=max_span)
    if max_span is None:  # the best start at or before each end: a cumulative max
        top, where = torch.cummax(start, dim=-1)
        score, last = (end + top).masked_fill(outside, NEG_INF).max(dim=-1)
        first = where.gather(1, last[:, None])[:, 0]
        # The best span of any length is the best one that fits, unless it does not fit.
        redo = (last - first + 1 > width) & torch.isfinite(score)
    else:  # a longest span of a few tokens: every row through its (L, L) spans
        score = torch.full((B,), NEG_INF, dtype=start.dtype, device=start.device)
        first = last = torch.zeros(B, dtype=torch.long, device=start.device)
        redo = torch.ones(B, dtype=torch.bool, device=start.device)
    rows = redo.nonzero()[:, 0]
    if len(rows):  # (R, L, L) scores of the spans no longer than each row's width
        pairs = start[rows][:, :, None] + end[rows][:, None, :]
        i, j = pos[:, None], pos[None, :]
        ok = (i <= j) & (j - i < width[rows][:, None, None]) & ~outside[rows][:, None, :]
        best, flat = pairs.masked_fill(~ok, NEG_INF).flatten(1).max(dim=-1)
        score, first, last = score.clone(), first.clone(), last.clone()
        score[rows], first[rows], last[rows] = best, flat // L, flat % L
    return score, first, last


def _greedy_batched(
    model: CopyEditor,
    vocab: Seq2SeqVocab,
    inputs: Sequence[Sequence[str]],
    limit: int,
    batch_size: int,
) -> list[list[str]]:
    """``copy_decode.greedy_decode`` with ``vocab.max_span`` for many inputs at once.

    At each decision the most probable action: generating a non-blocked vocabulary token
    or copying one input span (a tie goes to generation, as in ``greedy_decode``) no longer
    than ``vocab.max_span`` nor than the room left under ``limit``. A copied span's tokens
    are fed one step each before the row's next decision, while other rows go on deciding.
    """
    device = next(model.parameters()).device
    words = vocab.tokens
    blocked = torch.zeros(len(words), dtype=torch.bool, device=device)
    blocked[sorted(vocab.blocked | {words.unk_id, words.bos_id})] = True
    out: list[list[str]] = [[] for _ in inputs]
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))  # similar lengths batch
    for first in range(0, len(order), batch_size):
        rows = order[first : first + batch_size]
        B = len(rows)
        L = max(1, max(len(inputs[r]) for r in rows))
        ids = torch.zeros(B, L, dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, : len(inputs[r])] = torch.tensor(words.ids(inputs[r]), dtype=torch.long)
        real = torch.tensor([len(inputs[r]) for r in rows])
        ids, real = ids.to(device), real.to(device)
        memory, keys, starts, ends, state = model.encode(ids, real.clamp(min=1))
        pad = torch.arange(L, device=device)[None, :] >= real.clamp(min=1)[:, None]
        token = torch.full((B,), words.bos_id, dtype=torch.long, device=device)
        pending: list[list[str]] = [[] for _ in range(B)]  # copied tokens not yet fed
        live = list(range(B))
        while live:
            state, gen, start, end = model.step(token, state, memory, keys, starts, ends, pad)
            room = torch.full((B,), L, dtype=torch.long)  # rows not deciding: no limit
            for b in live:
                if not pending[b]:
                    room[b] = max(1, limit - len(out[rows[b]]))
            best_gen, gen_id = gen.masked_fill(blocked, NEG_INF).max(dim=-1)
            best_copy, span_first, span_last = _best_spans(
                start, end, real, vocab.max_span, room.to(device)
            )
            copy = (best_copy > best_gen).tolist()
            gen_ids, firsts, lasts = gen_id.tolist(), span_first.tolist(), span_last.tolist()
            feed = token.tolist()
            still: list[int] = []
            for b in live:
                written = out[rows[b]]
                if not pending[b]:  # a decision
                    if len(written) == limit:  # greedy_decode stops there, unfinished
                        continue
                    if copy[b]:
                        pending[b] = list(inputs[rows[b]][firsts[b] : lasts[b] + 1])
                    elif gen_ids[b] == words.eos_id:
                        continue
                    else:
                        pending[b] = [words.tokens[gen_ids[b]]]
                    written.extend(pending[b])  # never past limit: the span fits
                    if len(written) == limit:  # nothing left to decide, nothing to feed
                        continue
                feed[b] = words.id(pending[b].pop(0))
                still.append(b)
            live = still
            if live:
                token = torch.tensor(feed, dtype=torch.long, device=device)
    return out


# -- scores ----------------------------------------------------------------------------------

EditOp = tuple[str, int, int, tuple[str, ...]]


def _edit_ops(before: Sequence[str], after: Sequence[str]) -> set[EditOp]:
    """difflib's opcodes of ``before`` -> ``after`` as (tag, i1, i2, inserted), 'equal' dropped."""
    matcher = difflib.SequenceMatcher(None, list(before), list(after), autojunk=False)
    return {
        (tag, i1, i2, tuple(after[j1:j2]))
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    }


def text_scores(
    examples: Sequence[CompletionExample], predictions: Sequence[Sequence[str] | None]
) -> dict[str, float]:
    """Exact match of P', and micro-averaged precision/recall of token edit operations.

    A prediction of None is a miss (no operations predicted); precision (recall) is 0.0
    when no operation is predicted (expected) at all.
    """
    if len(examples) != len(predictions):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions")
    exact = hits = predicted = expected = 0
    for example, prediction in zip(examples, predictions, strict=True):
        gold_ops = _edit_ops(example.tokens_before, example.tokens_after)
        expected += len(gold_ops)
        if prediction is None:
            continue
        exact += list(prediction) == list(example.tokens_after)
        ops = _edit_ops(example.tokens_before, prediction)
        predicted += len(ops)
        hits += len(ops & gold_ops)
    n = len(examples)
    return {
        "exact": exact / n if n else 0.0,
        "precision": hits / predicted if predicted else 0.0,
        "recall": hits / expected if expected else 0.0,
    }
