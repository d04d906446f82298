"""Explicit and implicit edit sequences (Zhao et al. §2, Figure 2; §5 for the diff)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ripple.models.edits.sequences import (
    DELETE,
    END,
    START,
    Content,
    Edit,
    ExplicitEditSequence,
    ImplicitEditSequence,
    ImplicitState,
    apply_explicit,
    explicit_from_snapshots,
    implicit_from_snapshots,
    replay_explicit,
    replay_implicit,
    to_explicit,
    to_implicit,
    token_edits,
    with_sentinels,
)
from ripple.models.edits.tokens import tokenize

Pairs = list[tuple[int, Content]]


def edits(pairs: Pairs) -> tuple[Edit, ...]:
    return tuple(Edit(position, content) for position, content in pairs)


def check(snapshots: Sequence[Sequence[str]], explicit: Pairs, implicit: Pairs) -> None:
    """Both forms of ``snapshots`` have the expected edits and replay to every snapshot."""
    check_round_trip(snapshots)
    assert explicit_from_snapshots(snapshots).edits == edits(explicit)
    assert implicit_from_snapshots(snapshots).edits == edits(implicit)


def check_round_trip(snapshots: Sequence[Sequence[str]]) -> None:
    """The properties every pair of forms must have, whatever the snapshots."""
    exp = explicit_from_snapshots(snapshots)
    imp = implicit_from_snapshots(snapshots)
    wanted = [tuple(snapshot) for snapshot in snapshots]
    replayed_explicit = replay_explicit(exp)
    replayed_implicit = replay_implicit(imp)
    assert replayed_explicit == list(exp.states) == replayed_implicit
    assert [exp.states[step] for step in exp.snapshot_steps] == wanted
    assert [replayed_implicit[step] for step in imp.snapshot_steps] == wanted
    assert to_implicit(exp) == imp
    assert to_explicit(imp) == exp
    # One token per edit: each state differs from the previous by exactly one token.
    for before, after in zip(exp.states, exp.states[1:], strict=False):
        assert abs(len(after) - len(before)) == 1
    # Implicit indices: an insertion by edit t owns M + t; positions are never <E>.
    assert all(edit.position != imp.end_index for edit in imp.edits)


SEQUENCE_CASES: list[tuple[str, list[list[str]], Pairs, Pairs]] = [
    (
        "Figure 2 of the paper, positions as printed there",
        [list("BACA"), list("BABBCA"), list("BABBCACC")],
        [(2, "B"), (3, "B"), (6, "C"), (7, "C")],
        [(2, "B"), (6, "B"), (4, "C"), (8, "C")],
    ),
    (
        "insert at the start: after <S>, position 0",
        [list("ab"), list("xab")],
        [(0, "x")],
        [(0, "x")],
    ),
    (
        "insert at the end: after the last token, never after <E>",
        [list("ab"), list("abx")],
        [(2, "x")],
        [(2, "x")],
    ),
    (
        "delete: the position is the deleted token itself",
        [list("abc"), list("ac")],
        [(2, DELETE)],
        [(2, DELETE)],
    ),
    (
        "replace: delete the old tokens first, then insert left to right",
        [list("abcd"), list("axyd")],
        [(2, DELETE), (2, DELETE), (1, "x"), (2, "y")],
        [(2, DELETE), (3, DELETE), (1, "x"), (8, "y")],  # M = 5: x is edit 3, index 8
    ),
    (
        "a DELETE consumes its index M + t too",
        [list("ab"), list("b"), list("xb"), list("xyb")],
        [(1, DELETE), (0, "x"), (1, "y")],
        [(1, DELETE), (0, "x"), (5, "y")],  # M = 3: the DELETE owns 4, x gets 5
    ),
    (
        "from and to an empty file",
        [[], list("ab"), []],
        [(0, "a"), (1, "b"), (1, DELETE), (1, DELETE)],
        [(0, "a"), (2, "b"), (2, DELETE), (3, DELETE)],
    ),
    (
        "an unchanged snapshot adds no edits",
        [list("ab"), list("ab")],
        [],
        [],
    ),
    (
        "one token is one edit (code tokens, not characters)",
        [["fetch", "(", "url", ")"], ["fetch", "(", "url", ",", "timeout", ")"]],
        [(3, ","), (4, "timeout")],
        [(3, ","), (6, "timeout")],
    ),
]


@pytest.mark.parametrize(
    ("snapshots", "explicit", "implicit"),
    [case[1:] for case in SEQUENCE_CASES],
    ids=[case[0] for case in SEQUENCE_CASES],
)
def test_sequences(snapshots: list[list[str]], explicit: Pairs, implicit: Pairs) -> None:
    check(snapshots, explicit, implicit)


def test_figure_2_states() -> None:
    """Figure 2a's rows, with <S> and <E> as drawn (positions are indices into them)."""
    sequence = explicit_from_snapshots([list("BACA"), list("BABBCA"), list("BABBCACC")])
    assert [" ".join(with_sentinels(state)) for state in sequence.states] == [
        "<S> B A C A <E>",
        "<S> B A B C A <E>",
        "<S> B A B B C A <E>",
        "<S> B A B B C A C <E>",
        "<S> B A B B C A C C <E>",
    ]
    assert sequence.snapshot_steps == (0, 2, 4)
    assert implicit_from_snapshots([list("BACA")]).end_index == 5
    assert (START, END) == with_sentinels([])


INVALID_CASES: list[tuple[str, list[str], tuple[int, Content]]] = [
    ("delete <S>", list("ab"), (0, DELETE)),
    ("delete <E>", list("ab"), (3, DELETE)),
    ("insert after <E>", list("ab"), (3, "x")),
    ("negative position", list("ab"), (-1, "x")),
]


@pytest.mark.parametrize(
    ("state", "edit"), [case[1:] for case in INVALID_CASES], ids=[c[0] for c in INVALID_CASES]
)
def test_invalid_explicit_edits(state: list[str], edit: tuple[int, Content]) -> None:
    with pytest.raises(ValueError):
        apply_explicit(state, Edit(*edit))


IMPLICIT_INVALID_CASES: list[tuple[str, list[str], list[tuple[int, Content]]]] = [
    ("delete <S>", list("ab"), [(0, DELETE)]),
    ("insert after <E> (M = 3)", list("ab"), [(3, "x")]),
    ("an index no edit has made yet", list("ab"), [(4, "x")]),
    ("the index of a DELETE edit is no token", list("ab"), [(1, DELETE), (4, "x")]),
    ("a deleted token is gone", list("ab"), [(1, DELETE), (1, "x")]),
]


@pytest.mark.parametrize(
    ("initial", "pairs"),
    [case[1:] for case in IMPLICIT_INVALID_CASES],
    ids=[case[0] for case in IMPLICIT_INVALID_CASES],
)
def test_invalid_implicit_edits(initial: list[str], pairs: list[tuple[int, Content]]) -> None:
    with pytest.raises(ValueError):
        replay_implicit(ImplicitEditSequence(tuple(initial), edits(pairs), (0,)))


def test_no_snapshots() -> None:
    with pytest.raises(ValueError):
        explicit_from_snapshots([])
    with pytest.raises(ValueError):
        implicit_from_snapshots([])


def test_live_state_matches_batch() -> None:
    """The server's per-document state gives the same edits as the batch construction."""
    snapshots = [list("BACA"), list("BABBCA"), list("BABBCACC"), list("BBCC")]
    state = ImplicitState(snapshots[0])
    live = [edit for snapshot in snapshots[1:] for edit in state.advance(snapshot)]
    assert tuple(live) == implicit_from_snapshots(snapshots).edits
    assert state.tokens == snapshots[-1]


def test_code_snapshots() -> None:
    """Real tokens: adding an argument at two call sites, snapshot by snapshot."""
    versions = [
        "fetch(url)\nfetch(other)\n",
        "fetch(url, timeout=t)\nfetch(other)\n",
        "fetch(url, timeout=t)\nfetch(other, timeout=t)\n",
    ]
    snapshots = [[token.text for token in tokenize(source)] for source in versions]
    check_round_trip(snapshots)
    implicit = implicit_from_snapshots(snapshots)
    # M = 9 (8 tokens + <S>); the second call site's edits point after `other` (index 7)
    # and then after the tokens the edits themselves created (M + t).
    first_site: Pairs = [(3, ","), (10, "timeout"), (11, "="), (12, "t")]
    second_site: Pairs = [(7, ","), (14, "timeout"), (15, "="), (16, "t")]
    assert implicit.edits == edits(first_site + second_site)


def test_explicit_sequence_is_data() -> None:
    sequence = explicit_from_snapshots([list("ab"), list("b")])
    assert sequence == ExplicitEditSequence((("a", "b"), ("b",)), (Edit(1, DELETE),), (0, 1))
    assert sequence.edits[0].is_delete
    assert repr(DELETE) == "DELETE"


def test_token_edits_apply_left_to_right() -> None:
    state = list("abcd")
    for edit in token_edits(state, list("xbzdy")):
        state = apply_explicit(state, edit)
    assert state == list("xbzdy")


# Small alphabets make diffs with every opcode (equal, insert, delete, replace) common.
_SNAPSHOTS = st.lists(st.lists(st.sampled_from("ABCD"), max_size=12), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(_SNAPSHOTS)
def test_replay_to_every_snapshot(snapshots: list[list[str]]) -> None:
    check_round_trip(snapshots)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["x", "=", "f", "(", ")", "\n", "1"]), max_size=40)))
def test_replay_longer_snapshots(snapshots: list[list[str]]) -> None:
    check_round_trip([[], *snapshots])
