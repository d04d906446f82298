"""C3PO, contextual code changes via path operations (Brody et al. 2020, §5).

The model points, step by step, at one of the operations that are valid on the fragment P,
while attending to the edits made in its context:

* **Path encoder** (§5.2.1): a node is ``E_type + E_index``; an LSTM reads the path's nodes;
  the ends' values are sums of sub-token embeddings (Eq. 3), or the end node's own
  encoding when it is a non-terminal; ``z = tanh(W_path [h_last; value(v1); value(vl)])``.
  Focus paths and context paths of the whole batch go through it in one call; in
  training the LSTM runs once per distinct path prefix (``prefix_states``: paths from
  one source share their way up, so a batch of 64 examples x ~500 paths needs ~10x fewer
  LSTM steps than running every path, and the CPU packed-sequence backward, which fills a
  full-size gradient per time step, is avoided).
* **Operation encoder** (§5.2.2, Eq. 5): three Linear+ReLU projections of every path
  (MOV, UPD, INS; bias-free, as in the reference code), after a learned EOS vector and a
  zero PAD vector: ``Z_op`` in the label layout ``[PAD, EOS] + MOV(n) + UPD(n) + INS(n)``.
  Masked: PAD, padding paths, UPD unless both ends are terminals, INS into ``<DEL>`` (the
  operations ``paths.apply_operations`` refuses).
* **Context** (§5.2, Eq. 4): ``context_mode="paths"``: old-tree paths, a learned separator,
  new-tree paths, through ``LSTM_C`` -> ``Z_C``; ``"text"``: a learned start vector and
  the embedded context tokens through ``LSTM_C``; ``"none"``: ``Z_C`` is one zero vector,
  so attention always returns ``c_t = 0`` and the pointer reads the decoder state alone.
  The separator / start vector is always there, so ``Z_C`` is never empty.
* **Decoder** (§5.3): an LSTM whose ``h0`` is the elementwise average of ``Z_P`` and
  ``Z_C`` (all vectors of both; ``Z_P`` alone in ``"none"``) and ``c0 = 0`` (reference
  code); its input is a learned start vector, then the ``Z_op`` vector of the operation
  chosen at the previous step (the gold one under teacher forcing). Luong "general"
  attention over ``Z_C`` with query ``h_t`` gives ``c_t``. Pointer logits are
  ``Z_op · W_p · a_t`` with ``a_t = tanh(W_c [c_t; h_t])``: Eq. 6 with the attention
  vector ``c_t`` replaced by Luong's attentional vector, as the reference code does (its
  pointer query is the attention layer's output, which mixes in ``h_t``); with ``c_t``
  alone the pointer could not tell steps apart when the context is small, nor work at
  all without context.

Batch keys (B examples, N paths, M context items, L path nodes, S sub-tokens, T label
steps; ``ripple.training.c3po_train.collate_c3po`` builds them; 0 pads ids):

=============================  ===========  ===============================================
``path_types``                 (B, N, L)    node-type ids (``c3po_features.encode_paths``)
``path_indices``               (B, N, L)    child indices
``path_lengths``               (B, N)       nodes per path; 0 = a padding path
``path_source_values``         (B, N, S)    sub-token ids of the source's value
``path_target_values``         (B, N, S)    sub-token ids of the target's value
``path_source_terminal``       (B, N) bool  the source has a value
``path_target_terminal``       (B, N) bool  the target has a value
``path_target_del``            (B, N) bool  the target is ``<DEL>``
``context_*`` (mode "paths")   (B, M, ...)  the same seven arrays for context paths (no
                                            ``target_del``), old-tree paths first; L and S
                                            as for the focus paths
``context_after``              (B, M) bool  the path is read in the new tree
``context_text`` (mode "text") (B, M)       context token ids
``context_text_lengths``       (B,)         tokens per example
``labels``                     (B, T)       gold labels in the *batch* layout
                                            ``2 + kind * N + path``, EOS = 1, 0 after it
``trie_types``                 (U,)         optional: the distinct prefixes of the real
``trie_indices``               (U,)         paths (focus then context, in ``encode``'s row
``trie_parents``               (U,)         order), ``c3po_train.prefix_trie``; without
``trie_sizes``                 (D,)         them the LSTM reads the padded paths
``trie_rows``                  (K,)
=============================  ===========  ===============================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ripple.models.nets import Batch, EditModel, StepOutput
from ripple.models.suggest.c3po_features import PATH_KEYS

__all__ = ["C3PO", "MASKED", "C3POConfig", "ContextMode", "Encoded", "GreedyResult"]

ContextMode = Literal["paths", "text", "none"]
PAD_LABEL = 0
EOS_LABEL = 1
# Masked logits: far below any real score but finite, so that exported graphs and torch
# agree exactly on them and no -inf reaches a softmax's gradient.
MASKED = -1e9


@dataclass
class C3POConfig:
    """Sizes of the reference code's README: embeddings 64, hidden 128, dropout 0.25."""

    type_vocab: int
    subtoken_vocab: int
    text_vocab: int = 2
    max_child_index: int = 16  # child indices above it share its embedding
    embedding: int = 64
    hidden: int = 128
    dropout: float = 0.25
    context_mode: ContextMode = "paths"
    max_steps: int = 21  # the notes: greedy decoding of at most 21 operations

    def __post_init__(self) -> None:
        if self.context_mode not in ("paths", "text", "none"):
            raise ValueError(f"context_mode must be paths, text or none, not {self.context_mode!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> C3POConfig:
        return cls(**data)


@dataclass
class Encoded:
    """The encoder's output for a batch (K = 2 + 3N operations, M' context positions)."""

    z_p: torch.Tensor  # (B, N, H): the path vectors
    ops: torch.Tensor  # (B, N, 3, H): each path's MOV, UPD, INS vectors
    control: torch.Tensor  # (2, H): PAD (zeros, never chosen) and EOS
    op_valid: torch.Tensor  # (B, K) bool, label layout
    z_c: torch.Tensor  # (B, M', H)
    context_valid: torch.Tensor  # (B, M') bool
    h0: torch.Tensor  # (B, H)
    c0: torch.Tensor  # (B, H)
    start: torch.Tensor  # (B, H): the decoder's first input
    n_paths: torch.Tensor  # (B,) valid paths per example

    def z_op(self) -> torch.Tensor:
        """``Z_op`` (B, K, H) in the label layout ``[PAD, EOS] + MOV(N) + UPD(N) + INS(N)``.

        Training never builds it (``C3PO.point`` scores ``ops`` in place): at 64 examples
        of ~500 paths it is the largest tensor of a step.
        """
        b, n, _, h = self.ops.shape
        flat = self.ops.transpose(1, 2).reshape(b, 3 * n, h)
        return torch.cat([self.control[None].expand(b, 2, h), flat], dim=1)

    def op_vectors(self, labels: torch.Tensor, operations: nn.Linear) -> torch.Tensor:
        """The ``Z_op`` rows of ``labels`` (B, T) (batch layout) -> (B, T, H), projected
        again from their paths' vectors (``operations``: the model's stacked W_MOV, W_UPD,
        W_INS), so that ``ops`` has a single consumer in training."""
        b, n, _, h = self.ops.shape
        kind = torch.div(labels - 2, n, rounding_mode="floor").clamp(min=0)
        path = torch.where(labels >= 2, (labels - 2) % n, torch.zeros_like(labels))
        rows = self.z_p.gather(1, path[:, :, None].expand(-1, -1, h))  # (B, T, H)
        projected = torch.relu(operations(rows)).view(b, -1, 3, h)
        chosen = projected.gather(2, kind[:, :, None, None].expand(-1, -1, 1, h))[:, :, 0]
        control = self.control[labels.clamp(max=1)]
        return torch.where((labels >= 2)[:, :, None], chosen, control)


@dataclass
class GreedyResult:
    """Greedy decoding of one example: labels in the example's own layout
    (``2 + kind * n + path``), ending with EOS unless ``max_steps`` ran out; per step the
    attention weights over the model's context positions (``c3po_features.
    context_attention`` maps them to context items); per step the chosen label's log
    probability among the operations still allowed."""

    labels: list[int]
    attention: list[torch.Tensor]
    scores: list[float]


def _lstm_cell(
    x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, lstm: nn.LSTM
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of a 1-layer ``lstm`` written out (exports plainly, shares its weights)."""
    w_ih, w_hh, b_ih, b_hh = lstm.all_weights[0]
    gates = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class C3PO(EditModel):
    """The pointer network of the module docstring."""

    def __init__(self, config: C3POConfig) -> None:
        super().__init__()
        self.config = config
        e, h = config.embedding, config.hidden
        self.type_embed = nn.Embedding(config.type_vocab, e, padding_idx=0)
        self.index_embed = nn.Embedding(config.max_child_index + 1, e)
        self.subtoken_embed = nn.Embedding(config.subtoken_vocab, e, padding_idx=0)
        self.path_lstm = nn.LSTM(e, h, batch_first=True)
        self.path_out = nn.Linear(h + 2 * e, h)  # W_path
        self.operations = nn.Linear(h, 3 * h, bias=False)  # W_MOV, W_UPD, W_INS stacked
        self.eos = nn.Parameter(torch.empty(h))
        if config.context_mode == "paths":
            self.separator = nn.Parameter(torch.empty(h))
            self.context_lstm = nn.LSTM(h, h, batch_first=True)
        elif config.context_mode == "text":
            self.text_embed = nn.Embedding(config.text_vocab, e, padding_idx=0)
            self.text_start = nn.Parameter(torch.empty(e))
            self.context_lstm = nn.LSTM(e, h, batch_first=True)
        self.start = nn.Parameter(torch.empty(h))
        self.decoder = nn.LSTM(h, h, batch_first=True)
        self.attention = nn.Linear(h, h, bias=False)  # W_a (Luong "general")
        self.combine = nn.Linear(2 * h, h)  # W_c: a_t = tanh(W_c [c_t; h_t])
        self.pointer = nn.Linear(h, h, bias=False)  # W_p (Eq. 6)
        self.drop = nn.Dropout(config.dropout)
        for vector in (self.eos, self.start, getattr(self, "separator", None)):
            if vector is not None:
                nn.init.uniform_(vector, -0.1, 0.1)
        if config.context_mode == "text":
            nn.init.uniform_(self.text_start, -0.1, 0.1)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- encoder ------------------------------------------------------------------------

    def prefix_states(
        self,
        types: torch.Tensor,  # (U,) the last node of each distinct path prefix
        indices: torch.Tensor,  # (U,)
        parents: torch.Tensor,  # (U,) the prefix one node shorter, within its depth
        sizes: list[int],  # distinct prefixes per depth; U = sum(sizes)
    ) -> torch.Tensor:
        """LSTM_path states of every distinct path prefix (U, H), depth by depth.

        Paths share prefixes (every path from one source shares its way up), so running
        the LSTM once per distinct prefix (a trie, ``c3po_train.prefix_trie``) does a
        fraction of the work of running it over each path; the numbers are the LSTM's.
        """
        w_ih, w_hh, b_ih, b_hh = self.path_lstm.all_weights[0]
        x = self.type_embed(types) + self.index_embed(indices)
        gates_in = F.linear(x, w_ih, b_ih)  # (U, 4H), one product for every depth
        states: list[torch.Tensor] = []
        h = c = None
        for gates, parent in zip(gates_in.split(sizes), parents.split(sizes), strict=True):
            if h is None or c is None:
                gates = gates + b_hh
                c_prev = torch.zeros_like(gates[:, : self.config.hidden])
            else:
                gates = gates + F.linear(h.index_select(0, parent), w_hh, b_hh)
                c_prev = c.index_select(0, parent)
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            states.append(h)
        if not states:
            return gates_in.new_zeros(0, self.config.hidden)
        return torch.cat(states)

    def path_vectors(
        self,
        types: torch.Tensor,  # (K, L)
        indices: torch.Tensor,  # (K, L)
        lengths: torch.Tensor,  # (K,) >= 1
        source_values: torch.Tensor,  # (K, S)
        target_values: torch.Tensor,  # (K, S)
        source_terminal: torch.Tensor,  # (K,) bool
        target_terminal: torch.Tensor,  # (K,) bool
        h_last: torch.Tensor | None = None,  # (K, H) LSTM_path's last states, if known
    ) -> torch.Tensor:
        """``encode_path`` of §5.2.1 for K paths -> (K, H).

        Without ``h_last`` the LSTM runs over the padded paths and each path's state is
        read at its last node (the LSTM is causal, so padding never reaches it); this is
        the exported form. Training passes the states of ``prefix_states`` instead.
        """
        h = self.config.hidden
        last = (lengths - 1).clamp(min=0)[:, None]
        if h_last is None:
            nodes = self.type_embed(types) + self.index_embed(indices)  # (K, L, E)
            out, _ = self.path_lstm(nodes)  # (K, L, H)
            h_last = out.gather(1, last[:, :, None].expand(-1, 1, h)).squeeze(1)
        first_node = self.type_embed(types[:, 0]) + self.index_embed(indices[:, 0])  # (K, E)
        last_node = self.type_embed(types.gather(1, last)[:, 0]) + self.index_embed(
            indices.gather(1, last)[:, 0]
        )
        source = torch.where(
            source_terminal[:, None], self.subtoken_embed(source_values).sum(1), first_node
        )
        target = torch.where(
            target_terminal[:, None], self.subtoken_embed(target_values).sum(1), last_node
        )
        return self.drop(torch.tanh(self.path_out(torch.cat([h_last, source, target], -1))))

    def operation_vectors(
        self,
        z_p: torch.Tensor,  # (B, N, H)
        path_valid: torch.Tensor,  # (B, N) bool
        source_terminal: torch.Tensor,  # (B, N) bool
        target_terminal: torch.Tensor,  # (B, N) bool
        target_del: torch.Tensor,  # (B, N) bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """§5.2.2: each path's MOV, UPD, INS vectors (B, N, 3, H), and which of the labels
        ``[PAD, EOS] + MOV(N) + UPD(N) + INS(N)`` are valid (B, 2 + 3N).

        No dropout here (the reference code drops the projections too): their input is
        the path vector, already dropped, and on CPU the mask over (B, N, 3H) costs more
        than the rest of the projection.
        """
        b, n, h = z_p.shape
        ops = torch.relu(self.operations(z_p)).view(b, n, 3, h)
        never = torch.zeros_like(path_valid[:, 0])
        eos_only = torch.stack([never, ~never], dim=1)  # PAD never, EOS always
        valid = torch.cat(
            [
                eos_only,
                path_valid,
                path_valid & source_terminal & target_terminal,
                path_valid & ~target_del,
            ],
            dim=1,
        )
        return ops, valid

    def context_states(
        self,
        z_ctx: torch.Tensor,  # (B, M, H) context path vectors, old-tree paths first
        valid: torch.Tensor,  # (B, M) bool
        after: torch.Tensor,  # (B, M) bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 4: old-tree paths, the separator, new-tree paths through LSTM_C.

        Returns ``Z_C`` (B, M + 1, H) and its valid positions (B, M + 1). The separator
        goes in by a gather over ``[separator; paths]``, so no index ever points into an
        empty tensor (an example without context is the separator alone).
        """
        b, m, h = z_ctx.shape
        before = (valid & ~after).sum(1)[:, None]  # (B, 1)
        count = valid.sum(1)[:, None]
        seq = torch.cat([self.separator[None, None].expand(b, 1, h), z_ctx], dim=1)
        pos = torch.arange(m + 1, device=z_ctx.device)[None]  # (1, M + 1)
        source = torch.where(pos < before, pos + 1, torch.where(pos == before, 0, pos))
        seq = seq.gather(1, source[:, :, None].expand(b, m + 1, h))
        z_c, _ = self.context_lstm(seq)
        return z_c, pos <= count

    def text_states(
        self, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The textual context: a learned start vector, then the tokens, through LSTM_C."""
        b, m = tokens.shape
        e = self.config.embedding
        seq = torch.cat([self.text_start[None, None].expand(b, 1, e), self.text_embed(tokens)], 1)
        z_c, _ = self.context_lstm(seq)
        pos = torch.arange(m + 1, device=tokens.device)[None]
        return z_c, pos <= lengths[:, None]

    def encode(self, batch: Batch, dense: bool = False) -> Encoded:
        """Encode a batch (module docstring keys).

        Focus and context paths are encoded together. With the ``trie_*`` keys of
        ``c3po_train.collate_c3po`` the path LSTM runs over distinct prefixes; without
        them over padded paths. ``dense``: the batch is one example whose paths and
        context items are all real (the exported encoder), so no rows are selected out.
        """
        mode = self.config.context_mode
        b, n, _ = batch["path_types"].shape
        h = self.config.hidden
        path_valid = batch["path_lengths"] > 0
        m = batch["context_types"].shape[1] if mode == "paths" else 0
        parts = ["path"] + (["context"] if mode == "paths" else [])
        flat = {
            key: torch.cat([batch[f"{p}_{key}"].flatten(0, 1) for p in parts], 0)
            for key in PATH_KEYS
        }
        if dense:  # one example: no reshape by traced sizes (they do not export well)
            z = self.path_vectors(**flat)
            z_p, z_ctx = z[:n][None], z[n:][None]
        else:
            rows = (flat["lengths"] > 0).nonzero().squeeze(1)
            h_last = None
            if "trie_types" in batch:
                states = self.prefix_states(
                    batch["trie_types"],
                    batch["trie_indices"],
                    batch["trie_parents"],
                    batch["trie_sizes"].tolist(),
                )
                h_last = states.index_select(0, batch["trie_rows"])
            z_rows = (
                self.path_vectors(**{k: v[rows] for k, v in flat.items()}, h_last=h_last)
                if len(rows)
                else torch.zeros(0, h, device=rows.device)
            )
            z = z_rows.new_zeros(len(flat["lengths"]), h).index_copy(0, rows, z_rows)
            z_p = z[: b * n].reshape(b, n, h)
            z_ctx = z[b * n :].reshape(b, m, h)
        ops, op_valid = self.operation_vectors(
            z_p,
            path_valid,
            batch["path_source_terminal"],
            batch["path_target_terminal"],
            batch["path_target_del"],
        )
        if mode == "paths":
            z_c, context_valid = self.context_states(
                z_ctx, batch["context_lengths"] > 0, batch["context_after"]
            )
        elif mode == "text":
            z_c, context_valid = self.text_states(
                batch["context_text"], batch["context_text_lengths"]
            )
        else:
            z_c = z_p.new_zeros(b, 1, h)
            context_valid = torch.ones_like(path_valid[:, :1])
        # h0: the elementwise average of Z_P and Z_C (§5.3; reference code: their union).
        total = (z_p * path_valid[:, :, None]).sum(1)
        count = path_valid.sum(1, keepdim=True)
        if mode != "none":
            total = total + (z_c * context_valid[:, :, None]).sum(1)
            count = count + context_valid.sum(1, keepdim=True)
        h0 = total / count.clamp(min=1).to(total.dtype)
        return Encoded(
            z_p=z_p,
            ops=ops,
            control=torch.stack([torch.zeros_like(self.eos), self.eos]),
            op_valid=op_valid,
            z_c=z_c,
            context_valid=context_valid,
            h0=h0,
            c0=torch.zeros_like(h0),
            start=self.start[None].expand(b, h),
            n_paths=path_valid.sum(1),
        )

    # -- decoder ------------------------------------------------------------------------

    def attend(
        self, query: torch.Tensor, z_c: torch.Tensor, context_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Luong general attention: query (B, T, H) -> c_t (B, T, H), weights (B, T, M')."""
        scores = torch.bmm(self.attention(query), z_c.transpose(1, 2))
        scores = scores.masked_fill(~context_valid[:, None, :], MASKED)
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights, z_c), weights

    def query(self, h: torch.Tensor, c_t: torch.Tensor) -> torch.Tensor:
        """The pointer's query ``W_p a_t``, ``a_t = tanh(W_c [c_t; h_t])`` (B, T, H)."""
        return self.pointer(self.drop(torch.tanh(self.combine(torch.cat([c_t, h], -1)))))

    def point(self, h: torch.Tensor, c_t: torch.Tensor, enc: Encoded) -> torch.Tensor:
        """Eq. 6 with the attentional vector (module docstring): logits (B, T, K), scored
        against ``enc.ops`` in place (``Encoded.z_op``)."""
        q = self.query(h, c_t)  # (B, T, H)
        b, t, _ = q.shape
        n, h_size = enc.ops.shape[1], enc.ops.shape[3]
        control = torch.matmul(q, enc.control.t())  # (B, T, 2)
        ops = torch.bmm(q, enc.ops.reshape(b, n * 3, h_size).transpose(1, 2))  # path-major
        ops = ops.view(b, t, n, 3).transpose(2, 3).reshape(b, t, 3 * n)
        logits = torch.cat([control, ops], dim=-1)
        return logits.masked_fill(~enc.op_valid[:, None, :], MASKED)

    def step(
        self,
        previous: torch.Tensor,  # (B, H) the last chosen operation's vector (or start)
        h: torch.Tensor,  # (B, H)
        c: torch.Tensor,  # (B, H)
        z_c: torch.Tensor,  # (B, M', H)
        context_valid: torch.Tensor,  # (B, M')
        z_op: torch.Tensor,  # (B, K, H)
        op_valid: torch.Tensor,  # (B, K)
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoder step (the exported graph): logits (B, K), h, c, attention (B, M')."""
        h, c = _lstm_cell(previous, h, c, self.decoder)
        c_t, weights = self.attend(h[:, None], z_c, context_valid)
        q = self.query(h[:, None], c_t)  # (B, 1, H)
        logits = torch.bmm(q, z_op.transpose(1, 2))[:, 0]
        return logits.masked_fill(~op_valid, MASKED), h, c, weights[:, 0]

    def teacher_forced_logits(self, batch: Batch) -> torch.Tensor:
        """Logits (B, T, K) of every gold step, fed the gold previous operations."""
        enc = self.encode(batch)
        labels = batch["labels"]  # (B, T)
        inputs = torch.cat(
            [enc.start[:, None], enc.op_vectors(labels[:, :-1], self.operations)], dim=1
        )
        states, _ = self.decoder(inputs, (enc.h0[None].contiguous(), enc.c0[None].contiguous()))
        c_t, _ = self.attend(states, enc.z_c, enc.context_valid)
        return self.point(states, c_t, enc)

    def loss(self, batch: Batch) -> StepOutput:
        """Mean cross entropy over gold steps; ``correct`` counts examples whose whole
        label sequence is the argmax under teacher forcing (an upper bound on greedy exact
        match: greedy feeds back its own choices); ``total`` counts examples."""
        labels = batch["labels"]
        logits = self.teacher_forced_logits(batch)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=PAD_LABEL
        )
        gold = labels != PAD_LABEL
        right = (logits.argmax(-1) == labels) | ~gold
        correct = (right.all(1) & gold.any(1)).sum()
        return StepOutput(loss, correct, torch.tensor(labels.shape[0], device=labels.device))

    @torch.no_grad()
    def greedy(self, batch: Batch, max_steps: int | None = None) -> list[GreedyResult]:
        """Greedy decoding (the notes): the best allowed operation at each step, never one
        chosen before, until EOS or ``max_steps`` (default the config's) steps."""
        was_training = self.training
        self.eval()
        enc = self.encode(batch)
        z_op = enc.z_op()
        steps = self.config.max_steps if max_steps is None else max_steps
        b, k, _ = z_op.shape
        n_batch = batch["path_types"].shape[1]
        chosen = torch.zeros(b, k, dtype=torch.bool, device=z_op.device)
        done = torch.zeros(b, dtype=torch.bool, device=z_op.device)
        h, c, previous = enc.h0, enc.c0, enc.start
        results = [GreedyResult([], [], []) for _ in range(b)]
        counts = enc.context_valid.sum(1).tolist()
        n_paths = enc.n_paths.tolist()
        for _ in range(steps):
            if bool(done.all()):
                break
            logits, h, c, weights = self.step(
                previous, h, c, enc.z_c, enc.context_valid, z_op, enc.op_valid
            )
            logits = logits.masked_fill(chosen, MASKED)
            pick = logits.argmax(-1)  # (B,)
            logp = torch.log_softmax(logits, -1).gather(1, pick[:, None])[:, 0]
            for i in range(b):
                if done[i]:
                    continue
                label = int(pick[i])
                if label > EOS_LABEL:  # batch layout -> the example's own
                    kind, path = divmod(label - 2, n_batch)
                    label = 2 + kind * n_paths[i] + path
                results[i].labels.append(label)
                results[i].attention.append(weights[i, : counts[i]].clone())
                results[i].scores.append(float(logp[i]))
            chosen[torch.arange(b), pick] = True
            done |= pick == EOS_LABEL
            previous = z_op[torch.arange(b), pick]
        self.train(was_training)
        return results
