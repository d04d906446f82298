"""ripple.models.runtime.copy_decode: span-copying greedy and merged beam search
(Panthaplackel et al. 2021, Algorithm 1) on a deterministic numpy toy decoder."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from ripple.models.runtime.copy_decode import (
    DecodeConfig,
    DecodeVocab,
    Hypothesis,
    StepScores,
    action_log_probs,
    action_log_probs_batch,
    beam_decode,
    greedy_decode,
)

TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "a", "b", "c")
PAD, BOS, EOS, UNK, A, B, C = range(7)
VOCAB = DecodeVocab.build(TOKENS, bos_id=BOS, eos_id=EOS, unk_id=UNK, blocked=[PAD])
INPUT = ("a", "x", "b", "a")  # "x" is out of vocabulary
POSITIONS = 6  # the decoder scores 6 positions; the last two are padding
HUGE = DecodeConfig(beam_size=10**6, span_candidates=10**6, max_len=3)

Path = tuple[tuple[str, ...], float, int]  # tokens, log probability, actions


class Toy:
    """A deterministic recurrent decoder: h' = tanh(W h + E[token]); the scores are linear
    in h. The state's last entry counts the tokens fed (BOS included), so the state
    depends only on the tokens fed. ``calls`` records the ids of every step call."""

    def __init__(
        self,
        seed: int,
        *,
        dim: int = 8,
        gen_bias: dict[int, float] | None = None,
        start_bias: dict[int, float] | None = None,
        end_bias: dict[int, float] | None = None,
        eos_after: int | None = None,
        eos_boost: float = 40.0,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.w = rng.normal(0.0, 0.6, (dim, dim))
        self.emb = rng.normal(0.0, 1.0, (len(TOKENS), dim))
        self.w_gen = rng.normal(0.0, 0.7, (dim, len(TOKENS)))
        self.w_start = rng.normal(0.0, 0.7, (dim, POSITIONS))
        self.w_end = rng.normal(0.0, 0.7, (dim, POSITIONS))
        self.gen_bias = np.zeros(len(TOKENS))
        self.start_bias = np.zeros(POSITIONS)
        self.end_bias = np.zeros(POSITIONS)
        for target, bias in (
            (self.gen_bias, gen_bias),
            (self.start_bias, start_bias),
            (self.end_bias, end_bias),
        ):
            for k, v in (bias or {}).items():
                target[k] = v
        self.eos_after = eos_after  # output tokens after which EOS is boosted (before: damped)
        self.eos_boost = eos_boost
        self.calls: list[list[int]] = []

    def state0(self) -> np.ndarray:
        return np.zeros(self.dim + 1, dtype=np.float32)

    def __call__(self, states: np.ndarray, ids: np.ndarray) -> StepScores:
        assert states.ndim == 2 and ids.shape == (states.shape[0],) and ids.dtype == np.int64
        self.calls.append(ids.tolist())
        h = np.tanh(states[:, :-1].astype(np.float64) @ self.w.T + self.emb[ids])
        count = states[:, -1] + 1.0
        gen = h @ self.w_gen + self.gen_bias
        if self.eos_after is not None:
            outputs = count - 1.0  # BOS is not an output token
            gen[:, EOS] += np.where(outputs >= self.eos_after, self.eos_boost, -self.eos_boost)
        start = h @ self.w_start + self.start_bias
        end = h @ self.w_end + self.end_bias
        state = np.concatenate([h, count[:, None]], axis=1)
        return StepScores(
            state.astype(np.float32),
            gen.astype(np.float32),
            start.astype(np.float32),
            end.astype(np.float32),
        )

    def scores_after(self, tokens: Sequence[str]) -> StepScores:
        """The scores after feeding BOS then ``tokens`` one at a time (one ray)."""
        scores = self(self.state0()[None], np.array([BOS], dtype=np.int64))
        for token in tokens:
            scores = self(scores.state, np.array([VOCAB.feed_id(token)], dtype=np.int64))
        return scores


# --- an independent reference: every action sequence, by enumeration --------------------


def reference_actions(
    toy: Toy, tokens: tuple[str, ...], inputs: Sequence[str], max_span: int | None
) -> list[tuple[tuple[str, ...] | None, float]]:
    """Every valid action after ``tokens`` as (output tokens, or None for EOS; log q),
    normalised with plain Python loops."""
    scores = toy.scores_after(tokens)
    gen = [float(x) for x in scores.gen[0]]
    start = [float(x) for x in scores.start[0]]
    end = [float(x) for x in scores.end[0]]
    raw: list[tuple[tuple[str, ...] | None, float]] = []
    for v, logit in enumerate(gen):
        if v in (PAD, BOS, UNK):
            continue
        raw.append((None if v == EOS else (TOKENS[v],), logit))
    for i in range(len(inputs)):
        for j in range(i, len(inputs)):
            if max_span is None or j - i + 1 <= max_span:
                raw.append((tuple(inputs[i : j + 1]), start[i] + end[j]))
    top = max(s for _, s in raw)
    log_z = top + math.log(sum(math.exp(s - top) for _, s in raw))
    return [(out, s - log_z) for out, s in raw]


def all_paths(toy: Toy, inputs: Sequence[str], max_len: int, max_span: int | None) -> list[Path]:
    """Every action sequence that writes at most ``max_len`` tokens then EOS."""
    cache: dict[tuple[str, ...], list[tuple[tuple[str, ...] | None, float]]] = {}
    paths: list[Path] = []

    def walk(tokens: tuple[str, ...], logp: float, actions: int) -> None:
        if tokens not in cache:
            cache[tokens] = reference_actions(toy, tokens, inputs, max_span)
        for out, lq in cache[tokens]:
            if out is None:
                paths.append((tokens, logp + lq, actions + 1))
            elif len(tokens) + len(out) <= max_len:
                walk(tokens + out, logp + lq, actions + 1)

    walk((), 0.0, 0)
    return paths


def logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


# --- action_log_probs ----------------------------------------------------------------------


def test_action_log_probs_is_one_softmax_over_valid_actions() -> None:
    rng = np.random.default_rng(0)
    gen = rng.normal(size=7).astype(np.float32)
    start = rng.normal(size=POSITIONS).astype(np.float32)
    end = rng.normal(size=POSITIONS).astype(np.float32)
    blocked = VOCAB.blocked
    for max_span, n_valid_spans in ((None, 10), (2, 7), (1, 4)):
        gen_logp, span_logp = action_log_probs(gen, start, end, 4, max_span, blocked)
        assert gen_logp.shape == (7,) and span_logp.shape == (POSITIONS, POSITIONS)
        assert all(gen_logp[b] == -np.inf for b in (PAD, BOS, UNK))
        assert np.isfinite(gen_logp[[EOS, A, B, C]]).all()
        valid = np.isfinite(span_logp)
        assert int(valid.sum()) == n_valid_spans
        for i in range(POSITIONS):
            for j in range(POSITIONS):
                expected = i <= j < 4 and (max_span is None or j - i + 1 <= max_span)
                assert valid[i, j] == expected
                if expected:  # relative scores are start[i] + end[j]
                    assert span_logp[i, j] - gen_logp[EOS] == pytest.approx(
                        float(start[i]) + float(end[j]) - float(gen[EOS]), abs=1e-5
                    )
        total = np.exp(gen_logp).sum() + np.exp(span_logp).sum()
        assert total == pytest.approx(1.0, abs=1e-9)
        if max_span == 1:  # single-token copying: only the diagonal of the real input
            assert np.array_equal(valid, np.diag([True] * 4 + [False] * 2))


def test_action_log_probs_is_stable_and_batched_matches_rows() -> None:
    rng = np.random.default_rng(1)
    gen = (rng.normal(size=(3, 7)) + 5000.0).astype(np.float32)  # exp() would overflow
    start = (rng.normal(size=(3, POSITIONS)) + 5000.0).astype(np.float32)
    end = rng.normal(size=(3, POSITIONS)).astype(np.float32)
    gen_b, span_b = action_log_probs_batch(gen, start, end, 5, 3, VOCAB.blocked)
    for r in range(3):
        gen_r, span_r = action_log_probs(gen[r], start[r], end[r], 5, 3, VOCAB.blocked)
        assert np.array_equal(gen_r, gen_b[r]) and np.array_equal(span_r, span_b[r])
        assert np.exp(gen_r).sum() + np.exp(span_r).sum() == pytest.approx(1.0, abs=1e-9)
        assert not np.isnan(gen_r).any() and not np.isnan(span_r).any()
    with pytest.raises(ValueError):  # more input tokens than scored positions
        action_log_probs(gen[0], start[0], end[0], POSITIONS + 1, None, VOCAB.blocked)


# --- the merged beam against exhaustive enumeration ------------------------------------


@pytest.mark.parametrize(
    ("seed", "max_span", "inputs"),
    [(0, None, INPUT), (1, None, INPUT), (2, 2, INPUT), (3, None, ("a", "b", "a", "b"))],
)
def test_merged_beam_is_the_total_probability_of_each_output(
    seed: int, max_span: int | None, inputs: tuple[str, ...]
) -> None:
    toy = Toy(seed)
    paths = all_paths(toy, inputs, HUGE.max_len, max_span)
    by_tokens: dict[tuple[str, ...], list[float]] = defaultdict(list)
    actions_of: dict[tuple[str, ...], set[int]] = defaultdict(set)
    for tokens, logp, actions in paths:
        by_tokens[tokens].append(logp)
        actions_of[tokens].add(actions)
    assert math.fsum(math.exp(lp) for _, lp, _ in paths) < 1.0

    config = DecodeConfig(
        beam_size=HUGE.beam_size,
        span_candidates=HUGE.span_candidates,
        max_len=HUGE.max_len,
        max_span=max_span,
    )
    hyps = beam_decode(toy, toy.state0(), inputs, VOCAB, config)
    assert [h.logp for h in hyps] == sorted((h.logp for h in hyps), reverse=True)
    assert len({h.tokens for h in hyps}) == len(hyps)  # merged: each output once
    assert {h.tokens for h in hyps} == set(by_tokens)
    several_ways = 0
    for h in hyps:
        assert h.finished
        assert h.logp == pytest.approx(logsumexp(by_tokens[h.tokens]), abs=1e-6)
        assert h.actions in actions_of[h.tokens]
        several_ways += len(by_tokens[h.tokens]) > 1
    assert several_ways > 10  # the merging mattered
    # Some outputs are reachable with fewer actions than tokens: spans were copied.
    assert any(h.actions < len(h.tokens) + 1 for h in hyps)


def test_only_rays_that_are_not_mid_span_are_merged() -> None:
    """The live rays after each iteration, seen as the rows of each step call."""
    inputs = ("a", "b", "a", "b")
    toy = Toy(9)
    beam_decode(toy, toy.state0(), inputs, VOCAB, HUGE)
    # Iteration 0: generating or copying "a" / "b" merge, so the one-token rays are a, b, c;
    # the mid-span rays ab (twice: spans 0-1 and 2-3), ba, aba, bab are not merged (abab
    # would pass max_len). Iteration 1: the 5 carried, then from each of a, b, c: 3 merged
    # one-token extensions and 3 copies of two tokens (ab twice, ba), never merged.
    assert [len(call) for call in toy.calls[:3]] == [1, 3 + 5, 5 + 3 * 3 + 3 * 3]
    plain = Toy(9)
    beam_decode(plain, plain.state0(), inputs, VOCAB, replace(HUGE, merge=False))
    assert len(plain.calls[1]) == 3 + 4 + 5  # generations, single-token copies, spans


def test_merged_ray_keeps_the_action_count_of_the_more_probable_ray() -> None:
    """With max_len 2, a two-token input span is written by one ray that copied it (2
    actions with EOS) and one merged ray of every one-token-at-a-time way (3 actions);
    the EOS merge keeps the count of the more probable of the two."""
    outcomes = set()
    for seed in (11, 12, 14):
        toy = Toy(seed)
        paths = all_paths(toy, INPUT, 2, None)
        for h in beam_decode(toy, toy.state0(), INPUT, VOCAB, replace(HUGE, max_len=2)):
            copy = [lp for t, lp, a in paths if t == h.tokens and a == 2]
            if len(h.tokens) != 2 or not copy:
                continue
            stepwise = logsumexp([lp for t, lp, a in paths if t == h.tokens and a == 3])
            expected = 2 if copy[0] > stepwise else 3
            assert h.actions == expected
            assert h.logp == pytest.approx(float(np.logaddexp(copy[0], stepwise)), abs=1e-6)
            outcomes.add(expected)
    assert outcomes == {2, 3}


def test_unmerged_beam_keeps_every_action_sequence() -> None:
    toy = Toy(3)
    paths = all_paths(toy, INPUT, HUGE.max_len, None)
    config = DecodeConfig(
        beam_size=HUGE.beam_size,
        span_candidates=HUGE.span_candidates,
        max_len=HUGE.max_len,
        merge=False,
    )
    hyps = beam_decode(toy, toy.state0(), INPUT, VOCAB, config)
    assert len(hyps) == len(paths)
    assert hyps[0].logp == pytest.approx(max(lp for _, lp, _ in paths), abs=1e-6)
    assert len({h.tokens for h in hyps}) < len(hyps)  # token sequences repeat
    got: dict[tuple[str, ...], list[tuple[float, int]]] = defaultdict(list)
    want: dict[tuple[str, ...], list[tuple[float, int]]] = defaultdict(list)
    for h in hyps:
        got[h.tokens].append((h.logp, h.actions))
    for tokens, logp, actions in paths:
        want[tokens].append((logp, actions))
    assert set(got) == set(want)
    for tokens, expected in want.items():
        got_sorted, want_sorted = sorted(got[tokens]), sorted(expected)
        assert [a for _, a in got_sorted] == [a for _, a in want_sorted]
        assert np.allclose([lp for lp, _ in got_sorted], [lp for lp, _ in want_sorted], atol=1e-6)


def test_pruned_beam_stays_within_the_total_probability() -> None:
    toy = Toy(4)
    hyps = beam_decode(toy, toy.state0(), INPUT, VOCAB, DecodeConfig(beam_size=3, max_len=3))
    assert 1 <= len(hyps) <= 3
    paths = all_paths(toy, INPUT, 3, None)
    for h in hyps:  # pruned: at most the total probability of its output, at least one path
        mine = [(lp, a) for t, lp, a in paths if t == h.tokens]
        assert min(lp for lp, _ in mine) - 1e-6 <= h.logp
        assert h.logp <= logsumexp([lp for lp, _ in mine]) + 1e-6
        assert h.actions in {a for _, a in mine}


# --- greedy ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_greedy_is_the_beam_of_one(seed: int) -> None:
    toy = Toy(seed, eos_after=2 + seed % 3, eos_boost=3.0)
    greedy = greedy_decode(toy, toy.state0(), INPUT, VOCAB, max_span=None, max_len=12)
    config = DecodeConfig(beam_size=1, span_candidates=100, max_len=12, merge=False)
    beam = beam_decode(toy, toy.state0(), INPUT, VOCAB, config)
    assert greedy.finished
    assert len(beam) == 1
    assert beam[0].tokens == greedy.tokens
    assert beam[0].actions == greedy.actions
    assert beam[0].logp == pytest.approx(greedy.logp, abs=1e-9)


def test_beam_of_one_at_max_len_can_only_end() -> None:
    toy = Toy(6, eos_after=100)  # EOS damped throughout: greedy runs into max_len
    greedy = greedy_decode(toy, toy.state0(), INPUT, VOCAB, max_len=5)
    config = DecodeConfig(beam_size=1, span_candidates=100, max_len=5, merge=False)
    beam = beam_decode(toy, toy.state0(), INPUT, VOCAB, config)
    assert not greedy.finished and len(greedy.tokens) == 5
    assert len(beam) == 1 and beam[0].tokens == greedy.tokens
    assert beam[0].actions == greedy.actions + 1
    eos = dict(reference_actions(toy, greedy.tokens, INPUT, None))[None]
    assert eos < -30  # damped, yet the only action left
    assert beam[0].logp == pytest.approx(greedy.logp + eos, abs=1e-6)


def span_toy() -> Toy:
    """Copying input[1..2] = "x b" first is very likely; EOS after two tokens."""
    return Toy(5, start_bias={1: 10.0}, end_bias={2: 10.0}, eos_after=2)


def test_greedy_copies_a_span_and_feeds_it_one_token_at_a_time() -> None:
    toy = span_toy()
    hyp = greedy_decode(toy, toy.state0(), INPUT, VOCAB)
    assert hyp == Hypothesis(("x", "b"), hyp.logp, 2)
    assert len(toy.calls) == len(hyp.tokens) + 1
    # BOS, then the OOV "x" as <unk>, then "b" by its id: one token per step call.
    assert toy.calls == [[BOS], [UNK], [B]]
    # The copy of "x b" at the start plus EOS after it.
    first = dict(reference_actions(toy, (), INPUT, None))[("x", "b")]
    last = dict(reference_actions(toy, ("x", "b"), INPUT, None))[None]
    assert hyp.logp == pytest.approx(first + last, abs=1e-6)


def test_greedy_stops_at_max_len_without_eos() -> None:
    toy = Toy(6, eos_after=100)  # EOS damped throughout
    hyp = greedy_decode(toy, toy.state0(), INPUT, VOCAB, max_len=5)
    assert not hyp.finished and len(hyp.tokens) == 5
    assert hyp.logp < 0 and hyp.actions <= 5
    # BOS, then each written token but the last (its scores are never needed).
    assert len(toy.calls) == 5


# --- spans, OOV, blocked ids -------------------------------------------------------------


def whole_copy_toy() -> Toy:
    return Toy(7, start_bias={0: 8.0}, end_bias={3: 8.0}, eos_after=4, eos_boost=20.0)


def test_whole_input_copy_takes_two_actions() -> None:
    toy = whole_copy_toy()
    hyps = beam_decode(toy, toy.state0(), INPUT, VOCAB, DecodeConfig(beam_size=5, max_len=10))
    assert hyps[0].tokens == INPUT and hyps[0].actions == 2
    first = dict(reference_actions(toy, (), INPUT, None))[INPUT]
    assert hyps[0].logp >= first + dict(reference_actions(toy, INPUT, INPUT, None))[None] - 1e-6


def test_single_token_copying_takes_an_action_per_token() -> None:
    toy = whole_copy_toy()
    config = DecodeConfig(beam_size=8, max_len=6, max_span=1)
    hyps = beam_decode(toy, toy.state0(), INPUT, VOCAB, config)
    assert hyps
    for h in hyps:
        assert h.actions == len(h.tokens) + 1
    # The whole-input span is not available: start[0] + end[0] wins, copying "a" each time.
    assert hyps[0].tokens == ("a",) * 4
    greedy = greedy_decode(toy, toy.state0(), INPUT, VOCAB, max_span=1, max_len=6)
    assert greedy.finished and greedy.actions == len(greedy.tokens) + 1


def test_spans_never_run_past_max_len() -> None:
    toy = whole_copy_toy()
    hyps = beam_decode(toy, toy.state0(), INPUT, VOCAB, DecodeConfig(beam_size=6, max_len=2))
    assert hyps and all(len(h.tokens) <= 2 for h in hyps)
    greedy = greedy_decode(toy, toy.state0(), INPUT, VOCAB, max_len=2)
    assert len(greedy.tokens) == 2 and not greedy.finished


def test_oov_token_is_copied_and_fed_as_unk() -> None:
    toy = span_toy()
    hyps = beam_decode(toy, toy.state0(), INPUT, VOCAB, DecodeConfig(beam_size=4, max_len=6))
    assert hyps[0].tokens == ("x", "b")
    assert VOCAB.feed_id("x") == UNK and VOCAB.feed_id("b") == B
    # The second step call fed every live ray its first token: "x" as <unk> for the best.
    assert toy.calls[0] == [BOS]
    assert UNK in toy.calls[1]
    assert all(0 <= i < len(TOKENS) for call in toy.calls for i in call)


def test_blocked_ids_are_never_generated() -> None:
    toy = Toy(8, gen_bias={UNK: 50.0, BOS: 50.0, PAD: 50.0}, eos_after=3, eos_boost=60.0)
    blocked_text = {"<unk>", "<s>", "<pad>"}
    greedy = greedy_decode(toy, toy.state0(), INPUT, VOCAB, max_len=8)
    assert greedy.finished and not blocked_text & set(greedy.tokens)
    toy.calls.clear()
    hyps = beam_decode(toy, toy.state0(), INPUT, VOCAB, DecodeConfig(beam_size=6, max_len=8))
    assert hyps
    for h in hyps:
        assert not blocked_text & set(h.tokens)
    assert not {PAD, BOS} & {i for call in toy.calls[1:] for i in call}


def test_vocab_view_always_blocks_unk_and_bos() -> None:
    vocab = DecodeVocab.build(TOKENS, bos_id=BOS, eos_id=EOS, unk_id=UNK)
    assert {UNK, BOS} <= vocab.blocked and EOS not in vocab.blocked
    assert vocab.feed_id("c") == C and vocab.feed_id("zzz") == UNK
    with pytest.raises(ValueError):
        DecodeVocab.build(TOKENS, bos_id=BOS, eos_id=EOS, unk_id=UNK, blocked=[EOS])
    with pytest.raises(ValueError):
        DecodeVocab.build(TOKENS, bos_id=BOS, eos_id=99, unk_id=UNK)
