"""``ripple eval synthetic``: score the shipped E / IR / IA checkpoints on fresh test sets.

For each requested synthetic task (Table 2's names, meta tasks prefixed ``Meta``, and
``MultiTask``) this generates a new test split from ``--seed`` (1 by default; the
checkpoints were trained and model-selected on seed 0's splits, so these instances are new
draws), loads every model trained for the task from ``--weights`` (one folder per
``<task>-<model>`` holding ``model.safetensors`` and ``config.json``, as ``ripple train
grid --ship`` writes them), and measures test accuracy the paper's way: an edit counts only
if both its position and its content are right, conditioning steps are not counted (§6.1).

It prints ripple's accuracy beside Table 1's for every task and model, and writes
``{"tasks": {"Append1": {"ia": pct, "e": pct, "ir": pct}, ...}}`` with a model's key only
where that model was trained and loaded. A missing or unreadable checkpoint is reported for
its task and the other tasks are still evaluated (exit code 1 if any could not be read).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ripple.models.errors import UsageError
from ripple.training.paper_table1 import MODELS, paper_accuracy
from ripple.training.progress import Progress

if TYPE_CHECKING:
    from ripple.models.nets import EditModel

__all__ = ["DEFAULT_SEED", "default_weights_dir", "evaluate_task", "load_shipped", "run"]

# Training generated its splits from seed 0; evaluation draws from another seed by default.
DEFAULT_SEED: Final = 1
_BATCH: Final = 128


def default_weights_dir() -> Path:
    """``models/weights/zhao-synthetic`` inside the installed ``ripple.models`` package."""
    import ripple.models

    return Path(ripple.models.__file__).resolve().parent / "weights" / "zhao-synthetic"


@dataclass
class Shipped:
    """A loaded checkpoint: the model (float32, eval mode) and its config.json."""

    model: EditModel
    config: dict[str, Any]


def load_shipped(folder: Path) -> Shipped:
    """Load ``folder/model.safetensors`` with ``folder/config.json``; ValueError if unusable."""
    import torch
    from safetensors.torch import load_file

    from ripple.models.nets.zhao import ZhaoConfig, build_zhao_model

    config_file, weights_file = folder / "config.json", folder / "model.safetensors"
    for path in (config_file, weights_file):
        if not path.exists():
            raise ValueError(f"{path} is missing")
    try:
        config: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
        model = build_zhao_model(config["model"], ZhaoConfig(**config["zhao_config"]))
        tensors = load_file(str(weights_file))
        model.load_state_dict(
            {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in tensors.items()}
        )
    except Exception as exc:  # any damage to either file is reported the same way
        raise ValueError(f"cannot load {folder}: {type(exc).__name__}: {exc}") from exc
    model.eval()
    return Shipped(model=model, config=config)


def evaluate_task(models: dict[str, EditModel], task: str, seed: int, size: int) -> dict[str, float]:
    """Accuracy (%) of each model on a test split of ``task`` drawn from ``seed``."""
    import torch

    from ripple.training.synthetic import SyntheticEditDataset, collate_edits, generate_split

    instances = generate_split(task, "test", seed, size)
    scores: dict[str, float] = {}
    for kind, model in models.items():
        data = SyntheticEditDataset(instances, explicit=kind == "e")
        correct = total = 0
        with torch.no_grad():
            for start in range(0, len(data), _BATCH):
                batch = collate_edits([data[i] for i in range(start, min(start + _BATCH, len(data)))])
                out = model.loss(batch)
                correct += int(out.correct)
                total += int(out.total)
        scores[kind] = round(100.0 * correct / total, 2) if total else float("nan")
    return scores


def _tasks(value: str | None) -> list[str]:
    from ripple.training.synthetic import TASK_NAMES

    if value is None or value.strip() == "all":
        return list(TASK_NAMES)
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in TASK_NAMES]
    if unknown:
        raise UsageError(f"unknown task(s) {', '.join(unknown)}; one of: {', '.join(TASK_NAMES)}")
    return names


def _cell(ours: float | None, paper: float | None) -> str:
    left = "-" if ours is None else f"{ours:.1f}"
    right = "-" if paper is None else f"{paper:.1f}"
    return f"{left:>6} {right:>6}"


def format_table(results: dict[str, dict[str, float]]) -> str:
    """The printed table: per task, ripple's accuracy ("-" if untrained) and the paper's."""
    head = f"{'task':22}" + "".join(f" {m.upper() + ' ours':>6} {'paper':>6}  " for m in MODELS)
    lines = [head, "-" * len(head)]
    for task, scores in results.items():
        cells = "".join(
            f" {_cell(scores.get(m), paper_accuracy(task, m))}  "
            for m in MODELS
        )
        lines.append(f"{task:22}{cells}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ripple eval synthetic`` (see the module docstring)."""
    tasks = _tasks(args.tasks)
    if args.test_size < 1:
        raise UsageError("--test-size must be at least 1")
    weights: Path = args.weights if args.weights is not None else default_weights_dir()
    if not weights.is_dir():
        raise UsageError(f"no checkpoint folder {weights}")
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    results: dict[str, dict[str, float]] = {}
    problems = 0
    with Progress(len(tasks), "eval", quiet=args.quiet) as bar:
        for task in tasks:
            loaded: dict[str, EditModel] = {}
            for kind in MODELS:
                folder = weights / f"{task}-{kind}"
                if not folder.exists():
                    continue
                try:
                    loaded[kind] = load_shipped(folder).model
                except ValueError as exc:
                    problems += 1
                    print(f"ripple: {task} {kind.upper()}: {exc}", file=sys.stderr)
            if not loaded and not any((weights / f"{task}-{k}").exists() for k in MODELS):
                print(f"ripple: {task}: no checkpoint in {weights}", file=sys.stderr)
            results[task] = evaluate_task(loaded, task, args.seed, args.test_size) if loaded else {}
            bar.advance()
    print(f"test accuracy (%) on {args.test_size} fresh instances per task, seed {args.seed}")
    print(format_table(results))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps({"tasks": results}, indent=2) + "\n", encoding="utf-8")
    return 1 if problems else 0
