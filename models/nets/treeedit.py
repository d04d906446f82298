"""The structural editor of Yao et al. 2021 ("Learning Structural Edits via Incremental Tree
Transformations"): a tree editor conditioned on an edit representation.

The editor turns a tree into another by one action at a time (STOP, DELETE a node, ADD a
node of a grammar label at a slot, copy a SUBTREE of the sources to a slot; the actions,
states and validity rules are ``ripple.models.edits.treeedit``'s). Three parts:

* **Edit encoder**: the gold actions of the context edits (``act_*``), each embedded as
  op + type + value + field + parent type + position, after a learned start vector,
  through a small transformer; the mean of the action vectors (a learned "no context"
  vector when there are none) -> ``z = tanh(W pooled)``.
* **Tree encoder**: a node is the sum of embeddings of its type, value, field, depth,
  origin (original / added / copied / context), its parent's type and its pre-order
  position, plus ``z``; a 2-layer pre-norm transformer (4 heads) whose attention carries
  a learned per-head bias for the tree relation of the two nodes (self, parent, child,
  sibling, other), so that the structure is seen, not only the labels. The same encoder
  reads the current tree at every step and, once, the sources (the original tree and
  the context trees as one forest).
* **Step heads** ("content given the position", Yao §3): from the tree summary
  ``c = tanh(W [mean(H); H_root; z])`` the op logits [4] (STOP, DELETE, ADD, SUBTREE);
  per node a DELETE score ``v · tanh(W_h H_n + W_c c)``; per slot a vector
  ``s = tanh(W [H_parent; E_field; H_left; H_right] + W_c c)`` (missing neighbours are
  learned vectors) scored by ``v_s · s``; the content vector ``u = tanh(W [s; z])`` gives
  the label logits ``u · E_label + b`` and the source logits ``(W_q u) · src / sqrt(D)``.

Choices are scored op, then node or slot, then label or source; invalid choices are
masked by the caller (the decoder in numpy, ``loss`` with the batch's masks), never by the
graphs, so the exported step graph is the plain function of its inputs.

Batch keys of ``TreeEditNet.loss`` (B states, N current-tree nodes, M source nodes, A
context actions, S slots, L labels; ``ripple.models.suggest.treeedit_features.
collate_items`` pads them, ``as_batch`` makes tensors; ids int64, masks bool):

==========================  =========  ================================================
``node_type`` ...           (B, N)     the current tree (``tree_features``): ``node_type``,
``node_parent``                        ``node_value``, ``node_field``, ``node_depth``,
                                       ``node_origin``, ``node_parent`` (-1 root/padding)
``node_valid``              (B, N)     real nodes
``src_type`` ... ``src_parent``  (B, M)   the sources' forest, the same six arrays
``src_valid``               (B, M)
``act_op`` ...              (B, A)     ``act_op``, ``act_type``, ``act_value``,
``act_parent_type``                    ``act_field``, ``act_parent_type`` (A may be 0)
``act_valid``               (B, A)
``slot_parent`` ...         (B, S)     ``slot_parent``, ``slot_field``, ``slot_left``,
``slot_right``                         ``slot_right`` (-1 = no neighbour)
``slot_valid``              (B, S)     real slots
``op_mask``                 (B, 4)     the ops valid in the state
``delete_mask``             (B, N)     nodes that may be deleted
``position_mask``           (B, S)     slots valid for the gold op (ADD: some label
                                       fits; SUBTREE: some source fits)
``label_mask``              (B, L)     labels valid at the gold slot (gold included)
``source_mask``             (B, M)     sources valid at the gold slot
``target_op``               (B,)       the gold op
``target_node``             (B,)       DELETE: the node, else -1
``target_slot``             (B,)       ADD / SUBTREE: the slot, else -1
``target_label``            (B,)       ADD: the label, else -1
``target_source``           (B,)       SUBTREE: the source node, else -1
==========================  =========  ================================================
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Final

import torch
import torch.nn.functional as F
from torch import nn

from ripple.models.nets import Batch, EditModel, StepOutput

__all__ = [
    "ACT_KEYS",
    "MASKED",
    "NODE_KEYS",
    "SLOT_KEYS",
    "STEP_OUTPUTS",
    "StepLogits",
    "TreeEditConfig",
    "TreeEditNet",
    "as_batch",
]

# Masked logits: far below any real score but finite (no -inf reaches a gradient).
MASKED: Final = -1e9
NODE_KEYS: Final = ("type", "value", "field", "depth", "origin", "parent")
ACT_KEYS: Final = ("op", "type", "value", "field", "parent_type")
SLOT_KEYS: Final = ("parent", "field", "left", "right")
STEP_OUTPUTS: Final = (
    "op_logits",
    "delete_logits",
    "slot_logits",
    "label_logits",
    "source_logits",
)
N_OPS: Final = 4
N_ORIGINS: Final = 4  # original, added, copied, context
N_RELATIONS: Final = 5  # other, self, parent, child, sibling


@dataclass
class TreeEditConfig:
    """Sizes: vocabularies (``TreeEditVocab``'s) and the net (D = ``hidden``)."""

    type_vocab: int
    value_vocab: int
    field_vocab: int
    label_vocab: int
    hidden: int = 128
    heads: int = 4
    layers: int = 2  # tree encoder
    edit_layers: int = 1  # edit encoder
    ffn: int = 256
    dropout: float = 0.1
    max_depth: int = 32  # depths are clipped to max_depth - 1
    max_position: int = 512  # pre-order positions above it share the last embedding
    max_actions: int = 64  # context actions read (positions embedded)

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        for name in ("type_vocab", "value_vocab", "field_vocab", "label_vocab"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TreeEditConfig:
        return cls(**data)


@dataclass
class StepLogits:
    """The step heads' scores (unmasked for batch 1; padding masked in batches)."""

    op: torch.Tensor  # (B, 4)
    delete: torch.Tensor  # (B, N)
    slot: torch.Tensor  # (B, S)
    slot_vectors: torch.Tensor  # (B, S, D): s, the position's vector
    context: torch.Tensor  # (B, D): c, the tree summary


def _gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, k]]`` for x (B, N, D) and index (B, K) >= 0 -> (B, K, D)."""
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


def _key_bias(valid: torch.Tensor | None) -> torch.Tensor | None:
    """Additive attention bias (B, 1, 1, K) that hides padded keys; None without padding."""
    if valid is None:
        return None
    zero = torch.zeros((), dtype=torch.float32, device=valid.device)
    return torch.where(valid, zero, torch.full_like(zero, MASKED))[:, None, None, :]


class _Layer(nn.Module):
    """A pre-norm transformer layer with an additive attention bias (B, heads, N, N)."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ffn)
        self.ff2 = nn.Linear(ffn, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape
        dh = d // self.heads
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, dh).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(dh))
        if bias is not None:
            scores = scores + bias
        attn = self.drop(torch.softmax(scores, dim=-1))
        y = torch.matmul(attn, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.drop(self.out(y))
        return x + self.drop(self.ff2(self.drop(F.gelu(self.ff1(self.norm2(x))))))


class TreeEditNet(EditModel):
    """The editor of the module docstring."""

    def __init__(self, config: TreeEditConfig) -> None:
        super().__init__()
        self.config = config
        c, d = config, config.hidden
        self.type_embed = nn.Embedding(c.type_vocab, d, padding_idx=0)
        self.value_embed = nn.Embedding(c.value_vocab, d, padding_idx=0)
        self.field_embed = nn.Embedding(c.field_vocab, d, padding_idx=0)
        self.parent_type_embed = nn.Embedding(c.type_vocab, d, padding_idx=0)
        self.depth_embed = nn.Embedding(c.max_depth, d)
        self.origin_embed = nn.Embedding(N_ORIGINS, d)
        self.position_embed = nn.Embedding(c.max_position, d)
        self.relation_bias = nn.Embedding(N_RELATIONS, c.heads)
        self.embed_norm = nn.LayerNorm(d)
        self.layers = nn.ModuleList(_Layer(d, c.heads, c.ffn, c.dropout) for _ in range(c.layers))
        self.final_norm = nn.LayerNorm(d)
        # Edit encoder.
        self.op_embed = nn.Embedding(N_OPS, d)
        self.action_position = nn.Embedding(c.max_actions + 1, d)
        self.action_start = nn.Parameter(torch.empty(d))
        self.no_context = nn.Parameter(torch.empty(d))
        self.action_norm = nn.LayerNorm(d)
        self.edit_layers = nn.ModuleList(
            _Layer(d, c.heads, c.ffn, c.dropout) for _ in range(c.edit_layers)
        )
        self.edit_norm = nn.LayerNorm(d)
        self.edit_out = nn.Linear(d, d)
        # Step heads.
        self.summary = nn.Linear(3 * d, d)
        self.op_head = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, N_OPS))
        self.delete_node = nn.Linear(d, d)
        self.delete_context = nn.Linear(d, d, bias=False)
        self.delete_score = nn.Linear(d, 1)
        self.slot_field_embed = nn.Embedding(c.field_vocab, d, padding_idx=0)
        self.no_left = nn.Parameter(torch.empty(d))
        self.no_right = nn.Parameter(torch.empty(d))
        self.slot_in = nn.Linear(4 * d, d)
        self.slot_context = nn.Linear(d, d, bias=False)
        self.slot_score = nn.Linear(d, 1)
        self.content = nn.Linear(2 * d, d)
        self.label_embed = nn.Embedding(c.label_vocab, d)
        self.label_bias = nn.Parameter(torch.zeros(c.label_vocab))
        self.source_query = nn.Linear(d, d, bias=False)
        self.drop = nn.Dropout(c.dropout)
        for vector in (self.action_start, self.no_context, self.no_left, self.no_right):
            nn.init.normal_(vector, std=0.1)
        nn.init.zeros_(self.relation_bias.weight)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- edit encoder -------------------------------------------------------------------

    def encode_edit(
        self,
        op: torch.Tensor,  # (B, A)
        node_type: torch.Tensor,
        value: torch.Tensor,
        field: torch.Tensor,
        parent_type: torch.Tensor,
        valid: torch.Tensor | None = None,  # (B, A) bool; None: every action is real
    ) -> torch.Tensor:
        """The edit representation z (B, D) of the module docstring."""
        b, a = op.shape
        d = self.config.hidden
        positions = torch.arange(1, a + 1, device=op.device).clamp(max=self.config.max_actions)
        x = (
            self.op_embed(op)
            + self.type_embed(node_type)
            + self.value_embed(value)
            + self.field_embed(field)
            + self.parent_type_embed(parent_type)
            + self.action_position(positions)[None]
        )
        start = (self.action_start + self.action_position.weight[0])[None, None].expand(b, 1, d)
        x = self.drop(self.action_norm(torch.cat([start, x], dim=1)))
        keys = None
        if valid is not None:
            keys = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)
        bias = _key_bias(keys)
        for layer in self.edit_layers:
            x = layer(x, bias)
        x = self.edit_norm(x)[:, 1:]  # the actions' vectors
        if valid is None:
            weight = torch.ones_like(x[:, :, 0])
        else:
            weight = valid.to(x.dtype)
        count = weight.sum(1, keepdim=True)  # (B, 1); 0 when there is no action
        pooled = (x * weight[:, :, None]).sum(1) / count.clamp(min=1.0)
        pooled = torch.where(count > 0, pooled, self.no_context[None].expand(b, d))
        return torch.tanh(self.edit_out(pooled))

    # -- tree encoder -------------------------------------------------------------------

    def encode_tree(
        self,
        node_type: torch.Tensor,  # (B, N)
        value: torch.Tensor,
        field: torch.Tensor,
        depth: torch.Tensor,
        origin: torch.Tensor,
        parent: torch.Tensor,  # (B, N), -1 for roots and padding
        z: torch.Tensor,  # (B, D)
        valid: torch.Tensor | None = None,  # (B, N) bool; None: every node is real
    ) -> torch.Tensor:
        """Node vectors H (B, N, D) of a tree (or a forest: several roots)."""
        n = node_type.shape[1]
        has_parent = parent >= 0
        safe_parent = parent.clamp(min=0)
        parent_type = torch.where(
            has_parent, node_type.gather(1, safe_parent), torch.zeros_like(node_type)
        )
        positions = torch.arange(n, device=node_type.device).clamp(max=self.config.max_position - 1)
        x = (
            self.type_embed(node_type)
            + self.value_embed(value)
            + self.field_embed(field)
            + self.depth_embed(depth.clamp(min=0, max=self.config.max_depth - 1))
            + self.origin_embed(origin.clamp(min=0, max=N_ORIGINS - 1))
            + self.parent_type_embed(parent_type)
            + self.position_embed(positions)[None]
            + z[:, None, :]
        )
        x = self.drop(self.embed_norm(x))
        bias = self.relation_bias(self._relations(parent)).permute(0, 3, 1, 2)  # (B, h, N, N)
        keys = _key_bias(valid)
        if keys is not None:
            bias = bias + keys
        for layer in self.layers:
            x = layer(x, bias)
        return self.final_norm(x)

    @staticmethod
    def _relations(parent: torch.Tensor) -> torch.Tensor:
        """Relation ids (B, N, N) of query node i and key node j: 1 self, 2 j is i's parent,
        3 j is i's child, 4 siblings, 0 other."""
        n = parent.shape[1]
        index = torch.arange(n, device=parent.device)
        p_i = parent[:, :, None]  # (B, N, 1)
        p_j = parent[:, None, :]  # (B, 1, N)
        same = (index[:, None] == index[None, :])[None]
        is_parent = p_i == index[None, None, :]
        is_child = p_j == index[None, :, None]
        sibling = (p_i == p_j) & (p_i >= 0)
        zero = torch.zeros_like(p_i * p_j)
        rel = torch.where(sibling, zero + 4, zero)
        rel = torch.where(is_child, zero + 3, rel)
        rel = torch.where(is_parent, zero + 2, rel)
        return torch.where(same, zero + 1, rel)

    # -- step heads ---------------------------------------------------------------------

    def step_scores(
        self,
        h: torch.Tensor,  # (B, N, D)
        z: torch.Tensor,  # (B, D)
        slot_parent: torch.Tensor,  # (B, S)
        slot_field: torch.Tensor,
        slot_left: torch.Tensor,
        slot_right: torch.Tensor,
        node_valid: torch.Tensor | None = None,
        slot_valid: torch.Tensor | None = None,
    ) -> StepLogits:
        """Op, DELETE and slot scores, and the slots' vectors (padding masked)."""
        b, _, d = h.shape
        if node_valid is None:
            mean = h.mean(1)
        else:
            weight = node_valid.to(h.dtype)[:, :, None]
            mean = (h * weight).sum(1) / weight.sum(1).clamp(min=1.0)
        context = self.drop(torch.tanh(self.summary(torch.cat([mean, h[:, 0], z], dim=-1))))
        op = self.op_head(context)
        delete = self.delete_score(
            torch.tanh(self.delete_node(h) + self.delete_context(context)[:, None])
        ).squeeze(-1)
        s = slot_parent.shape[1]
        parent_h = _gather_rows(h, slot_parent.clamp(min=0))
        left = torch.where(
            (slot_left >= 0)[:, :, None],
            _gather_rows(h, slot_left.clamp(min=0)),
            self.no_left[None, None].expand(b, s, d),
        )
        right = torch.where(
            (slot_right >= 0)[:, :, None],
            _gather_rows(h, slot_right.clamp(min=0)),
            self.no_right[None, None].expand(b, s, d),
        )
        slot_in = torch.cat([parent_h, self.slot_field_embed(slot_field), left, right], dim=-1)
        vectors = self.drop(torch.tanh(self.slot_in(slot_in) + self.slot_context(context)[:, None]))
        slot = self.slot_score(vectors).squeeze(-1)
        if node_valid is not None:
            delete = delete.masked_fill(~node_valid, MASKED)
        if slot_valid is not None:
            slot = slot.masked_fill(~slot_valid, MASKED)
        return StepLogits(op, delete, slot, vectors, context)

    def content_vectors(self, slot_vectors: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """u = tanh(W [s; z]) for slot vectors (..., D) and z (B, D) broadcast over them."""
        zz = z.view(z.shape[0], *([1] * (slot_vectors.dim() - 2)), z.shape[1])
        return torch.tanh(self.content(torch.cat([slot_vectors, zz.expand_as(slot_vectors)], -1)))

    def label_logits(self, content: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., L)."""
        return torch.matmul(content, self.label_embed.weight.t()) + self.label_bias

    def source_logits(
        self, content: torch.Tensor, src: torch.Tensor, src_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Content vectors (B, K, D) against source vectors (B, M, D) -> (B, K, M)."""
        scores = torch.matmul(self.source_query(content), src.transpose(1, 2)) * (
            1.0 / math.sqrt(self.config.hidden)
        )
        if src_valid is not None:
            scores = scores.masked_fill(~src_valid[:, None, :], MASKED)
        return scores

    # -- the exported graphs (batch 1, no padding) ---------------------------------------

    def edit_graph(
        self,
        act_op: torch.Tensor,
        act_type: torch.Tensor,
        act_value: torch.Tensor,
        act_field: torch.Tensor,
        act_parent_type: torch.Tensor,
    ) -> torch.Tensor:
        """edit.onnx: act_* [1, A] (A >= 0) -> z [1, D]."""
        return self.encode_edit(act_op, act_type, act_value, act_field, act_parent_type)

    def encoder_graph(
        self,
        node_type: torch.Tensor,
        node_value: torch.Tensor,
        node_field: torch.Tensor,
        node_depth: torch.Tensor,
        node_origin: torch.Tensor,
        node_parent: torch.Tensor,
        z: torch.Tensor,
    ) -> torch.Tensor:
        """encoder.onnx: node_* [1, N], z [1, D] -> H [1, N, D]."""
        return self.encode_tree(
            node_type, node_value, node_field, node_depth, node_origin, node_parent, z
        )

    def step_graph(
        self,
        h: torch.Tensor,
        src: torch.Tensor,
        z: torch.Tensor,
        slot_parent: torch.Tensor,
        slot_field: torch.Tensor,
        slot_left: torch.Tensor,
        slot_right: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """step.onnx: (H [1,N,D], src [1,M,D], z [1,D], slot_* [1,S]) -> op_logits [1,4],
        delete_logits [1,N], slot_logits [1,S], label_logits [1,S,L], source_logits [1,S,M]."""
        scores = self.step_scores(h, z, slot_parent, slot_field, slot_left, slot_right)
        content = self.content_vectors(scores.slot_vectors, z)
        return (
            scores.op,
            scores.delete,
            scores.slot,
            self.label_logits(content),
            self.source_logits(content, src),
        )

    # -- training -----------------------------------------------------------------------

    def _encode_part(self, batch: Batch, prefix: str, z: torch.Tensor) -> torch.Tensor:
        """``encode_tree`` of the batch's ``node_*`` or ``src_*`` arrays."""
        return self.encode_tree(
            batch[f"{prefix}_type"],
            batch[f"{prefix}_value"],
            batch[f"{prefix}_field"],
            batch[f"{prefix}_depth"],
            batch[f"{prefix}_origin"],
            batch[f"{prefix}_parent"],
            z,
            valid=batch[f"{prefix}_valid"],
        )

    def forward_batch(self, batch: Batch) -> tuple[StepLogits, torch.Tensor, torch.Tensor]:
        """The padded batch forward (module docstring keys): the step scores, and the
        label (B, L) and source (B, M) logits at each row's gold slot (row 0's slot where
        the row has none; those rows' content is never scored)."""
        z = self.encode_edit(
            batch["act_op"],
            batch["act_type"],
            batch["act_value"],
            batch["act_field"],
            batch["act_parent_type"],
            valid=batch["act_valid"],
        )
        h = self._encode_part(batch, "node", z)
        src = self._encode_part(batch, "src", z)
        scores = self.step_scores(
            h,
            z,
            batch["slot_parent"],
            batch["slot_field"],
            batch["slot_left"],
            batch["slot_right"],
            node_valid=batch["node_valid"],
            slot_valid=batch["slot_valid"],
        )
        slot = batch["target_slot"].clamp(min=0)
        chosen = _gather_rows(scores.slot_vectors, slot[:, None])  # (B, 1, D)
        content = self.content_vectors(chosen, z)
        labels = self.label_logits(content)[:, 0]
        sources = self.source_logits(content, src, batch["src_valid"])[:, 0]
        return scores, labels, sources

    def loss(self, batch: Batch) -> StepOutput:
        """Mean over rows of CE(op) + CE(node | op) + CE(label or source | slot), each over
        the choices the batch's masks allow; ``correct`` counts rows whose masked argmax
        is right at every level."""
        scores, labels, sources = self.forward_batch(batch)
        target_op = batch["target_op"]
        op_logits = scores.op.masked_fill(~batch["op_mask"], MASKED)
        loss = F.cross_entropy(op_logits, target_op, reduction="none")
        correct = op_logits.argmax(-1) == target_op

        def term(logits: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> None:
            nonlocal loss, correct
            used = target >= 0
            logits = logits.masked_fill(~mask, MASKED)
            ce = F.cross_entropy(logits, target.clamp(min=0), reduction="none")
            loss = loss + torch.where(used, ce, torch.zeros_like(ce))
            correct = correct & (~used | (logits.argmax(-1) == target))

        term(scores.delete, batch["delete_mask"], batch["target_node"])
        term(scores.slot, batch["position_mask"], batch["target_slot"])
        term(labels, batch["label_mask"], batch["target_label"])
        term(sources, batch["source_mask"], batch["target_source"])
        return StepOutput(
            loss=loss.mean(),
            correct=correct.sum(),
            total=torch.tensor(len(target_op), device=target_op.device),
        )


def as_batch(arrays: dict[str, Any], device: torch.device | str = "cpu") -> Batch:
    """``treeedit_features.collate_items``'s numpy arrays as tensors on ``device``."""
    return {key: torch.as_tensor(value).to(device) for key, value in arrays.items()}
