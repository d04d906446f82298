"""``copy-span`` / ``copy-token``: next edits written by the span-copying editor.

The editor (Panthaplackel et al. 2021; ``ripple.models.nets.copy_span``, exported by
``ripple.training.copy_export``) rewrites a fragment given the user's recent edits. It
does not choose *where* to edit, so the predictor asks the rule engine for candidate lines
(the places the last edit's change could repeat, best first) and adds the line below the
cursor. For each candidate it cuts the fragment exactly as training did
(``copy_features.make_fragment``), decodes with the merged-ray beam search
(``ripple.models.runtime.copy_decode``) over the two ONNX graphs, and turns the best output
that differs from the fragment into a suggestion: the lines that changed, nothing more.
Suggestions are ranked by the editor's probability of its output.

``OnnxEditor`` is the editor alone (fragment tokens in, token sequences out), used by this
predictor, by ``ripple eval copy`` and by the retrieve-and-edit system.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ripple.models.runtime.copy_decode import (
    DecodeConfig,
    DecodeVocab,
    Hypothesis,
    StepScores,
    beam_decode,
    greedy_decode,
)
from ripple.models.suggest.api import EditContext, Suggestion
from ripple.models.suggest.copy_features import CopyVocab, EditorConfig, make_fragment
from ripple.models.suggest.registry import register, register_model_kind
from ripple.models.suggest.rules import RuleEngine

if TYPE_CHECKING:
    from ripple.models.runtime import OnnxModel, OnnxPart

__all__ = [
    "COPY_KIND",
    "CopyPredictor",
    "OnnxEditor",
    "decode_vocab",
    "load_bundled_editor",
]

COPY_KIND: Final = "copy-editor"
STEP_FILE: Final = "step.onnx"
ENCODER_FILE: Final = "encoder.onnx"
VOCAB_FILE: Final = "vocab.json"
# Bundled editors live in models/weights/editors/NAME: a folder the shipped ensemble does not
# scan (it loads only the immediate subfolders of models/weights), as the editors serve
# their own systems and retrieve-and-edit, not the gated ensemble.
EDITORS_DIR: Final = "editors"
ENCODER_INPUTS: Final = ("input", "input_length")
ENCODER_OUTPUTS: Final = ("memory", "keys", "starts", "ends", "state")
STEP_INPUTS: Final = ("token", "state", "memory", "keys", "starts", "ends", "input_length")
STEP_OUTPUTS: Final = ("state_out", "gen", "start", "end")


def decode_vocab(vocab: CopyVocab) -> DecodeVocab:
    return DecodeVocab.build(
        vocab.tokens,
        bos_id=vocab.bos_id,
        eos_id=vocab.eos_id,
        unk_id=vocab.unk_id,
        blocked=vocab.blocked,
    )


class OnnxEditor:
    """The exported editor: encoder + decoder step graphs, vocabulary and settings."""

    def __init__(self, model: OnnxModel) -> None:
        if model.manifest.kind != COPY_KIND:
            raise ValueError(f"{model.directory}: a {model.manifest.kind} model, not a {COPY_KIND}")
        self.name = model.manifest.name
        self.step_model = model
        self.encoder: OnnxPart = model.part(ENCODER_FILE)
        self.vocab = CopyVocab(list(model.read_json(VOCAB_FILE)))
        self.decode_vocab = decode_vocab(self.vocab)
        config: dict[str, Any] = dict(model.manifest.config)
        self.editor = EditorConfig.from_json(config["editor"])
        net = config["net"]
        self.max_span: int | None = net.get("max_span")
        if len(self.vocab) != int(net["vocab_size"]):
            raise ValueError(
                f"{model.directory}: vocab.json does not match the model's vocabulary size"
            )

    def encode(self, ids: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        return self.encoder.run({"input": ids, "input_length": lengths})

    def _prepare(self, tokens: Sequence[str]) -> tuple[Any, np.ndarray]:
        ids = np.array([self.vocab.ids(tokens) or [self.vocab.pad_id]], dtype=np.int64)
        length = np.array([max(1, len(tokens))], dtype=np.int64)
        enc = self.encode(ids, length)
        cache: dict[int, dict[str, np.ndarray]] = {}

        def step(states: np.ndarray, token_ids: np.ndarray) -> StepScores:
            n = len(token_ids)
            if n not in cache:
                cache[n] = {
                    name: np.repeat(enc[name], n, axis=0)
                    for name in ("memory", "keys", "starts", "ends")
                }
                cache[n]["input_length"] = np.repeat(length, n)
            out = self.step_model.run(
                {
                    "token": token_ids.astype(np.int64),
                    "state": states.astype(np.float32),
                    **cache[n],
                }
            )
            return StepScores(out["state_out"], out["gen"], out["start"], out["end"])

        return step, enc["state"][0]

    def greedy(self, tokens: Sequence[str], max_len: int | None = None) -> Hypothesis:
        step, state0 = self._prepare(tokens)
        limit = max_len if max_len is not None else self.editor.max_output
        return greedy_decode(step, state0, list(tokens), self.decode_vocab, self.max_span, limit)

    def beam(
        self, tokens: Sequence[str], beam_size: int = 20, max_len: int | None = None
    ) -> list[Hypothesis]:
        step, state0 = self._prepare(tokens)
        config = DecodeConfig(
            beam_size=beam_size,
            max_len=max_len if max_len is not None else self.editor.max_output,
            max_span=self.max_span,
        )
        return beam_decode(step, state0, list(tokens), self.decode_vocab, config)


def changed_lines(
    old: Sequence[str], new: Sequence[str]
) -> tuple[int, int, tuple[str, ...]] | None:
    """The smallest line range of ``old`` to replace to get ``new``: (start, end, lines)."""
    if list(old) == list(new):
        return None
    prefix = 0
    while prefix < min(len(old), len(new)) and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while (
        suffix < min(len(old), len(new)) - prefix
        and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]
    ):
        suffix += 1
    return prefix, len(old) - suffix, tuple(new[prefix : len(new) - suffix])


@dataclass
class CopyPredictor:
    """A next-edit predictor around an ``OnnxEditor`` (see the module docstring)."""

    editor: OnnxEditor
    name: str = "copy-span"
    locations: int = 3  # candidate places per request
    beam_size: int = 4

    def __post_init__(self) -> None:
        self._rules = RuleEngine()

    def _candidates(self, ctx: EditContext) -> list[tuple[str, int]]:
        seen: list[tuple[str, int]] = []
        for s in self._rules.suggest(ctx):
            if (s.path, s.start_line) not in seen:
                seen.append((s.path, s.start_line))
        cursor = ctx.cursor
        below = (cursor.path, cursor.line + 1)
        if (
            cursor.path in ctx.files
            and below[1] < len(ctx.files[cursor.path])
            and below not in seen
        ):
            seen.append(below)
        return seen[: self.locations]

    def suggest(self, ctx: EditContext) -> list[Suggestion]:
        out: list[Suggestion] = []
        for path, line in self._candidates(ctx):
            fragment = make_fragment(ctx, path, line, line + 1, self.editor.editor)
            if fragment is None:
                continue
            old_lines = ctx.files[path][fragment.start : fragment.end]
            old_text = "".join(old_lines)
            for hyp in self.editor.beam(fragment.input, self.beam_size):
                text = "".join(hyp.tokens)
                if text == old_text:
                    continue
                change = changed_lines(old_lines, text.splitlines(keepends=True))
                if change is None:
                    continue
                start, end, new_lines = change
                out.append(
                    Suggestion(
                        path,
                        fragment.start + start,
                        fragment.start + end,
                        new_lines,
                        score=math.exp(hyp.logp),
                        explanation=f"rewritten by the {self.name} editor from your recent edits",
                    )
                )
                break
        out.sort(key=lambda s: -s.score)
        return out[:5]


def load_bundled_editor(name: str) -> OnnxEditor:
    from ripple.models.runtime import default_models_dir, load_model

    return OnnxEditor(load_model(default_models_dir() / EDITORS_DIR / name, device="auto"))


def _factory(model: str, name: str) -> Any:
    def make() -> CopyPredictor:
        return CopyPredictor(load_bundled_editor(model), name=name)

    return make


def _from_model(model: OnnxModel) -> CopyPredictor:
    return CopyPredictor(OnnxEditor(model), name=model.manifest.name)


register("copy-span", _factory("copy-span", "copy-span"))
register("copy-token", _factory("copy-token", "copy-token"))
# BENCHMARK.md's seq2seq-copy baseline: the same editor with single-token copying (CopyTok).
register("seq2seq-copy", _factory("copy-token", "seq2seq-copy"))
register_model_kind(COPY_KIND, _from_model)
