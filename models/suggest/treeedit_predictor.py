"""``treeedit``: the rest of a half-done edit, made by the structural editor (Yao et al. 2021).

The structural editor edits a fragment P's tree one action at a time (delete a node, add
a node, copy a subtree of P or of the user's edited code, stop), conditioned on the edit
encoder's representation of the edits the user just made. Like ``c3po`` it does not
choose P, so it shares that predictor's candidates (statement-sized fragments where the
rule engine points, then around the cursor, below it first), its reading of the
workspace (``completion.parse_changes`` between the settled snapshot and the current
text) and its analogy filter. What differs:

* **Context**: the user's edits as fragment pairs (``completion.edit_context_edits``,
  the function the dataset builder uses, so a live request and a training example are
  one representation), their gold tree-edit actions read by the edit encoder, and their
  after-trees as sources a SUBTREE action may copy from (``treeedit_train.prepare_parts``).
* **Decoding** (``TreeEditModel.decode``) runs on P's literal-normalised tree; every step
  is masked by the grammar, so the result is a tree the grammar accepts;
  ``treeedit.render`` writes it back with P's own spacing and literals.
* **Explanation** names the nearest edit the user made ("like your edit at line 12").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ripple.models.suggest.api import EditContext, Suggestion
from ripple.models.suggest.c3po_predictor import C3POPredictor, Candidate, _FileState
from ripple.models.suggest.registry import register, register_model_kind

if TYPE_CHECKING:
    from ripple.models.runtime import OnnxModel
    from ripple.models.runtime.treeedit_decode import TreeEditModel

__all__ = ["BUNDLED_DIR", "TreeEditPredictor", "load_bundled"]

BUNDLED_DIR: Final = ("completion", "treeedit")
MAX_STEPS: Final = 40


@dataclass
class TreeEditPredictor(C3POPredictor):
    """A next-edit predictor around an exported structural editor (module docstring)."""

    model: TreeEditModel = field(default=None)  # type: ignore[assignment]
    name: str = "treeedit"

    def _complete(
        self, ctx: EditContext, candidate: Candidate, states: dict[str, _FileState]
    ) -> Suggestion | None:
        from ripple.models.edits.completion import edit_context_edits, normalise_literals
        from ripple.models.edits.grammar import python_grammar
        from ripple.models.edits.treeedit import from_node, render, same_tree
        from ripple.models.suggest.treeedit_context import context_trees, prepare_parts

        fragment = self._fragment(candidate, states)
        if fragment is None:
            return None
        before, target, others = fragment
        state = states[candidate.path]
        pairs = edit_context_edits(target, state.parsed, scope=self.scope, other_files=others)
        grammar = python_grammar()
        context = context_trees(pairs, grammar)
        if not context:
            return None
        try:
            tree = from_node(normalise_literals(before), grammar)
        except ValueError:
            return None
        sources, infos = prepare_parts(tree, context, grammar)
        decoded = self.model.decode(tree, sources, infos, grammar, max_steps=MAX_STEPS)
        if not decoded.stopped or same_tree(decoded.tree, tree):
            return None
        try:
            rendered = render(decoded.tree, before, state.source, grammar)
        except ValueError:
            return None
        return self._suggestion(
            ctx,
            candidate,
            rendered,
            math.exp(decoded.score),
            f"like your edit at line {pairs[0][2] + 1} (structural editor)",
        )


def load_bundled(root: Path | None = None) -> TreeEditPredictor:
    """The ``treeedit`` system on the bundled model; ``ModelError`` when it is missing."""
    from ripple.models.runtime import default_models_dir
    from ripple.models.runtime.treeedit_decode import TreeEditModel

    folder = (root if root is not None else default_models_dir()).joinpath(*BUNDLED_DIR)
    return TreeEditPredictor(model=TreeEditModel.load(folder, device="auto"))


def _from_model(model: OnnxModel) -> TreeEditPredictor:
    from ripple.models.runtime.treeedit_decode import TreeEditModel

    return TreeEditPredictor(model=TreeEditModel(model), name=model.manifest.name)


register("treeedit", load_bundled)
register_model_kind("treeedit", _from_model)
