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
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ripple.models.nets import Batch, EditModel, StepOutput

__all__ = ["Tagger", "TaggerConfig"]


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
        source, lengths = batch["source"], batch["source_length"]
        x = self.drop(self.embed(source))  # (B, L, E)
        packed = pack_padded_sequence(
            x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False
        )
        out, _ = self.source_encoder(packed)
        encoded, _ = pad_packed_sequence(out, batch_first=True, total_length=source.shape[1])
        features = [encoded]  # (B, L, 2H)
        if self.context_encoder is not None:
            context = batch["context"]
            y = self.drop(self.embed(context))  # (B, C, E)
            packed_ctx = pack_padded_sequence(
                y,
                batch["context_length"].cpu().clamp(min=1),
                batch_first=True,
                enforce_sorted=False,
            )
            _, (h_n, _) = self.context_encoder(packed_ctx)  # h_n: (layers * 2, B, Hc)
            final = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # top layer, both directions
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
