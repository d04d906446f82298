"""``ripple eval calibrate``: choose the confidence gate of the shipped ensemble.

Every member of the shipped system (the rules and each bundled model) is replayed on
the given commits (the validation repositories) exactly as the replay benchmark does.
For each member, the top suggestion of every step where it spoke is kept with its score
and whether it was exactly right. The member's threshold is the lowest score at which
the suggestions at or above it are right at least ``--precision`` of the time (with at
least ``--min-support`` of them, so that a lucky handful does not set the bar); a
member that never gets there is silenced (threshold above any score it gives). The
thresholds, the full precision / coverage curve of every member and the command are
written to ``gate.json``, which the server and ``make_shipped`` read next to the models.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ripple.models.errors import UsageError
from ripple.models.suggest.api import Predictor
from ripple.models.suggest.ensemble import GATE_FILE, Gate
from ripple.models.suggest.registry import make_shipped
from ripple.training.progress import Progress
from ripple.training.replay import ask, is_exact, iter_replay_commits

SILENCED = 1.01  # above any score in [0, 1]


@dataclass
class MemberScores:
    """(score, exact) of a member's top suggestion at every step where it spoke."""

    name: str
    tops: list[tuple[float, bool]] = field(default_factory=list)
    steps: int = 0

    def curve(self) -> list[dict[str, float]]:
        """Precision and coverage of the suggestions at or above each distinct score."""
        # Scores that differ only by float noise (0.6 vs 0.6000000001) are one threshold.
        ranked = sorted(((round(s, 6), e) for s, e in self.tops), key=lambda t: -t[0])
        out: list[dict[str, float]] = []
        right = 0
        for i, (score, exact) in enumerate(ranked, start=1):
            right += exact
            if i == len(ranked) or ranked[i][0] != score:
                out.append(
                    {
                        "threshold": score,
                        "shown": i,
                        "precision": right / i,
                        "coverage": i / self.steps if self.steps else 0.0,
                    }
                )
        return out

    def threshold(self, precision: float, min_support: int) -> float:
        """The lowest score whose suggestions at or above it reach ``precision``."""
        best = SILENCED
        for point in self.curve():
            if point["shown"] >= min_support and point["precision"] >= precision:
                best = point["threshold"]
        return best


def calibrate(
    paths: Sequence[Path],
    members: Sequence[Predictor],
    precision: float,
    min_support: int = 20,
    max_commits: int | None = None,
    quiet: bool = True,
) -> tuple[Gate, dict[str, MemberScores], int]:
    """Replay ``paths`` through each member; the gate, the raw scores, the step count."""
    scores = {m.name: MemberScores(m.name) for m in members}
    steps = 0
    total = max_commits * len(paths) if max_commits is not None else None
    with Progress(total, "calibrate", quiet=quiet) as bar:
        for _, commit_steps in iter_replay_commits(paths, max_commits):
            for step in commit_steps:
                steps += 1
                for member in members:
                    suggestions, _, _ = ask(member, step.ctx)
                    record = scores[member.name]
                    record.steps += 1
                    if suggestions:
                        top = suggestions[0]
                        record.tops.append(
                            (top.score, any(is_exact(top, t) for t in step.truth))
                        )
            bar.advance(note=f"{steps} steps")
    thresholds = {name: s.threshold(precision, min_support) for name, s in scores.items()}
    metadata: dict[str, Any] = {
        "target_precision": precision,
        "min_support": min_support,
        "steps": steps,
        "commits": [str(p) for p in paths],
        "max_commits": max_commits,
        "command": " ".join(["ripple", *sys.argv[1:]]) if sys.argv else "",
        "members": {
            name: {
                "spoke": len(s.tops),
                "threshold": thresholds[name],
                "curve": s.curve(),
            }
            for name, s in scores.items()
        },
    }
    return Gate(thresholds, 0.0, metadata), scores, steps


def run(args: argparse.Namespace) -> int:
    paths: list[Path] = list(args.commits)
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such commit file")
    if not 0.0 < args.precision <= 1.0:
        raise UsageError("--precision must be in (0, 1]")
    shipped = make_shipped(args.models)
    for problem in shipped.problems:
        print(f"ripple: warning: {problem}", file=sys.stderr)
    members = shipped.ensemble.members
    t0 = time.perf_counter()
    gate, scores, steps = calibrate(
        paths, members, args.precision, args.min_support, args.max_commits, quiet=args.quiet
    )
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(gate.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(f"{steps} steps; target precision {args.precision:.2f}")
    print(f"{'member':<12} {'spoke':>6} {'threshold':>10} {'shown':>6} {'precision':>10} {'coverage':>9}")
    for name, record in scores.items():
        threshold = gate.threshold(name)
        kept = [t for t in record.tops if t[0] >= threshold]
        right = sum(exact for _, exact in kept)
        prec = right / len(kept) if kept else 0.0
        cov = len(kept) / steps if steps else 0.0
        shown = "silenced" if threshold >= SILENCED else f"{threshold:.3f}"
        print(f"{name:<12} {len(record.tops):>6} {shown:>10} {len(kept):>6} {prec:>10.3f} {cov:>9.3f}")
    print(f"({time.perf_counter() - t0:.1f} s; gate written to {out}; the server reads {GATE_FILE} next to its models)")
    return 0
