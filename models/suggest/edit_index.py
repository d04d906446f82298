"""``retrieve-edit``: the analogous edit for a fragment like one the user just edited.

Retrieve-and-edit (Hashimoto et al. 2018) over the session's own edits: every live edit is
kept in an index as (before-fragment -> after-fragment), the changed tokens plus a margin
(``copy_features.edit_pair``). A line of an edited file (or of the file at the cursor)
is a candidate when its tokens are close, by bag-of-words cosine over non-blank tokens
(the paper's lexical retriever), to some edit's before-side and it holds a token that
edit removed. For each of the best candidates the span-copying editor (the bundled
``copy-span``; ``ripple.models.suggest.copy_predictor.OnnxEditor``) rewrites the fragment
around it, reading ``fragment <edit> before <to> after`` with the *retrieved* edit, not
merely the latest one; the first beam output that changes the fragment becomes the
suggestion, whose explanation names the edit it follows.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from ripple.models.edits.languages import language_name_for_path
from ripple.models.suggest.api import EditContext, LiveEdit, Suggestion
from ripple.models.suggest.copy_features import (
    EDIT,
    TO,
    EditorConfig,
    edit_pair,
    fragment_tokens,
    window,
)
from ripple.models.suggest.copy_predictor import OnnxEditor, changed_lines, load_bundled_editor
from ripple.models.suggest.registry import register

__all__ = ["EditIndex", "IndexedEdit", "RetrieveEditPredictor"]

MIN_SIMILARITY: Final = 0.3
MAX_LINES: Final = 5000  # lines scanned per file


_WORDS = re.compile(r"\w+|[^\w\s]")


def _words(text: str) -> list[str]:
    """Cheap tokens for scanning every line: words and single punctuation marks."""
    return _WORDS.findall(text)


def _bag(tokens: Sequence[str]) -> Counter[str]:
    return Counter(t for t in tokens if t.strip())


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(c * b[t] for t, c in a.items() if t in b)
    return dot / math.sqrt(sum(c * c for c in a.values()) * sum(c * c for c in b.values()))


@dataclass(frozen=True)
class IndexedEdit:
    edit: LiveEdit
    before: tuple[str, ...]  # changed tokens plus margin, before the edit
    after: tuple[str, ...]
    bag: Counter[str] = field(compare=False)
    removed: frozenset[str]  # words the edit took away
    added: frozenset[str]  # words the edit brought in
    anchors: frozenset[str]  # a candidate line must hold one of these


class EditIndex:
    """The session's edits, searchable by their before-side (newest first on ties)."""

    def __init__(self, edits: Sequence[LiveEdit], config: EditorConfig) -> None:
        self.items: list[IndexedEdit] = []
        for edit in reversed(edits):
            before, after = edit_pair(edit, language_name_for_path(edit.path), config)
            old_words = _bag(_words("".join(edit.old_lines)))
            new_words = _bag(_words("".join(edit.new_lines)))
            removed = frozenset(old_words) - frozenset(new_words)
            if not before or before == after:
                continue  # a pure insertion has no before-side to look alike
            # A candidate must hold a word the edit removed or, for an edit that only
            # added (an argument, say), a name of the before-side it added next to.
            anchors = removed or frozenset(w for w in old_words if w[0].isalpha() or w[0] == "_")
            if not anchors:
                continue
            self.items.append(
                IndexedEdit(
                    edit,
                    tuple(before),
                    tuple(after),
                    old_words,
                    removed,
                    frozenset(new_words) - frozenset(old_words),
                    anchors,
                )
            )

    def __len__(self) -> int:
        return len(self.items)

    def nearest(self, words: Sequence[str]) -> tuple[float, IndexedEdit] | None:
        """The edit whose before-side is most like ``words`` (``_words`` of a line) among
        those with an anchor word in it."""
        bag = _bag(words)
        best: tuple[float, IndexedEdit] | None = None
        for item in self.items:
            if not item.anchors & bag.keys():
                continue
            score = _cosine(bag, item.bag)
            if best is None or score > best[0]:
                best = (score, item)
        return best


@dataclass
class RetrieveEditPredictor:
    """A next-edit predictor: edit index + lexical retrieval + the span-copying editor."""

    editor: OnnxEditor
    name: str = "retrieve-edit"
    locations: int = 3
    beam_size: int = 4
    min_similarity: float = MIN_SIMILARITY

    def candidates(
        self, ctx: EditContext, index: EditIndex
    ) -> list[tuple[float, str, int, IndexedEdit]]:
        """(similarity, path, line, retrieved edit), best first, outside the edited lines."""
        paths = [ctx.cursor.path] if ctx.cursor.path in ctx.files else []
        paths += [
            e.path for e in reversed(ctx.edits) if e.path in ctx.files and e.path not in paths
        ]
        found: list[tuple[float, str, int, IndexedEdit]] = []
        for path in paths:
            # lines the user has just written are the edits themselves, not candidates
            written = {line for e in ctx.edits if e.path == path for line in e.new_lines}
            for line, text in enumerate(ctx.files[path][:MAX_LINES]):
                if not text.strip() or text in written:
                    continue
                hit = index.nearest(_words(text))
                if hit is None or hit[0] < self.min_similarity:
                    continue
                found.append((hit[0], path, line, hit[1]))
        found.sort(key=lambda f: (-f[0], f[1] != ctx.cursor.path, abs(f[2] - ctx.cursor.line)))
        return found[: self.locations]

    def suggest(self, ctx: EditContext) -> list[Suggestion]:
        config = self.editor.editor
        index = EditIndex(ctx.edits, config)
        if not len(index):
            return []
        out: list[Suggestion] = []
        for similarity, path, line, item in self.candidates(ctx, index):
            lines = ctx.files[path]
            lo, hi = window(len(lines), line, line + 1, config.radius)
            tokens = fragment_tokens("".join(lines[lo:hi]), language_name_for_path(path))
            if len(tokens) > config.max_fragment:
                continue
            source = [*tokens, EDIT, *item.before, TO, *item.after][: config.max_input]
            old_lines = lines[lo:hi]
            old_text = "".join(old_lines)
            for hyp in self.editor.beam(source, self.beam_size):
                text = "".join(hyp.tokens)
                if text == old_text:
                    continue
                change = changed_lines(old_lines, text.splitlines(keepends=True))
                if change is None:
                    continue
                start, end, new_lines = change
                if not analogous(old_lines[start:end], new_lines, item):
                    continue
                where = f"{item.edit.path}:{item.edit.start + 1}"
                out.append(
                    Suggestion(
                        path,
                        lo + start,
                        lo + end,
                        new_lines,
                        score=similarity * math.exp(hyp.logp),
                        explanation=f"the same edit as your change at {where}",
                    )
                )
                break
        out.sort(key=lambda s: -s.score)
        return out[:5]


def analogous(old: Sequence[str], new: Sequence[str], item: IndexedEdit) -> bool:
    """Whether rewriting lines ``old`` into ``new`` is the kind of change ``item`` made:
    every word it removes the retrieved edit removed too, and every word it brings in the
    retrieved edit brought in (or the lines already held)."""
    before, after = _bag(_words("".join(old))), _bag(_words("".join(new)))
    removed = frozenset(before) - frozenset(after)
    added = frozenset(after) - frozenset(before)
    if not removed and not added:
        return False
    return removed <= item.removed and added <= item.added | frozenset(before)


def _make() -> RetrieveEditPredictor:
    editor = load_bundled_editor("copy-span")
    # One context edit: the retrieved one.
    editor.editor = replace(editor.editor, context_edits=1)
    return RetrieveEditPredictor(editor)


register("retrieve-edit", _make)
