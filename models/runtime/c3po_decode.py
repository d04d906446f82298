"""Greedy decoding of an exported C3PO model (Brody et al. 2020, §5.3) with onnxruntime.

A C3PO model folder (``ripple.training.c3po_export``) holds two graphs, batch size 1:

    encoder.onnx   one example's feeds (``c3po_features.encode_input``) ->
                   z_op [1, K, H], op_valid [1, K], z_c [1, M', H], h0, c0, start [1, H]
    step.onnx      (previous, h, c, z_c, z_op, op_valid) -> logits [1, K] over
                   ``[PAD, EOS] + MOV(n) + UPD(n) + INS(n)`` (PAD and invalid operations
                   at -1e9), h_out, c_out, attention [1, M']; the manifest's main graph
    vocab.json, child_types.json, config.json (the net's sizes, the feature settings)

``C3POModel.decode`` runs the search in numpy: at each step the best operation not chosen
before, at most ``max_steps`` (21) steps, EOS stops; the chosen operation's ``Z_op`` vector
is the next step's input. The caller enumerates P's paths with the model's child types
(``enumerate_paths(AugmentedTree(P), model.child_types)``) so that labels index the same
list the model was trained on.

Size guard: a fragment with more than ``max_paths`` valid paths (default 4096; C3PO's
fragments of at most 50 nodes have ~500) raises ``TooManyPaths`` rather than being
truncated: dropping paths would silently drop the operations they carry, and the cost of
the encoder grows with the number of paths. A fragment without paths decodes to EOS alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ripple.models.edits.paths import EOS_LABEL, Operation
from ripple.models.runtime.manifest import ModelError
from ripple.models.runtime.session import load_model
from ripple.models.suggest.c3po_features import (
    MAX_LEN,
    MAX_SUBTOKENS,
    MAX_TEXT,
    PATH_KEYS,
    C3POVocab,
    ContextLike,
    PathLike,
    context_attention,
    encode_input,
    label_operation,
)

if TYPE_CHECKING:
    from ripple.models.runtime.session import OnnxModel, OnnxPart

__all__ = [
    "C3PO_KIND",
    "CHILD_TYPES_FILE",
    "CONFIG_FILE",
    "DEFAULT_MAX_PATHS",
    "ENCODER_FILE",
    "ENCODER_OUTPUTS",
    "MASKED",
    "STEP_FILE",
    "STEP_INPUTS",
    "STEP_OUTPUTS",
    "VOCAB_FILE",
    "C3POModel",
    "Prediction",
    "TooManyPaths",
    "encoder_inputs",
]

C3PO_KIND: Final = "c3po"
STEP_FILE: Final = "step.onnx"
ENCODER_FILE: Final = "encoder.onnx"
VOCAB_FILE: Final = "vocab.json"
CHILD_TYPES_FILE: Final = "child_types.json"
CONFIG_FILE: Final = "config.json"
ENCODER_OUTPUTS: Final = ("z_op", "op_valid", "z_c", "h0", "c0", "start")
STEP_INPUTS: Final = ("previous", "h", "c", "z_c", "z_op", "op_valid")
STEP_OUTPUTS: Final = ("logits", "h_out", "c_out", "attention")
DEFAULT_MAX_PATHS: Final = 4096
MASKED: Final = -1e9  # the graphs' masked logit (ripple.models.nets.c3po.MASKED)


def encoder_inputs(context_mode: str) -> tuple[str, ...]:
    """The encoder graph's input names for a context mode (``encode_input``'s keys)."""
    names = [f"path_{k}" for k in PATH_KEYS] + ["path_target_del"]
    if context_mode == "paths":
        names += [f"context_{k}" for k in PATH_KEYS] + ["context_after"]
    elif context_mode == "text":
        names.append("context_text")
    return tuple(names)


class TooManyPaths(ValueError):
    """P has more valid paths than the model's ``max_paths`` (module docstring)."""


@dataclass(frozen=True)
class Prediction:
    """A greedy decoding: ``labels`` (EOS last unless ``max_steps`` ran out); per operation
    (labels other than EOS) the operation and the index of its path in the list given;
    per step the chosen label's log probability among the labels still allowed, and the
    attention over the context (``c3po_features.context_attention``: per context path in
    the order given, per context token, or empty)."""

    labels: list[int]
    operations: list[tuple[Operation, int]]
    scores: list[float]
    attention: list[np.ndarray] = field(repr=False)

    @property
    def score(self) -> float:
        """The log probability of the whole sequence (sum over steps)."""
        return float(sum(self.scores))


def _log_softmax_at(logits: np.ndarray, index: int) -> float:
    top = float(logits.max())
    return float(logits[index] - top - np.log(np.exp(logits - top).sum()))


class C3POModel:
    """An exported C3PO model: its two graphs, vocabulary, child types and settings."""

    def __init__(self, model: OnnxModel, max_paths: int = DEFAULT_MAX_PATHS) -> None:
        if model.manifest.kind != C3PO_KIND:
            raise ModelError(
                f"a {model.manifest.kind!r} model, not a {C3PO_KIND!r} one", model.directory
            )
        self.name = model.manifest.name
        self.directory = model.directory
        self.step_model = model
        config = model.read_json(CONFIG_FILE)
        try:
            net = config["net"]
            self.context_mode: str = net["context_mode"]
            self.max_steps: int = int(net["max_steps"])
            features = config.get("features", {})
            self.max_len = int(features.get("max_len", MAX_LEN))
            self.max_subtokens = int(features.get("max_subtokens", MAX_SUBTOKENS))
            self.max_text = int(features.get("max_text", MAX_TEXT))
            self.vocab = C3POVocab.from_json(model.read_json(VOCAB_FILE))
            child_types = model.read_json(CHILD_TYPES_FILE)
            self.child_types: dict[str, frozenset[str]] = {
                str(parent): frozenset(map(str, children))
                for parent, children in child_types.items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"not a C3PO model's settings ({exc})", model.directory) from None
        if self.context_mode not in ("paths", "text", "none"):
            raise ModelError(f"unknown context mode {self.context_mode!r}", model.directory)
        self.encoder: OnnxPart = model.part(ENCODER_FILE)
        missing = set(encoder_inputs(self.context_mode)) - set(self.encoder.inputs)
        if missing or set(self.encoder.outputs) != set(ENCODER_OUTPUTS):
            raise ModelError(
                f"{ENCODER_FILE} is not a {self.context_mode!r} C3PO encoder", model.directory
            )
        if max_paths < 1:
            raise ValueError("max_paths must be at least 1")
        self.max_paths = max_paths

    @classmethod
    def load(
        cls,
        directory: Path,
        device: str = "cpu",
        threads: int | None = None,
        max_paths: int = DEFAULT_MAX_PATHS,
    ) -> C3POModel:
        """Verify and load a model folder; ``ModelError`` if anything is wrong with it."""
        return cls(load_model(Path(directory), device=device, threads=threads), max_paths)

    def decode(
        self,
        paths: Sequence[PathLike],
        context: Sequence[ContextLike] = (),
        context_text: Sequence[str] = (),
        max_steps: int | None = None,
    ) -> Prediction:
        """Greedy decoding for P's ``paths`` given the context edits (module docstring)."""
        if len(paths) > self.max_paths:
            raise TooManyPaths(
                f"{len(paths)} valid paths, more than this model's limit of {self.max_paths}; "
                "choose a smaller fragment"
            )
        if not paths:
            return Prediction([EOS_LABEL], [], [0.0], [])
        feeds = encode_input(
            paths,
            context,
            context_text,
            self.vocab,
            self.context_mode,
            max_len=self.max_len,
            max_subtokens=self.max_subtokens,
            max_text=self.max_text,
        )
        labels, scores, weights = self.decode_feeds(feeds, max_steps)
        text_length = len(feeds.get("context_text", ()))
        operations = [op for label in labels if (op := label_operation(label, len(paths)))]
        attention = [context_attention(w, context, self.context_mode, text_length) for w in weights]
        return Prediction(labels, operations, scores, attention)

    def encode(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The encoder graph's outputs for one example's feeds."""
        return self.encoder.run(feeds)

    def decode_feeds(
        self, feeds: Mapping[str, np.ndarray], max_steps: int | None = None
    ) -> tuple[list[int], list[float], list[np.ndarray]]:
        """Greedy decoding from ``encode_input`` feeds: labels, per-step log probabilities
        and per-step attention over the model's context positions."""
        steps = self.max_steps if max_steps is None else max_steps
        encoded = self.encode(feeds)
        z_op, op_valid, z_c = encoded["z_op"], encoded["op_valid"], encoded["z_c"]
        h, c, previous = encoded["h0"], encoded["c0"], encoded["start"]
        chosen = np.zeros(z_op.shape[1], dtype=bool)
        labels: list[int] = []
        scores: list[float] = []
        attention: list[np.ndarray] = []
        for _ in range(steps):
            out = self.step_model.run(
                {
                    "previous": previous,
                    "h": h,
                    "c": c,
                    "z_c": z_c,
                    "z_op": z_op,
                    "op_valid": op_valid,
                }
            )
            logits = np.where(chosen, np.float32(MASKED), out["logits"][0])
            pick = int(np.argmax(logits))
            labels.append(pick)
            scores.append(_log_softmax_at(logits, pick))
            attention.append(out["attention"][0])
            if pick == EOS_LABEL:
                break
            chosen[pick] = True
            previous = z_op[:, pick]
            h, c = out["h_out"], out["c_out"]
        return labels, scores, attention

    def metadata(self) -> dict[str, Any]:
        return dict(self.step_model.manifest.metadata)
