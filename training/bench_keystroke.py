"""``ripple bench keystroke``: the cost of one keystroke in a large file.

Generates Python files of 1,000 and 10,000 lines and types into them in bursts, the
way a person does. Three costs are timed:

- ``edit`` (the JSON's ``p50_us``/``p99_us``): ``ParsedDocument.apply_edit``, what the
  server pays on every keystroke: the text update, the line index shift and the
  tree edit;
- ``eager``: ``apply_edit`` followed at once by the incremental re-parse, what a
  keystroke would cost if every keystroke were parsed;
- ``burst``: the one incremental re-parse after a burst of typing, what the server
  pays when the typing settles.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ripple.models.edits.document import ParsedDocument

SIZES = (1000, 10000)
TARGET_P99_US = 1000.0


def generate_python(lines: int, seed: int = 0) -> str:
    """A plausible Python module of about ``lines`` lines (classes, methods, calls)."""
    rng = random.Random(seed)
    words = ["user", "item", "value", "count", "name", "path", "config", "result", "data", "key"]
    out: list[str] = ["import os", "import sys", "", ""]
    n = 0
    while len(out) < lines:
        n += 1
        a, b = rng.sample(words, 2)
        out.append(f"class {a.title()}{b.title()}{n}:")
        out.append(f'    """Handle {a} and {b} ({n})."""')
        out.append("")
        out.append(f"    def __init__(self, {a}, {b}=None):")
        out.append(f"        self.{a} = {a}")
        out.append(f"        self.{b} = {b} or {{}}")
        out.append("")
        for m in range(rng.randint(1, 4)):
            c = rng.choice(words)
            out.append(f"    def get_{c}_{m}(self, {c}, retries={rng.randint(1, 9)}):")
            out.append("        for attempt in range(retries):")
            out.append(f"            {c} = self.{a}.get({c!r}, os.environ.get('{c.upper()}'))")
            out.append(f"            if {c} is not None and attempt < {rng.randint(2, 5)}:")
            out.append(f"                return [{c}, self.{b}, {m} * attempt]")
            out.append(f"        return fetch_{c}(self.{a}, {c}, timeout={rng.randint(1, 30)})")
            out.append("")
        out.append("")
    return "\n".join(out[:lines]) + "\n"


@dataclass
class TypingTimes:
    """Microseconds, one entry per keystroke (``edit``, ``eager``) or per burst."""

    edit: list[float] = field(default_factory=list)  # apply_edit: the keystroke path
    eager: list[float] = field(default_factory=list)  # apply_edit + re-parse at once
    burst: list[float] = field(default_factory=list)  # one re-parse after a whole burst


def _bursts(text: str, count: int, seed: int) -> list[tuple[int, str]]:
    """Where and what a person types: (offset, characters), reverted after each burst."""
    rng = random.Random(seed)
    line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    bursts = []
    typed = 0
    while typed < count:
        row = rng.randrange(len(line_starts) - 1)
        line_len = line_starts[row + 1] - line_starts[row] - 1
        at_end = rng.random() < 0.5
        offset = line_starts[row] + (line_len if at_end else rng.randint(0, max(line_len, 0)))
        chars = "".join(rng.choice(TYPED) for _ in range(rng.randint(1, 8)))
        bursts.append((offset, chars))
        typed += 2 * len(chars)
    return bursts


TYPED = "abcdefghijklmnopqrstuvwxyz_(), ="


def time_typing(text: str, edits: int, seed: int) -> TypingTimes:
    """Time typing bursts: go to a random place in a random line (its end, or inside
    it), type 1-8 characters one edit at a time, then backspace them one at a time.

    Syntax errors are transient and local, as in real editing, and the file returns to
    its original text after each burst. Each burst runs twice on the same document:
    once re-parsing after every keystroke (``eager``), once re-parsing at the end of
    the burst, as the server does when the typing settles (``edit`` and ``burst``).
    """
    doc = ParsedDocument(text, path="bench.py")
    times = TypingTimes()
    clock = time.perf_counter_ns
    for offset, chars in _bursts(text, edits, seed):
        for i, ch in enumerate(chars):
            t0 = clock()
            doc.apply_edit(offset + i, offset + i, ch)
            doc.reparse()
            times.eager.append((clock() - t0) / 1000.0)
        for i in reversed(range(len(chars))):
            t0 = clock()
            doc.apply_edit(offset + i, offset + i + 1, "")
            doc.reparse()
            times.eager.append((clock() - t0) / 1000.0)
        for i, ch in enumerate(chars):
            t0 = clock()
            doc.apply_edit(offset + i, offset + i, ch)
            times.edit.append((clock() - t0) / 1000.0)
        t0 = clock()
        doc.reparse()
        times.burst.append((clock() - t0) / 1000.0)
        for i in reversed(range(len(chars))):
            t0 = clock()
            doc.apply_edit(offset + i, offset + i + 1, "")
            times.edit.append((clock() - t0) / 1000.0)
        t0 = clock()
        doc.reparse()
        times.burst.append((clock() - t0) / 1000.0)
    if doc.text != text:
        raise AssertionError("typing bursts did not restore the text")
    return times


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 1)


def run(args: argparse.Namespace) -> int:
    results: dict[str, dict[str, float]] = {}
    print("µs per keystroke (apply_edit), per keystroke if re-parsed at once, per burst re-parse")
    print(
        f"{'lines':>7} {'keys':>6} {'edit p50':>9} {'edit p99':>9} {'eager p50':>10}"
        f" {'eager p99':>10} {'burst p50':>10} {'burst p99':>10}"
    )
    for size in SIZES:
        text = generate_python(size, seed=args.seed)
        t = time_typing(text, args.edits, seed=args.seed)
        row = {
            "p50_us": _pct(t.edit, 50),
            "p99_us": _pct(t.edit, 99),
            "eager_p50_us": _pct(t.eager, 50),
            "eager_p99_us": _pct(t.eager, 99),
            "burst_reparse_p50_us": _pct(t.burst, 50),
            "burst_reparse_p99_us": _pct(t.burst, 99),
            "keystrokes": len(t.edit),
            "bursts": len(t.burst),
        }
        results[str(size)] = row
        print(
            f"{size:>7} {len(t.edit):>6} {row['p50_us']:>9} {row['p99_us']:>9}"
            f" {row['eager_p50_us']:>10} {row['eager_p99_us']:>10}"
            f" {row['burst_reparse_p50_us']:>10} {row['burst_reparse_p99_us']:>10}"
        )
    verdict = "met" if results[str(SIZES[-1])]["p99_us"] <= TARGET_P99_US else "NOT met"
    print(f"target: keystroke p99 <= {TARGET_P99_US:.0f} µs on the {SIZES[-1]}-line file: {verdict}")
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps({"files": results}, indent=2) + "\n")
    return 0
