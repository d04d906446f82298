"""The rule baselines of BENCHMARK.md, implemented exactly as the page defines them.

They are yardsticks, not products: ``silent`` is the floor every metric is compared
against, and ``repeat-last-edit`` is the simplest system that uses the edit history at
all. The shipped rule engine lives in ``rules.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

from ripple.models.suggest.api import EditContext, Suggestion
from ripple.models.suggest.substitution import smallest_substitution, substitute_in_line

MAX_SUGGESTIONS = 5


class Silent:
    """Never suggests anything."""

    name = "silent"

    def suggest(self, ctx: EditContext) -> list[Suggestion]:
        del ctx
        return []


def search_order(ctx: EditContext) -> Iterator[tuple[str, int]]:
    """``(path, line)`` in BENCHMARK.md's search order.

    The cursor's file on the lines after the cursor line, then its lines up to and
    including the cursor line, then every other workspace file top to bottom, in
    workspace order.
    """
    path, line = ctx.cursor.path, ctx.cursor.line
    n = len(ctx.files.get(path, ()))
    for i in range(line + 1, n):
        yield path, i
    for i in range(min(line + 1, n)):
        yield path, i
    for other, lines in ctx.files.items():
        if other == path:
            continue
        for i in range(len(lines)):
            yield other, i


class RepeatLastEdit:
    """Replays the smallest token substitution of the last edit, one line at a time."""

    name = "repeat-last-edit"

    def suggest(self, ctx: EditContext) -> list[Suggestion]:
        edit = ctx.last_edit
        if edit is None:
            return []
        sub = smallest_substitution("".join(edit.old_lines), "".join(edit.new_lines))
        if sub is None:
            return []
        out: list[Suggestion] = []
        for path, i in search_order(ctx):
            new_line = substitute_in_line(ctx.files[path][i], sub)
            if new_line is None:
                continue
            out.append(Suggestion(path, i, i + 1, (new_line,), explanation="repeat last edit"))
            if len(out) == MAX_SUGGESTIONS:
                break
        return out
