"""The learned retriever of retrieve-and-edit (Hashimoto et al. 2018, §3.1).

A noisy encoder-decoder: the encoder maps the input ``x`` to a unit vector ``mu(x)``; in
training the code passed to the decoder is drawn from a von Mises-Fisher distribution
centred on ``mu(x)`` with a fixed concentration (kappa = 500), and the decoder must rebuild
the output ``y`` (the task retriever) or the input ``x`` again (the paper's InputRetriever)
from that code alone: no attention, so whatever the decoder needs of ``x`` must pass through
the noisy unit vector. With kappa fixed, the KL term of the bound is a constant, so the loss
is the reconstruction's negative log-likelihood; and since KL(vMF(mu) || vMF(mu')) is a
squared distance between ``mu`` and ``mu'``, retrieving the nearest ``mu`` (cosine, annoy
``angular``) is the retriever the bound asks for.

The sample is reparametrised as in the paper (and Davidson et al. 2018): ``w`` (the cosine
between sample and mean) comes from Wood's (1994) rejection sampler, which depends only on
kappa and the dimension, so no gradient is needed through it; a direction ``v`` uniform
among unit vectors orthogonal to ``mu``; ``z = v sqrt(1 - w^2) + w mu``, which is
differentiable in ``mu``.

Batch keys (padding id 0): ``input`` (B, L), ``input_length`` (B,), ``target`` (B, T) ending
with ``</s>``, ``target_length`` (B,).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ripple.models.nets import Batch, EditModel, StepOutput
from ripple.models.nets.copy_span import _reverse_within

__all__ = ["RetrieverConfig", "VMFRetriever", "sample_vmf", "wood_w"]


@dataclass
class RetrieverConfig:
    vocab_size: int
    embedding: int = 128
    hidden: int = 256
    dim: int = 64  # the unit vectors annoy indexes
    kappa: float = 500.0
    dropout: float = 0.1
    bos_id: int = 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrieverConfig:
        return cls(**data)


def wood_w(n: int, dim: int, kappa: float) -> torch.Tensor:
    """``n`` draws of ``w = mu . z`` for z ~ vMF(mu, kappa) on the sphere in R^dim (Wood 1994).

    The density of ``w`` on (-1, 1) is proportional to ``exp(kappa w) (1 - w^2)^((dim-3)/2)``.
    Uses torch's global random state (seed it with ``torch.manual_seed``).
    """
    if dim < 2:
        raise ValueError("the vMF sampler needs dim >= 2")
    if kappa <= 0:
        raise ValueError("kappa must be positive")
    m1 = dim - 1
    b = (-2 * kappa + math.sqrt(4 * kappa**2 + m1**2)) / m1
    x0 = (1 - b) / (1 + b)
    c = kappa * x0 + m1 * math.log(1 - x0**2)
    beta = torch.distributions.Beta(torch.tensor(m1 / 2.0), torch.tensor(m1 / 2.0))
    out = torch.empty(n)
    todo = torch.arange(n)
    while len(todo):
        k = len(todo)
        e = beta.sample((k,))
        u = torch.rand(k)
        w = (1 - (1 + b) * e) / (1 - (1 - b) * e)
        ok = kappa * w + m1 * torch.log(1 - x0 * w) - c >= torch.log(u)
        out[todo[ok]] = w[ok]
        todo = todo[~ok]
    return out


def sample_vmf(mu: torch.Tensor, kappa: float) -> torch.Tensor:
    """One reparametrised sample ``z ~ vMF(mu, kappa)`` per row of ``mu`` (unit rows)."""
    n, dim = mu.shape
    w = wood_w(n, dim, kappa).to(mu)[:, None]
    noise = torch.randn_like(mu)
    v = noise - (noise * mu).sum(-1, keepdim=True) * mu  # orthogonal to mu
    v = F.normalize(v, dim=-1)
    return v * torch.sqrt((1 - w * w).clamp(min=0)) + w * mu


class VMFRetriever(EditModel):
    """Encoder ``x -> mu(x)`` (unit vector) and a decoder that rebuilds the target from it."""

    def __init__(self, config: RetrieverConfig) -> None:
        super().__init__()
        self.config = config
        e, h = config.embedding, config.hidden
        self.embed = nn.Embedding(config.vocab_size, e, padding_idx=0)
        self.drop = nn.Dropout(config.dropout)
        self.enc_fwd = nn.GRU(e, h, batch_first=True)
        self.enc_bwd = nn.GRU(e, h, batch_first=True)
        self.project = nn.Linear(4 * h, config.dim)
        self.init_state = nn.Linear(config.dim, h)
        self.decoder = nn.GRU(e + config.dim, h, batch_first=True)
        self.out = nn.Linear(h, config.vocab_size)

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``mu(x)``: (B, dim) unit vectors. Last states of both directions + mean pooling."""
        x = self.drop(self.embed(inputs))
        fwd, _ = self.enc_fwd(x)
        bwd, _ = self.enc_bwd(_reverse_within(x, lengths))
        bwd = _reverse_within(bwd, lengths)
        last = (lengths - 1).clamp(min=0)
        fwd_last = fwd.gather(1, last[:, None, None].expand(-1, 1, fwd.shape[2]))[:, 0]
        mask = torch.arange(inputs.shape[1], device=inputs.device)[None, :] < lengths[:, None]
        maskf = mask[:, :, None].to(fwd.dtype)
        mean = (torch.cat([fwd, bwd], dim=-1) * maskf).sum(1) / maskf.sum(1).clamp(min=1)
        code = self.project(torch.cat([fwd_last, bwd[:, 0], mean], dim=-1))
        return F.normalize(code, dim=-1)

    def decode_logits(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) of ``target`` given codes ``z`` (B, dim)."""
        bos = torch.full_like(target[:, :1], self.config.bos_id)
        fed = torch.cat([bos, target[:, :-1]], dim=1)
        emb = self.drop(self.embed(fed))
        steps = torch.cat([emb, z[:, None, :].expand(-1, emb.shape[1], -1)], dim=-1)
        h0 = torch.tanh(self.init_state(z))[None]
        h, _ = self.decoder(steps, h0)
        return self.out(self.drop(h))

    def loss(self, batch: Batch) -> StepOutput:
        mu = self.encode(batch["input"], batch["input_length"])
        z = sample_vmf(mu, self.config.kappa) if self.training else mu
        target = batch["target"]
        logits = self.decode_logits(z, target)
        mask = (
            torch.arange(target.shape[1], device=target.device)[None, :]
            < batch["target_length"][:, None]
        )
        nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        count = mask.sum()
        loss = (nll * mask).sum() / count.clamp(min=1)
        correct = ((logits.argmax(-1) == target) & mask).sum()
        return StepOutput(loss=loss, correct=correct.detach(), total=count.detach())
