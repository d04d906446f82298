"""Search for ripple's span-copying decoder (Panthaplackel et al. 2021, "Copy That!
Editing Sequences by Copying Spans", AAAI 2021).

ripple's sequence decoder (exported to ONNX and run by onnxruntime elsewhere) writes an
output token sequence by ACTIONS: at each decoder state it either generates a vocabulary
token ``v`` (logit ``gen[v]``) or copies a span ``[i..j]`` (``i <= j``) of the input
tokens (score ``start[i] + end[j]``). One log-softmax over every valid generation action
and every valid span action gives the action distribution ``q`` (``action_log_probs``).
The decoder state depends only on the output tokens fed to it so far: a copied span's
tokens are fed one at a time afterwards, at no extra decision.

This module is the search only, in numpy (no torch, no onnxruntime): the caller wraps the
decoder as a ``StepFn`` (states + one token per ray -> ``StepScores``) and describes its
vocabulary with a ``DecodeVocab``.

* ``greedy_decode`` takes the most probable action at each state.
* ``beam_decode`` is the paper's Algorithm 1 (beam search with ray merging) for a decoder
  fed one token at a time. Rays advance in lock step on the number of output tokens
  ``n``: at iteration ``n`` the rays holding exactly ``n`` tokens are expanded with their
  best generation and span actions, while rays part-way through a copied span (more than
  ``n`` tokens) wait. New rays that are not mid-span and hold the same tokens are merged:
  their probabilities are added (log-add-exp), since they are different action sequences
  for the same output. Then the ``beam_size`` most probable rays are kept and every
  unfinished ray is fed its next token in one batched step call.

Neither search writes more than ``max_len`` tokens: a span running past it is never
taken (it still counts in the normalisation of ``q``). Once a ray holds ``max_len``
tokens, ``beam_decode`` lets it take only EOS; ``greedy_decode`` stops there and returns
an unfinished hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DecodeConfig",
    "DecodeVocab",
    "Hypothesis",
    "StepFn",
    "StepScores",
    "action_log_probs",
    "action_log_probs_batch",
    "beam_decode",
    "greedy_decode",
    "span_mask",
]

FloatArray = npt.NDArray[np.floating[Any]]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class StepScores:
    """The decoder's output for R rays, after feeding each of them one token."""

    state: npt.NDArray[Any]  # (R, ...) decoder states after feeding the given tokens
    gen: FloatArray  # (R, V) generation logits
    start: FloatArray  # (R, L) span-start scores
    end: FloatArray  # (R, L) span-end scores


# step(states (R, ...), token_ids (R,) int64) -> StepScores for those R rays after feeding token_ids
StepFn = Callable[[npt.NDArray[Any], npt.NDArray[np.int64]], StepScores]


@dataclass(frozen=True)
class DecodeConfig:
    beam_size: int = 20
    span_candidates: int = 50  # top spans considered per ray per step
    max_len: int = 150  # output tokens (EOS not counted)
    max_span: int | None = None  # longest copyable span; 1 = single-token copying (CopyTok)
    merge: bool = True  # merge rays (Alg. 1); False = plain beam search

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, not {self.beam_size}")
        if self.span_candidates < 0:
            raise ValueError(f"span_candidates must be >= 0, not {self.span_candidates}")
        if self.max_len < 0:
            raise ValueError(f"max_len must be >= 0, not {self.max_len}")
        if self.max_span is not None and self.max_span < 1:
            raise ValueError(f"max_span must be None or >= 1, not {self.max_span}")


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[str, ...]  # output tokens, EOS excluded
    logp: float  # log probability (log-add-exp of every merged ray)
    actions: int  # decisions taken (EOS included) by the best ray among those merged
    finished: bool = True  # ended with EOS (greedy_decode stopped by max_len: False)


@dataclass(frozen=True)
class DecodeVocab:
    """What the search needs of the decoder's output vocabulary.

    ``tokens[id]`` is the text a generation of ``id`` appends; ``blocked`` ids are never
    generated (padding, BOS, UNK, separators ...) and always include ``unk_id`` and
    ``bos_id`` (added if missing); ``eos_id`` may not be blocked.
    """

    tokens: tuple[str, ...]
    bos_id: int
    eos_id: int
    unk_id: int
    blocked: frozenset[int] = frozenset()
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tokens = tuple(self.tokens)
        size = len(tokens)
        for name in ("bos_id", "eos_id", "unk_id"):
            value = getattr(self, name)
            if not 0 <= value < size:
                raise ValueError(f"{name} {value} is outside the vocabulary (size {size})")
        blocked = frozenset(self.blocked) | {self.unk_id, self.bos_id}
        if self.eos_id in blocked:
            raise ValueError(f"eos_id {self.eos_id} is blocked: no decode could end")
        if any(not 0 <= b < size for b in blocked):
            raise ValueError(f"blocked ids {sorted(blocked)} go outside the vocabulary")
        index: dict[str, int] = {}
        for i, token in enumerate(tokens):
            index.setdefault(token, i)
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "blocked", blocked)
        object.__setattr__(self, "_index", index)

    @classmethod
    def build(
        cls,
        tokens: Sequence[str],
        *,
        bos_id: int,
        eos_id: int,
        unk_id: int,
        blocked: Iterable[int] = (),
    ) -> DecodeVocab:
        return cls(tuple(tokens), bos_id, eos_id, unk_id, frozenset(blocked))

    def feed_id(self, token: str) -> int:
        """The id fed to the decoder for output ``token``: its id, or ``unk_id`` when OOV."""
        return self._index.get(token, self.unk_id)


# --- action distribution ---------------------------------------------------------------


def span_mask(n_positions: int, n_input: int, max_span: int | None) -> npt.NDArray[np.bool_]:
    """(L, L) bool: span ``(i, j)`` is valid iff ``i <= j < n_input`` and it is at most
    ``max_span`` tokens long (any length when ``max_span`` is None)."""
    i = np.arange(n_positions)[:, None]
    j = np.arange(n_positions)[None, :]
    mask = (i <= j) & (j < n_input)
    if max_span is not None:
        mask &= j - i + 1 <= max_span
    return mask


def _gen_mask(n_vocab: int, blocked: Collection[int]) -> npt.NDArray[np.bool_]:
    mask = np.ones(n_vocab, dtype=bool)
    ids = [b for b in blocked if 0 <= b < n_vocab]
    mask[ids] = False
    return mask


def _normalise(
    gen: FloatArray,
    start: FloatArray,
    end: FloatArray,
    gen_ok: npt.NDArray[np.bool_],
    span_ok: npt.NDArray[np.bool_],
) -> tuple[F64, F64]:
    gen64 = np.where(gen_ok, gen.astype(np.float64), -np.inf)
    spans = start.astype(np.float64)[:, :, None] + end.astype(np.float64)[:, None, :]
    spans = np.where(span_ok, spans, -np.inf)
    rows = gen64.shape[0]
    top = np.maximum(
        np.max(gen64, axis=1, initial=-np.inf),
        np.max(spans.reshape(rows, -1), axis=1, initial=-np.inf),
    )
    if not np.all(np.isfinite(top)):
        raise ValueError("a ray has no valid action with a finite score")
    total = np.exp(gen64 - top[:, None]).sum(axis=1)
    total += np.exp(spans - top[:, None, None]).reshape(rows, -1).sum(axis=1)
    log_z = top + np.log(total)
    return gen64 - log_z[:, None], spans - log_z[:, None, None]


def action_log_probs_batch(
    gen: FloatArray,
    start: FloatArray,
    end: FloatArray,
    n_input: int,
    max_span: int | None,
    blocked: Collection[int],
) -> tuple[F64, F64]:
    """``action_log_probs`` for R rays at once: (R, V), (R, L), (R, L) -> (R, V), (R, L, L)."""
    if gen.ndim != 2 or start.ndim != 2 or start.shape != end.shape:
        raise ValueError(f"shapes gen {gen.shape}, start {start.shape}, end {end.shape}")
    if n_input > start.shape[1]:
        raise ValueError(f"{n_input} input tokens but only {start.shape[1]} span positions")
    gen_ok = _gen_mask(gen.shape[1], blocked)
    span_ok = span_mask(start.shape[1], n_input, max_span)
    return _normalise(gen, start, end, gen_ok, span_ok)


def action_log_probs(
    gen_row: FloatArray,
    start_row: FloatArray,
    end_row: FloatArray,
    n_input: int,
    max_span: int | None,
    blocked: Collection[int],
) -> tuple[F64, F64]:
    """q for one decoder state: one log-softmax over every valid action.

    Returns ``gen_logp`` (V,) (-inf for blocked ids) and ``span_logp`` (L, L) where
    ``span_logp[i, j]`` is the log probability of copying input tokens ``[i..j]``
    (-inf unless ``i <= j < n_input`` and the span is at most ``max_span`` long).
    """
    gen_logp, span_logp = action_log_probs_batch(
        gen_row[None], start_row[None], end_row[None], n_input, max_span, blocked
    )
    return gen_logp[0], span_logp[0]


# --- search ------------------------------------------------------------------------------


def _top_k(values: F64, k: int) -> tuple[npt.NDArray[np.intp], F64]:
    """Per row of (R, N) ``values``: the indices and values of (at most) its ``k`` largest."""
    n = values.shape[1]
    if k >= n:
        idx = np.broadcast_to(np.arange(n), values.shape)
    elif k <= 0:
        idx = np.zeros((values.shape[0], 0), dtype=np.intp)
    else:
        idx = np.argpartition(-values, k - 1, axis=1)[:, :k]
    return idx, np.take_along_axis(values, idx, axis=1)


def _check_scores(scores: StepScores, rows: int, n_input: int) -> None:
    if scores.gen.shape[0] != rows or scores.start.shape[0] != rows:
        raise ValueError(f"step returned {scores.gen.shape[0]} rows for {rows} rays")
    if scores.state.shape[0] != rows or scores.end.shape != scores.start.shape:
        raise ValueError("step returned inconsistent state/start/end shapes")
    if scores.start.shape[1] < n_input:
        raise ValueError(
            f"{n_input} input tokens but the decoder scores {scores.start.shape[1]} positions"
        )


def _first_step(
    step: StepFn, state0: npt.NDArray[Any], vocab: DecodeVocab, n_input: int
) -> StepScores:
    scores = step(np.asarray(state0)[None], np.array([vocab.bos_id], dtype=np.int64))
    _check_scores(scores, 1, n_input)
    return scores


class _Masks:
    """The masks one decode reuses: valid generation ids, valid spans, span lengths."""

    def __init__(
        self, n_vocab: int, n_positions: int, n_input: int, max_span: int | None, vocab: DecodeVocab
    ) -> None:
        self.gen_ok = _gen_mask(n_vocab, vocab.blocked)
        self.span_ok = span_mask(n_positions, n_input, max_span)
        positions = np.arange(n_positions)
        self.span_len = positions[None, :] - positions[:, None] + 1
        self.n_positions = n_positions

    def log_probs(self, gen: FloatArray, start: FloatArray, end: FloatArray) -> tuple[F64, F64]:
        return _normalise(gen, start, end, self.gen_ok, self.span_ok)

    def selectable_spans(self, span_logp: F64, room: int) -> F64:
        """``span_logp`` (R, L, L) with spans longer than ``room`` tokens set to -inf."""
        if room >= self.n_positions:
            return span_logp
        return np.where(self.span_len <= room, span_logp, -np.inf)


def greedy_decode(
    step: StepFn,
    state0: npt.NDArray[Any],
    input_tokens: Sequence[str],
    vocab: DecodeVocab,
    max_span: int | None = None,
    max_len: int = 150,
) -> Hypothesis:
    """The most probable action at each state, from BOS until EOS or ``max_len`` tokens.

    A copied span's tokens are fed one step call each before the next decision. Stopped
    by ``max_len``, the hypothesis has ``finished=False`` and no EOS decision.
    """
    inputs = tuple(input_tokens)
    scores = _first_step(step, state0, vocab, len(inputs))
    masks = _Masks(scores.gen.shape[1], scores.start.shape[1], len(inputs), max_span, vocab)
    toks: list[str] = []
    logp = 0.0
    actions = 0
    while True:
        room = max_len - len(toks)
        if room <= 0:
            return Hypothesis(tuple(toks), logp, actions, finished=False)
        gen_logp, span_logp = masks.log_probs(scores.gen, scores.start, scores.end)
        spans = masks.selectable_spans(span_logp, room)[0].reshape(-1)
        best_gen = int(np.argmax(gen_logp[0]))
        best_span = int(np.argmax(spans)) if spans.size else -1
        actions += 1
        if best_span >= 0 and spans[best_span] > gen_logp[0, best_gen]:
            logp += float(spans[best_span])
            i, j = divmod(best_span, masks.n_positions)
            out = list(inputs[i : j + 1])
        else:
            logp += float(gen_logp[0, best_gen])
            if best_gen == vocab.eos_id:
                return Hypothesis(tuple(toks), logp, actions)
            out = [vocab.tokens[best_gen]]
        for token in out:
            toks.append(token)
            if len(toks) == max_len:  # no decision follows: its scores are never needed
                break
            ids = np.array([vocab.feed_id(token)], dtype=np.int64)
            scores = step(scores.state, ids)
            _check_scores(scores, 1, len(inputs))


class _Trie:
    """Interns output token sequences: one integer node per distinct sequence."""

    def __init__(self) -> None:
        self.children: dict[tuple[int, str], int] = {}
        self.parent: list[int] = [-1]
        self.token: list[str] = [""]

    def child(self, node: int, token: str) -> int:
        key = (node, token)
        found = self.children.get(key)
        if found is None:
            found = len(self.parent)
            self.children[key] = found
            self.parent.append(node)
            self.token.append(token)
        return found

    def walk(self, node: int, tokens: Iterable[str]) -> int:
        for token in tokens:
            node = self.child(node, token)
        return node

    def tokens(self, node: int) -> tuple[str, ...]:
        out: list[str] = []
        while node > 0:
            out.append(self.token[node])
            node = self.parent[node]
        return tuple(reversed(out))


@dataclass(slots=True)
class _Ray:
    # trie node of the output tokens so far; a new mid-span ray holds -1 - (its parent's
    # node) until it survives pruning, then walks its pending tokens from there
    node: int
    length: int  # number of output tokens
    pending: tuple[str, ...]  # output tokens not yet fed to the decoder
    logp: float
    actions: int
    finished: bool
    state: npt.NDArray[Any]  # decoder state after feeding length - len(pending) tokens
    row: int  # this ray's row in `batch`
    batch: StepScores  # the step output holding its scores (those of its parent once finished)


def beam_decode(
    step: StepFn,
    state0: npt.NDArray[Any],
    input_tokens: Sequence[str],
    vocab: DecodeVocab,
    config: DecodeConfig | None = None,
) -> list[Hypothesis]:
    """Beam search with ray merging (Panthaplackel et al. 2021, Algorithm 1).

    Returns the rays that ended with EOS, most probable first (at most ``beam_size``).
    See the module docstring for the iteration; one ``step`` call per iteration feeds
    every unfinished ray its next token.
    """
    cfg = config or DecodeConfig()
    inputs = tuple(input_tokens)
    first = _first_step(step, state0, vocab, len(inputs))
    masks = _Masks(first.gen.shape[1], first.start.shape[1], len(inputs), cfg.max_span, vocab)
    n_pos = masks.n_positions
    trie = _Trie()
    rays = [_Ray(0, 0, (), 0.0, 0, False, first.state[0], 0, first)]
    n = 0
    while True:
        ready = [r for r in rays if not r.finished and r.length == n]
        carried = [r for r in rays if r.finished or r.length != n]
        new: list[_Ray] = []
        if ready:
            new = _expand(ready, n, inputs, vocab, cfg, masks, trie, n_pos)
        rays = carried + new
        if len(rays) > cfg.beam_size:
            rays.sort(key=lambda r: -r.logp)
            rays = rays[: cfg.beam_size]
        for ray in rays:
            if ray.node < 0:
                ray.node = trie.walk(-1 - ray.node, ray.pending)
        live = [r for r in rays if not r.finished]
        if not live or n >= cfg.max_len:
            break
        states = np.stack([r.state for r in live])
        ids = np.array([vocab.feed_id(r.pending[0]) for r in live], dtype=np.int64)
        scores = step(states, ids)
        _check_scores(scores, len(live), len(inputs))
        for row, ray in enumerate(live):
            ray.state = scores.state[row]
            ray.batch = scores
            ray.row = row
            ray.pending = ray.pending[1:]
        n += 1
    done = sorted((r for r in rays if r.finished), key=lambda r: -r.logp)
    return [Hypothesis(trie.tokens(r.node), r.logp, r.actions) for r in done]


def _expand(
    ready: list[_Ray],
    n: int,
    inputs: tuple[str, ...],
    vocab: DecodeVocab,
    cfg: DecodeConfig,
    masks: _Masks,
    trie: _Trie,
    n_pos: int,
) -> list[_Ray]:
    """The rays one action after each of ``ready`` (all holding ``n`` tokens), merged."""
    gen_logp, span_logp = masks.log_probs(*_gather(ready))
    room = cfg.max_len - n
    if room <= 0:  # only EOS fits
        gen_idx = np.full((len(ready), 1), vocab.eos_id, dtype=np.intp)
        gen_val = gen_logp[:, [vocab.eos_id]]
        span_idx = np.zeros((len(ready), 0), dtype=np.intp)
        span_val = np.zeros((len(ready), 0))
    else:
        gen_idx, gen_val = _top_k(gen_logp, cfg.beam_size)
        flat = masks.selectable_spans(span_logp, room).reshape(len(ready), -1)
        span_idx, span_val = _top_k(flat, cfg.span_candidates)
    new: list[_Ray] = []
    # (finished, trie node) -> the surviving ray and the logp of its best merged component
    merged: dict[tuple[bool, int], tuple[_Ray, float]] = {}

    def add(ray: _Ray, key: tuple[bool, int] | None) -> None:
        if key is None or not cfg.merge:
            new.append(ray)
            return
        found = merged.get(key)
        if found is None:
            merged[key] = (ray, ray.logp)
            new.append(ray)
            return
        survivor, best = found
        if ray.logp > best:
            survivor.actions = ray.actions
            merged[key] = (survivor, ray.logp)
        survivor.logp = float(np.logaddexp(survivor.logp, ray.logp))

    eos = vocab.eos_id
    for k, parent in enumerate(ready):
        actions = parent.actions + 1
        for v, lp in zip(gen_idx[k].tolist(), gen_val[k].tolist(), strict=True):
            if lp == -np.inf:
                continue
            logp = parent.logp + lp
            if v == eos:
                ray = _Ray(parent.node, n, (), logp, actions, True, *_where(parent))
                add(ray, (True, parent.node))
                continue
            token = vocab.tokens[v]
            node = trie.child(parent.node, token)
            ray = _Ray(node, n + 1, (token,), logp, actions, False, *_where(parent))
            add(ray, (False, node))
        for flat_ij, lp in zip(span_idx[k].tolist(), span_val[k].tolist(), strict=True):
            if lp == -np.inf:
                continue
            i, j = divmod(flat_ij, n_pos)
            out = inputs[i : j + 1]
            logp = parent.logp + lp
            if len(out) == 1:
                node = trie.child(parent.node, out[0])
                ray = _Ray(node, n + 1, out, logp, actions, False, *_where(parent))
                add(ray, (False, node))
            else:  # mid-span: never merged, its node is found only if it survives
                ray = _Ray(
                    -1 - parent.node, n + len(out), out, logp, actions, False, *_where(parent)
                )
                add(ray, None)
    return new


def _where(ray: _Ray) -> tuple[npt.NDArray[Any], int, StepScores]:
    return ray.state, ray.row, ray.batch


def _gather(ready: list[_Ray]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The (R, V), (R, L), (R, L) scores of ``ready``: rows of one step output, usually."""
    batch = ready[0].batch
    if all(r.batch is batch for r in ready):
        rows = np.array([r.row for r in ready], dtype=np.intp)
        return batch.gen[rows], batch.start[rows], batch.end[rows]
    return (
        np.stack([r.batch.gen[r.row] for r in ready]),
        np.stack([r.batch.start[r.row] for r in ready]),
        np.stack([r.batch.end[r.row] for r in ready]),
    )
