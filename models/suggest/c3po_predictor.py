"""``c3po``: the rest of a half-done edit, completed by C3PO (Brody et al. 2020).

C3PO predicts how a fragment P changes given the edits made around it (its context C); it
does not choose P. The predictor proposes candidate fragments and keeps the completions
the model is most sure of:

* **Candidates** are the statement-sized fragments (``completion.fragment_nodes``, the
  shape training used for P) on the lines the rule engine points at (where the last change
  could repeat, in any edited file), then those of the cursor's file from
  ``CONTEXT_LINES`` lines above the cursor to twice that below, the ones below first,
  nearest first (on the replay benchmark's training repositories the next hunk is below
  the cursor far more often than above). Fragments the user already changed since the
  last snapshot are not candidates: they are the context.
* **Context** is built by the training code itself (``completion.parse_changes`` on the
  file's settled snapshot and its current text, ``completion.edit_context`` with the
  scope the model was trained with), so a live request and a training example are one
  representation (train/serve parity).
* **Decoding** runs on P's literal-normalised tree, as in training; the predicted
  path-operations are then applied to P's own tree (same node ids), so literals the
  operations copy keep their real values, and ``completion.render_fragment`` writes P'
  back with P's spacing. The suggestion is the lines that changed.
* **Explanation**: each suggestion names the context edit the decoder attended to most
  over its steps ("because you changed 'a' to 'b' at line 12").

Suggestions are ranked by the probability of the whole predicted script (EOS included);
``min_probability`` keeps the predictor silent below a threshold. With ``analogous`` (the
default) a completion is kept only when it goes the way the user's edits went: every token
it removes was removed by those edits, and every token it adds was added by them. The model
was trained on changed fragments only, so it proposes some change for any fragment; on the
replay benchmark's requests/click commits this filter cut the steps it answered from 311
to 140 and raised its exact@1 from 1 to 3 steps of 426.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from ripple.models.suggest.api import EditContext, Suggestion
from ripple.models.suggest.copy_predictor import changed_lines
from ripple.models.suggest.registry import register, register_model_kind
from ripple.models.suggest.rules import RuleEngine
from ripple.models.suggest.substitution import TOKEN

if TYPE_CHECKING:
    import tree_sitter

    from ripple.models.edits.completion import Change, ContextPath, ParsedChange
    from ripple.models.edits.tree import Node
    from ripple.models.runtime import OnnxModel
    from ripple.models.runtime.c3po_decode import C3POModel

__all__ = ["BUNDLED_DIR", "C3POPredictor", "Candidate", "load_bundled"]

# The bundled model: models/weights/completion/c3po (a folder the shipped ensemble does not
# scan; the c3po system serves it on its own).
BUNDLED_DIR: Final = ("completion", "c3po")


@dataclass(frozen=True)
class Candidate:
    """A fragment P of ``path``'s current text that the model may complete."""

    path: str
    node: tree_sitter.Node
    old_line: int  # P's first line in the settled snapshot (for the context's distances)


@dataclass
class _FileState:
    old: bytes  # the settled snapshot
    source: bytes  # the current text
    root: tree_sitter.Node
    parsed: list[ParsedChange]  # the changes old -> current, in order


@dataclass
class C3POPredictor:
    """A next-edit predictor around an exported C3PO model (module docstring)."""

    model: C3POModel
    name: str = "c3po"
    max_candidates: int = 16
    min_probability: float = 0.0
    scope: str = "commit"
    analogous: bool = True
    _rules: RuleEngine = field(default_factory=RuleEngine, init=False, repr=False)

    def __post_init__(self) -> None:
        scope = self.model.metadata().get("scope")  # the context scope it was trained with
        if isinstance(scope, str):
            self.scope = scope

    # -- the workspace as the dataset builder sees a commit ----------------------------

    def _file_state(self, ctx: EditContext, path: str) -> _FileState | None:
        from ripple.models.edits.completion import MAX_FILE_BYTES, parse_changes
        from ripple.models.edits.languages import language_name_for_path, make_parser

        if language_name_for_path(path) != "python" or path not in ctx.files:
            return None
        old = "".join(ctx.base.get(path, ())).encode("utf-8")
        new = ctx.text(path).encode("utf-8")
        if len(old) > MAX_FILE_BYTES or len(new) > MAX_FILE_BYTES:
            return None
        parser = make_parser("python")
        old_root, new_root = parser.parse(old).root_node, parser.parse(new).root_node
        parsed = parse_changes(old, new, old_root, new_root) if old != new else []
        return _FileState(old, new, new_root, parsed)

    @staticmethod
    def _old_line(state: _FileState, byte: int) -> int:
        """The snapshot line of an unchanged byte of the current text."""
        shift = 0
        for item in state.parsed:
            change = item.change
            if change.new_end <= byte:
                shift += (change.end - change.start) - (change.new_end - change.new_start)
        return state.old.count(b"\n", 0, max(0, byte + shift))

    def candidates(self, ctx: EditContext, states: dict[str, _FileState]) -> list[Candidate]:
        """Fragments to try, best first (module docstring)."""
        from ripple.models.edits.completion import CONTEXT_LINES, fragment_nodes

        wanted: list[tuple[str, int, int]] = []  # (path, first line, last line)
        for s in self._rules.suggest(ctx):
            wanted.append((s.path, s.start_line, s.start_line))
        cursor = ctx.cursor
        if cursor.path in states:
            wanted.append(
                (cursor.path, max(0, cursor.line - CONTEXT_LINES), cursor.line + 2 * CONTEXT_LINES)
            )
        out: list[Candidate] = []
        seen: set[tuple[str, int, int]] = set()
        for path, first, last in wanted:
            state = states.get(path)
            if state is None:
                continue
            nodes = fragment_nodes(state.root, first, last)
            if path == cursor.path and last > first:
                # Below the cursor first, nearest first: edits mostly go on down the file.
                nodes.sort(key=lambda n: (n.start_point[0] < cursor.line,
                                          abs(n.start_point[0] - cursor.line)))  # fmt: skip
            spans = [(p.change.new_start, p.change.new_end) for p in state.parsed]
            for node in nodes:
                key = (path, node.start_byte, node.end_byte)
                if key in seen or any(
                    (start < node.end_byte and end > node.start_byte)
                    or (start == end and node.start_byte <= start <= node.end_byte)
                    for start, end in spans
                ):
                    continue
                seen.add(key)
                out.append(Candidate(path, node, self._old_line(state, node.start_byte)))
                if len(out) >= self.max_candidates:
                    return out
        return out

    # -- one request ---------------------------------------------------------------------

    def suggest(self, ctx: EditContext) -> list[Suggestion]:
        edited = [p for p in dict.fromkeys(e.path for e in ctx.edits)]
        states: dict[str, _FileState] = {}
        for path in edited:
            state = self._file_state(ctx, path)
            if state is not None and state.parsed:
                states[path] = state
        if not states:
            return []
        removed, added = _token_delta(
            "".join(line for e in ctx.edits for line in e.old_lines),
            "".join(line for e in ctx.edits for line in e.new_lines),
        )
        out: list[Suggestion] = []
        for candidate in self.candidates(ctx, states):
            suggestion = self._complete(ctx, candidate, states)
            if suggestion is None or suggestion.score < self.min_probability:
                continue
            if self.analogous:
                lines = ctx.files[suggestion.path][suggestion.start_line : suggestion.end_line]
                gone, new = _token_delta("".join(lines), "".join(suggestion.new_lines))
                if not gone <= removed or not new <= added:
                    continue
            out.append(suggestion)
        out.sort(key=lambda s: -s.score)
        return out[:5]

    def _fragment(
        self, candidate: Candidate, states: dict[str, _FileState]
    ) -> tuple[Node, Change, list[ParsedChange]] | None:
        """P's tree (its real text), P's place as the builder's ``Change`` (old lines) and
        the other files' changes (context as the dataset builder passes it); None for a
        fragment over ``MAX_FRAGMENT_NODES``."""
        from ripple.models.edits.completion import MAX_FRAGMENT_NODES, Change
        from ripple.models.edits.tree import from_tree_sitter

        state = states[candidate.path]
        node = candidate.node
        if node.end_byte - node.start_byte > 60 * MAX_FRAGMENT_NODES:
            return None
        before = from_tree_sitter(node, state.source)
        if before.size > MAX_FRAGMENT_NODES:
            return None
        rows = node.end_point[0] - node.start_point[0]
        target = Change(
            node.start_byte, node.end_byte, node.start_byte, node.end_byte,
            candidate.old_line, node.start_point[0], candidate.old_line + rows,
        )  # fmt: skip
        others = [  # as the dataset builder passes the commit's other files
            p
            for path, s in states.items()
            if path != candidate.path
            for p in s.parsed
            if p.before is not None
        ]
        return before, target, others

    @staticmethod
    def _suggestion(
        ctx: EditContext, candidate: Candidate, rendered: str, score: float, explanation: str
    ) -> Suggestion | None:
        """P's lines with P' (``rendered``) in P's place, as the smallest line change."""
        node = candidate.node
        lines = ctx.files[candidate.path]  # the current text, as lines
        first, last = node.start_point[0], node.end_point[0]
        if last >= len(lines):
            return None
        head = lines[first].encode("utf-8")[: node.start_point[1]].decode("utf-8", "replace")
        tail = lines[last].encode("utf-8")[node.end_point[1] :].decode("utf-8", "replace")
        new_lines = (head + rendered + tail).splitlines(keepends=True)
        change = changed_lines(lines[first : last + 1], new_lines)
        if change is None:
            return None
        start, end, replacement = change
        return Suggestion(
            candidate.path, first + start, first + end, replacement,
            score=score, explanation=explanation,
        )  # fmt: skip

    def _complete(
        self, ctx: EditContext, candidate: Candidate, states: dict[str, _FileState]
    ) -> Suggestion | None:
        from ripple.models.edits.completion import (
            edit_context,
            normalise_literals,
            render_fragment,
        )
        from ripple.models.edits.paths import (
            AugmentedTree,
            PathOperation,
            apply_operations,
            enumerate_paths,
        )

        fragment = self._fragment(candidate, states)
        if fragment is None:
            return None
        before, target, others = fragment
        state = states[candidate.path]
        context, text = edit_context(target, state.parsed, scope=self.scope, other_files=others)
        if not context:
            return None
        paths = enumerate_paths(AugmentedTree(normalise_literals(before)), self.model.child_types)
        if not paths or len(paths) > self.model.max_paths:
            return None
        prediction = self.model.decode(paths, context, text)
        if not prediction.operations:
            return None
        operations = [
            PathOperation(kind, paths[i].source, paths[i].target)
            for kind, i in prediction.operations
        ]
        try:
            edited = apply_operations(AugmentedTree(before), operations)
        except ValueError:
            return None
        return self._suggestion(
            ctx,
            candidate,
            render_fragment(before, edited, state.source),
            math.exp(prediction.score),
            self._explain(prediction.attention, context, candidate.path, states),
        )

    def _explain(
        self,
        attention: Sequence[np.ndarray],
        context: Sequence[ContextPath],
        path: str,
        states: dict[str, _FileState],
    ) -> str:
        """"because you changed X at line N": the context edit attended to most."""
        weights = [w for w in attention if len(w) == len(context)]
        if not weights or not context:
            return "completes your recent edits (C3PO)"
        best = context[int(np.argmax(np.sum(weights, axis=0)))]
        where = f"line {best.line + 1}"
        for other, state in states.items():
            if other != path and any(
                best is p
                for item in state.parsed
                if item.before is not None
                for p in item.context_paths()
            ):
                where = f"{other}:{best.line + 1}"
                break
        return f"because you {best.text} at {where}"


def _token_delta(old: str, new: str) -> tuple[set[str], set[str]]:
    """The tokens ``old`` has more of than ``new``, and those ``new`` has more of."""
    a, b = Counter(TOKEN.findall(old)), Counter(TOKEN.findall(new))
    return set(a - b), set(b - a)


def load_bundled(root: Path | None = None) -> C3POPredictor:
    """The ``c3po`` system on the bundled model; ``ModelError`` when it is missing."""
    from ripple.models.runtime import default_models_dir
    from ripple.models.runtime.c3po_decode import C3POModel

    folder = (root if root is not None else default_models_dir()).joinpath(*BUNDLED_DIR)
    return C3POPredictor(C3POModel.load(folder, device="auto"))


def _from_model(model: OnnxModel) -> C3POPredictor:
    from ripple.models.runtime.c3po_decode import C3POModel

    return C3POPredictor(C3POModel(model), name=model.manifest.name)


register("c3po", load_bundled)
register_model_kind("c3po", _from_model)
