"""A LaserTagger-style sequence tagger (Malmi et al. 2019) without BERT, as C3PO re-implemented it.

C3PO (Brody et al. 2020, §6.2-6.3) compares against "LaserTagger_LSTM": each token of the
fragment P gets one edit tag (``KEEP`` or ``DELETE``, each optionally with a phrase inserted
before the token; the tags and their realisation live in
``ripple.training.completion_baselines``). Sizes of §6.3: embeddings 64, a 2-layer BiLSTM of
128 units over P, and a context encoder, a 2-layer BiLSTM of 128 units over the textual
context edits whose final state is concatenated to the encoding of every token of P;
dropout 0.25. The paper adds a linear-chain CRF; this tagger predicts each tag
independently (softmax per token), LaserTagger's own decoder without the CRF.

Batch keys (B examples, L tokens of P plus its end sentinel, C context tokens; padding id 0):
``source`` (B, L), ``source_length`` (B,), ``context`` (B, C), ``context_length`` (B,) (at
least 1: an empty context is one padding token, whose embedding is zero), ``tags`` (B, L)
tag ids (read at positions below ``source_length`` only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ripple.models.nets import Batch, EditModel, StepOutput

__all__ = ["Tagger", "TaggerConfig", "bilstm"]


@dataclass
class TaggerConfig:
    """C3PO §6.3's LaserTagger_LSTM sizes (embeddings 64, 2 x BiLSTM 128, dropout 0.25)."""

    vocab_size: int  # input tokens: P's tokens and the context's share one embedding table
    n_tags: int
    embedding: int = 64
    hidden: int = 128  # per direction
    layers: int = 2
    context_hidden: int = 128  # per direction
    context_layers: int = 2
    dropout: float = 0.25
    use_context: bool = True  # False: the tagger reads P alone (no context encoder at all)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaggerConfig:
        return cls(**data)


class Tagger(EditModel):
    """One tag per source token from a BiLSTM over P and a BiLSTM summary of the context."""

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.embedding, padding_idx=0)
        self.drop = nn.Dropout(c.dropout)
        self.source_encoder = nn.LSTM(
            c.embedding,
            c.hidden,
            num_layers=c.layers,
            bidirectional=True,
            batch_first=True,
            dropout=c.dropout if c.layers > 1 else 0.0,
        )
        width = 2 * c.hidden
        self.context_encoder: nn.LSTM | None = None
        if c.use_context:
            self.context_encoder = nn.LSTM(
                c.embedding,
                c.context_hidden,
                num_layers=c.context_layers,
                bidirectional=True,
                batch_first=True,
                dropout=c.dropout if c.context_layers > 1 else 0.0,
            )
            width += 2 * c.context_hidden
        self.output = nn.Linear(width, c.n_tags)

    def logits(self, batch: Batch) -> torch.Tensor:
        """Tag scores (B, L, n_tags)."""
        source, lengths = batch["source"], batch["source_length"].clamp(min=1)
        x = self.drop(self.embed(source))  # (B, L, E)
        encoded, _ = bilstm(self.source_encoder, x, lengths)  # (B, L, 2H)
        features = [encoded]
        if self.context_encoder is not None:
            y = self.drop(self.embed(batch["context"]))  # (B, C, E)
            _, final = bilstm(self.context_encoder, y, batch["context_length"].clamp(min=1))
            features.append(final[:, None, :].expand(-1, source.shape[1], -1))
        return self.output(self.drop(torch.cat(features, dim=-1)))

    def _mask(self, batch: Batch) -> torch.Tensor:
        steps = torch.arange(batch["source"].shape[1], device=batch["source"].device)
        return steps[None, :] < batch["source_length"][:, None]  # (B, L)

    def loss(self, batch: Batch) -> StepOutput:
        """Mean token cross entropy; ``correct`` counts examples with every tag right."""
        logits = self.logits(batch)
        mask = self._mask(batch)
        tags = batch["tags"]
        ce = F.cross_entropy(logits.transpose(1, 2), tags, reduction="none")  # (B, L)
        loss = (ce * mask).sum() / mask.sum().clamp(min=1)
        right = (logits.argmax(dim=-1) == tags) | ~mask
        return StepOutput(
            loss=loss,
            correct=right.all(dim=1).sum(),
            total=torch.tensor(tags.shape[0], device=tags.device),
        )

    @torch.no_grad()
    def predict(self, batch: Batch) -> torch.Tensor:
        """The most likely tag id at each position (B, L); padded positions are meaningless."""
        return self.logits(batch).argmax(dim=-1)


# Rows per LSTM call: ``bilstm`` sorts a batch by length and runs it this many rows at a
# time, each group padded to its own longest row only (at batch 64 with up to 256 context
# tokens, 4 groups do ~45% fewer steps than one padded batch; smaller groups lose more to
# the smaller matrix products than they save).
ROWS_PER_CALL = 16


def bilstm(
    lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a bidirectional, batch-first ``lstm`` computes on ``x`` packed to ``lengths``.

    Returns the top layer's outputs (B, T, 2H), zero at steps at or past a row's length
    (``pad_packed_sequence``'s), and its final states (B, 2H) (``cat(h_n[-2], h_n[-1])``).
    ``lengths`` are at least 1.

    Not a packed sequence: on CPU torch runs a packed LSTM one time step at a time, slicing
    the packed input at each, and the backward of every slice fills a zero tensor as large
    as the whole input, so a step's cost grows with the square of the length (at batch 64
    with 256 context tokens ~6 CPU-seconds an optimizer step, nearly all in that backward).
    Here each group of rows of similar length (``ROWS_PER_CALL``) runs padded through
    ``_bilstm_padded``, which projects the inputs once per layer and is linear in length.
    """
    B, T, _ = x.shape
    if B <= ROWS_PER_CALL:
        t = int(lengths.max())
        out, final = _bilstm_padded(lstm, x[:, :t], lengths)
        return F.pad(out, (0, 0, 0, T - t)), final
    order = torch.argsort(lengths, descending=True, stable=True)
    outs: list[torch.Tensor] = []
    finals: list[torch.Tensor] = []
    for start in range(0, B, ROWS_PER_CALL):
        rows = order[start : start + ROWS_PER_CALL]
        t = int(lengths[rows[0]])
        out, final = _bilstm_padded(lstm, x[rows, :t], lengths[rows])
        outs.append(F.pad(out, (0, 0, 0, T - t)))
        finals.append(final)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(B, device=order.device)
    return torch.cat(outs)[inverse], torch.cat(finals)[inverse]


def _bilstm_padded(
    lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``bilstm`` on one padded batch: one ``torch.lstm`` call per layer and direction.

    The backward direction reads each row reversed within its length, so that it starts at
    the row's last real token as it does on a packed sequence; padding only follows real
    steps, which no output at a real step depends on. ``lstm``'s dropout applies between
    layers, as ``nn.LSTM`` applies it.
    """
    if not (lstm.bidirectional and lstm.batch_first and lstm.bias and lstm.proj_size == 0):
        raise ValueError("bilstm runs a batch-first bidirectional LSTM with biases only")
    B, T, _ = x.shape
    H = lstm.hidden_size
    steps = torch.arange(T, device=x.device)[None, :]
    last = lengths.to(x.device)[:, None] - 1  # (B, 1)
    real = steps <= last  # (B, T)
    # Step t of row b <-> step len_b - 1 - t within its length; padding steps stay put.
    flip = torch.where(real, last - steps, steps)[:, :, None]  # (B, T, 1), its own inverse
    zeros = x.new_zeros(1, B, H)
    out = x
    for layer in range(lstm.num_layers):
        if layer > 0:
            out = F.dropout(out, lstm.dropout, lstm.training)
        halves: list[torch.Tensor] = []
        for reverse in (False, True):
            suffix = "_reverse" if reverse else ""
            params = [
                getattr(lstm, f"{name}_l{layer}{suffix}")
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            inp = out.gather(1, flip.expand(-1, -1, out.shape[2])) if reverse else out
            h, _, _ = torch.lstm(
                inp, (zeros, zeros), params, True, 1, 0.0, lstm.training, False, True
            )
            halves.append(h.gather(1, flip.expand(-1, -1, H)) if reverse else h)
        out = torch.cat(halves, dim=-1)
    out = out * real[:, :, None]
    rows = torch.arange(B, device=x.device)
    final = torch.cat([out[rows, last[:, 0], :H], out[:, 0, H:]], dim=-1)
    return out, final
