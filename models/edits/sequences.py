"""Explicit and implicit edit sequences over token states (Zhao et al. 2019, §2).

A state is a sequence of tokens; an edit ``e(t) = (p(t), c(t))`` is a position and a content
``c(t) ∈ {DELETE} ∪ V``. One edit inserts or deletes exactly one token. The two forms
(§2, "Implicit vs. Explicit Data Representation", Figure 2):

* **Explicit**: every state ``s(0) ... s(T)`` is kept; ``p(t)`` indexes ``s(t-1)``.
* **Implicit**: only ``s(0)`` is kept; tokens get stable indices, the t-th edit's inserted
  token getting index ``M + t``, and ``p(t)`` is such a stable index.

Positions follow Figure 2 exactly: the state is framed by the start and end symbols ``<S>``
and ``<E>``, and ``<S>`` is index 0. So

* the m-th token of a state (0-based list index ``m``) has explicit position ``m + 1``;
* an insertion at the very start of the file comes "after ``<S>``": position 0. No -1 or
  other special case is needed, and a model pointing at ``<S>`` means "insert first";
* in the implicit form the initial tokens are ``0 = <S>``, ``1..n`` (the n tokens), and
  ``M = n + 1 = <E>``; the t-th edit (1-based) owns index ``M + t``. An insertion's position is
  the index of the token it comes after; a DELETE's position is the index of the token it
  removes (§2: "if c(t) is a DELETE symbol, p is the index of the token ... to be deleted").
  A DELETE edit owns its index ``M + t`` too but creates no token, so that index is never
  a valid position: indices stay aligned with edit numbers, as the model's encoder (§4,
  Appendix D.1) has one column per initial token and one per edit.

``<S>`` and ``<E>`` are never stored in a state (the states here are exactly the snapshots'
tokens); ``with_sentinels`` adds them for a model's input. ``<E>`` can be neither deleted
nor inserted after: text at the end is inserted after the last token.

Between two snapshots the edits come from a token diff (``difflib.SequenceMatcher``,
``autojunk=False`` so frequent tokens such as ``(`` are never ignored), applied one token at
a time from left to right (§5). For a ``replace`` block the old tokens are deleted first,
then the new ones inserted: the paper does not say, but delete-then-insert keeps every
intermediate state free of old and new text side by side, and each insertion then comes
after a token that survives (the token before the block, or the previously inserted one).
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = [
    "DELETE",
    "END",
    "START",
    "Content",
    "Edit",
    "ExplicitEditSequence",
    "ImplicitEditSequence",
    "ImplicitState",
    "apply_explicit",
    "explicit_from_snapshots",
    "implicit_from_snapshots",
    "replay_explicit",
    "replay_implicit",
    "to_explicit",
    "to_implicit",
    "token_edits",
    "with_sentinels",
]

START: Final = "<S>"
END: Final = "<E>"
# Explicit and implicit index of <S>: "insert after <S>" is "insert at the start".
_START_INDEX: Final = 0


class _Delete(enum.Enum):
    """The DELETE content symbol (§2: ``c(t) ∈ {DELETE} ∪ V``), apart from every token."""

    DELETE = "DELETE"

    def __repr__(self) -> str:
        return "DELETE"


DELETE: Final = _Delete.DELETE
Content: TypeAlias = str | _Delete


@dataclass(frozen=True, slots=True)
class Edit:
    """One edit ``e(t) = (p(t), c(t))`` (§2, "Notation").

    ``content`` is the inserted token, or ``DELETE``. What ``position`` indexes depends on
    the form: a state with ``<S>`` at 0 (explicit) or the stable indices (implicit).
    """

    position: int
    content: Content

    @property
    def is_delete(self) -> bool:
        return self.content is DELETE


@dataclass(frozen=True, slots=True)
class ExplicitEditSequence:
    """The explicit form (§2, Figure 2a): every state and the edits between them.

    ``states[t]`` is ``s(t)`` (without ``<S>``/``<E>``), ``edits[t - 1]`` turns ``states[t - 1]``
    into ``states[t]``. ``snapshot_steps[k]`` is the number of edits after which the k-th
    snapshot is reached (0 for the first), so ``states[snapshot_steps[k]]`` is snapshot k.
    """

    states: tuple[tuple[str, ...], ...]
    edits: tuple[Edit, ...]
    snapshot_steps: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ImplicitEditSequence:
    """The implicit form (§2, Figure 2b): the initial state and edits on stable indices.

    ``snapshot_steps`` is as in ``ExplicitEditSequence``.
    """

    initial: tuple[str, ...]
    edits: tuple[Edit, ...]
    snapshot_steps: tuple[int, ...]

    @property
    def end_index(self) -> int:
        """``M``: the index of ``<E>``; the t-th edit (1-based) owns index ``M + t``."""
        return len(self.initial) + 1


def with_sentinels(state: Sequence[str]) -> tuple[str, ...]:
    """``(<S>, *state, <E>)``: the state as Figure 2 draws it, explicit positions = indices."""
    return (START, *state, END)


def token_edits(before: Sequence[str], after: Sequence[str]) -> list[Edit]:
    """Single-token explicit edits turning ``before`` into ``after``, left to right (§5).

    Each edit's position indexes the state produced by the edits before it (``<S>`` = 0).
    A ``replace`` block is deleted first, then inserted (see the module docstring).
    """
    edits: list[Edit] = []
    # shift = (length of the working state) - (length of ``before``) so far, so the block
    # that starts at before[i1] starts at list slot i1 + shift of the working state.
    shift = 0
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        slot = i1 + shift
        if tag in ("delete", "replace"):
            # Deleting left to right: the next token to delete slides into the same slot,
            # whose explicit position is slot + 1 (<S> is 0).
            edits.extend(Edit(slot + 1, DELETE) for _ in range(i2 - i1))
        if tag in ("insert", "replace"):
            # The k-th new token goes into slot + k, i.e. after the token at explicit
            # position slot + k: the token before the block for k = 0, then the (k-1)-th.
            edits.extend(Edit(slot + k, after[j1 + k]) for k in range(j2 - j1))
        shift += (j2 - j1) - (i2 - i1)
    return edits


def apply_explicit(state: Sequence[str], edit: Edit) -> list[str]:
    """``s(t)`` from ``s(t-1)`` and an explicit edit (§2); raises ValueError if invalid."""
    tokens = list(state)
    if edit.content is DELETE:
        # Positions 1..n are the tokens; 0 (<S>) and n + 1 (<E>) cannot be deleted.
        if not 1 <= edit.position <= len(tokens):
            raise ValueError(f"cannot delete position {edit.position} of {len(tokens)} tokens")
        del tokens[edit.position - 1]
    else:
        # After <S> (0) ... after the last token (n); never after <E>.
        if not _START_INDEX <= edit.position <= len(tokens):
            raise ValueError(
                f"cannot insert after position {edit.position} of {len(tokens)} tokens"
            )
        tokens.insert(edit.position, edit.content)
    return tokens


def explicit_from_snapshots(snapshots: Sequence[Sequence[str]]) -> ExplicitEditSequence:
    """The explicit form of a list of token snapshots (at least one)."""
    if not snapshots:
        raise ValueError("an edit sequence needs at least one snapshot")
    states: list[tuple[str, ...]] = [tuple(snapshots[0])]
    edits: list[Edit] = []
    steps = [0]
    for after in snapshots[1:]:
        for edit in token_edits(states[-1], after):
            edits.append(edit)
            states.append(tuple(apply_explicit(states[-1], edit)))
        steps.append(len(edits))
    return ExplicitEditSequence(tuple(states), tuple(edits), tuple(steps))


def replay_explicit(sequence: ExplicitEditSequence) -> list[tuple[str, ...]]:
    """Every state ``s(0) ... s(T)`` recomputed from ``s(0)`` and the edits alone."""
    states = [sequence.states[0]]
    for edit in sequence.edits:
        states.append(tuple(apply_explicit(states[-1], edit)))
    return states


class ImplicitState:
    """A state with the implicit index of each token (§2): the implicit form, live.

    This is what the server keeps per document: it turns each new snapshot into implicit
    edits (``advance``) and can replay given edits (``apply``). Locating an index is a linear
    scan, O(state length) per edit, which is fine at the scale of one file's history.
    """

    def __init__(self, initial: Sequence[str]) -> None:
        self.tokens: list[str] = list(initial)
        # Stable index of each token: the initial tokens are 1..n (<S> is 0, <E> is n + 1).
        self.indices: list[int] = list(range(1, len(self.tokens) + 1))
        self.end_index = len(self.tokens) + 1
        self.edit_count = 0

    def _slot(self, index: int) -> int:
        """The list slot of the live token with stable index ``index``."""
        try:
            return self.indices.index(index)
        except ValueError:
            raise ValueError(f"index {index} is not a live token") from None

    def to_implicit(self, edit: Edit) -> Edit:
        """The implicit edit for an explicit edit on the current state (nothing changes)."""
        lowest = 1 if edit.content is DELETE else _START_INDEX
        if not lowest <= edit.position <= len(self.tokens):
            raise ValueError(f"explicit position {edit.position} out of range")
        if edit.content is DELETE:
            return Edit(self.indices[edit.position - 1], DELETE)
        after = self.indices[edit.position - 1] if edit.position > 0 else _START_INDEX
        return Edit(after, edit.content)

    def to_explicit(self, edit: Edit) -> Edit:
        """The explicit edit for an implicit edit on the current state (nothing changes)."""
        if edit.content is DELETE:
            return Edit(self._slot(edit.position) + 1, DELETE)
        if edit.position == _START_INDEX:
            return Edit(_START_INDEX, edit.content)
        return Edit(self._slot(edit.position) + 1, edit.content)

    def apply(self, edit: Edit) -> None:
        """Apply the next implicit edit ``e(t)``; an insertion's token gets index ``M + t``."""
        if edit.position == self.end_index:
            raise ValueError("<E> can be neither deleted nor inserted after")
        explicit = self.to_explicit(edit)
        self.edit_count += 1
        if edit.content is DELETE:
            del self.tokens[explicit.position - 1]
            del self.indices[explicit.position - 1]
        else:
            self.tokens.insert(explicit.position, edit.content)
            self.indices.insert(explicit.position, self.end_index + self.edit_count)

    def advance(self, snapshot: Sequence[str]) -> list[Edit]:
        """Move to a new snapshot; return the implicit edits that got there (token diff)."""
        edits: list[Edit] = []
        for explicit in token_edits(self.tokens, snapshot):
            implicit = self.to_implicit(explicit)
            self.apply(implicit)
            edits.append(implicit)
        return edits


def implicit_from_snapshots(snapshots: Sequence[Sequence[str]]) -> ImplicitEditSequence:
    """The implicit form of a list of token snapshots (at least one)."""
    if not snapshots:
        raise ValueError("an edit sequence needs at least one snapshot")
    state = ImplicitState(snapshots[0])
    edits: list[Edit] = []
    steps = [0]
    for snapshot in snapshots[1:]:
        edits.extend(state.advance(snapshot))
        steps.append(len(edits))
    return ImplicitEditSequence(tuple(snapshots[0]), tuple(edits), tuple(steps))


def replay_implicit(sequence: ImplicitEditSequence) -> list[tuple[str, ...]]:
    """Every state ``s(0) ... s(T)`` recomputed from the initial state and implicit edits."""
    state = ImplicitState(sequence.initial)
    states = [tuple(state.tokens)]
    for edit in sequence.edits:
        state.apply(edit)
        states.append(tuple(state.tokens))
    return states


def to_implicit(sequence: ExplicitEditSequence) -> ImplicitEditSequence:
    """The same edits on stable indices (Figure 2a -> 2b)."""
    state = ImplicitState(sequence.states[0])
    edits: list[Edit] = []
    for edit in sequence.edits:
        implicit = state.to_implicit(edit)
        state.apply(implicit)
        edits.append(implicit)
    return ImplicitEditSequence(sequence.states[0], tuple(edits), sequence.snapshot_steps)


def to_explicit(sequence: ImplicitEditSequence) -> ExplicitEditSequence:
    """The same edits on each state's own positions, with every state (Figure 2b -> 2a)."""
    state = ImplicitState(sequence.initial)
    states = [tuple(state.tokens)]
    edits: list[Edit] = []
    for edit in sequence.edits:
        edits.append(state.to_explicit(edit))
        state.apply(edit)
        states.append(tuple(state.tokens))
    return ExplicitEditSequence(tuple(states), tuple(edits), sequence.snapshot_steps)
