"""The rule-based ``ripple`` engine: repeat what the user just did, where it applies.

Until learned predictors exist, this is what ships. It reads the recent live edits as
*edit patterns* and proposes the same pattern at other places:

- **token substitution** (a renamed identifier, a changed call, an added argument): the
  smallest token change of an edit (see ``substitution.py``), applied to every occurrence
  in a line, with consecutive matching lines merged into one multi-line suggestion
  (a real hunk covers all the changed lines of a block, so a one-line answer would be
  wrong for the second line of two);
- **line-paired substitutions**: a multi-line edit that changed each line the same way
  (re-indented block, renamed attribute on several lines) yields one substitution per
  line;
- **repeated deletion**: a deleted block of lines is suggested for deletion where the
  same block appears again;
- **repeated insertion**: lines inserted after an anchor line are suggested after the
  other copies of that anchor.

Every candidate carries a confidence; candidates below ``RuleConfig.min_score`` are
dropped, because a product that guesses wrong often is worse than a silent one. Where a
candidate lies counts: edits usually move forward through a file, so places below the
cursor come first, then other files, then places above the cursor.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ripple.models.suggest.api import EditContext, Lines, LiveEdit, Suggestion
from ripple.models.suggest.substitution import (
    TokenSubstitution,
    line_tokens,
    may_contain,
    smallest_substitution,
)


@dataclass(frozen=True)
class RuleConfig:
    """Knobs of the engine, tuned on training repositories only (never on validation)."""

    max_suggestions: int = 5
    # How many recent edits propose patterns; older edits are weaker evidence.
    history: int = 3
    # Confidence gate: candidates scoring below it are not shown.
    min_score: float = 0.3
    # A pattern matching more lines than this is too generic to be a deliberate change.
    max_matches: int = 40
    # Anchors shorter than this (stripped) are too common to place an insertion after.
    min_anchor_chars: int = 12


# Where a candidate lies relative to the cursor, as a multiplier of its confidence.
_BELOW = 1.0
_OTHER_FILE_AFTER = 0.8
_OTHER_FILE_BEFORE = 0.5
_ABOVE = 0.4


@dataclass(frozen=True)
class _Candidate:
    path: str
    start: int
    end: int
    new_lines: Lines
    score: float
    order: tuple[int, int, int]
    explanation: str


def _is_word(token: str) -> bool:
    return token[:1].isalpha() or token[:1] == "_"


_UNIQUE_LINE_STARTS = ("import ", "from ", "def ", "async def ", "class ")


def _substitution_strength(sub: TokenSubstitution, edit: LiveEdit) -> float:
    """How deliberate a substitution looks, in [0, 1].

    A change that involves a name (rename, changed call, keyword argument) is a strong
    pattern; one that only swaps punctuation or a number is mostly coincidence when it
    matches elsewhere. An insertion (``old`` is only the widened context, kept in
    ``new``) is weaker, and none at all on an import or a definition line: adding a
    name to an import list or a parameter to a signature is not repeated elsewhere.
    """
    words = [t for t in (*sub.old, *sub.new) if _is_word(t)]
    if not words:
        strength = 0.2
    elif any(len(w) >= 3 for w in words):
        strength = 1.0
    else:
        strength = 0.5
    if "\n" in sub.new_text:
        strength *= 0.5
    insertion = all(t in sub.new for t in sub.old) and len(sub.new) > len(sub.old)
    if insertion:
        first = edit.old_lines[0].lstrip() if edit.old_lines else ""
        if first.startswith(_UNIQUE_LINE_STARTS):
            return 0.0
        strength *= 0.6
    return strength


_CALL_ANCHOR = 1.5
_CALLEE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def _callees(edit: LiveEdit) -> set[str]:
    """Names called in the lines the user edited (``fetch`` in ``return fetch(url)``)."""
    return {name for name in _CALLEE.findall("".join(edit.old_lines)) if len(name) >= 3}


def _line_body(line: str) -> tuple[str, str]:
    body = line.rstrip("\r\n")
    return body, line[len(body) :]


def substitute_all(line: str, sub: TokenSubstitution) -> str | None:
    """``line`` with every non-overlapping match of ``sub.old`` replaced, or ``None``."""
    body, ending = _line_body(line)
    if not may_contain(body, sub.old):
        return None
    tokens = line_tokens(body)
    k = len(sub.old)
    pieces: list[str] = []
    last = 0
    i = 0
    while i <= len(tokens) - k:
        if all(tokens[i + j].text == sub.old[j] for j in range(k)):
            pieces.append(body[last : tokens[i].start])
            pieces.append(sub.new_text)
            last = tokens[i + k - 1].end
            i += k
        else:
            i += 1
    if not pieces:
        return None
    pieces.append(body[last:])
    new_body = "".join(pieces).rstrip()
    if new_body == body.rstrip():
        return None
    return new_body + (ending or "\n")


def _edit_substitutions(edit: LiveEdit) -> list[TokenSubstitution]:
    """The substitutions an edit stands for: the whole hunk's, else line by line."""
    whole = smallest_substitution("".join(edit.old_lines), "".join(edit.new_lines))
    if whole is not None:
        return [whole]
    if len(edit.old_lines) != len(edit.new_lines) or len(edit.old_lines) < 2:
        return []
    subs: list[TokenSubstitution] = []
    for old, new in zip(edit.old_lines, edit.new_lines, strict=True):
        if old.strip() == new.strip():
            continue
        sub = smallest_substitution(old, new)
        if sub is None:
            return []  # lines changed in unrelated ways: not one pattern
        if sub not in subs:
            subs.append(sub)
    return subs if len(subs) <= 2 else []


class _Places:
    """Lines of the workspace in the engine's search order, with a position weight."""

    def __init__(self, ctx: EditContext) -> None:
        self.ctx = ctx
        paths = list(ctx.files)
        self.cursor_file = ctx.cursor.path
        self.file_index = {p: i for i, p in enumerate(paths)}
        self._texts: dict[str, tuple[str, list[int]]] = {}

    def weight_and_order(self, path: str, line: int) -> tuple[float, tuple[int, int, int]]:
        """Position weight (below the cursor is best) and a sort key for ties."""
        cur = self.ctx.cursor
        if path == self.cursor_file:
            if line >= cur.line:  # the cursor's own line is where the user looks next
                return _BELOW, (0, 0, line)
            return _ABOVE, (3, 0, line)
        here = self.file_index.get(self.cursor_file, -1)
        index = self.file_index.get(path, 0)
        if index > here:
            return _OTHER_FILE_AFTER, (1, index, line)
        return _OTHER_FILE_BEFORE, (2, index, line)

    def all_lines(self) -> Iterator[tuple[str, int, str]]:
        for path, lines in self.ctx.files.items():
            for i, line in enumerate(lines):
                yield path, i, line

    def lines_containing(self, needle: str) -> Iterator[tuple[str, int, str]]:
        """The lines that contain ``needle``, in ``all_lines`` order, found by ``str.find``.

        A pattern is tried only where its rarest-looking token occurs, so a request costs
        a few C-speed searches per file instead of a Python call per line.
        """
        for path, lines in self.ctx.files.items():
            text, starts = self._joined(path, lines)
            pos = text.find(needle)
            while pos != -1:
                i = bisect.bisect_right(starts, pos) - 1
                yield path, i, lines[i]
                if i + 1 >= len(starts):
                    break
                pos = text.find(needle, starts[i + 1])

    def _joined(self, path: str, lines: Lines) -> tuple[str, list[int]]:
        cached = self._texts.get(path)
        if cached is None:
            starts = list(itertools.accumulate((len(line) for line in lines), initial=0))[:-1]
            cached = self._texts[path] = ("".join(lines), starts)
        return cached


def _just_edited(ctx: EditContext, path: str, line: int) -> bool:
    """True for lines the last edit produced (re-suggesting them would undo or redo it)."""
    edit = ctx.last_edit
    return edit is not None and edit.path == path and edit.start <= line < edit.new_end


class RuleEngine:
    """The rule-based next-edit system (``rules``), the first member of the shipped ensemble."""

    name = "rules"

    def __init__(self, config: RuleConfig | None = None) -> None:
        self.config = config or RuleConfig()

    def suggest(self, ctx: EditContext) -> list[Suggestion]:
        if not ctx.edits:
            return []
        places = _Places(ctx)
        candidates: list[_Candidate] = []
        candidates += self._substitutions(ctx, places)
        candidates += self._repeated_deletions(ctx, places)
        candidates += self._repeated_insertions(ctx, places)
        best: dict[tuple[str, int, int], _Candidate] = {}
        for cand in candidates:
            key = (cand.path, cand.start, cand.end)
            if cand.score < self.config.min_score:
                continue
            if key not in best or (cand.score, -_order_key(cand)) > (
                best[key].score,
                -_order_key(best[key]),
            ):
                best[key] = cand
        ranked = sorted(best.values(), key=lambda c: (-c.score, c.order))
        return [
            Suggestion(c.path, c.start, c.end, c.new_lines, c.score, c.explanation)
            for c in ranked[: self.config.max_suggestions]
        ]

    # ------------------------------------------------------------ token substitution

    def _patterns(self, ctx: EditContext) -> list[tuple[TokenSubstitution, float, LiveEdit]]:
        """Substitutions of the recent edits with their strength and source, latest first."""
        recent = ctx.edits[-self.config.history :][::-1]
        found: dict[TokenSubstitution, tuple[float, LiveEdit]] = {}
        repeats: dict[TokenSubstitution, int] = {}
        for age, edit in enumerate(recent):
            for sub in _edit_substitutions(edit):
                repeats[sub] = repeats.get(sub, 0) + 1
                recency = 1.0 if age == 0 else 0.6 / age
                found.setdefault(sub, (_substitution_strength(sub, edit) * recency, edit))
        # A pattern the user applied more than once is deliberate.
        return [
            (sub, min(1.0, s * (1.5 if repeats[sub] > 1 else 1.0)), edit)
            for sub, (s, edit) in found.items()
        ]

    def _substitutions(self, ctx: EditContext, places: _Places) -> list[_Candidate]:
        out: list[_Candidate] = []
        for sub, strength, source in self._patterns(ctx):
            matches: list[tuple[str, int, Lines]] = []
            for path, i, line in places.lines_containing(max(sub.old, key=len)):
                new_line = substitute_all(line, sub)
                if new_line is not None and not _just_edited(ctx, path, i):
                    # A substitution whose new text spans lines yields several lines.
                    matches.append((path, i, tuple(new_line.splitlines(keepends=True))))
                    if len(matches) > self.config.max_matches:
                        break
            if not matches or len(matches) > self.config.max_matches:
                continue
            # Fewer places make each one likelier to be the intended next edit.
            spread = 1.0 if len(matches) <= 5 else 0.8
            callees = _callees(source)
            for path, start, end, new_lines in _merge_runs(matches):
                weight, order = places.weight_and_order(path, start)
                # The same call as in the user's edit ("same call shape") anchors the match.
                old_text = "".join(ctx.files[path][start:end])
                anchor = _CALL_ANCHOR if any(f"{c}(" in old_text for c in callees) else 1.0
                explanation = (
                    f"repeats your edit at {source.path}:{source.start + 1}: "
                    f"{sub.old_text.strip()!r} -> {sub.new_text.strip()!r}"
                )
                out.append(
                    _Candidate(
                        path, start, end, new_lines,
                        min(1.0, strength * anchor) * weight * spread, order, explanation,
                    )
                )
        return out

    # ------------------------------------------------------------ repeated line edits

    def _repeated_deletions(self, ctx: EditContext, places: _Places) -> list[_Candidate]:
        edit = ctx.last_edit
        if edit is None or edit.new_lines or not edit.old_lines:
            return []
        block = [line.strip() for line in edit.old_lines]
        if sum(len(s) for s in block) < self.config.min_anchor_chars:
            return []
        out: list[_Candidate] = []
        for path, lines in ctx.files.items():
            stripped = [line.strip() for line in lines]
            for i in range(len(lines) - len(block) + 1):
                if stripped[i : i + len(block)] == block:
                    weight, order = places.weight_and_order(path, i)
                    out.append(
                        _Candidate(path, i, i + len(block), (), 0.7 * weight, order, f"deletes these lines again, as at {edit.path}:{edit.start + 1}")
                    )
        return out if len(out) <= self.config.max_matches else []

    def _repeated_insertions(self, ctx: EditContext, places: _Places) -> list[_Candidate]:
        edit = ctx.last_edit
        if edit is None or edit.old_lines or not edit.new_lines or edit.start == 0:
            return []
        before = ctx.snapshots(edit.path)[-2] if ctx.edits_in(edit.path) else ()
        if edit.start - 1 >= len(before):
            return []
        anchor_line = before[edit.start - 1]
        anchor = anchor_line.strip()
        if len(anchor) < self.config.min_anchor_chars:
            return []
        inserted = [line.strip() for line in edit.new_lines]
        indent = _indent(anchor_line)
        out: list[_Candidate] = []
        for path, lines in ctx.files.items():
            for i, line in enumerate(lines):
                if line.strip() != anchor or (path == edit.path and i == edit.start - 1):
                    continue
                following = [s.strip() for s in lines[i + 1 : i + 1 + len(inserted)]]
                if following == inserted:
                    continue  # already there
                shift = _indent(line)
                new_lines = tuple(_reindent(s, indent, shift) for s in edit.new_lines)
                weight, order = places.weight_and_order(path, i + 1)
                out.append(
                    _Candidate(
                        path, i + 1, i + 1, new_lines, 0.6 * weight, order,
                        f"inserts these lines again, as after {edit.path}:{edit.start}",
                    )
                )
        return out if len(out) <= self.config.max_matches else []


def _order_key(c: _Candidate) -> int:
    return c.order[0] * 1_000_000 + c.order[2]


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _reindent(line: str, old: str, new: str) -> str:
    """``line`` moved from under an anchor indented ``old`` to one indented ``new``."""
    if old == new or not line.strip():
        return line
    if line.startswith(old):
        return new + line[len(old) :]
    return line


def _merge_runs(
    matches: list[tuple[str, int, Lines]],
) -> Iterator[tuple[str, int, int, Lines]]:
    """Consecutive matched lines of one file as one block ``(path, start, end, new_lines)``."""
    run: list[str] = []
    run_path, run_start, run_end = "", -1, -1
    for path, i, new_lines in matches:
        if run and path == run_path and i == run_end:
            run.extend(new_lines)
            run_end += 1
            continue
        if run:
            yield run_path, run_start, run_end, tuple(run)
        run, run_path, run_start, run_end = list(new_lines), path, i, i + 1
    if run:
        yield run_path, run_start, run_end, tuple(run)
