"""What the span-copying editor reads and writes: lossless token sequences of code fragments.

The editor of Panthaplackel et al. (2021, "Copy That!") rewrites a *fragment*, a window of
lines around the place to edit, given the user's recent edits. This module turns that into
token sequences, for training (``ripple.training.copy_data``) and for serving
(``ripple.models.suggest.copy_predictor``) alike, so the two can never drift apart:

* **Tokens** are the leaves of the tree-sitter parse (``ripple.models.edits.tokens``, the
  tokenisation every ripple model uses), plus the whitespace between them as tokens of their
  own, so that ``"".join(tokens)`` gives the fragment back byte for byte (an edit suggestion
  must reproduce indentation and spacing exactly). A whitespace run is split after each line
  break, and the indentation after a line break joins it: ``"\\n        "`` (a newline and
  the next line's indentation) is one token.
* **Input** = the fragment's tokens, then the context: the most recent edits first, each as
  ``<edit> old tokens <to> new tokens``, cut down to the tokens that changed plus a margin
  (``edit_pair``). Copying from the context is how the editor repeats a rename it has seen.
* **Output** = the fragment's tokens after the edit, then ``</s>``.

``run_lengths`` gives the copyable spans of an (input, output) pair: ``R[k, i]`` is how many
tokens of the input starting at ``i`` equal the output starting at ``k``, so
``Copy(i : i + l)`` is a correct action at output position ``k`` iff ``1 <= l <= R[k, i]``
(the paper's ``mask[k, i, j]``, built backwards over ``k``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from ripple.models.edits.languages import language_name_for_path
from ripple.models.edits.tokens import tokenize
from ripple.models.suggest.api import EditContext, LiveEdit

__all__ = [
    "BOS",
    "EDIT",
    "EOS",
    "PAD",
    "SPECIALS",
    "TO",
    "UNK",
    "CopyVocab",
    "EditorConfig",
    "Fragment",
    "build_input",
    "edit_pair",
    "fragment_tokens",
    "make_fragment",
    "run_lengths",
    "window",
]

PAD: Final = "<pad>"
UNK: Final = "<unk>"
BOS: Final = "<s>"
EOS: Final = "</s>"
EDIT: Final = "<edit>"
TO: Final = "<to>"
SPECIALS: Final = (PAD, UNK, BOS, EOS, EDIT, TO)

_WHITESPACE_PIECE = re.compile(r"[^\S\n]*\n|[^\S\n]+")


@dataclass(frozen=True)
class EditorConfig:
    """How fragments and inputs are cut; stored with a trained model and used to serve it."""

    radius: int = 2  # lines of the fragment above and below the lines being edited
    context_edits: int = 3  # most recent edits in the input
    edit_margin: int = 2  # unchanged tokens kept on each side of an edit's change
    edit_max_tokens: int = 24  # per side of one context edit
    max_fragment: int = 100  # fragments with more tokens are not edited
    max_input: int = 160  # fragment + context, in tokens
    max_output: int = 100  # output tokens (without </s>)

    def to_json(self) -> dict[str, int]:
        return {
            "radius": self.radius,
            "context_edits": self.context_edits,
            "edit_margin": self.edit_margin,
            "edit_max_tokens": self.edit_max_tokens,
            "max_fragment": self.max_fragment,
            "max_input": self.max_input,
            "max_output": self.max_output,
        }

    @classmethod
    def from_json(cls, data: dict[str, int]) -> EditorConfig:
        known = cls().to_json()
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown editor settings: {', '.join(sorted(unknown))}")
        return cls(**{k: int(v) for k, v in data.items()})


def _split_whitespace(gap: str) -> list[str]:
    """A whitespace run as tokens: each piece ends at a line break, or runs to the end."""
    pieces = _WHITESPACE_PIECE.findall(gap)
    # "  \n    " -> ["  \n", "    "]; rejoin a newline with the indentation after it.
    out: list[str] = []
    for piece in pieces:
        if out and out[-1].endswith("\n") and not piece.endswith("\n"):
            out[-1] += piece
        else:
            out.append(piece)
    return out


def fragment_tokens(text: str, language: str | None = "python") -> list[str]:
    """``text`` as tokens that join back to it exactly (see the module docstring)."""
    if not text:
        return []
    data = text.encode("utf-8")
    out: list[str] = []
    pos = 0
    for token in tokenize(text, language):
        if token.start_byte > pos:
            out.extend(_split_whitespace(data[pos : token.start_byte].decode("utf-8")))
        out.append(data[token.start_byte : token.end_byte].decode("utf-8"))
        pos = token.end_byte
    if pos < len(data):
        out.extend(_split_whitespace(data[pos:].decode("utf-8")))
    return out


def window(n_lines: int, start: int, end: int, radius: int) -> tuple[int, int]:
    """Lines ``[start - radius, end + radius)`` clipped to a file of ``n_lines`` lines."""
    return max(0, start - radius), min(n_lines, end + radius)


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def edit_pair(
    edit: LiveEdit, language: str | None, config: EditorConfig
) -> tuple[list[str], list[str]]:
    """One context edit as (old tokens, new tokens): what changed plus ``edit_margin``.

    Leading and trailing whitespace tokens are dropped, and each side is cut to
    ``edit_max_tokens`` around the change.
    """
    old = [t for t in fragment_tokens("".join(edit.old_lines), language)]
    new = [t for t in fragment_tokens("".join(edit.new_lines), language)]
    prefix = _common_prefix(old, new)
    suffix = _common_prefix(old[prefix:][::-1], new[prefix:][::-1])
    lo = max(0, prefix - config.edit_margin)
    old_hi = min(len(old), len(old) - suffix + config.edit_margin)
    new_hi = min(len(new), len(new) - suffix + config.edit_margin)
    old, new = old[lo:old_hi], new[lo:new_hi]

    def trim(tokens: list[str]) -> list[str]:
        while tokens and not tokens[0].strip():
            tokens = tokens[1:]
        while tokens and not tokens[-1].strip():
            tokens = tokens[:-1]
        return tokens[: config.edit_max_tokens]

    return trim(old), trim(new)


def build_input(
    fragment: Sequence[str],
    edits: Sequence[LiveEdit],
    language_of: dict[str, str | None],
    config: EditorConfig,
) -> list[str]:
    """The encoder's input: the fragment, then the most recent edits (newest first)."""
    tokens = list(fragment)
    for edit in reversed(edits[-config.context_edits :] if config.context_edits else ()):
        old, new = edit_pair(edit, language_of.get(edit.path), config)
        piece = [EDIT, *old, TO, *new]
        if len(tokens) + len(piece) > config.max_input:
            break
        tokens.extend(piece)
    return tokens[: config.max_input]


def run_lengths(inputs: Sequence[str], outputs: Sequence[str]) -> np.ndarray:
    """``R[k, i]``: the length of the longest common run of ``inputs[i:]`` and ``outputs[k:]``.

    Built backwards over ``k`` (``R[k, i] = 1 + R[k + 1, i + 1]`` where the tokens match),
    vectorised over ``i``; int16, shape ``(len(outputs), len(inputs))``.
    """
    index: dict[str, int] = {}
    a = np.array([index.setdefault(t, len(index)) for t in inputs], dtype=np.int64)
    b = np.array([index.get(t, -1) for t in outputs], dtype=np.int64)
    n, m = len(b), len(a)
    runs = np.zeros((n + 1, m + 1), dtype=np.int16)
    for k in range(n - 1, -1, -1):
        match = a == b[k]
        runs[k, :m] = np.where(match, runs[k + 1, 1:] + 1, 0)
    return runs[:n, :m]


@dataclass
class CopyVocab:
    """Generation vocabulary: specials first, then tokens by frequency."""

    tokens: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if tuple(self.tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a copy vocabulary starts with {', '.join(SPECIALS)}")
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("a copy vocabulary lists each token once")

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    @property
    def bos_id(self) -> int:
        return 2

    @property
    def eos_id(self) -> int:
        return 3

    def id(self, token: str) -> int:
        return self.index.get(token, 1)

    def ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.index.get(t, 1) for t in tokens]

    @property
    def blocked(self) -> frozenset[int]:
        """Ids the decoder never generates: padding, start, separators and ``<unk>``."""
        return frozenset(self.index[t] for t in (PAD, UNK, BOS, EDIT, TO))

    @classmethod
    def build(cls, counts: Counter[str], size: int, min_count: int = 2) -> CopyVocab:
        tokens = list(SPECIALS)
        for token, count in counts.most_common():
            if len(tokens) >= size or count < min_count:
                break
            if token not in SPECIALS:
                tokens.append(token)
        return cls(tokens)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.tokens, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> CopyVocab:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
            raise ValueError(f"{path}: a copy vocabulary is a JSON list of strings")
        return cls(data)


@dataclass(frozen=True)
class Fragment:
    """A window of ``path``'s current lines ``[start, end)`` for the editor to rewrite."""

    path: str
    start: int
    end: int
    tokens: tuple[str, ...]
    input: tuple[str, ...]


def make_fragment(
    ctx: EditContext, path: str, start: int, end: int, config: EditorConfig
) -> Fragment | None:
    """The editor's input for editing lines ``[start, end)`` of ``path`` in ``ctx``.

    The fragment is those lines plus ``config.radius`` lines on each side; ``None`` when it
    has more than ``config.max_fragment`` tokens. The same function makes the training
    examples (``ripple.training.copy_data``) and the served ones.
    """
    lines = ctx.files[path]
    lo, hi = window(len(lines), start, end, config.radius)
    language = language_name_for_path(path)
    tokens = fragment_tokens("".join(lines[lo:hi]), language)
    if len(tokens) > config.max_fragment:
        return None
    languages = {e.path: language_name_for_path(e.path) for e in ctx.edits}
    source = build_input(tokens, ctx.edits, languages, config)
    return Fragment(path, lo, hi, tuple(tokens), tuple(source))
