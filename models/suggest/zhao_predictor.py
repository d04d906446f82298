"""``ia``: the next edit predicted by Zhao et al.'s implicit attention model (IA, §4).

The model reads the file's edit history as :func:`~ripple.models.suggest.zhao_features.
featurize` builds it (the function its training data came from) and predicts the next
token edit: a placeholder edit is appended, the position head gives a distribution over
every place an edit can go (§2, implicit positions), and the content head, given the
chosen position, a distribution over ``DELETE`` and the sub-token vocabulary (§4).

One token edit is rarely a whole change (a rename is a deletion and an insertion), so the
predictor decodes greedily, feeding each predicted edit back in, as §6.2 decodes sub-tokens
"up to the next token boundary": until the model predicts the end of the edit (``<hunk>``,
see ``zhao_features``), or points away from the line, or ``max_steps`` edits. The line with
those edits applied is the suggestion; its score is the probability of the decoded edits,
the end included (the product over steps of P(position) and P(content | position)). Below ``threshold`` the predictor stays silent, and so it does when
the edits have no clean text form (see ``zhao_features``). The few best first edits are
each decoded this way, batched, giving up to ``candidates`` ranked suggestions.

The model runs as ONNX through ``ripple.models.runtime``; the bundled one lives in
``models/weights/zhao-ia`` (``vocab.json`` beside it, the featurizer's settings and the
threshold in its manifest's metadata).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from ripple.models.edits.sequences import DELETE, Edit, ImplicitState
from ripple.models.suggest.api import EditContext, Suggestion
from ripple.models.suggest.registry import register, register_model_kind
from ripple.models.suggest.substitution import smallest_substitution
from ripple.models.suggest.zhao_features import (
    HUNK_END,
    SPECIALS,
    FeatureConfig,
    LineEditor,
    SubtokenVocab,
    UnmappableEdit,
    ZhaoFeatures,
    encode,
    featurize,
)

if TYPE_CHECKING:
    from ripple.models.runtime import OnnxModel

__all__ = [
    "BUNDLED_NAME",
    "DEFAULT_THRESHOLD",
    "IA_KIND",
    "IAConfig",
    "ZhaoPredictor",
    "load_bundled",
]

IA_KIND: Final = "zhao-ia"  # the manifest kind ripple.training.export writes
BUNDLED_NAME: Final = "zhao-ia"  # the folder under models/weights
# Used when a model's manifest names no threshold (the bundled one does: chosen on the
# training repositories' dev replay steps by `ripple train edits --export`).
DEFAULT_THRESHOLD: Final = 0.3
# Content ids that can never become text: <pad>, <S>, <E>, <unk>, <nl>.
_NO_TEXT: Final = tuple(SPECIALS.index(t) for t in ("<pad>", "<S>", "<E>", "<unk>", "<nl>"))


@dataclass(frozen=True)
class IAConfig:
    """How the ``ia`` predictor decodes; ``threshold=None`` takes the model's own."""

    threshold: float | None = None
    candidates: int = 3  # first edits decoded (the most probable position-content pairs)
    positions: int = 4  # positions whose contents are looked at for the first edit
    max_steps: int = 6  # token edits in one suggestion
    # The first edit may not land on the lines the last live edit produced: that edit is
    # done (re-editing it would undo or redo it; the rule engine skips them too), and IA,
    # trained on whole edit sequences where most edits continue the one before, would
    # otherwise keep extending it.
    skip_last_edit: bool = True


@dataclass
class _Ray:
    """One suggestion being decoded: its edits so far, their probability, its line."""

    edits: list[Edit]
    explicit: list[int]
    log_p: float
    editor: LineEditor
    state: ImplicitState
    done: bool = False


class ZhaoPredictor:
    """The ``ia`` system: IA's next token edits, as a suggestion on one line."""

    name = "ia"

    def __init__(
        self,
        model: OnnxModel,
        vocab: SubtokenVocab,
        features: FeatureConfig | None = None,
        config: IAConfig | None = None,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.model = model
        self.vocab = vocab
        self.features = features or FeatureConfig()
        self.config = config or IAConfig()
        self.threshold = self.config.threshold if self.config.threshold is not None else threshold
        # The end-of-edit piece, when the model was trained with it: a decoded suggestion is
        # complete when the model predicts it (and never starts with it).
        self.end_id = vocab.token_id(HUNK_END) if HUNK_END in vocab.tokens else None
        self.no_text = [*_NO_TEXT, *([self.end_id] if self.end_id is not None else [])]

    @classmethod
    def from_model(cls, model: OnnxModel, config: IAConfig | None = None) -> ZhaoPredictor:
        """The predictor for a loaded real-edit IA model (vocab, settings from its folder)."""
        from ripple.models.runtime import ModelError

        metadata = model.manifest.metadata
        features = metadata.get("features")
        if model.manifest.kind != IA_KIND or not isinstance(features, dict):
            raise ModelError(
                f"{model.manifest.name} is not an IA model trained on real edits "
                "(its manifest has no featurizer settings)",
                model.directory,
            )
        try:
            vocab = SubtokenVocab.from_json(model.read_json("vocab.json"))
        except ValueError as exc:
            raise ModelError(f"bad vocab.json: {exc}", model.directory) from None
        size = model.manifest.config.get("vocab_size")
        if size != len(vocab):
            raise ModelError(
                f"vocab.json has {len(vocab)} pieces but the model has {size}", model.directory
            )
        threshold = metadata.get("threshold", DEFAULT_THRESHOLD)
        if not isinstance(threshold, int | float) or not math.isfinite(threshold):
            raise ModelError("the manifest's threshold is not a number", model.directory)
        return cls(model, vocab, FeatureConfig.from_dict(features), config, float(threshold))

    # ------------------------------------------------------------------ the model

    def _run(
        self,
        base: ZhaoFeatures,
        predicted: Sequence[tuple[Sequence[Edit], Sequence[int]]],
        placeholder: Sequence[int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Position and content probabilities of the next edit, one row per decoding ray.

        Each row is ``base``'s edits, then that ray's ``(edits, explicit positions)``
        predicted so far (all rays equally many), then a placeholder edit at
        ``placeholder[row]``. Returns ``(B, S + T)`` position probabilities (the placeholder
        plays no part in them) and ``(B, vocab)`` content probabilities at the placeholder's
        position.
        """
        prefix = encode(base, self.vocab)
        state = prefix.state
        rows = len(predicted)
        t = len(prefix.edit_position) + len(predicted[0][0]) + 1
        position = np.zeros((rows, t), dtype=np.int64)
        content = np.zeros((rows, t), dtype=np.int64)
        explicit = np.zeros((rows, t), dtype=np.int64)
        for row, (edits, landed) in enumerate(predicted):
            position[row] = [*prefix.edit_position, *(e.position for e in edits), placeholder[row]]
            content[row] = [
                *prefix.edit_content,
                *(self.vocab.content_id(e.content) for e in edits),
                self.vocab.pad_id,
            ]
            explicit[row] = [*prefix.edit_explicit, *landed, 0]
        out = self.model.run(
            {
                "state": np.repeat(state[None], rows, axis=0),
                "state_length": np.full(rows, len(state), dtype=np.int64),
                "edit_position": position,
                "edit_content": content,
                "edit_explicit": explicit,
            }
        )
        return _softmax(out["position_logits"][:, -1]), _softmax(out["content_logits"][:, -1])

    # ------------------------------------------------------------------ decoding

    def ranked(self, ctx: EditContext) -> list[Suggestion]:
        """Every decoded suggestion, best first, with no threshold applied."""
        features = featurize(ctx, self.features)
        if features is None:
            return []
        columns = len(features.tokens) + 2
        end = features.end_index

        def implicit(column: int) -> int:
            # Columns: the state slots (implicit index = slot), then one per edit (§4).
            return column if column < columns else end + 1 + (column - columns)

        nothing: tuple[list[Edit], list[int]] = ([], [])
        position_p, _ = self._run(features, [nothing], [0])
        if self.config.skip_last_edit:
            position_p[0, self._last_edit_columns(ctx, features)] = 0.0
        order = np.argsort(-position_p[0])[: self.config.positions]
        tops = [int(c) for c in order if position_p[0, c] > 0]
        if not tops:
            return []
        placeholders = [implicit(c) for c in tops]
        _, content_p = self._run(features, [nothing] * len(tops), placeholders)
        content_p[:, self.no_text] = 0.0
        pairs = sorted(
            (
                (float(position_p[0, c] * content_p[i, k]), placeholders[i], int(k))
                for i, c in enumerate(tops)
                for k in np.argsort(-content_p[i])[: self.config.candidates]
            ),
            reverse=True,
        )
        rays: list[_Ray] = []
        for p, position, content_id in pairs:
            if len(rays) == self.config.candidates or p <= 0:
                break
            edit = Edit(position, self.vocab.decode_content(content_id))
            ray = self._start(features, edit, math.log(p))
            if ray is not None:
                rays.append(ray)
        for _ in range(self.config.max_steps - 1):
            active = [r for r in rays if not r.done]
            if not active:
                break
            self._extend(features, active, implicit)
        out: dict[tuple[int, int, tuple[str, ...]], Suggestion] = {}
        for ray in rays:
            suggestion = ray.editor.suggestion(
                math.exp(ray.log_p), self._explain(ctx, features, ray)
            )
            if suggestion is None:
                continue
            key = (suggestion.start_line, suggestion.end_line, suggestion.new_lines)
            if key not in out or out[key].score < suggestion.score:
                out[key] = suggestion
        return sorted(out.values(), key=lambda s: -s.score)

    @staticmethod
    def _last_edit_columns(ctx: EditContext, features: ZhaoFeatures) -> list[int]:
        """Columns of the pieces on the lines the last live edit produced."""
        last = ctx.last_edit
        if last is None or last.path != features.path:
            return []
        columns = len(features.tokens) + 2
        out = []
        for index, piece in features.live.items():
            if last.start <= piece.line < last.new_end or last.start <= piece.end_line < last.new_end:
                # Window pieces are their own column; a made piece sits after the state.
                out.append(index if index < columns else columns + index - features.end_index - 1)
        return out

    def _start(self, features: ZhaoFeatures, edit: Edit, log_p: float) -> _Ray | None:
        """A ray from its first edit, or None when that edit has no text form."""
        try:
            editor = LineEditor(features, edit)
            editor.apply(edit)
        except UnmappableEdit:
            return None
        state = ImplicitState(features.tokens)
        for e in features.edits:
            state.apply(e)
        ray = _Ray([], [], log_p, editor, state)
        self._push(ray, edit)
        return ray

    @staticmethod
    def _push(ray: _Ray, edit: Edit) -> None:
        landed = ray.state.to_explicit(edit).position + (0 if edit.is_delete else 1)
        ray.state.apply(edit)
        ray.edits.append(edit)
        ray.explicit.append(landed)

    def _extend(
        self, features: ZhaoFeatures, rays: list[_Ray], implicit: Callable[[int], int]
    ) -> None:
        """One more greedy edit for each ray whose next edit is still on its line."""
        position_p, _ = self._run(features, [(r.edits, r.explicit) for r in rays], [0] * len(rays))
        staying: list[tuple[_Ray, int, float]] = []
        for ray, probs in zip(rays, position_p, strict=True):
            column = int(np.argmax(probs))
            position = implicit(column)
            # An insertion is accepted wherever any edit of the line can go.
            if probs[column] <= 0 or not ray.editor.accepts(Edit(position, "")):
                ray.done = True  # the model moves on to another place: the line is done
                continue
            staying.append((ray, position, float(probs[column])))
        if not staying:
            return
        _, content_p = self._run(
            features, [(r.edits, r.explicit) for r, _, _ in staying], [p for _, p, _ in staying]
        )
        content_p[:, list(_NO_TEXT)] = 0.0
        for (ray, position, p_position), probs in zip(staying, content_p, strict=True):
            k = int(np.argmax(probs))
            if k == self.end_id:
                # The model ends the edit here: the suggestion is complete, and its score
                # includes the probability of ending (the paper scores a whole token, §6.2).
                ray.log_p += math.log(p_position) + math.log(float(probs[k]))
                ray.done = True
                continue
            edit = Edit(position, self.vocab.decode_content(k))
            if probs[k] <= 0 or not ray.editor.accepts(edit):
                ray.done = True
                continue
            try:
                ray.editor.apply(edit)
            except UnmappableEdit:
                ray.done = True
                continue
            ray.log_p += math.log(p_position) + math.log(float(probs[k]))
            self._push(ray, edit)

    def _explain(self, ctx: EditContext, features: ZhaoFeatures, ray: _Ray) -> str:
        """Which of the user's edits the suggestion continues, in a few words."""
        made = {e.content for e in ray.edits if e.content is not DELETE}
        source = features.sources[-1]
        for edit, number in zip(reversed(features.edits), reversed(features.sources), strict=True):
            if edit.content in made:
                source = number
                break
        live = ctx.edits[source]
        sub = smallest_substitution("".join(live.old_lines), "".join(live.new_lines))
        what = f": {sub.old_text.strip()} → {sub.new_text.strip()}" if sub is not None else ""
        return f"IA: continues your edit on line {live.start + 1}{what}"

    def suggest(self, ctx: EditContext) -> list[Suggestion]:
        """The ranked suggestions at or above the threshold (silent below it)."""
        if self.threshold > 1.0:
            return []  # no probability reaches it: skip the model altogether
        return [s for s in self.ranked(ctx) if s.score >= self.threshold]


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; -inf entries (masked positions) get probability 0."""
    top = np.max(logits, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    weights = np.exp(logits - top)
    total = np.sum(weights, axis=-1, keepdims=True)
    return np.asarray(weights / np.where(total > 0, total, 1.0), dtype=np.float64)


def load_bundled(
    models_dir: Path | None = None, device: str = "cpu", config: IAConfig | None = None
) -> ZhaoPredictor:
    """The ``ia`` predictor on the bundled model (``ModelError`` when it is missing or broken)."""
    from ripple.models.runtime import ModelError, default_models_dir, load_model

    folder = (models_dir if models_dir is not None else default_models_dir()) / BUNDLED_NAME
    if not folder.is_dir():
        raise ModelError("the bundled IA model is missing (no model folder)", folder)
    return ZhaoPredictor.from_model(load_model(folder, device=device, threads=1), config)


def _from_loaded(model: OnnxModel) -> ZhaoPredictor:
    return ZhaoPredictor.from_model(model)


register(ZhaoPredictor.name, load_bundled)
register_model_kind(IA_KIND, _from_loaded)
