"""What Zhao et al.'s IA model sees of an edit context, and how its answer becomes an edit.

This module is the one featurizer of the ``ia`` next-edit model: the training set
(``ripple.training.zhao_real``) is built by calling :func:`featurize` on the same kind of
:class:`~ripple.models.suggest.api.EditContext` the replay benchmark and the language server
hand to a predictor, and the predictor (``zhao_predictor.py``) calls it on the live context.
No torch here: plain Python and numpy.

**Sub-tokens** (Zhao et al. §6.2 splits Python tokens into sub-words). Tokens are the
tree-sitter leaves of :mod:`ripple.models.edits.tokens`; an ASCII identifier (or keyword) is
split into *pieces* that concatenate back to it exactly, keeping case and underscores
(``get_value`` -> ``get``, ``_value``; ``HTTPServer`` -> ``HTTP``, ``Server``), unlike the
lower-casing :func:`~ripple.models.edits.tokens.subtokens`, because a predicted piece must
become text again. Two more marks make the pieces reversible within a line:

* the first piece of a token that follows whitespace on the same line is prefixed with
  ``▁`` (``a = b`` -> ``a``, ``▁=``, ``▁b``), as sentencepiece does;
* a line break between two tokens is the piece ``<nl>`` (Python's ``NEWLINE``/``NL``).

Other text (numbers, operators, string literals, comments) is one piece per token.

**The edit sequence** (§2, implicit form). For the file of the context's last edit, the
states are its base snapshot and the state after each of its live edits (the most recent
``max_hunks``). Consecutive states are diffed piece by piece (common prefix and suffix
first, then :func:`~ripple.models.edits.sequences.token_edits` on the middle) and turned
into implicit edits with :class:`~ripple.models.edits.sequences.ImplicitState`. Only the
most recent ``max_edits`` token edits are kept (the state is re-based past older ones).

**End of an edit.** Zhao et al.'s sequences have no sign of where one change ends, so a
model trained on them learns that the next edit continues the last one, which is what
most edits do. A next-edit suggestion is asked for exactly when a change is done, so each
live edit's token edits are followed by a pair that leaves the state as it was: ``<hunk>``
inserted right after the edit's last token, then deleted. The model sees where changes
end, learns to predict the end itself (the predictor's signal that a suggestion is
complete), and learns what comes after an end: a jump to the next change.

**The window.** The initial state is at most ``window`` pieces of the (re-based) initial
file: the span touched by the most recent edits that fit, widened with context, a third
above and two thirds below (hunks of a change mostly follow one another down a file).
Edits whose place lies outside the window are dropped, with every edit anchored on a token
they made. Index 0 is ``<S>``; inserting "after ``<S>``" means before the window's first
piece.

**Back to text** (:func:`edits_to_suggestion`). One token edit rarely is a whole change, so
a prediction is a short run of token edits on ONE line of the current file: deletions of
that line's pieces and insertions after them (or at the start of the line, after its
``<nl>``). Anything else has no clean text form and yields no suggestion: an insertion of
``<nl>`` or of ``<unk>``, an edit "after ``<S>``", an edit of a piece that spans lines
(a docstring), a run that leaves the line. Inserted pieces get one space before them when
they carry ``▁``; existing pieces keep their whitespace.
"""

from __future__ import annotations

import functools
import re
import threading
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np
import tree_sitter

from ripple.models.edits.languages import language_name_for_path, make_parser
from ripple.models.edits.sequences import (
    DELETE,
    Content,
    Edit,
    ImplicitState,
    token_edits,
)
from ripple.models.edits.tokens import Token, tokens_from_tree
from ripple.models.suggest.api import EditContext, Lines, LiveEdit, Suggestion

__all__ = [
    "HUNK_END",
    "NEWLINE",
    "SPACE",
    "SPECIALS",
    "FeatureConfig",
    "Piece",
    "SubtokenVocab",
    "ZhaoFeatures",
    "edits_to_suggestion",
    "featurize",
    "file_pieces",
    "next_edits",
    "split_identifier",
]

SPACE: Final = "▁"  # U+2581: the piece follows whitespace on its line
NEWLINE: Final = "<nl>"
# The end of one live edit: inserted after the edit's last token and deleted at once, so
# the state is unchanged (see "End of an edit" in the module docstring).
HUNK_END: Final = "<hunk>"
PAD: Final = "<pad>"
START_TOKEN: Final = "<S>"
END_TOKEN: Final = "<E>"
DELETE_TOKEN: Final = "DELETE"
UNK: Final = "<unk>"
# Ids 0..3 are what ripple.models.nets.zhao.ZhaoConfig expects (pad_id 0, delete_id 3).
SPECIALS: Final = (PAD, START_TOKEN, END_TOKEN, DELETE_TOKEN, UNK, NEWLINE)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Pieces of an identifier: an optional underscore run, then a capital run (not followed by
# lower case), a capitalised or lower-case word, or digits; a trailing underscore run.
_PIECE = re.compile(r"_*(?:[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+)|_+")


def split_identifier(text: str) -> list[str]:
    """The pieces of an ASCII identifier; ``[text]`` for anything else.

    The pieces always concatenate back to ``text``: ``__init__`` -> ``__init``, ``__``;
    ``utf8Decode`` -> ``utf``, ``8``, ``Decode``.
    """
    if not _IDENTIFIER.match(text):
        return [text]
    parts = _PIECE.findall(text)
    return parts if "".join(parts) == text else [text]


@dataclass(frozen=True, slots=True)
class Piece:
    """One piece of a file state: its vocabulary text and where it stands.

    ``start``/``end`` are UTF-8 byte offsets in the whole text; ``line``/``end_line`` are
    0-based lines as the editor counts them (``str.splitlines``). A ``<nl>`` piece is empty
    and stands at the first piece of the line it opens.
    """

    text: str
    start: int
    end: int
    line: int
    end_line: int


def _line_starts(lines: Sequence[str]) -> list[int]:
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line.encode("utf-8")))
    return starts


@functools.lru_cache(maxsize=65536)
def _split_cached(text: str) -> tuple[str, ...]:
    return tuple(split_identifier(text))


# Node types whose tokens come out of ``tokens_from_tree`` called on the node itself even
# when the node straddles a region boundary (a string is one token unless it holds code).
_WALK_WHOLE: Final = frozenset({"string"})


def _region_tokens(tree: tree_sitter.Tree, source: bytes, lo: int, hi: int) -> list[Token]:
    """The tokens of ``tree`` that start in bytes ``[lo, hi)``, walking only what overlaps.

    Nodes inside the range are handed to ``tokens_from_tree`` whole; a node across a
    boundary is opened (a string or a leaf is taken whole, as the full walk takes it).
    """
    out: list[Token] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.end_byte <= lo or node.start_byte >= hi:
            continue
        inside = node.start_byte >= lo and node.end_byte <= hi
        if inside or node.child_count == 0 or node.type in _WALK_WHOLE:
            out.extend(t for t in tokens_from_tree(node, source) if lo <= t.start_byte < hi)
        else:
            stack.extend(reversed(node.children))
    return out


@functools.lru_cache(maxsize=256)
def region_pieces(lines: Lines, top: int = 0, bottom: int = 0) -> tuple[Piece, ...]:
    """The pieces of lines ``[top, len(lines) - bottom)`` of a Python file (cached).

    The whole file is parsed (tree-sitter is fast); only the region's leaves are walked.
    The region's first piece is treated as the start of a file: no ``<nl>``, no ``▁``.
    """
    text = "".join(lines)
    source = text.encode("utf-8")
    starts = _line_starts(lines)
    lo, hi = starts[min(top, len(lines))], starts[max(len(lines) - bottom, top)]
    if hi <= lo:
        return ()
    tree = _parser().parse(source)
    # tree-sitter counts rows at "\n" only; str.splitlines also breaks at "\r", "\f"...
    newlines = text.count("\n")
    same_rows = len(lines) == newlines + (0 if text.endswith("\n") or not text else 1)
    out: list[Piece] = []
    append = out.append
    previous_end = -1
    previous_line = -1
    for token in _region_tokens(tree, source, lo, hi):
        if same_rows:
            line, end_line = token.start_point[0], token.end_point[0]
            if token.end_point[1] == 0 and end_line > line:
                end_line -= 1  # a token ending with its line's newline
        else:
            line = bisect_right(starts, token.start_byte) - 1
            end_line = bisect_right(starts, max(token.end_byte - 1, token.start_byte)) - 1
        spaced = False
        if previous_line >= 0:
            if line > previous_line:
                append(Piece(NEWLINE, token.start_byte, token.start_byte, line, line))
            else:
                spaced = token.start_byte > previous_end
        parts = _split_cached(token.text) if token.type == "identifier" else (token.text,)
        if len(parts) == 1:
            text_ = SPACE + token.text if spaced else token.text
            append(Piece(text_, token.start_byte, token.end_byte, line, end_line))
        else:
            offset = token.start_byte
            for k, part in enumerate(parts):
                size = len(part)  # identifiers are ASCII: characters are bytes
                marked = SPACE + part if spaced and k == 0 else part
                append(Piece(marked, offset, offset + size, line, line))
                offset += size
        previous_end, previous_line = token.end_byte, end_line
    return tuple(out)


def file_pieces(lines: Lines) -> tuple[Piece, ...]:
    """The pieces of a whole Python file given as lines."""
    return region_pieces(lines, 0, 0)


_parsers = threading.local()


def _parser() -> tree_sitter.Parser:
    parser: tree_sitter.Parser | None = getattr(_parsers, "python", None)
    if parser is None:
        parser = _parsers.python = make_parser("python")
    return parser


@dataclass(frozen=True)
class FeatureConfig:
    """Sizes of what the model sees; the bundled model records the ones it was trained with."""

    window: int = 126  # initial-state pieces; with <S> and <E> the state has <= 128 slots
    max_edits: int = 64  # token edits kept, the most recent
    max_hunks: int = 16  # live edits of the file kept, the most recent
    # Older live edits are dropped once the lines they span with the newer ones (in the
    # current file) exceed this; only this span, plus the margins, is ever tokenized.
    max_span_lines: int = 40
    margin_lines: int = 16
    hunk_markers: bool = True  # end each live edit with the <hunk> pair

    def to_dict(self) -> dict[str, int | bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureConfig:
        """Settings as a model's manifest stores them (no ``hunk_markers``: trained without)."""
        sizes = {
            k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__ and k != "hunk_markers"
        }
        return cls(**sizes, hunk_markers=bool(data.get("hunk_markers", False)))


@dataclass(frozen=True)
class ZhaoFeatures:
    """One file's edit history in Zhao et al.'s implicit form, over a window of pieces.

    ``tokens`` is the initial window (without ``<S>``/``<E>``: implicit indices 1..n, ``<E>``
    is n + 1, edit t makes index n + 1 + t); ``edits`` are implicit edits (§2); ``explicit``
    is where each edit lands in its state, the position IA's encoder embeds (Appendix D.1);
    ``sources[t]`` is the index in ``ctx.edits`` of the live edit that edit t belongs to.
    ``live`` maps the implicit index of every window piece still present to that piece in
    the current file, whose lines are ``lines``; ``pieces`` are the pieces of its region,
    lines ``[top, len(lines) - bottom)``.
    """

    path: str
    tokens: tuple[str, ...]
    edits: tuple[Edit, ...]
    explicit: tuple[int, ...]
    sources: tuple[int, ...]
    live: Mapping[int, Piece]
    lines: Lines
    pieces: tuple[Piece, ...] = field(repr=False)
    top: int = 0
    bottom: int = 0

    @property
    def end_index(self) -> int:
        """``M``, the implicit index of ``<E>``."""
        return len(self.tokens) + 1


def _advance(state: ImplicitState, new: Sequence[str], mark_end: bool = False) -> list[Edit]:
    """Move ``state`` to ``new``; the implicit edits that got there (prefix/suffix first).

    A live edit changes a few lines of a long file, so the common prefix and suffix are
    stripped before the difflib diff: the same edits as a whole-file diff in the usual case,
    at a fraction of the cost. With ``mark_end`` (and at least one edit), the end-of-edit
    pair follows: ``<hunk>`` inserted right after where the last edit landed, then deleted.
    """
    old = state.tokens
    limit = min(len(old), len(new))
    prefix = 0
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]:
        suffix += 1
    middle = token_edits(old[prefix : len(old) - suffix], new[prefix : len(new) - suffix])
    out = []
    landed = 0
    for edit in middle:
        explicit = Edit(edit.position + prefix, edit.content)
        implicit = state.to_implicit(explicit)
        state.apply(implicit)
        out.append(implicit)
        # Explicit position, in the new state, of the token the edit leaves behind it: the
        # inserted token, or the one before a deleted token's gap.
        landed = explicit.position - 1 if explicit.is_delete else explicit.position + 1
    if mark_end and out:
        marker = state.to_implicit(Edit(landed, HUNK_END))
        state.apply(marker)
        delete = Edit(state.end_index + state.edit_count, DELETE)
        state.apply(delete)
        out.extend([marker, delete])
    return out


def _rebase(
    initial: list[str], edits: list[Edit], keep: int
) -> tuple[list[str], list[Edit], dict[int, int]]:
    """Drop all but the last ``keep`` edits: the state after the others becomes the initial.

    Returns the new initial state, the kept edits on the new indices, and the map from old
    to new indices of every token alive after all edits (or at the re-base point).
    """
    dropped = len(edits) - keep
    if dropped > 0 and edits[dropped - 1].content == HUNK_END:
        dropped += 1  # keep an end-of-edit pair together: drop its deletion too
    old_end = len(initial) + 1
    state = ImplicitState(initial)
    for edit in edits[:dropped]:
        state.apply(edit)
    mapping = {index: slot + 1 for slot, index in enumerate(state.indices)}
    new_end = len(state.tokens) + 1
    mapping[0] = 0
    for t in range(dropped + 1, len(edits) + 1):
        mapping[old_end + t] = new_end + t - dropped
    kept = [Edit(mapping[e.position], e.content) for e in edits[dropped:]]
    return list(state.tokens), kept, mapping


def _window_bounds(n: int, edits: Sequence[Edit], window: int) -> tuple[int, int]:
    """The window ``[w0, w1]`` (1-based, inclusive) around the most recent edits.

    An edit's root is the initial piece it is anchored on: the piece it deletes or inserts
    after, followed through the edits that made the anchor. An insertion after root r needs
    piece max(r, 1) in the window (after r = before r + 1).
    """
    end = n + 1
    roots: list[int] = []
    made_root: dict[int, int] = {}
    for t, edit in enumerate(edits, 1):
        p = edit.position
        root = made_root[p] if p > end else p
        roots.append(root)
        if not edit.is_delete:
            made_root[end + t] = root
    size = min(window, n)
    if size <= 0:
        return 1, 0
    lo = hi = None
    for root in reversed(roots):
        need = max(root, 1)
        new_lo = need if lo is None else min(lo, need)
        new_hi = need if hi is None else max(hi, need)
        if new_hi - new_lo + 1 > size:
            break
        lo, hi = new_lo, new_hi
    assert lo is not None and hi is not None  # the newest edit always fits
    extra = size - (hi - lo + 1)
    w0 = max(1, min(lo - extra // 3, n - size + 1))
    return w0, w0 + size - 1


def _region(
    states: Sequence[Lines], edits: Sequence[LiveEdit], config: FeatureConfig
) -> tuple[int, int, int]:
    """How many of the most recent edits to keep, and the lines ``(top, bottom)`` to skip.

    The first ``top`` and last ``bottom`` lines are untouched by every kept edit, so they
    are the same in every state and the region between them is one region of the file
    throughout. Edits are taken newest first while the region in the current file spans
    at most ``max_span_lines`` lines (the newest always).
    """
    top = bottom = None
    kept = 0
    current = len(states[-1])
    for i in range(len(edits) - 1, -1, -1):
        edit, before = edits[i], states[i]
        new_top = edit.start if top is None else min(top, edit.start)
        new_bottom = len(before) - edit.end
        new_bottom = new_bottom if bottom is None else min(bottom, new_bottom)
        if kept and current - new_top - new_bottom > config.max_span_lines:
            break
        top, bottom, kept = new_top, new_bottom, kept + 1
    assert top is not None and bottom is not None
    return kept, max(0, top - config.margin_lines), max(0, bottom - config.margin_lines)


def featurize(ctx: EditContext, config: FeatureConfig | None = None) -> ZhaoFeatures | None:
    """The IA features of the file of ``ctx``'s last edit, or ``None`` when there are none.

    ``None`` when there is no live edit, the file is not Python (the model was trained on
    Python), or its edits changed no piece (whitespace only).
    """
    cfg = config or FeatureConfig()
    last = ctx.last_edit
    if last is None or language_name_for_path(last.path) != "python":
        return None
    path = last.path
    numbers = [i for i, e in enumerate(ctx.edits) if e.path == path][-cfg.max_hunks :]
    states = ctx.snapshots(path)[-(len(numbers) + 1) :]
    kept_hunks, top, bottom = _region(states, [ctx.edits[i] for i in numbers], cfg)
    numbers, states = numbers[-kept_hunks:], states[-(kept_hunks + 1) :]
    first = region_pieces(states[0], top, bottom)
    state = ImplicitState([p.text for p in first])
    initial = list(state.tokens)
    edits: list[Edit] = []
    sources: list[int] = []
    for number, lines in zip(numbers, states[1:], strict=True):
        pieces = [p.text for p in region_pieces(lines, top, bottom)]
        made = _advance(state, pieces, cfg.hunk_markers)
        edits.extend(made)
        sources.extend([number] * len(made))
    if not edits:
        return None
    current = region_pieces(states[-1], top, bottom)
    final_indices = list(state.indices)
    if len(edits) > cfg.max_edits:
        initial, edits, mapping = _rebase(initial, edits, cfg.max_edits)
        sources = sources[len(sources) - len(edits) :]
        final_indices = [mapping[i] for i in final_indices]
    n = len(initial)
    w0, w1 = _window_bounds(n, edits, cfg.window)
    end, window_end = n + 1, (w1 - w0 + 1) + 1
    # Full index -> window index, for the window's pieces and the kept edits' tokens.
    to_window: dict[int, int] = {i: i - w0 + 1 for i in range(w0, w1 + 1)}
    to_window[w0 - 1] = 0  # inserting after the piece before the window: after <S>
    kept: list[Edit] = []
    kept_sources: list[int] = []
    for t, edit in enumerate(edits, 1):
        # Kept when it is anchored in the window: on a window piece, on a piece a kept edit
        # made, or (an insertion) right before the window, "after <S>".
        if edit.position not in to_window or (edit.is_delete and edit.position == w0 - 1):
            continue
        kept.append(Edit(to_window[edit.position], edit.content))
        kept_sources.append(sources[t - 1])
        if not edit.is_delete:
            to_window[end + t] = window_end + len(kept)
    del to_window[w0 - 1]
    tokens = tuple(initial[w0 - 1 : w1])
    window_state = ImplicitState(tokens)
    explicit: list[int] = []
    for edit in kept:
        landed = window_state.to_explicit(edit).position + (0 if edit.is_delete else 1)
        explicit.append(landed)
        window_state.apply(edit)
    slot_of = {index: slot for slot, index in enumerate(final_indices)}
    live = {to_window[full]: current[slot_of[full]] for full in to_window if full in slot_of}
    return ZhaoFeatures(
        path=path,
        tokens=tokens,
        edits=tuple(kept),
        explicit=tuple(explicit),
        sources=tuple(kept_sources),
        live=live,
        lines=tuple(states[-1]),
        pieces=current,
        top=top,
        bottom=bottom,
    )


def next_edits(features: ZhaoFeatures, lines: Lines) -> list[Edit] | None:
    """The implicit edits, continuing ``features.edits``, that turn the file into ``lines``.

    This is the gold answer for the model at this point (what the next live edit is, in
    the model's own terms); ``None`` when that edit is not inside the window (or the
    region), so the model could not have pointed at it.
    """
    state = ImplicitState(features.tokens)
    for edit in features.edits:
        state.apply(edit)
    if not state.indices:
        return None
    slot_of = {id(p): i for i, p in enumerate(features.pieces)}
    slots = [slot_of[id(features.live[i])] for i in state.indices]
    first, last = slots[0], slots[-1]
    if len(lines) < features.top + features.bottom or lines[: features.top] != features.lines[
        : features.top
    ] or (
        features.bottom
        and lines[len(lines) - features.bottom :]
        != features.lines[len(features.lines) - features.bottom :]
    ):
        return None
    old = [p.text for p in features.pieces]
    new = [p.text for p in region_pieces(tuple(lines), features.top, features.bottom)]
    limit = min(len(old), len(new))
    prefix = 0
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]:
        suffix += 1
    if prefix < first or len(old) - suffix > last + 1:
        return None  # the change reaches outside the window
    out: list[Edit] = []
    for edit in token_edits(old[prefix : len(old) - suffix], new[prefix : len(new) - suffix]):
        implicit = state.to_implicit(Edit(edit.position + prefix - first, edit.content))
        state.apply(implicit)
        out.append(implicit)
    return out


# ---------------------------------------------------------------- vocabulary


class SubtokenVocab:
    """Piece ids shared by states and edit contents: the specials, then pieces by frequency.

    ``<pad>``, ``<S>``, ``<E>``, ``DELETE`` take ids 0..3 (as the IA network expects),
    ``<unk>`` stands for every piece outside the vocabulary, and ``<nl>`` is always in.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {', '.join(SPECIALS)}")
        self.tokens: tuple[str, ...] = tuple(tokens)
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        if len(self._ids) != len(self.tokens):
            raise ValueError("a vocabulary lists each piece once")

    pad_id: Final = 0
    start_id: Final = 1
    end_id: Final = 2
    delete_id: Final = 3
    unk_id: Final = 4
    newline_id: Final = 5

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], size: int) -> SubtokenVocab:
        """The ``size - len(SPECIALS)`` most frequent pieces (ties by text), after the specials."""
        ranked = sorted(
            (t for t in counts if t not in SPECIALS), key=lambda t: (-counts[t], t)
        )
        return cls([*SPECIALS, *ranked[: max(size - len(SPECIALS), 0)]])

    @classmethod
    def build(cls, sequences: Iterable[ZhaoFeatures], size: int) -> SubtokenVocab:
        """Count the pieces of states and inserted contents of ``sequences``."""
        counts: Counter[str] = Counter()
        for features in sequences:
            counts.update(features.tokens)
            counts.update(e.content for e in features.edits if isinstance(e.content, str))
        return cls.from_counts(counts, size)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SubtokenVocab) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return hash(self.tokens)

    def token_id(self, token: str) -> int:
        """The id of a piece (``<unk>``'s when it is not in the vocabulary)."""
        return self._ids.get(token, self.unk_id)

    def content_id(self, content: Content) -> int:
        """The id of an edit's content: ``DELETE`` or a piece."""
        return self.delete_id if content is DELETE else self.token_id(str(content))

    def decode_content(self, index: int) -> Content:
        """The content an id stands for (``DELETE`` for the delete id)."""
        return DELETE if index == self.delete_id else self.tokens[index]

    def to_json(self) -> list[str]:
        """The vocabulary as the JSON list stored beside a model (``vocab.json``)."""
        return list(self.tokens)

    @classmethod
    def from_json(cls, data: object) -> SubtokenVocab:
        """Read :meth:`to_json`'s list back; ``ValueError`` when it is not one."""
        if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
            raise ValueError("vocab.json must be a JSON list of strings")
        return cls(data)


@dataclass(frozen=True)
class EncodedSequence:
    """A :class:`ZhaoFeatures` as IA's int64 inputs for one instance (no batch axis)."""

    state: np.ndarray  # (S,) ids of <S> window <E>
    edit_position: np.ndarray  # (T,) implicit positions
    edit_content: np.ndarray  # (T,)
    edit_explicit: np.ndarray  # (T,)


def encode(features: ZhaoFeatures, vocab: SubtokenVocab) -> EncodedSequence:
    """The ids of a sequence: the same arrays at training and at serving time."""
    state = [vocab.start_id, *(vocab.token_id(t) for t in features.tokens), vocab.end_id]
    return EncodedSequence(
        state=np.asarray(state, dtype=np.int64),
        edit_position=np.asarray([e.position for e in features.edits], dtype=np.int64),
        edit_content=np.asarray(
            [vocab.content_id(e.content) for e in features.edits], dtype=np.int64
        ),
        edit_explicit=np.asarray(features.explicit, dtype=np.int64),
    )


# ---------------------------------------------------------------- back to text


@dataclass
class _Item:
    """A piece of the edited line while predicted edits are applied: text and space before."""

    key: int  # implicit index (window pieces and pieces the predicted edits made)
    text: str
    space: bytes


class UnmappableEdit(ValueError):
    """A predicted edit that has no clean text form on the line being edited."""


class LineEditor:
    """Applies predicted token edits to one line of the current file (see the module doc).

    Built from the first predicted edit, which picks the line; each further edit must stay
    on it (:meth:`accepts`). :meth:`suggestion` gives the changed line as a Suggestion.
    """

    def __init__(self, features: ZhaoFeatures, first: Edit) -> None:
        self.features = features
        self.line = self._line_of(first)
        starts = _line_starts(features.lines)
        line_start = starts[self.line]
        raw = features.lines[self.line].encode("utf-8")
        on_line = [p for p in features.pieces if p.line == self.line and p.text != NEWLINE]
        if any(p.end_line != p.line for p in on_line) or any(
            p.end_line == self.line and p.line != self.line and p.text != NEWLINE
            for p in features.pieces
        ):
            raise UnmappableEdit("the line holds part of a multi-line piece")
        key_of = {id(p): k for k, p in features.live.items()}
        self.items: list[_Item] = []
        cursor = 0
        for p in on_line:
            begin, finish = p.start - line_start, p.end - line_start
            text = raw[begin:finish].decode("utf-8", errors="replace")
            # Pieces outside the window cannot be edited: they get no key (-1).
            self.items.append(_Item(key_of.get(id(p), -1), text, raw[cursor:begin]))
            cursor = finish
        self.tail = raw[cursor:]
        # The line's indentation belongs to the line, not to its first piece: it stays when
        # the first piece is deleted or a piece is inserted before it.
        self.indent = self.items[0].space if self.items else b""
        if self.items:
            self.items[0].space = b""
        self.made = 0  # pieces inserted by predicted edits so far
        self.next_key = features.end_index + len(features.edits) + 1
        self.original = features.lines[self.line]

    def _line_of(self, edit: Edit) -> int:
        if edit.position == 0:
            raise UnmappableEdit("an edit before the window has no line")
        piece = self.features.live.get(edit.position)
        if piece is None:
            raise UnmappableEdit("the edit is not on a piece of the current file")
        if piece.text == NEWLINE:
            if edit.is_delete:
                raise UnmappableEdit("joining lines is not a line edit")
            return piece.line
        if piece.end_line != piece.line:
            raise UnmappableEdit("the piece spans several lines")
        return piece.line

    def accepts(self, edit: Edit) -> bool:
        """Whether ``edit`` is on this line (or on a piece earlier predicted edits made)."""
        if any(item.key == edit.position for item in self.items):
            return True
        piece = self.features.live.get(edit.position)
        return (
            piece is not None
            and piece.text == NEWLINE
            and piece.line == self.line
            and not edit.is_delete
        )

    def apply(self, edit: Edit) -> None:
        """Apply one predicted edit (the next one: it makes index ``next_key``)."""
        if not self.accepts(edit):
            raise UnmappableEdit("the edit leaves the line")
        key = self.next_key
        self.next_key += 1
        if edit.is_delete:
            i = next(i for i, item in enumerate(self.items) if item.key == edit.position)
            del self.items[i]
            return
        content = str(edit.content)
        if content in SPECIALS:
            raise UnmappableEdit(f"{content} has no text")
        text = content.removeprefix(SPACE)
        anchor = self.features.live.get(edit.position)
        if anchor is not None and anchor.text == NEWLINE:
            self.items.insert(0, _Item(key, text, b""))
        else:
            i = next(i for i, item in enumerate(self.items) if item.key == edit.position)
            space = b" " if content.startswith(SPACE) else b""
            self.items.insert(i + 1, _Item(key, text, space))
        self.made += 1

    def text(self) -> str:
        """The edited line, its line ending kept."""
        # The first piece's own space (left by a deleted neighbour) is not kept.
        body = b"".join(
            (item.space if i else b"") + item.text.encode("utf-8")
            for i, item in enumerate(self.items)
        )
        return (self.indent + body + self.tail).decode("utf-8", errors="replace")

    def suggestion(self, score: float, explanation: str) -> Suggestion | None:
        """The line's change as a Suggestion; ``None`` when nothing changed."""
        if not self.items:
            new_lines: Lines = ()  # every piece removed: the line goes
        else:
            new_lines = (self.text(),)
        if new_lines == (self.original,):
            return None
        return Suggestion(
            self.features.path,
            self.line,
            self.line + 1,
            new_lines,
            score=score,
            explanation=explanation,
        )


def edits_to_suggestion(
    features: ZhaoFeatures, edits: Sequence[Edit], score: float = 0.0, explanation: str = ""
) -> Suggestion | None:
    """Predicted implicit edits (following ``features.edits``) as a one-line Suggestion.

    ``None`` when they have no clean text form (see the module docstring) or change nothing.
    """
    if not edits:
        return None
    try:
        editor = LineEditor(features, edits[0])
        for edit in edits:
            editor.apply(edit)
    except UnmappableEdit:
        return None
    return editor.suggestion(score, explanation)
