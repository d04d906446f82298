"""``ripple eval copy``: the span-copying editor and its baselines on held-out edit pairs.

Examples are built from the given commit files with the training builder
(``ripple.training.copy_data``); each system is an exported editor folder decoded through
onnxruntime with the merged-ray beam search, as served. Metrics follow Panthaplackel et al.
(2021, §4): ``exact`` = the top beam candidate that differs from the input fragment is the
gold fragment; ``exact@20`` = the gold fragment is among the beam's candidates; ``mrr`` =
mean reciprocal rank of the gold among them (0 when absent); ``decoder_actions`` = mean
decisions (the end included) the top candidate took, which is where copying spans pays.

``--json OUT`` writes ``{"examples": n, "systems": {NAME: {"exact", "exact@20", "mrr",
"decoder_actions"}}}``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ripple.models.errors import UsageError
from ripple.models.metrics import percentile
from ripple.models.suggest.copy_predictor import EDITORS_DIR, OnnxEditor
from ripple.training.copy_data import CopyExample, build_examples
from ripple.training.progress import Progress

__all__ = ["DEFAULT_SYSTEMS", "evaluate_editor", "run"]

DEFAULT_SYSTEMS: Final = ("copy-span", "copy-token", "copy-span-longest", "copy-span-nomarg")


def evaluate_editor(
    editor: OnnxEditor, examples: Sequence[CopyExample], beam: int, quiet: bool = False
) -> dict[str, float]:
    """The four metrics of one editor over ``examples`` (see the module docstring)."""
    exact = at_k = rr = actions = 0.0
    times: list[float] = []
    bar = Progress(len(examples), editor.name, quiet=quiet)
    with bar:
        for example in examples:
            fragment = example.input[: example.fragment]
            t0 = time.perf_counter()
            hyps = editor.beam(example.input, beam_size=beam)
            times.append((time.perf_counter() - t0) * 1000)
            candidates = [h for h in hyps if h.tokens != fragment]
            if candidates:
                actions += candidates[0].actions
                if candidates[0].tokens == example.output:
                    exact += 1
                for rank, hyp in enumerate(candidates, 1):
                    if hyp.tokens == example.output:
                        at_k += 1
                        rr += 1 / rank
                        break
            bar.advance(note=f"exact {exact / max(1, bar.done + 1):.3f}")
    n = max(1, len(examples))
    return {
        "exact": exact / n,
        f"exact@{beam}": at_k / n,
        "mrr": rr / n,
        "decoder_actions": actions / n,
        "latency_ms_p50": percentile(times, 50),
        "latency_ms_p99": percentile(times, 99),
    }


def _system_dirs(args: argparse.Namespace) -> dict[str, Path]:
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not names:
        raise UsageError("--systems names no system")
    overrides: dict[str, Path] = {}
    for spec in args.system_dir or []:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise UsageError(f"--system-dir {spec!r}: expected NAME=DIR")
        overrides[name] = Path(folder)
    from ripple.models.runtime import default_models_dir

    models = args.models if args.models is not None else default_models_dir()
    root = models / EDITORS_DIR if (models / EDITORS_DIR).is_dir() else models
    dirs = {name: overrides.get(name, root / name) for name in names}
    missing = [
        f"{name} ({folder})"
        for name, folder in dirs.items()
        if not (folder / "manifest.json").is_file()
    ]
    if missing:
        raise UsageError(
            f"no exported editor for {', '.join(missing)}; train with `ripple train copy --export`, "
            "or point --system-dir NAME=DIR at one"
        )
    return dirs


def run(args: argparse.Namespace) -> int:
    from ripple.models.runtime import ModelError, load_model

    for path in args.commits:
        if not path.is_file():
            raise UsageError(f"{path}: no such commit file")
    if args.beam < 1 or args.max_commits < 1:
        raise UsageError("--beam and --max-commits must be at least 1")
    dirs = _system_dirs(args)
    editors: dict[str, OnnxEditor] = {}
    for name, folder in dirs.items():
        try:
            editors[name] = OnnxEditor(load_model(folder, device=args.device, threads=args.threads))
        except (ModelError, ValueError) as exc:
            raise UsageError(f"{name}: {exc}") from None
    configs = {e.editor for e in editors.values()}
    if len(configs) != 1:
        raise UsageError(
            "the editors were trained with different fragment settings; evaluate them apart"
        )
    config = configs.pop()
    examples = build_examples(
        list(args.commits), config, args.max_commits, args.max_examples, "examples", args.quiet
    )
    if not examples:
        raise UsageError("the commits give no examples")
    report: dict[str, Any] = {"examples": len(examples), "beam": args.beam, "systems": {}}
    for name, editor in editors.items():
        report["systems"][name] = evaluate_editor(editor, examples, args.beam, args.quiet)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    k = f"exact@{args.beam}"
    rows = [f"{'system':<20} {'exact':>7} {k:>9} {'mrr':>7} {'actions':>8} {'p50 ms':>8}"]
    for name, m in report["systems"].items():
        rows.append(
            f"{name:<20} {m['exact']:>7.3f} {m[k]:>9.3f} {m['mrr']:>7.3f} "
            f"{m['decoder_actions']:>8.1f} {m['latency_ms_p50']:>8.1f}"
        )
    print(f"{len(examples)} examples from {', '.join(p.name for p in args.commits)}")
    print("\n".join(rows))
    print(f"(JSON written to {args.json_out})")
    return 0
