"""Token substitutions: the smallest ``old -> new`` token change an edit made.

The ``repeat-last-edit`` baseline of BENCHMARK.md and the rule engine both start from it.
Tokens are the matches of ``[A-Za-z_][A-Za-z0-9_]*|\\d+|\\S``: a whole identifier, a whole
number, or one other non-space character. Because an identifier is always one token,
matching token sequences never matches inside a longer name (``url`` does not match in
``base_url``), which is the word-boundary behaviour a rename needs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|\S")


@dataclass(frozen=True)
class Token:
    """One token and where it stands in the text it came from (code-point offsets)."""

    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text`` with their offsets."""
    return list(_tokenize_cached(text))


@functools.lru_cache(maxsize=65536)
def _tokenize_cached(text: str) -> tuple[Token, ...]:
    # Predictors scan the same lines request after request while the user types in one
    # of them: a line's tokens are computed once (keyed by its text).
    return tuple(Token(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text))


def line_tokens(text: str) -> tuple[Token, ...]:
    """The tokens of one line, memoised (the tuple is shared: do not mutate it)."""
    return _tokenize_cached(text)


def may_contain(text: str, pattern: Sequence[str]) -> bool:
    """A cheap necessary condition for ``pattern``'s tokens to occur in ``text``."""
    return all(token in text for token in sorted(pattern, key=len, reverse=True))


def token_texts(text: str) -> list[str]:
    """Just the token strings of ``text``."""
    return TOKEN.findall(text)


@dataclass(frozen=True)
class TokenSubstitution:
    """Replace the token sequence ``old`` by ``new_text``.

    ``old`` is never empty. ``old_text``/``new_text`` are the source texts the tokens span
    in the edit (``new_text`` keeps the edit's own spacing, and is empty when the edit
    only removed tokens).
    """

    old: tuple[str, ...]
    new: tuple[str, ...]
    old_text: str
    new_text: str


def _common_prefix(a: Sequence[Token], b: Sequence[Token]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x.text != y.text:
            break
        n += 1
    return n


def _common_suffix(a: Sequence[Token], b: Sequence[Token], prefix: int) -> int:
    # The suffix may not reach into the prefix of either side.
    limit = min(len(a), len(b)) - prefix
    n = 0
    while n < limit and a[len(a) - 1 - n].text == b[len(b) - 1 - n].text:
        n += 1
    return n


def smallest_substitution(old_text: str, new_text: str) -> TokenSubstitution | None:
    """BENCHMARK.md's substitution of an edit ``old_text -> new_text``, or ``None``.

    Strip the tokens' longest common prefix, then their longest common suffix; for a pure
    insertion widen both sides by one token left and right so there is something to look
    for. ``None`` when nothing is left to look for, or the old side spans several lines
    (a line-local search could not find it).
    """
    a = tokenize(old_text)
    b = tokenize(new_text)
    prefix = _common_prefix(a, b)
    suffix = _common_suffix(a, b, prefix)
    lo, hi_a, hi_b = prefix, len(a) - suffix, len(b) - suffix
    if lo == hi_a:
        if lo > 0:
            lo -= 1
        if suffix > 0:
            hi_a += 1
            hi_b += 1
    old = a[lo:hi_a]
    if not old:
        return None
    old_src = old_text[old[0].start : old[-1].end]
    if "\n" in old_src or "\r" in old_src:
        return None
    new = b[lo:hi_b]
    new_src = new_text[new[0].start : new[-1].end] if new else ""
    return TokenSubstitution(
        tuple(t.text for t in old), tuple(t.text for t in new), old_src, new_src
    )


def find_tokens(tokens: Sequence[Token], pattern: Sequence[str], start: int = 0) -> int:
    """Index of the first occurrence of the token strings ``pattern`` in ``tokens``, or -1."""
    k = len(pattern)
    first = pattern[0]
    for i in range(start, len(tokens) - k + 1):
        if tokens[i].text == first and all(
            tokens[i + j].text == pattern[j] for j in range(1, k)
        ):
            return i
    return -1


def substitute_in_line(line: str, sub: TokenSubstitution) -> str | None:
    """``line`` with the first match of ``sub.old`` replaced by ``sub.new_text``.

    Trailing whitespace of the result is stripped and the line's ending kept. ``None``
    when ``sub.old`` does not occur in the line.
    """
    body = line.rstrip("\r\n")
    # A cheap substring test first: most lines cannot match, and tokenizing is the cost.
    if not may_contain(body, sub.old):
        return None
    tokens = line_tokens(body)
    i = find_tokens(tokens, sub.old)
    if i < 0:
        return None
    start, end = tokens[i].start, tokens[i + len(sub.old) - 1].end
    replaced = (body[:start] + sub.new_text + body[end:]).rstrip()
    return replaced + line[len(body) :]
