"""``ripple replay REPO_PATH``: what ripple would have suggested in a repository's recent commits.

The last ``--last N`` non-merge commits reachable from ``HEAD`` are mined into commit
records (``training/mining.py``, the data set's selection rules) and replayed hunk by
hunk exactly as the replay benchmark does (``training/replay.py``): after each hunk the
shipped system (``make_predictor("ripple")``, the gated ensemble ``ripple serve`` runs)
sees the commit's files, the hunks so far as live edits and the cursor, and its top
suggestion is compared with the hunks still to come.

Printed: one block per commit (oldest first) with a line per step: where the true next
hunk is, ripple's top suggestion, and whether it was exactly right and at the right
place; ``--verbose`` adds the texts. Then a summary with the benchmark's figures
(exact@1, exact@5, location@1, precision@1, coverage). ``--json OUT`` writes the summary
and every step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ripple.models.errors import UsageError
from ripple.models.suggest.api import Lines, Predictor, Suggestion
from ripple.models.suggest.registry import SHIPPED, make_predictor
from ripple.training.data import CommitRecord
from ripple.training.mining import GitError, MiningStats, mine_commits, resolve_repository
from ripple.training.progress import Progress
from ripple.training.replay import (
    MAX_HUNKS,
    MIN_HUNKS,
    ReplayStep,
    SystemScore,
    ask,
    commit_hunks,
    is_exact,
    is_location,
    replay_steps,
)

DEFAULT_LAST = 20
SUFFIX = ".py"


@dataclass(frozen=True)
class RecentCommit:
    """One of the last commits: its id, subject, and whether it touches a Python file."""

    sha: str
    subject: str
    touches_python: bool


@dataclass
class StepResult:
    """One replayed step: the truth, ripple's answer and how it scored."""

    index: int
    step: ReplayStep
    suggestions: list[Suggestion]
    latency_ms: float
    failed: bool

    @property
    def top(self) -> Suggestion | None:
        return self.suggestions[0] if self.suggestions else None

    @property
    def exact(self) -> bool:
        top = self.top
        return top is not None and any(is_exact(top, t) for t in self.step.truth)

    @property
    def exact5(self) -> bool:
        return any(is_exact(s, t) for s in self.suggestions for t in self.step.truth)

    @property
    def location(self) -> bool:
        top = self.top
        return top is not None and any(is_location(top, t) for t in self.step.truth)


@dataclass
class CommitResult:
    """A commit of the window: replayed (with its steps) or skipped (with the reason)."""

    commit: RecentCommit
    hunks: int = 0
    skipped: str | None = None
    steps: list[StepResult] = field(default_factory=list)


# ---------------------------------------------------------------- git


def _unquote(name: str) -> str:
    # git quotes unusual path names ("caf\303\251.py"); only the suffix matters here.
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] == '"' else name


def recent_commits(repo: Path, tip: str, count: int) -> list[RecentCommit]:
    """The last ``count`` non-merge commits reachable from ``tip``, newest first.

    The order is ``git rev-list --date-order``'s, the one mining walks in.
    """
    env = {**os.environ, "GIT_PAGER": "cat", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    proc = subprocess.run(
        [
            "git", "-C", str(repo), "log", "--no-merges", "--date-order", "--no-renames",
            f"--max-count={count}", "--format=%x1e%H%x1f%s", "--name-only", tip, "--",
        ],
        capture_output=True,
        text=True,
        errors="replace",
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise GitError(f"{repo}: cannot list commits ({lines[-1] if lines else 'git log failed'})")
    commits: list[RecentCommit] = []
    for chunk in proc.stdout.split("\x1e")[1:]:
        head, _, names = chunk.partition("\n")
        sha, _, subject = head.partition("\x1f")
        python = any(_unquote(n.strip()).endswith(SUFFIX) for n in names.splitlines() if n.strip())
        commits.append(RecentCommit(sha.strip(), subject.strip(), python))
    return commits


def mine_window(repo: Path, tip: str, window: Sequence[RecentCommit]) -> dict[str, CommitRecord]:
    """Commit records of the window's commits that the mining rules keep, by sha."""
    wanted = {c.sha for c in window if c.touches_python}
    found: dict[str, CommitRecord] = {}
    if not wanted:
        return found
    stats = MiningStats()
    records = mine_commits(repo, tip, newest_first=True, stats=stats)
    try:
        for record in records:
            if record.commit not in wanted:
                break  # newest first: past the window
            found[record.commit] = record
            if len(found) == len(wanted) or stats.seen >= len(window):
                break
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()  # ends the git processes
    return found


# ---------------------------------------------------------------- replay


def replay_window(
    window: Sequence[RecentCommit],
    records: dict[str, CommitRecord],
    predictor: Predictor,
    quiet: bool = True,
) -> list[CommitResult]:
    """Replay the window's commits oldest first; skipped ones say why."""
    results: list[CommitResult] = []
    with Progress(len(window), "replay", quiet=quiet) as bar:
        for commit in reversed(window):
            result = CommitResult(commit)
            results.append(result)
            record = records.get(commit.sha)
            if not commit.touches_python:
                result.skipped = "no Python changes"
            elif record is None:
                result.skipped = (
                    "outside the mining rules (a root commit, over 10 Python files or "
                    "300 changed lines, or not text)"
                )
            else:
                result.hunks = len(commit_hunks(record))
                steps = replay_steps(record)
                if steps is None:
                    result.skipped = (
                        f"{result.hunks} hunk{'s' if result.hunks != 1 else ''} "
                        f"(replay needs {MIN_HUNKS} to {MAX_HUNKS})"
                    )
                else:
                    for i, step in enumerate(steps, 1):
                        suggestions, ms, failed = ask(predictor, step.ctx)
                        result.steps.append(StepResult(i, step, suggestions, ms, failed))
            bar.advance(note=f"{sum(len(r.steps) for r in results)} steps")
    return results


def score(results: Sequence[CommitResult]) -> SystemScore:
    """The replay benchmark's running totals over every replayed step."""
    total = SystemScore()
    for result in results:
        for s in result.steps:
            total.errors += s.failed
            total.add(s.suggestions, s.step.truth, s.latency_ms)
    return total


# ---------------------------------------------------------------- output


def _marks(stream: TextIO) -> tuple[str, str]:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "✓✗".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "yes", "no"
    return "✓", "✗"


def _where(s: Suggestion) -> str:
    """``path:line`` (1-based) of a replacement, with its extent when not one line."""
    if s.start_line == s.end_line:
        return f"{s.path}:{s.start_line + 1} (insert)"
    if not s.new_lines:
        last = f"-{s.end_line}" if s.end_line - s.start_line > 1 else ""
        return f"{s.path}:{s.start_line + 1}{last} (delete)"
    if s.end_line - s.start_line == 1:
        return f"{s.path}:{s.start_line + 1}"
    return f"{s.path}:{s.start_line + 1}-{s.end_line}"


def _short(lines: Sequence[str], width: int = 60) -> str:
    text = " ⏎ ".join(line.strip() for line in lines if line.strip())
    return text if len(text) <= width else text[: width - 1] + "…"


def _diff(old: Lines, new: Sequence[str], indent: str) -> list[str]:
    out = [f"{indent}- {line.rstrip()}" for line in old]
    out += [f"{indent}+ {line.rstrip()}" for line in new]
    return out or [f"{indent}(no lines)"]


def _safe(text: str, stream: TextIO) -> str:
    encoding = getattr(stream, "encoding", None) or "ascii"
    return text.encode(encoding, "replace").decode(encoding, "replace")


def format_commit(result: CommitResult, verbose: bool, marks: tuple[str, str]) -> list[str]:
    """The printed block of one commit."""
    yes, no = marks
    head = f"{result.commit.sha[:10]}  {result.commit.subject or '(no subject)'}"
    if result.skipped is not None:
        return [f"{head}", f"    skipped: {result.skipped}"]
    n = len(result.steps)
    lines = [f"{head}  ({result.hunks} hunks, {n} step{'s' if n != 1 else ''})"]
    width = max(len(_where(s.step.truth[0])) for s in result.steps)
    for s in result.steps:
        truth = s.step.truth[0]
        row = f"    {s.index:>2}. next {_where(truth):<{width}}  ripple "
        top = s.top
        if top is None:
            row += "(silent)" + ("  [the predictor failed]" if s.failed else "")
        else:
            row += (
                f"{_where(top)}  exact {yes if s.exact else no}  "
                f"location {yes if s.location else no}  {_short(top.new_lines, 48)}"
            )
        lines.append(row)
        if verbose:
            files = s.step.ctx.files
            cur = s.step.ctx.cursor
            lines.append(f"        cursor {cur.path}:{cur.line + 1}:{cur.col + 1}; true next hunk:")
            lines += _diff(files[truth.path][truth.start_line : truth.end_line], truth.new_lines, "          ")
            for rank, sug in enumerate(s.suggestions, 1):
                why = f"  [{sug.explanation}]" if sug.explanation else ""
                lines.append(f"        ripple #{rank} {_where(sug)} score {sug.score:.2f}{why}")
                old = files.get(sug.path, ())[sug.start_line : sug.end_line]
                lines += _diff(old, sug.new_lines, "          ")
    return lines


_COLUMNS = ("steps", "suggestions shown", "exact@1", "exact@5", "location@1", "precision@1", "p50 ms", "p99 ms")


def format_summary(results: Sequence[CommitResult], total: SystemScore, asked: int) -> list[str]:
    """The summary: what was replayed and the benchmark's figures in one table."""
    replayed = sum(1 for r in results if r.skipped is None)
    reasons: dict[str, int] = {}
    for r in results:
        if r.skipped is not None:
            key = "too few or too many hunks" if "hunk" in r.skipped else r.skipped.split(" (")[0]
            reasons[key] = reasons.get(key, 0) + 1
    walked = f"{len(results)} commits" + (f" (of {asked} asked for)" if len(results) < asked else "")
    skipped = ", ".join(f"{n} {why}" for why, n in reasons.items())
    out = [f"{walked}: {replayed} replayed" + (f", skipped: {skipped}" if skipped else "")]
    m = total.metrics()
    values = (
        str(total.steps),
        str(total.answered),
        f"{m['exact@1']:.3f} ({total.exact1})",
        f"{m['exact@5']:.3f} ({total.exact5})",
        f"{m['location@1']:.3f} ({total.location1})",
        f"{m['precision@1']:.3f}",
        f"{m['latency_ms_p50']:.2f}",
        f"{m['latency_ms_p99']:.2f}",
    )
    widths = [max(len(c), len(v)) for c, v in zip(_COLUMNS, values, strict=True)]
    out.append("  ".join(f"{c:>{w}}" for c, w in zip(_COLUMNS, widths, strict=True)))
    out.append("  ".join("-" * w for w in widths))
    out.append("  ".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True)))
    if total.errors:
        out.append(f"({total.errors} steps where the predictor failed count as silent)")
    return out


def _suggestion_json(s: Suggestion) -> dict[str, Any]:
    return {
        "path": s.path,
        "start_line": s.start_line,
        "end_line": s.end_line,
        "new_lines": list(s.new_lines),
        "score": s.score,
        "explanation": s.explanation,
    }


def to_json(repo: Path, tip: str, asked: int, results: Sequence[CommitResult], total: SystemScore) -> dict[str, Any]:
    """The summary and every step, for ``--json``."""
    commits = []
    for r in results:
        entry: dict[str, Any] = {
            "commit": r.commit.sha,
            "subject": r.commit.subject,
            "hunks": r.hunks,
            "skipped": r.skipped,
            "steps": [],
        }
        for s in r.steps:
            truth = s.step.truth[0]
            cur = s.step.ctx.cursor
            entry["steps"].append(
                {
                    "step": s.index,
                    "cursor": {"path": cur.path, "line": cur.line, "col": cur.col},
                    "next": {
                        **_suggestion_json(truth),
                        "old_lines": list(s.step.ctx.files[truth.path][truth.start_line : truth.end_line]),
                    },
                    "remaining_hunks": len(s.step.truth),
                    "suggestions": [_suggestion_json(x) for x in s.suggestions],
                    "exact@1": s.exact,
                    "exact@5": s.exact5,
                    "location@1": s.location,
                    "latency_ms": round(s.latency_ms, 3),
                    "failed": s.failed,
                }
            )
        commits.append(entry)
    return {
        "repo": str(repo),
        "head": tip,
        "system": SHIPPED,
        "last": asked,
        "commits_walked": len(results),
        "commits_replayed": sum(1 for r in results if r.skipped is None),
        "steps": total.steps,
        "summary": {
            **total.metrics(),
            "steps": total.steps,
            "suggestions_shown": total.answered,
            "exact@1_hits": total.exact1,
            "exact@5_hits": total.exact5,
            "location@1_hits": total.location1,
            "errors": total.errors,
        },
        "commits": commits,
    }


def run(args: argparse.Namespace) -> int:
    """``ripple replay REPO_PATH``: print each commit's steps and the summary."""
    repo: Path = args.repo
    if args.last < 1:
        raise UsageError("--last must be at least 1")
    tip = resolve_repository(repo, "HEAD")
    window = recent_commits(repo, tip, args.last)
    if not window:
        raise UsageError(f"{repo}: no non-merge commits reachable from HEAD")
    if not any(c.touches_python for c in window):
        raise UsageError(
            f"{repo}: none of the last {len(window)} commits changes a Python file; nothing to replay"
        )
    t0 = time.perf_counter()
    records = mine_window(repo, tip, window)
    predictor = make_predictor(SHIPPED)
    results = replay_window(window, records, predictor, quiet=args.quiet)
    total = score(results)
    elapsed = time.perf_counter() - t0
    out = sys.stdout
    marks = _marks(out)
    blocks: list[str] = []
    if len(window) < args.last:
        blocks.append(f"{repo} has {len(window)} non-merge commits (fewer than {args.last}); replaying them all")
        blocks.append("")
    for result in results:
        blocks += format_commit(result, args.verbose, marks)
        blocks.append("")
    blocks += format_summary(results, total, args.last)
    if total.steps == 0:
        blocks.append(
            f"no commit could be replayed: each needs {MIN_HUNKS} to {MAX_HUNKS} hunks "
            "in Python files it modifies"
        )
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        report = to_json(repo, tip, args.last, results, total)
        args.json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        blocks.append(f"({elapsed:.1f} s; JSON written to {args.json_out})")
    else:
        blocks.append(f"({elapsed:.1f} s)")
    print(_safe("\n".join(blocks), out), file=out)
    return 0
