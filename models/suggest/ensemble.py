"""The shipped system: every available predictor, merged, ranked and gated.

``Ensemble`` is what the language server runs and what ``ripple eval replay --systems
ripple`` measures, so the product and its benchmark number are the same code. It asks
each member predictor for suggestions, drops the ones below that member's calibrated
confidence threshold (the :class:`Gate`), merges duplicates (two members proposing the
same replacement: the higher score wins and both explanations are kept), and returns
the best few, most confident first.

A member that raises is logged and skipped for that request: one broken model must not
silence the others.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ripple.models.errors import UsageError
from ripple.models.suggest.api import EditContext, Predictor, Suggestion

log = logging.getLogger(__name__)

GATE_FILE = "gate.json"


@dataclass(frozen=True)
class Gate:
    """Per-predictor confidence thresholds: a suggestion is shown only at or above its own.

    ``thresholds`` come from ``ripple eval calibrate`` (the lowest score at which a
    member's top suggestions reach the target precision on the validation
    repositories); ``default`` applies to members without a calibrated threshold.
    ``metadata`` records how the thresholds were chosen (precision, steps, command).
    """

    thresholds: Mapping[str, float] = field(default_factory=dict)
    default: float = 0.0
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def threshold(self, name: str) -> float:
        return self.thresholds.get(name, self.default)

    def admits(self, name: str, score: float) -> bool:
        return score >= self.threshold(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "thresholds": dict(self.thresholds),
            "default": self.default,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(cls, data: object, source: str = "gate") -> Gate:
        """Parse a gate file's content; ``UsageError`` saying what is wrong."""
        if not isinstance(data, dict):
            raise UsageError(f"{source}: expected a JSON object")
        raw = data.get("thresholds", {})
        if not isinstance(raw, dict):
            raise UsageError(f"{source}: 'thresholds' must be an object of name -> number")
        thresholds: dict[str, float] = {}
        for name, value in raw.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise UsageError(f"{source}: threshold of {name!r} is not a number")
            if not math.isfinite(value):
                raise UsageError(f"{source}: threshold of {name!r} is not finite")
            thresholds[str(name)] = float(value)
        default = data.get("default", 0.0)
        if not isinstance(default, int | float) or isinstance(default, bool):
            raise UsageError(f"{source}: 'default' must be a number")
        metadata = data.get("metadata", {})
        if not isinstance(metadata, dict):
            raise UsageError(f"{source}: 'metadata' must be an object")
        return cls(thresholds, float(default), metadata)

    @classmethod
    def load(cls, path: Path) -> Gate:
        """Read a gate file; a missing file is the open gate (every member's own filter)."""
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"{path}: cannot read the confidence gate ({exc})") from exc
        return cls.from_json(data, str(path))


def _key(s: Suggestion) -> tuple[str, int, int, tuple[str, ...]]:
    return (s.path, s.start_line, s.end_line, tuple(line.rstrip() for line in s.new_lines))


class Ensemble:
    """Run the members, gate each one's suggestions, merge duplicates, rank by score."""

    name = "ripple"

    def __init__(
        self,
        members: Sequence[Predictor],
        gate: Gate | None = None,
        max_suggestions: int = 5,
        slow: Sequence[str] = (),
    ) -> None:
        self.members = list(members)
        self.gate = gate or Gate()
        self.max_suggestions = max_suggestions
        # Members too slow to run on every keystroke (the neural models): the server runs
        # them when typing pauses, off its event loop, and merges their answers then.
        self.slow = set(slow)
        self.failures: dict[str, int] = {}

    def suggest(self, ctx: EditContext) -> list[Suggestion]:
        """Every member's suggestions, gated, merged and ranked (what the benchmark scores)."""
        return self.suggest_with(ctx, include_slow=True)

    def suggest_fast(self, ctx: EditContext) -> list[Suggestion]:
        """Only the members cheap enough for every keystroke."""
        return self.suggest_with(ctx, include_slow=False)

    def suggest_with(self, ctx: EditContext, include_slow: bool) -> list[Suggestion]:
        merged: dict[tuple[str, int, int, tuple[str, ...]], Suggestion] = {}
        for member in self.members:
            if not include_slow and member.name in self.slow:
                continue
            try:
                proposed = member.suggest(ctx)
            except Exception:  # a broken member must not silence the others
                self.failures[member.name] = self.failures.get(member.name, 0) + 1
                log.exception("predictor %s failed; skipping it for this request", member.name)
                continue
            for s in proposed:
                if not self.gate.admits(member.name, s.score):
                    continue
                key = _key(s)
                seen = merged.get(key)
                if seen is None:
                    merged[key] = s
                elif s.score > seen.score:
                    merged[key] = _with_explanation(s, seen.explanation)
                else:
                    merged[key] = _with_explanation(seen, s.explanation)
        ranked = sorted(merged.values(), key=lambda s: -s.score)
        return ranked[: self.max_suggestions]


def _with_explanation(s: Suggestion, other: str) -> Suggestion:
    if not other or other in s.explanation:
        return s
    explanation = f"{s.explanation}; {other}" if s.explanation else other
    return Suggestion(s.path, s.start_line, s.end_line, s.new_lines, s.score, explanation)
