"""The replay benchmark of BENCHMARK.md: next-edit prediction on real commits.

Each kept commit is cut into line hunks (``ripple.models.edits.hunks``) and replayed one
hunk at a time: after hunks ``1..j`` every system sees the workspace, the live edits so far
and the cursor at the end of hunk ``j``, and is scored on whether its suggestions are the
remaining hunks ``j+1..H``. All systems answer the same steps in the same run.

``ripple eval replay --commits FILE... --json OUT`` prints a table and writes::

    {"commits": int, "steps": int,
     "systems": {NAME: {"exact@1", "exact@5", "location@1", "precision@1", "coverage",
                        "latency_ms_p50", "latency_ms_p99"}}}
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ripple.models.edits.hunks import LineHunk, split_lines, text_hunks
from ripple.models.errors import UsageError
from ripple.models.metrics import percentile
from ripple.models.suggest.api import Cursor, EditContext, Lines, LiveEdit, Predictor, Suggestion
from ripple.models.suggest.registry import make_predictor, system_names
from ripple.training.data import CommitRecord, iter_commits
from ripple.training.progress import Progress

MIN_HUNKS = 2
MAX_HUNKS = 20
TOP_K = 5


@dataclass(frozen=True)
class ReplayStep:
    """What a system sees after hunk ``j`` of a commit, and the hunks still to come."""

    ctx: EditContext
    truth: tuple[Suggestion, ...]


def commit_hunks(rec: CommitRecord) -> list[tuple[str, LineHunk]]:
    """Every hunk of the commit's modified files: by file in record order, then top down."""
    out: list[tuple[str, LineHunk]] = []
    for f in rec.files:
        if f.before is not None and f.after is not None:
            out.extend((f.path, h) for h in text_hunks(f.before, f.after))
    return out


def _cursor_after(path: str, start: int, new_lines: Lines) -> Cursor:
    """The position just after the last character of the new text (before its newline)."""
    if not new_lines:
        return Cursor(path, start, 0)
    last = new_lines[-1]
    return Cursor(path, start + len(new_lines) - 1, len(last.rstrip("\r\n")))


def replay_steps(rec: CommitRecord) -> list[ReplayStep] | None:
    """The steps of one commit, or ``None`` when it is not kept (fewer than 2 or over 20 hunks).

    The workspace is every file of the commit that exists on both sides (record order):
    a file the commit adds has no state to replay on, and one it deletes is on its way
    out (this is what reproduces BENCHMARK.md's reference figures).
    """
    hunks = commit_hunks(rec)
    if not MIN_HUNKS <= len(hunks) <= MAX_HUNKS:
        return None
    base: dict[str, Lines] = {
        f.path: tuple(split_lines(f.before))
        for f in rec.files
        if f.before is not None and f.after is not None
    }
    state = dict(base)
    offset = dict.fromkeys(base, 0)  # lines inserted above the next hunk of each file
    edits: list[LiveEdit] = []
    steps: list[ReplayStep] = []
    for j in range(len(hunks) - 1):
        path, hunk = hunks[j]
        start, end = hunk.start + offset[path], hunk.end + offset[path]
        lines = state[path]
        state[path] = (*lines[:start], *hunk.new_lines, *lines[end:])
        offset[path] += hunk.delta
        edits.append(LiveEdit(path, start, end, hunk.old_lines, hunk.new_lines))
        truth = tuple(
            Suggestion(p, h.start + offset[p], h.end + offset[p], h.new_lines)
            for p, h in hunks[j + 1 :]
        )
        ctx = EditContext(dict(state), base, tuple(edits), _cursor_after(path, start, hunk.new_lines))
        steps.append(ReplayStep(ctx, truth))
    return steps


def iter_replay_commits(
    paths: Iterable[Path], max_commits: int | None = None
) -> Iterator[tuple[CommitRecord, list[ReplayStep]]]:
    """Kept commits with their steps: the first ``max_commits`` of each file, in file order."""
    for path in paths:
        kept = 0
        if max_commits is not None and max_commits <= 0:
            continue
        for rec in iter_commits(path):
            steps = replay_steps(rec)
            if steps is None:
                continue
            yield rec, steps
            kept += 1
            if max_commits is not None and kept >= max_commits:
                break


# ---------------------------------------------------------------- scoring


def _normalized(lines: Sequence[str]) -> tuple[str, ...]:
    return tuple(line.rstrip() for line in lines)


def is_exact(s: Suggestion, t: Suggestion) -> bool:
    """Same path, same range, same new lines up to trailing whitespace."""
    return (
        s.path == t.path
        and s.start_line == t.start_line
        and s.end_line == t.end_line
        and _normalized(s.new_lines) == _normalized(t.new_lines)
    )


def is_location(s: Suggestion, t: Suggestion) -> bool:
    """Ranges overlap in the same file, or touch when one of them is empty (an insertion)."""
    if s.path != t.path:
        return False
    if s.start_line < t.end_line and t.start_line < s.end_line:
        return True
    if s.start_line == s.end_line and t.start_line <= s.start_line <= t.end_line:
        return True
    return t.start_line == t.end_line and s.start_line <= t.start_line <= s.end_line


@dataclass
class SystemScore:
    """Running totals of one system over the steps seen so far."""

    steps: int = 0
    answered: int = 0
    exact1: int = 0
    exact5: int = 0
    location1: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, suggestions: Sequence[Suggestion], truth: Sequence[Suggestion], ms: float) -> None:
        """Score one step's answer (already cut to the top 5)."""
        self.steps += 1
        self.latencies_ms.append(ms)
        if not suggestions:
            return
        self.answered += 1
        top = suggestions[0]
        if any(is_exact(top, t) for t in truth):
            self.exact1 += 1
        if any(is_exact(s, t) for s in suggestions for t in truth):
            self.exact5 += 1
        if any(is_location(top, t) for t in truth):
            self.location1 += 1

    def metrics(self) -> dict[str, float]:
        """The JSON figures of BENCHMARK.md."""
        n = max(self.steps, 1)
        return {
            "exact@1": self.exact1 / n,
            "exact@5": self.exact5 / n,
            "location@1": self.location1 / n,
            "precision@1": self.exact1 / self.answered if self.answered else 0.0,
            "coverage": self.answered / n,
            "latency_ms_p50": percentile(self.latencies_ms, 50),
            "latency_ms_p99": percentile(self.latencies_ms, 99),
        }


@dataclass
class ReplayResult:
    """The outcome of one benchmark run."""

    commits: int = 0
    steps: int = 0
    systems: dict[str, SystemScore] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The JSON shape of BENCHMARK.md."""
        return {
            "commits": self.commits,
            "steps": self.steps,
            "systems": {name: score.metrics() for name, score in self.systems.items()},
        }


def ask(predictor: Predictor, ctx: EditContext) -> tuple[list[Suggestion], float, bool]:
    """The predictor's top suggestions, its latency in ms, and whether it failed.

    A predictor that raises counts as silent for the step: the product degrades the same
    way, to fewer suggestions, never to no answer.
    """
    t0 = time.perf_counter()
    try:
        out = predictor.suggest(ctx)[:TOP_K]
        failed = False
    except Exception:
        out, failed = [], True
    return out, (time.perf_counter() - t0) * 1000, failed


def run_replay(
    paths: Sequence[Path],
    predictors: Sequence[Predictor],
    max_commits: int | None = None,
    quiet: bool = True,
) -> ReplayResult:
    """Replay the kept commits of ``paths`` and score every predictor on every step."""
    result = ReplayResult(systems={p.name: SystemScore() for p in predictors})
    total = max_commits * len(paths) if max_commits is not None else None
    with Progress(total, "replay", quiet=quiet) as bar:
        for _, steps in iter_replay_commits(paths, max_commits):
            result.commits += 1
            for step in steps:
                result.steps += 1
                for predictor in predictors:
                    suggestions, ms, failed = ask(predictor, step.ctx)
                    score = result.systems[predictor.name]
                    score.errors += failed
                    score.add(suggestions, step.truth, ms)
            bar.advance(note=f"{result.steps} steps")
    return result


_COLUMNS = ("exact@1", "exact@5", "location@1", "precision@1", "coverage")


def format_table(result: ReplayResult) -> str:
    """The result as a fixed-width table, one system per row."""
    width = max([len("system"), *(len(name) for name in result.systems)])
    header = f"{'system':<{width}}  " + "  ".join(f"{c:>11}" for c in _COLUMNS)
    header += f"  {'p50 ms':>8}  {'p99 ms':>8}"
    rows = [f"{result.commits} commits, {result.steps} steps", header, "-" * len(header)]
    for name, score in result.systems.items():
        m = score.metrics()
        row = f"{name:<{width}}  " + "  ".join(f"{m[c]:>11.3f}" for c in _COLUMNS)
        row += f"  {m['latency_ms_p50']:>8.2f}  {m['latency_ms_p99']:>8.2f}"
        if score.errors:
            row += f"  ({score.errors} errors)"
        rows.append(row)
    return "\n".join(rows)


def parse_systems(spec: str | None) -> list[Predictor]:
    """Predictors for a comma-separated list of names (all registered systems for ``None``)."""
    known = system_names()
    names = known if spec is None else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UsageError(
            f"unknown system {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}"
        )
    return [make_predictor(n) for n in dict.fromkeys(names)]


def run(args: argparse.Namespace) -> int:
    """``ripple eval replay``: print the table and write the JSON report."""
    paths: list[Path] = list(args.commits)
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such commit file")
    if args.max_commits is not None and args.max_commits < 1:
        raise UsageError("--max-commits must be at least 1")
    predictors = parse_systems(args.systems)
    t0 = time.perf_counter()
    result = run_replay(paths, predictors, args.max_commits, quiet=args.quiet)
    elapsed = time.perf_counter() - t0
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    print(format_table(result))
    print(f"({elapsed:.1f} s; JSON written to {args.json_out})")
    return 0
