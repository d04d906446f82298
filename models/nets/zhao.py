"""The edit-sequence models of Zhao et al. 2019: E (§3), IR (§3) and IA (§4, Appendix D, E).

All three read the tensors of ``ripple.training.synthetic.SyntheticEditDataset`` (the same
Zhao edit sequences the server builds) and predict each edit ``e(t) = (p(t), c(t))`` given
the ones before it, position first, then content given the (gold) position (§2, §3).
Teacher forcing makes every edit's prediction one parallel pass; ``loss`` counts an edit as
correct only if both position and content are right (§6.1), and skips the conditioning
steps (§5) through ``loss_mask``.

Batch keys (B instances, S state slots, T edits; padding id 0):
``state`` (B, S), ``state_length`` (B,), ``edit_position`` (B, T) implicit positions,
``edit_content`` (B, T), ``edit_explicit`` (B, T), ``edit_mask`` (B, T), ``loss_mask`` (B, T);
E also reads ``states`` (B, T, W) = ``<S> s(t-1) <E>`` and ``explicit_position`` (B, T).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ripple.models.nets import Batch, EditModel, StepOutput

__all__ = [
    "AttentionBlock",
    "ExplicitBaseline",
    "ImplicitAttention",
    "ImplicitRNN",
    "ZhaoConfig",
    "build_zhao_model",
    "sinusoid",
]

ModelKind = Literal["ia", "ir", "e"]


@dataclass
class ZhaoConfig:
    """Sizes shared by the three models; the defaults give IA about 1M parameters."""

    vocab_size: int = 14  # PAD, <S>, <E>, DELETE and V = 10 symbols (synthetic)
    hidden: int = 128  # D; the paper's grid is 128/256/512 (Appendix B.1)
    heads: int = 8  # "we use 8 heads throughout" (Appendix E)
    layers: int = 1  # MHA blocks per stage (s2s, e2e, s2e, each decoder head)
    dropout: float = 0.1
    aggregation: Literal["gru", "sum"] = "gru"  # Appendix E; Table 1's IA is IA-ag (GRU)
    decoder: Literal["analogical", "vanilla"] = "analogical"  # §4
    max_positions: int = 512  # sinusoid range; IR's position vocabulary W(p-in)/W(p-out)
    pad_id: int = 0
    delete_id: int = 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Vaswani et al.'s positional encoding of integer ``positions`` (...,) -> (..., dim)."""
    half = dim // 2
    freq = torch.exp(
        -math.log(10_000.0)
        * torch.arange(half, device=positions.device, dtype=torch.float32)
        / half
    )
    angles = positions.to(torch.float32)[..., None] * freq  # (..., half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _shift(x: torch.Tensor) -> torch.Tensor:
    """Shift forward in time: column t gets column t - 1, column 0 gets zeros (§4)."""
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)


def _causal(t: int, device: torch.device) -> torch.Tensor:
    """(1, T, T) True where step t may look at step j: j <= t (no flow back in time)."""
    return torch.ones(t, t, dtype=torch.bool, device=device).tril()[None]


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al.) with a boolean ``allowed`` mask (True = attend)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not a multiple of {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        m, h = memory.shape[1], self.heads
        q = self.query(x).view(b, n, h, d // h).transpose(1, 2)  # (B, h, N, d/h)
        k, v = self.key_value(memory).view(b, m, 2, h, d // h).permute(2, 0, 3, 1, 4)
        # Every caller leaves each query at least one key, so no row is all -inf.
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed[:, None], dropout_p=self.dropout if self.training else 0.0
        )  # (B, h, N, d/h)
        return self.out(out.transpose(1, 2).reshape(b, n, d))


class AttentionBlock(nn.Module):
    """Appendix E's MHA module: R = attention(Q, K, V), then Agg(Q, R).

    Agg is ``Q + R`` (sum) or a GRU update with Q as the previous hidden state and R as the
    input (the "g" variants). The positional encoding Appendix E adds to Q is added once by
    the callers (to the embeddings and the decoders' timing signal) rather than per block.
    A layer norm and a small feed-forward layer follow, as in Vaswani et al.; the paper does
    not mention them, but they keep stacked blocks trainable at lr 1e-3.
    """

    def __init__(self, dim: int, heads: int, dropout: float, aggregation: str) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, heads, dropout)
        self.gru = nn.GRUCell(dim, dim) if aggregation == "gru" else None
        self.norm = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim)
        )
        self.norm_ff = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, query: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        r = self.drop(self.attention(query, memory, allowed))  # (B, N, D)
        if self.gru is not None:
            h = self.gru(r.reshape(-1, r.shape[-1]), query.reshape(-1, query.shape[-1]))
            h = h.view_as(query)
        else:
            h = query + r
        h = self.norm(h)
        return self.norm_ff(h + self.drop(self.feed_forward(h)))


def _edit_loss(
    position_logits: torch.Tensor,
    position_target: torch.Tensor,
    content_logits: torch.Tensor,
    content_target: torch.Tensor,
    counted: torch.Tensor,
) -> StepOutput:
    """Mean of -log P(p) - log P(c | p) over counted edits; correct = both right (§6.1)."""
    pos_nll = -position_logits.log_softmax(-1).gather(-1, position_target[..., None])[..., 0]
    content_nll = F.cross_entropy(
        content_logits.transpose(1, 2), content_target, reduction="none"
    )  # (B, T)
    weight = counted.to(pos_nll.dtype)
    total = weight.sum()
    # Masked-out rows may hold -inf - (-inf); zero them before summing, never multiply.
    per_edit = torch.where(counted, pos_nll + content_nll, torch.zeros_like(pos_nll))
    loss = per_edit.sum() / total.clamp(min=1.0)
    right = (position_logits.argmax(-1) == position_target) & (
        content_logits.argmax(-1) == content_target
    )
    return StepOutput(loss=loss, correct=(right & counted).sum(), total=counted.sum())


class ImplicitAttention(EditModel):
    """IA: the implicit attention model with the analogical decoder (§4, Appendix D).

    Encoder (D.1): H has one column per initial token (``<S> s(0) <E>``, after self-attention
    s2s) and one per edit (its content + the sinusoid of its explicit position + a learned
    "made by an edit" vector, after causal e2e attention and s2e attention to the state).
    Edit column t depends only on s(0) and e(1..t).

    Decoder (D.2): U gathers H at each edit's implicit position. Position head: the shifted
    contexts plus a timing signal go through causal MHA to a query compared with every column
    of H (a pointer), allowed only over initial tokens and earlier edits. Content head
    (analogical): shifted contents minus shifted contexts ("analogies") through causal MHA,
    plus the current context U, then a dense layer (the vanilla decoder adds instead).
    """

    def __init__(self, config: ZhaoConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden

        def blocks() -> nn.ModuleList:
            return nn.ModuleList(
                AttentionBlock(d, config.heads, config.dropout, config.aggregation)
                for _ in range(config.layers)
            )

        self.embed = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_id)
        self.edit_marker = nn.Parameter(torch.zeros(d))
        self.state_blocks = blocks()  # s2s
        self.edit_blocks = blocks()  # e2e
        self.cross_blocks = blocks()  # s2e
        self.position_blocks = blocks()
        self.content_blocks = blocks()
        self.content_out = nn.Linear(d, config.vocab_size)
        self.drop = nn.Dropout(config.dropout)

    def encode(self, batch: Batch) -> torch.Tensor:
        """H: (B, S + T, D), state slots first, then one column per edit (Appendix D.1)."""
        state, d = batch["state"], self.config.hidden
        s = state.shape[1]
        state_valid = (state != self.config.pad_id)[:, None, :]  # (B, 1, S)
        h_state = self.drop(self.embed(state) + sinusoid(torch.arange(s, device=state.device), d))
        for block in self.state_blocks:
            h_state = block(h_state, h_state, state_valid)
        content = batch["edit_content"]
        h_edit = self.embed(content) + sinusoid(batch["edit_explicit"], d) + self.edit_marker
        h_edit = self.drop(h_edit)  # (B, T, D)
        causal = _causal(content.shape[1], content.device)
        for e2e, s2e in zip(self.edit_blocks, self.cross_blocks, strict=True):
            h_edit = e2e(h_edit, h_edit, causal)
            h_edit = s2e(h_edit, h_state, state_valid)
        return torch.cat([h_state, h_edit], dim=1)

    def columns(self, batch: Batch) -> torch.Tensor:
        """Implicit positions -> columns of H: (B, T). Edit j's index M + j is column S + j - 1."""
        pos, length = batch["edit_position"], batch["state_length"][:, None]
        return torch.where(pos < length, pos, pos - length + batch["state"].shape[1])

    def allowed_positions(self, batch: Batch) -> torch.Tensor:
        """(B, T, S + T): which columns edit t may point at.

        Initial tokens but ``<E>`` (nothing goes after it), and tokens inserted by earlier
        edits (never a DELETE's index, which names no token). The causal part, ``j < t``,
        is what keeps the position head from seeing the edit it predicts.
        """
        state, content = batch["state"], batch["edit_content"]
        s, t = state.shape[1], content.shape[1]
        slots = torch.arange(s, device=state.device)
        in_state = (slots[None] < batch["state_length"][:, None] - 1) & (
            state != self.config.pad_id
        )
        earlier = torch.ones(t, t, dtype=torch.bool, device=state.device).tril(-1)  # (T, T)
        made_token = (content != self.config.delete_id)[:, None, :]  # (B, 1, T)
        return torch.cat(
            [in_state[:, None, :].expand(-1, t, -1), earlier[None] & made_token], dim=-1
        )

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Position logits (B, T, S + T) over H's columns and content logits (B, T, vocab)."""
        h = self.encode(batch)  # (B, S + T, D)
        d = self.config.hidden
        content = batch["edit_content"]
        t = content.shape[1]
        cols = self.columns(batch)
        u = h.gather(1, cols[..., None].expand(-1, -1, d))  # (B, T, D) contexts
        timing = sinusoid(torch.arange(t, device=h.device), d)  # (T, D)
        causal = _causal(t, h.device)
        prev_u = _shift(u) + timing
        query = prev_u
        for block in self.position_blocks:
            query = block(query, query, causal)
        position_logits = torch.einsum("btd,bmd->btm", query, h) / math.sqrt(d)
        position_logits = position_logits.masked_fill(~self.allowed_positions(batch), -math.inf)
        v = self.embed(content)  # (B, T, D) contents
        prev_v = _shift(v) + timing
        if self.config.decoder == "analogical":
            # Predict the next analogy from past (content - context), apply it to U (§4).
            a = prev_v - prev_u + timing
            for block in self.content_blocks:
                a = block(a, a, causal)
            predicted = a + u
        else:
            predicted = u + prev_v
            for block in self.content_blocks:
                predicted = block(predicted, predicted, causal)
        return position_logits, self.content_out(predicted)

    def loss(self, batch: Batch) -> StepOutput:
        position_logits, content_logits = self(batch)
        counted = batch["loss_mask"] & batch["edit_mask"]
        return _edit_loss(
            position_logits, self.columns(batch), content_logits, batch["edit_content"], counted
        )


class ImplicitRNN(EditModel):
    """IR: the implicit sequence-to-sequence baseline (§3, "Baseline Implicit Model").

    An LSTM encodes s(0); its final state starts an LSTM decoder whose input at step t is
    [W(p-in) column of p(t-1); embedding of c(t-1)]. Position: softmax(W(p-out) h(t)) over
    implicit indices; content: a dense layer on [h(t); W(p-in) column of the gold p(t)].
    """

    def __init__(self, config: ZhaoConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden
        self.embed = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_id)
        self.encoder = nn.LSTM(d, d, batch_first=True)
        self.position_in = nn.Embedding(config.max_positions, d)  # W(p-in)
        self.start = nn.Parameter(torch.zeros(2 * d))
        self.decoder = nn.LSTM(2 * d, d, batch_first=True)
        self.position_out = nn.Linear(d, config.max_positions)  # W(p-out)
        self.content_out = nn.Linear(2 * d, config.vocab_size)  # W(c-out)

    def allowed_positions(self, batch: Batch) -> torch.Tensor:
        """(B, T, max_positions): initial tokens but ``<E>``, and earlier edits' tokens."""
        content, length = batch["edit_content"], batch["state_length"]
        t = content.shape[1]
        index = torch.arange(self.config.max_positions, device=content.device)  # (P,)
        in_state = index[None, None, :] < (length - 1)[:, None, None]  # (B, 1, P)
        edit = index[None, None, :] - length[:, None, None]  # which edit owns index, 0-based
        step = torch.arange(t, device=content.device)[None, :, None]
        made = F.pad(content != self.config.delete_id, (0, self.config.max_positions - t))
        made_token = made.gather(1, edit[:, 0].clamp(min=0))[:, None, :]  # (B, 1, P)
        return in_state | ((edit >= 0) & (edit < step) & made_token)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        state, position, content = batch["state"], batch["edit_position"], batch["edit_content"]
        if position.numel() and int(position.max()) >= self.config.max_positions:
            raise ValueError(f"implicit index beyond max_positions={self.config.max_positions}")
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed(state), batch["state_length"].cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h0, c0) = self.encoder(packed)
        pos_in = self.position_in(position)  # (B, T, D)
        pairs = torch.cat([pos_in, self.embed(content)], dim=-1)  # (B, T, 2D)
        inputs = torch.cat([self.start.expand(len(state), 1, -1), pairs[:, :-1]], dim=1)
        out, _ = self.decoder(inputs, (h0, c0))  # (B, T, D): h(t) predicts e(t)
        position_logits = self.position_out(out).masked_fill(
            ~self.allowed_positions(batch), -math.inf
        )
        content_logits = self.content_out(torch.cat([out, pos_in], dim=-1))
        return position_logits, content_logits

    def loss(self, batch: Batch) -> StepOutput:
        position_logits, content_logits = self(batch)
        counted = batch["loss_mask"] & batch["edit_mask"]
        return _edit_loss(
            position_logits, batch["edit_position"], content_logits, batch["edit_content"], counted
        )


class ExplicitBaseline(EditModel):
    """E: the hierarchical LSTM with a pointer over the explicit state (§3, Figure 3a).

    Level 1 reads each state s(t) with the token of s(t-1) at the same slot beside each token
    (the paper's "second path of context"; padding for s(0)), giving h(t, m). Level 2 reads
    one summary per state and gives o(t); content = softmax(W o(t)), position = a pointer
    scoring o(t) against every h(t, m). Level 1 is bidirectional here: the paper does not say,
    and a unidirectional key at slot m cannot see the pattern to its right (Flip, Surround).
    """

    def __init__(self, config: ZhaoConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden
        self.embed = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_id)
        self.tokens = nn.LSTM(2 * d, d // 2, batch_first=True, bidirectional=True)
        self.states = nn.LSTM(d, d, batch_first=True)
        self.query = nn.Linear(d, d)
        self.content_out = nn.Linear(d, config.vocab_size)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        states = batch["states"]  # (B, T, W)
        b, t, w = states.shape
        d = self.config.hidden
        previous = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)
        x = torch.cat([self.embed(states), self.embed(previous)], dim=-1).view(b * t, w, 2 * d)
        lengths = (states != self.config.pad_id).sum(-1).view(-1).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, (h_n, _) = self.tokens(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=w)
        h = h.view(b, t, w, d)  # h(t, m)
        summary = torch.cat([h_n[0], h_n[1]], dim=-1).view(b, t, d)  # both directions' ends
        o, _ = self.states(summary)  # (B, T, D): o(t) predicts e(t + 1) on s(t)
        position_logits = torch.einsum("btd,btwd->btw", self.query(o), h) / math.sqrt(d)
        slot = torch.arange(w, device=states.device)
        # Not <E>, no padding; <S> (insert first) always, so a padded edit's row is not all
        # -inf (its NaN would reach the gradients through log_softmax's backward).
        allowed = (slot[None, None, :] < (lengths.view(b, t) - 1)[..., None]) | (slot == 0)
        position_logits = position_logits.masked_fill(~allowed, -math.inf)
        return position_logits, self.content_out(o)

    def loss(self, batch: Batch) -> StepOutput:
        position_logits, content_logits = self(batch)
        counted = batch["loss_mask"] & batch["edit_mask"]
        return _edit_loss(
            position_logits,
            batch["explicit_position"],
            content_logits,
            batch["edit_content"],
            counted,
        )


def build_zhao_model(kind: str, config: ZhaoConfig) -> EditModel:
    """``"ia"``, ``"ir"`` or ``"e"`` (§6: IA, IR, E)."""
    models: dict[str, type[EditModel]] = {
        "ia": ImplicitAttention,
        "ir": ImplicitRNN,
        "e": ExplicitBaseline,
    }
    if kind not in models:
        raise ValueError(f"unknown Zhao model {kind!r}; one of ia, ir, e")
    return models[kind](config)
