"""``ripple bench diff``: ripple's AST diff against the ``code-diff`` package (C3PO §3.2).

Both tools get the same real before/after file pairs from commit records and run end
to end from source text (tree-sitter parse, GumTree matching, edit script), so parsing
is inside both timings. Printed: median/p99 time per pair and mean script length for
each, the speedup, and how the cost grows with tree size (buckets of before-tree node
counts). The JSON::

    {"pairs": n, "ripple": {"median_ms", "p99_ms", "mean_actions"},
     "code-diff": {same keys}, "speedup": median over pairs of code-diff / ripple time,
     "speedup_of_medians", "code_diff_timeouts", "code_diff_errors", "by_size": [...]}

``code-diff`` 0.1.3 (the ``bench`` extra) does not run on tree-sitter 0.26 as shipped:
its front end ``code_tokenize`` 0.2.1 builds parsers with the pre-0.22 API
(``Parser().set_language``, ``Language(path, name)``) and tries to clone grammars from
GitHub. We replace ``code_tokenize.ASTParser`` with a 10-line class that builds the
same tree-sitter-python 0.25 parser ripple uses; code-diff's own algorithm is untouched.

code-diff takes minutes on some large pairs, so each of its runs is cut at
``CODE_DIFF_TIMEOUT_S``; a cut run counts with the timeout as its time (an
underestimate: it only makes code-diff look faster) and is reported.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import signal
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from ripple.models.edits.editscript import diff_sources
from ripple.models.edits.languages import make_parser
from ripple.models.errors import UsageError
from ripple.training.data import iter_commits

CODE_DIFF_TIMEOUT_S = 20.0
SIZE_BUCKETS = (1_000, 5_000, 20_000)  # upper bounds of before-tree node counts


@dataclass
class PairResult:
    nodes: int
    ripple_s: float
    ripple_actions: int
    code_diff_s: float
    code_diff_actions: int | None  # None: timed out or failed


class _CodeDiffTimeout(Exception):
    pass


def _load_code_diff() -> Any:
    """Import code-diff with its parser front end ported to tree-sitter 0.26 (module doc)."""
    try:
        code_tokenize: Any = importlib.import_module("code_tokenize")
        code_diff = importlib.import_module("code_diff")
    except ImportError:
        raise UsageError(
            "ripple bench diff needs the code-diff package: pip install -e '.[bench]'"
        ) from None

    class TreeSitter026Parser:
        """Stands in for code_tokenize.ASTParser (same parse() contract)."""

        def __init__(self, lang: str) -> None:
            self.parser = make_parser(lang)

        def parse(self, source_code: str) -> tuple[Any, list[str]]:
            return self.parser.parse(source_code.encode("utf-8")), source_code.splitlines()

    code_tokenize.ASTParser = TreeSitter026Parser
    return code_diff


def iter_pairs(paths: list[Path], max_pairs: int) -> Iterator[tuple[str, str]]:
    """(before, after) texts of modified files, in file order, at most ``max_pairs``."""
    n = 0
    for path in paths:
        if not path.is_file():
            raise UsageError(f"no such commit file: {path}")
        for record in iter_commits(path):
            for change in record.files:
                if change.before is None or change.after is None:
                    continue
                yield change.before, change.after
                n += 1
                if n >= max_pairs:
                    return


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _CodeDiffTimeout


def _time_code_diff(code_diff: Any, old: str, new: str) -> tuple[float, int | None]:
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, CODE_DIFF_TIMEOUT_S)
    start = time.perf_counter()
    try:
        script = code_diff.difference(old, new, lang="python").edit_script()
        actions: int | None = len(script)
    except _CodeDiffTimeout:
        return CODE_DIFF_TIMEOUT_S, None
    except ValueError as exc:
        # code-diff raises when the two trees are identical (a comment-only change):
        # an empty script. It also raises on an empty file: a failure, not a script.
        if "identical" not in str(exc):
            return time.perf_counter() - start, None
        actions = 0
    except Exception:  # a crash inside code-diff: counted, not fatal to the benchmark
        return time.perf_counter() - start, None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return time.perf_counter() - start, actions


def measure(pairs: Iterator[tuple[str, str]], code_diff: Any) -> list[PairResult]:
    results: list[PairResult] = []
    for old, new in pairs:
        gc.collect()
        start = time.perf_counter()
        script = diff_sources(old, new)
        ripple_s = time.perf_counter() - start
        nodes = script.before.size
        cd_s, cd_actions = _time_code_diff(code_diff, old, new)
        results.append(PairResult(nodes, ripple_s, len(script), cd_s, cd_actions))
    return results


def _stats(times_s: list[float], actions: list[int]) -> dict[str, float]:
    ms = sorted(t * 1000 for t in times_s)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p99_ms": round(p99, 3),
        "mean_actions": round(statistics.mean(actions), 2) if actions else float("nan"),
    }


def summarize(results: list[PairResult]) -> dict[str, Any]:
    ok = [r for r in results if r.code_diff_actions is not None]
    ratios = [r.code_diff_s / r.ripple_s for r in results if r.ripple_s > 0]
    ripple = _stats([r.ripple_s for r in results], [r.ripple_actions for r in results])
    code_diff = _stats(
        [r.code_diff_s for r in results], [r.code_diff_actions or 0 for r in ok]
    )
    by_size: list[dict[str, Any]] = []
    low = 0
    for high in (*SIZE_BUCKETS, None):
        bucket = [r for r in results if r.nodes >= low and (high is None or r.nodes < high)]
        if bucket:
            by_size.append({
                "nodes": f"{low}-{high - 1}" if high is not None else f">={low}",
                "pairs": len(bucket),
                "mean_nodes": round(statistics.mean(r.nodes for r in bucket)),
                "ripple_median_ms": round(statistics.median(r.ripple_s for r in bucket) * 1000, 3),
                "ripple_ms_per_1k_nodes": round(
                    statistics.median(r.ripple_s / r.nodes for r in bucket) * 1e6, 3
                ),
                "code_diff_median_ms": round(
                    statistics.median(r.code_diff_s for r in bucket) * 1000, 3
                ),
            })
        low = high if high is not None else low
    return {
        "pairs": len(results),
        "ripple": ripple,
        "code-diff": code_diff,
        "speedup": round(statistics.median(ratios), 2) if ratios else float("nan"),
        "speedup_of_medians": round(code_diff["median_ms"] / ripple["median_ms"], 2)
        if ripple["median_ms"] > 0 else float("nan"),
        # Same-pair script lengths, on pairs where code-diff finished.
        "mean_actions_same_pairs": {
            "ripple": round(statistics.mean(r.ripple_actions for r in ok), 2) if ok else None,
            "code-diff": round(statistics.mean(r.code_diff_actions or 0 for r in ok), 2)
            if ok else None,
        },
        "code_diff_timeouts": sum(1 for r in results if r.code_diff_s >= CODE_DIFF_TIMEOUT_S),
        "code_diff_errors": len(results) - len(ok),
        "by_size": by_size,
    }


def format_report(summary: dict[str, Any]) -> str:
    lines = [
        f"pairs: {summary['pairs']}",
        f"{'':10} {'median ms':>10} {'p99 ms':>10} {'mean actions':>13}",
    ]
    for name in ("ripple", "code-diff"):
        s = summary[name]
        lines.append(f"{name:10} {s['median_ms']:>10.2f} {s['p99_ms']:>10.2f} {s['mean_actions']:>13.2f}")
    same = summary["mean_actions_same_pairs"]
    lines.append(
        f"speedup (median of per-pair ratios): {summary['speedup']}x; "
        f"of medians: {summary['speedup_of_medians']}x"
    )
    lines.append(
        f"mean actions on pairs code-diff finished: ripple {same['ripple']}, "
        f"code-diff {same['code-diff']}; code-diff timeouts ({CODE_DIFF_TIMEOUT_S:.0f} s): "
        f"{summary['code_diff_timeouts']}, failures: {summary['code_diff_errors']}"
    )
    lines.append("")
    lines.append("cost vs tree size (before-tree nodes)")
    lines.append(
        f"{'nodes':>14} {'pairs':>6} {'mean nodes':>11} {'ripple ms':>10} "
        f"{'ms/1k nodes':>12} {'code-diff ms':>13}"
    )
    for b in summary["by_size"]:
        lines.append(
            f"{b['nodes']:>14} {b['pairs']:>6} {b['mean_nodes']:>11} {b['ripple_median_ms']:>10.2f} "
            f"{b['ripple_ms_per_1k_nodes']:>12.3f} {b['code_diff_median_ms']:>13.2f}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    commits: list[Path] = list(args.commits)
    json_out: Path = args.json_out
    max_pairs: int = args.max_pairs
    if max_pairs <= 0:
        raise UsageError("--max-pairs must be positive")
    code_diff = _load_code_diff()
    results = measure(iter_pairs(commits, max_pairs), code_diff)
    if not results:
        raise UsageError("no modified file pairs in the given commit files")
    summary = summarize(results)
    print(format_report(summary))
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0
