"""``ripple train grid``: train Zhao et al.'s Table 1 grid task by task, resumably.

The grid is IA on every synthetic task (the 14 of Table 2, their 14 meta variants and
MultiTask) and E and IR on a smaller set of tasks (easy, meta and long-context ones; E is
the slowest model by far on long edit sequences). Each (task, model) pair is one run of
``ripple train synthetic`` in its own folder ``RUNS_DIR/<task>-<model>``, started as a child
process so that a deadline can stop it cleanly:

* a run with ``results.json`` is finished and skipped;
* a run with a checkpoint but no results resumes where it stopped (``--resume``), with the
  settings it started with (kept in its ``grid.json``), whatever the command line says now;
* a run that reaches ``--run-cap-min`` is interrupted and then finalized: its best-on-dev
  model is scored on test as if training had ended there (``results.json`` notes the cap);
* when ``--time-budget-min`` runs out, the current run is interrupted (it resumes next time)
  and no new run starts.

After every run ``RUNS_DIR/summary.json`` is rewritten: each run's status, dev and test
accuracy, the paper's figure, training time and settings, and the runs still to do.
``--ship DIR`` copies the best model of every finished run into DIR as float16 safetensors
plus a JSON config, the form ``ripple eval synthetic`` reads (``models/weights/zhao-synthetic``
in the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from ripple.models.errors import UsageError
from ripple.training.paper_table1 import MODELS, paper_accuracy
from ripple.training.progress import Progress

__all__ = [
    "DEFAULT_E_IR_TASKS",
    "MODEL_DEFAULTS",
    "RunSettings",
    "plan_runs",
    "run",
    "run_status",
    "ship_run",
]

# E and IR by default: easy (Append1, ContextAppend11), long-context (ContextAppend31:
# three tokens of context), and their meta variants. E's cost grows with the edits times
# the state length, which rules out the 30- and 54-edit tasks on a CPU.
DEFAULT_E_IR_TASKS: Final = (
    "Append1",
    "ContextAppend11",
    "ContextAppend31",
    "MetaAppend1",
    "MetaContextAppend11",
    "MetaContextAppend31",
)


@dataclass
class RunSettings:
    """The training settings of one run (what ``ripple train synthetic`` is given)."""

    hidden: int = 64
    layers: int = 1
    lr: float = 3e-3
    batch_size: int = 64
    epochs: int = 30
    patience: int = 4
    eval_every: int = 0
    seed: int = 0
    train_size: int = 10_000
    dev_size: int = 1_000
    test_size: int = 1_000
    max_steps: int | None = None
    init: str | None = None  # a trained model folder to start from (``--init``)


# Settings per model chosen by short experiments on this project's 2-core CPU (README,
# "Reproducing Table 1"): the smallest models that reach the paper's accuracy.
MODEL_DEFAULTS: Final[dict[str, RunSettings]] = {
    "ia": RunSettings(hidden=64, lr=3e-3),
    "e": RunSettings(hidden=64, lr=3e-3),
    "ir": RunSettings(hidden=64, lr=3e-3),
}

_OVERRIDES: Final = (
    "hidden",
    "layers",
    "lr",
    "batch_size",
    "epochs",
    "patience",
    "eval_every",
    "seed",
    "train_size",
    "dev_size",
    "test_size",
    "max_steps",
)
_GRID_FILE: Final = "grid.json"
_RESULTS_FILE: Final = "results.json"
_LOG_FILE: Final = "train.log"
_POLL_S: Final = 0.5


@dataclass
class RunRecord:
    """One (task, model) run as the summary reports it."""

    task: str
    model: str
    status: str  # "done", "interrupted", "pending" or "failed"
    folder: str
    settings: dict[str, Any] = field(default_factory=dict)
    dev: float | None = None
    test: float | None = None
    paper: float | None = None
    train_s: float = 0.0
    steps: int | None = None
    best_step: int | None = None
    parameters: int | None = None
    capped: bool = False


def run_name(task: str, model: str) -> str:
    """The run folder's name: ``<task>-<model>``."""
    return f"{task}-{model}"


def plan_runs(
    tasks: Sequence[str], models: Sequence[str], e_ir_tasks: Sequence[str] | None
) -> list[tuple[str, str]]:
    """(task, model) pairs in order: task by task, IA on every task, E/IR on ``e_ir_tasks``.

    ``e_ir_tasks`` None means every task of ``tasks``.
    """
    pairs = []
    for task in tasks:
        for model in models:
            if model == "ia" or e_ir_tasks is None or task in e_ir_tasks:
                pairs.append((task, model))
    return pairs


def run_status(folder: Path) -> str:
    """``done`` (results written), ``interrupted`` (a checkpoint to resume) or ``pending``."""
    if (folder / _RESULTS_FILE).exists():
        return "done"
    if (folder / "checkpoints" / "latest.json").exists():
        return "interrupted"
    return "pending"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _record(runs_dir: Path, task: str, model: str) -> RunRecord:
    folder = runs_dir / run_name(task, model)
    grid = _read_json(folder / _GRID_FILE)
    rec = RunRecord(
        task=task,
        model=model,
        status="failed" if grid.get("failed") else run_status(folder),
        folder=str(folder),
        settings=grid.get("settings", {}),
        paper=paper_accuracy(task, model),
        train_s=round(float(grid.get("train_s", 0.0)), 1),
        capped=bool(grid.get("capped", False)),
    )
    results = _read_json(folder / _RESULTS_FILE)
    if results:
        rec.status = "done"
        rec.dev = round(100 * results["dev"]["accuracy"], 2)
        rec.test = round(100 * results["test"]["accuracy"], 2)
        rec.steps, rec.best_step = results["steps"], results["best_step"]
        rec.parameters = results["parameters"]
    return rec


def write_summary(runs_dir: Path, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Rewrite ``RUNS_DIR/summary.json`` from the run folders; returns what it wrote."""
    records = [_record(runs_dir, task, model) for task, model in pairs]
    summary = {
        "runs": [asdict(r) for r in records],
        "done": [run_name(r.task, r.model) for r in records if r.status == "done"],
        "remaining": [run_name(r.task, r.model) for r in records if r.status != "done"],
        "train_s": round(sum(r.train_s for r in records), 1),
    }
    _write_json(runs_dir / "summary.json", summary)
    return summary


def _settings_for(task: str, model: str, args: argparse.Namespace) -> RunSettings:
    settings = RunSettings(**asdict(MODEL_DEFAULTS[model]))
    for name in _OVERRIDES:
        value = getattr(args, name, None)
        if value is not None:
            setattr(settings, name, value)
    init_dir: Path | None = getattr(args, "init", None)
    start = None if init_dir is None else init_dir / run_name(task, model)
    if start is not None and (start / "config.json").exists():
        # A fine-tune keeps the sizes of the model it starts from.
        sizes = _read_json(start / "config.json").get("zhao_config", {})
        settings.hidden = int(sizes.get("hidden", settings.hidden))
        settings.layers = int(sizes.get("layers", settings.layers))
        settings.init = str(start.resolve())
    return settings


def _child_command(
    task: str, model: str, folder: Path, settings: dict[str, Any], threads: int, resume: bool
) -> list[str]:
    spec = {
        "task": task,
        "model": model,
        "out": str(folder),
        "threads": threads,
        "resume": resume,
        **settings,
    }
    return [sys.executable, "-m", "ripple.training.grid", json.dumps(spec)]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Interrupt a training child (SIGINT: Python unwinds) and wait; kill if it hangs."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _latest_step(folder: Path) -> int | None:
    pointer = _read_json(folder / "checkpoints" / "latest.json")
    if not pointer:
        return None
    state = _read_json(folder / "checkpoints" / pointer["checkpoint"] / "state.json")
    return int(state["step"]) if state else None


def _train_one(
    task: str,
    model: str,
    folder: Path,
    settings: dict[str, Any],
    threads: int,
    deadline: float | None,
    cap_s: float | None,
) -> str:
    """Run (or resume) one child until it ends, the deadline, or the run's cap.

    Returns ``done``, ``interrupted`` (deadline), ``capped`` or ``failed``.
    """
    grid = _read_json(folder / _GRID_FILE)
    grid.pop("failed", None)
    resume = run_status(folder) == "interrupted"
    cmd = _child_command(task, model, folder, settings, threads, resume)
    started = time.monotonic()
    spent_before = float(grid.get("train_s", 0.0))
    outcome = "done"
    with open(folder / _LOG_FILE, "ab") as log:
        log.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd[3:])}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    _stop(proc)
                    outcome = "interrupted"
                    break
                if cap_s is not None and spent_before + now - started >= cap_s:
                    _stop(proc)
                    outcome = "capped"
                    break
                time.sleep(_POLL_S)
        except BaseException:
            _stop(proc)
            raise
        finally:
            grid["train_s"] = spent_before + time.monotonic() - started
            _write_json(folder / _GRID_FILE, grid)
    if outcome == "done" and proc.returncode != 0:
        outcome = "failed"
    if outcome == "capped":
        # Finish where it stands: resume with max_steps at the saved step, which trains no
        # further and scores the best-on-dev model on test.
        step = _latest_step(folder)
        if step is None:
            return "failed"
        finish = {**settings, "max_steps": step}
        cmd = _child_command(task, model, folder, finish, threads, resume=True)
        with open(folder / _LOG_FILE, "ab") as log:
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
        grid["capped"] = True
        _write_json(folder / _GRID_FILE, grid)
        outcome = "done" if code == 0 else "failed"
    if outcome == "failed":
        grid["failed"] = True
        _write_json(folder / _GRID_FILE, grid)
    return outcome


def _result_line(rec: RunRecord) -> str:
    paper = f"paper {rec.paper:.1f}%" if rec.paper is not None else "paper -"
    cap = ", capped" if rec.capped else ""
    return (
        f"test {rec.test:.1f}% ({paper}), dev {rec.dev:.1f}%, {rec.steps} steps, "
        f"{rec.train_s:.0f} s{cap}"
    )


def _tasks_argument(value: str | None, default: Sequence[str]) -> list[str]:
    from ripple.training.synthetic import TASK_NAMES

    if value is None:
        return list(default)
    if value.strip() == "all":
        return list(TASK_NAMES)
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in TASK_NAMES]
    if unknown:
        raise UsageError(f"unknown task(s) {', '.join(unknown)}; one of: {', '.join(TASK_NAMES)}")
    return names


def _models_argument(value: str) -> list[str]:
    models = [v.strip() for v in value.split(",") if v.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        raise UsageError(f"--models takes a comma-separated subset of ia,e,ir (got {value!r})")
    return models


def ship_run(folder: Path, dest: Path) -> Path:
    """Copy a finished run's best model into ``dest/<task>-<model>`` as float16 + JSON.

    ``model.safetensors`` holds the state dict in float16 (half the bytes; accuracy is
    re-measured by ``ripple eval synthetic``); ``config.json`` holds the model's sizes and
    how it was trained and scored.
    """
    import torch
    from safetensors.torch import save_file

    from ripple.training.checkpoints import load_checkpoint

    results = _read_json(folder / _RESULTS_FILE)
    if not results:
        raise UsageError(f"{folder} has no results.json: the run is not finished")
    best = load_checkpoint(folder / "best")
    zhao = {k: v for k, v in best.state["model_config"].items() if k not in ("kind", "settings")}
    settings = best.state["model_config"].get("settings", {})
    train_config = best.state.get("train_config", {})
    grid = _read_json(folder / _GRID_FILE)
    own_s = float(grid.get("train_s", results["wall_s"]))
    out = dest / run_name(results["task"], results["model"])
    out.mkdir(parents=True, exist_ok=True)
    half = {
        k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
        for k, v in best.model.items()
    }
    save_file(half, str(out / "model.safetensors"))
    config = {
        "task": results["task"],
        "model": results["model"],
        "dtype": "float16",
        "zhao_config": zhao,
        "parameters": results["parameters"],
        "training": {
            **settings,
            "lr": train_config.get("lr"),
            "batch_size": train_config.get("batch_size"),
            "steps": results["steps"],
            "best_step": results["best_step"],
            "dev_accuracy": round(100 * results["dev"]["accuracy"], 2),
            "test_accuracy": round(100 * results["test"]["accuracy"], 2),
            # All the training behind these weights: a fine-tune adds the model it began from.
            "train_s": round(own_s + float((settings.get("init") or {}).get("train_s") or 0), 1),
            "capped": bool(grid.get("capped", False)),
        },
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def _ship_all(runs_dir: Path, pairs: Sequence[tuple[str, str]], dest: Path) -> list[str]:
    shipped = []
    for task, model in pairs:
        folder = runs_dir / run_name(task, model)
        if run_status(folder) == "done":
            ship_run(folder, dest)
            shipped.append(run_name(task, model))
    return shipped


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ripple train grid`` (see the module docstring).

    SIGTERM is treated like Ctrl-C: the current run is interrupted (it resumes next time).
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from ripple.training.synthetic import TASK_NAMES

    tasks = _tasks_argument(args.tasks, TASK_NAMES)
    models = _models_argument(args.models)
    e_ir = None if args.e_ir_tasks == "all" else _tasks_argument(args.e_ir_tasks, DEFAULT_E_IR_TASKS)
    if args.time_budget_min is not None and args.time_budget_min < 0:
        raise UsageError("--time-budget-min must be 0 or more")
    if args.run_cap_min is not None and args.run_cap_min <= 0:
        raise UsageError("--run-cap-min must be more than 0")
    for name in ("hidden", "layers", "batch_size", "epochs", "patience"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    pairs = plan_runs(tasks, models, e_ir)
    runs_dir: Path = args.out
    runs_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))

    deadline = None
    if args.time_budget_min is not None:
        deadline = time.monotonic() + 60 * args.time_budget_min
    cap_s = None if args.run_cap_min is None else 60 * args.run_cap_min
    failed = 0
    if not args.ship_only:
        bar = Progress(len(pairs), "grid", quiet=args.quiet)
        with bar:
            for i, (task, model) in enumerate(pairs, 1):
                head = f"[{i}/{len(pairs)}] {task} {model.upper()}"
                folder = runs_dir / run_name(task, model)
                status = run_status(folder)
                if status == "done":
                    say(f"{head}: done already, {_result_line(_record(runs_dir, task, model))}")
                    bar.advance()
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    say(f"{head}: not started (time budget spent)")
                    bar.advance()
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                grid = _read_json(folder / _GRID_FILE)
                wanted = asdict(_settings_for(task, model, args))
                if "settings" not in grid or status == "pending":
                    grid = {"settings": wanted, "train_s": 0.0}
                    _write_json(folder / _GRID_FILE, grid)
                elif grid["settings"] != wanted:
                    say(f"{head}: resuming with the settings it started with: {grid['settings']}")
                say(f"{head}: {'resuming' if status == 'interrupted' else 'training'} ...")
                outcome = _train_one(
                    task, model, folder, grid["settings"], args.threads, deadline, cap_s
                )
                rec = _record(runs_dir, task, model)
                if outcome == "done":
                    say(f"{head}: {_result_line(rec)}")
                elif outcome == "interrupted":
                    say(f"{head}: stopped at the time budget after {rec.train_s:.0f} s (resumes next time)")
                else:
                    failed += 1
                    say(f"{head}: FAILED, see {folder / _LOG_FILE}")
                write_summary(runs_dir, pairs)
                bar.advance()
    summary = write_summary(runs_dir, pairs)
    say(
        f"grid: {len(summary['done'])} of {len(pairs)} runs done, "
        f"{summary['train_s']:.0f} s of training; summary in {runs_dir / 'summary.json'}"
    )
    if args.ship is not None:
        shipped = _ship_all(runs_dir, pairs, args.ship)
        say(f"shipped {len(shipped)} models to {args.ship}")
    return 1 if failed else 0


def _worker(argv: Sequence[str]) -> int:
    """The child process of one run: ``python -m ripple.training.grid SPEC_JSON``."""
    from ripple.training.train_cli import run as train_synthetic

    spec = json.loads(argv[0])
    args = argparse.Namespace(
        task=spec["task"],
        model=spec["model"],
        out=Path(spec["out"]),
        epochs=spec["epochs"],
        device="cpu",
        resume=spec["resume"],
        seed=spec["seed"],
        batch_size=spec["batch_size"],
        lr=spec["lr"],
        hidden=spec["hidden"],
        layers=spec["layers"],
        max_steps=spec["max_steps"],
        eval_every=spec["eval_every"],
        patience=spec["patience"],
        train_size=spec["train_size"],
        dev_size=spec["dev_size"],
        test_size=spec["test_size"],
        init=Path(spec["init"]) if spec.get("init") else None,
        threads=spec["threads"],
        # Per-evaluation lines go to the run's train.log (no bar: it is not a terminal).
        quiet=False,
    )
    try:
        return train_synthetic(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
