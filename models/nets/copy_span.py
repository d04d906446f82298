"""Seq2Seq+CopySpan and Seq2Seq+CopyTok (Panthaplackel et al. 2021, "Copy That!", §2).

An encoder-decoder that edits a token sequence: a BiGRU encodes the input (the fragment to
edit and the recent edits, see ``ripple.models.suggest.copy_features``), a GRU decoder with
Luong attention reads the output so far, and each step scores one softmax over two kinds of
action: ``Gen(v)`` for every vocabulary token ``v`` and ``Copy(i:j)`` for every input span
``[i, j]`` (inclusive), scored ``(W [r_i ; r_j]) . h_k``. The projection splits into a start
and an end half, so the span score is ``start_k[i] + end_k[j]`` and the normaliser over all
``L (L + 1) / 2`` spans is one cumulative log-sum-exp (``logcumsumexp``), never an L x L
tensor. ``max_span = 1`` gives Seq2Seq+CopyTok, the single-token copying baseline, with the
same sizes.

Training objectives (``objective``):

* ``marginal`` (the paper's Eq. 2): ``log p(o[k:] | o[:k]) = logsumexp over correct actions
  a at k of log q(a) + log p(o[k+|a|:])``, a backward dynamic program over output positions,
  vectorised over the batch and over every copyable span (spans are gathered sparsely from
  the run-length matrix: only the (k, i, length) triples that really copy, never a Python
  loop over spans). Loss ``-log p(o)``.
* ``longest`` (Table 2 ablation "always copy longest"): the single action sequence that
  copies the longest matching span wherever one exists (and generates otherwise).
* ``nomarg`` (Table 2 ablation "no marginalisation"): at every output position a
  "multi-hot" loss ``-log sum of q(a)`` over all its correct actions, whatever their length.

The UNK rule (§2): generating ``<unk>`` is a wrong action wherever the output token can be
copied, and the only correct generation where it cannot.

Batch keys (B examples, L input tokens, T output tokens incl. ``</s>``; padding id 0):
``input`` (B, L), ``input_length`` (B,), ``output`` (B, T), ``output_length`` (B,),
``runs`` (B, T, L) int16 copy run lengths, and for ``longest`` ``longest`` (B, T) int64:
the length of the action taken at k on the longest-copy path (0 = generate, -1 = inside a
copied span, no decision).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ripple.models.nets import Batch, EditModel, StepOutput

__all__ = ["CopyConfig", "CopyEditor", "Objective"]

Objective = Literal["marginal", "longest", "nomarg"]
NEG = float("-inf")
# Padded input positions: far below any real score, but finite, so that no -inf ever
# reaches logcumsumexp or a softmax (their gradients turn -inf into NaN).
MASKED = -1e9


@dataclass
class CopyConfig:
    """Sizes of §4 (code repair): embeddings, encoder and decoder 128, dropout 0.2."""

    vocab_size: int
    embedding: int = 128
    hidden: int = 128
    dropout: float = 0.2
    max_span: int | None = None  # 1 = Seq2Seq+CopyTok
    objective: Objective = "marginal"
    # Ids never generated: padding, <s>, the separators (see copy_features.SPECIALS).
    blocked: tuple[int, ...] = (0, 2, 4, 5)
    unk_id: int = 1
    bos_id: int = 2

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["blocked"] = list(self.blocked)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CopyConfig:
        data = dict(data)
        data["blocked"] = tuple(data.get("blocked", (0, 2, 4, 5)))
        return cls(**data)


def _gru_cell(x: torch.Tensor, h: torch.Tensor, gru: nn.GRU) -> torch.Tensor:
    """One step of ``gru`` (1 layer, unidirectional) written out, for step-by-step export."""
    w_ih, w_hh, b_ih, b_hh = gru.all_weights[0]
    gi = F.linear(x, w_ih, b_ih)
    gh = F.linear(h, w_hh, b_hh)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def _reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of ``x`` (B, L, D) within its length; padding stays behind."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


def _logaddexp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(exp a + exp b)`` that is -inf (with a zero gradient) when both are -inf."""
    m = torch.maximum(a, b).detach()
    safe = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    total = torch.exp(a - safe) + torch.exp(b - safe)
    # log(0) would pass an infinite gradient into the branch torch.where discards (NaN).
    out = safe + torch.log(torch.where(total > 0, total, torch.ones_like(total)))
    return torch.where(torch.isneginf(m), m, out)


def _masked_logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """logsumexp that gives -inf (with a zero gradient, not NaN) over all -inf entries."""
    m = x.amax(dim=dim, keepdim=True).detach()
    safe = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    total = torch.exp(x - safe).sum(dim=dim, keepdim=True)
    total = torch.where(total > 0, total, torch.ones_like(total))
    out = (safe + torch.log(total)).squeeze(dim)
    return torch.where(torch.isneginf(m.squeeze(dim)), m.squeeze(dim), out)


class CopyEditor(EditModel):
    """Seq2Seq with span (or token) copying; see the module docstring."""

    def __init__(self, config: CopyConfig) -> None:
        super().__init__()
        self.config = config
        e, h = config.embedding, config.hidden
        self.embed = nn.Embedding(config.vocab_size, e, padding_idx=0)
        self.drop = nn.Dropout(config.dropout)
        # The BiGRU as two unidirectional GRUs: the backward one reads each sequence
        # reversed within its length, so padding never leaks in (and it exports plainly).
        self.enc_fwd = nn.GRU(e, h, batch_first=True)
        self.enc_bwd = nn.GRU(e, h, batch_first=True)
        self.memory = nn.Linear(2 * h, h)
        self.init_state = nn.Linear(2 * h, h)
        self.decoder = nn.GRU(e, h, batch_first=True)
        self.attn = nn.Linear(h, h, bias=False)  # Luong "general"
        self.combine = nn.Linear(2 * h, h)
        self.generate = nn.Linear(h, config.vocab_size)
        self.span_start = nn.Linear(h, h, bias=False)
        self.span_end = nn.Linear(h, h, bias=False)
        blocked = torch.zeros(config.vocab_size, dtype=torch.bool)
        blocked[list(config.blocked)] = True
        self.blocked: torch.Tensor
        self.register_buffer("blocked", blocked, persistent=False)

    # -- the network --------------------------------------------------------------------

    def encode(
        self, inputs: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(memory, attention keys, span-start keys, span-end keys, initial state)."""
        x = self.drop(self.embed(inputs))
        fwd, _ = self.enc_fwd(x)
        bwd, _ = self.enc_bwd(_reverse_within(x, lengths))
        bwd = _reverse_within(bwd, lengths)
        both = torch.cat([fwd, bwd], dim=-1)
        memory = self.drop(torch.tanh(self.memory(both)))
        last = (lengths - 1).clamp(min=0)
        fwd_last = fwd.gather(1, last[:, None, None].expand(-1, 1, fwd.shape[2]))[:, 0]
        state = torch.tanh(self.init_state(torch.cat([fwd_last, bwd[:, 0]], dim=-1)))
        return memory, self.attn(memory), self.span_start(memory), self.span_end(memory), state

    def _read(
        self,
        h: torch.Tensor,
        memory: torch.Tensor,
        keys: torch.Tensor,
        starts: torch.Tensor,
        ends: torch.Tensor,
        pad: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attention and action scores for decoder states ``h`` (B, T, H).

        Returns generation logits (B, T, V) and span start/end scores (B, T, L) with
        padded input positions at ``MASKED``.
        """
        scores = torch.einsum("bth,blh->btl", h, keys).masked_fill(pad[:, None, :], MASKED)
        context = torch.einsum("btl,blh->bth", torch.softmax(scores, dim=-1), memory)
        out = self.drop(torch.tanh(self.combine(torch.cat([h, context], dim=-1))))
        gen = self.generate(out)
        start = torch.einsum("bth,blh->btl", out, starts).masked_fill(pad[:, None, :], MASKED)
        end = torch.einsum("bth,blh->btl", out, ends).masked_fill(pad[:, None, :], MASKED)
        return gen, start, end

    def step(
        self,
        token: torch.Tensor,
        state: torch.Tensor,
        memory: torch.Tensor,
        keys: torch.Tensor,
        starts: torch.Tensor,
        ends: torch.Tensor,
        pad: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Feed one token per row: (new state, gen logits, span starts, span ends)."""
        h = _gru_cell(self.embed(token), state, self.decoder)
        gen, start, end = self._read(h[:, None], memory, keys, starts, ends, pad)
        return h, gen[:, 0], start[:, 0], end[:, 0]

    def scores(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced action scores: gen (B, T, V), start and end (B, T, L), pad (B, L)."""
        inputs, lengths = batch["input"], batch["input_length"]
        output = batch["output"]
        pad = torch.arange(inputs.shape[1], device=inputs.device)[None, :] >= lengths[:, None]
        memory, keys, starts, ends, state = self.encode(inputs, lengths)
        bos = torch.full_like(output[:, :1], self.config.bos_id)
        fed = torch.cat([bos, output[:, :-1]], dim=1)
        h, _ = self.decoder(self.drop(self.embed(fed)), state[None])
        gen, start, end = self._read(h, memory, keys, starts, ends, pad)
        return gen, start, end, pad

    # -- log-probabilities of actions ---------------------------------------------------

    def _normaliser(
        self, gen: torch.Tensor, start: torch.Tensor, end: torch.Tensor
    ) -> torch.Tensor:
        """log Z over every valid action: (B, T)."""
        gen_lse = torch.logsumexp(gen.masked_fill(self.blocked, NEG), dim=-1)
        if self.config.max_span == 1:
            span_lse = torch.logsumexp(start + end, dim=-1)
        elif self.config.max_span is None:
            # sum_{i <= j} exp(s_i + e_j) = sum_j exp(e_j) * sum_{i <= j} exp(s_i)
            cum = torch.logcumsumexp(start, dim=-1)
            span_lse = torch.logsumexp(end + cum, dim=-1)
        else:
            raise ValueError("max_span must be None (any span) or 1 (single tokens)")
        return _logaddexp(gen_lse, span_lse)

    def action_terms(
        self, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The log-probabilities of the correct actions, by output position.

        Returns ``gen_ok`` (B, T): log q(Gen(o_k)) under the UNK rule (-inf where wrong);
        ``copy`` (B, T, S + 1): at index l, log of the summed q over copyable spans of
        length l starting at output position k (index 0 unused, -inf); ``best`` (B, T) bool:
        the argmax action at k is a correct one; ``valid`` (B, T): real output positions.
        """
        gen, start, end, _ = self.scores(batch)
        output = batch["output"]
        B, T = output.shape
        runs = batch["runs"].long()
        if self.config.max_span == 1:
            runs = runs.clamp(max=1)
        valid = torch.arange(T, device=output.device)[None, :] < batch["output_length"][:, None]
        log_z = self._normaliser(gen, start, end)

        copyable = runs.amax(dim=-1) > 0
        target = output.clamp(min=0)
        gen_ok = gen.gather(2, target[:, :, None])[:, :, 0] - log_z
        unk = output == self.config.unk_id
        gen_ok = gen_ok.masked_fill(unk & copyable, NEG)
        gen_ok = gen_ok.masked_fill(~valid, NEG)

        # Copyable spans, sparsely: every (b, k, i) with a run, expanded over its lengths.
        span_max = int(runs.max()) if runs.numel() else 0
        copy = torch.full((B, T, span_max + 1), NEG, device=gen.device, dtype=gen.dtype)
        copy_peak = copy
        nz = runs.nonzero(as_tuple=False)
        if len(nz):
            b, k, i = nz.unbind(1)
            r = runs[b, k, i]
            rep = torch.repeat_interleave(torch.arange(len(r), device=r.device), r)
            first = torch.cumsum(r, 0) - r
            length = torch.arange(len(rep), device=r.device) - first[rep] + 1
            b, k, i = b[rep], k[rep], i[rep]
            j = i + length - 1
            score = start[b, k, i] + end[b, k, j] - log_z[b, k]
            slot = (b * T + k) * (span_max + 1) + length
            flat = torch.full((B * T * (span_max + 1),), NEG, device=gen.device, dtype=gen.dtype)
            peak = flat.scatter_reduce(0, slot, score.detach(), reduce="amax", include_self=True)
            total = torch.zeros_like(flat).index_add(0, slot, torch.exp(score - peak[slot]))
            some = total > 0
            total = torch.where(some, total, torch.ones_like(total))
            copy = torch.where(some, peak + torch.log(total), flat).view(B, T, span_max + 1)
            copy_peak = peak.view(B, T, span_max + 1)

        # Is the single most likely action a correct one? (gen argmax or best span)
        gen_best = gen.masked_fill(self.blocked, NEG).amax(dim=-1)
        if self.config.max_span == 1:
            span_best = (start + end).amax(dim=-1)
        else:
            span_best = (end + torch.cummax(start, dim=-1).values).amax(dim=-1)
        best_score = torch.maximum(gen_best, span_best) - log_z
        correct_best = torch.maximum(gen_ok, copy_peak.amax(dim=-1) if span_max else gen_ok)
        best = (correct_best >= best_score - 1e-5) & valid
        return gen_ok, copy, best, valid

    # -- objectives ---------------------------------------------------------------------

    def log_likelihood(
        self, gen_ok: torch.Tensor, copy: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Eq. 2 by the backward dynamic program: log p(o) per example, (B,).

        ``ahead[:, l - 1]`` holds log p(o[k + l:] | o[:k + l]) for the lengths a copy at
        ``k`` can take; one step of the loop is a few batched tensor operations.
        """
        B, T, S1 = copy.shape
        span = max(S1 - 1, 1)
        device, dtype = gen_ok.device, gen_ok.dtype
        zero = torch.zeros(B, device=device, dtype=dtype)
        never = torch.full((B,), NEG, device=device, dtype=dtype)
        # future = log p(o[k:] | o[:k]): 0 at k = length, -inf past it.
        future = torch.where(lengths == T, zero, never)
        ahead = torch.cat(
            [future[:, None], torch.full((B, span - 1), NEG, device=device, dtype=dtype)], 1
        )
        for k in range(T - 1, -1, -1):
            value = gen_ok[:, k] + ahead[:, 0]
            if S1 > 1:
                spans = _masked_logsumexp(copy[:, k, 1:] + ahead[:, : S1 - 1], dim=1)
                value = _logaddexp(value, spans)
            future = torch.where(lengths == k, zero, torch.where(lengths > k, value, never))
            ahead = torch.cat([future[:, None], ahead[:, :-1]], 1)
        return future

    def loss(self, batch: Batch) -> StepOutput:
        gen_ok, copy, best, valid = self.action_terms(batch)
        lengths = batch["output_length"]
        objective = self.config.objective
        if objective == "marginal":
            log_p = self.log_likelihood(gen_ok, copy, lengths)
        elif objective == "nomarg":
            per_k = _logaddexp(gen_ok, _masked_logsumexp(copy, dim=-1))
            log_p = per_k.masked_fill(~valid, 0.0).sum(dim=1)
        elif objective == "longest":
            longest = batch["longest"]
            chosen = copy.gather(2, longest.clamp(min=0, max=copy.shape[2] - 1)[:, :, None])[
                :, :, 0
            ]
            per_k = torch.where(longest == 0, gen_ok, chosen)
            per_k = per_k.masked_fill((longest < 0) | ~valid, 0.0)
            log_p = per_k.sum(dim=1)
        else:
            raise ValueError(f"unknown objective {objective!r}")
        # An example no action sequence can produce (never, with the UNK rule) would be -inf.
        log_p = torch.where(torch.isfinite(log_p), log_p, torch.zeros_like(log_p))
        tokens = valid.sum()
        return StepOutput(
            loss=-log_p.sum() / tokens.clamp(min=1),
            correct=best.sum(),
            total=tokens,
        )
