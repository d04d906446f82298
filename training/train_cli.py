"""``ripple train synthetic``: train E, IR or IA on one of Zhao et al.'s synthetic tasks.

Generates the task's train/dev/test splits (§6.1: 10k/1k/1k, L = 30, V = 10, seeded),
trains with the shared ``Trainer`` (early stopping on dev accuracy), then reports the dev
and test accuracy of the best-on-dev model, as Table 1 does. Everything lands in ``--out``:
``run.json`` (the settings, so ``--resume`` rebuilds the same data and model),
``checkpoints/`` (resumable), ``best/`` (safetensors + JSON) and ``results.json``.

Under ``torchrun --nproc-per-node N -m ripple.server.cli train synthetic ...`` every rank
builds the same data from the seed and the trainer shards it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ripple.models.errors import UsageError

__all__ = ["run"]

_SETTINGS = (
    "task",
    "model",
    "seed",
    "hidden",
    "layers",
    "train_size",
    "dev_size",
    "test_size",
)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _SETTINGS}


def _check(args: argparse.Namespace) -> dict[str, Any]:
    """Validate the arguments against the run folder; the settings the run uses."""
    from ripple.training.synthetic import TASK_NAMES

    if args.task not in TASK_NAMES:
        raise UsageError(f"unknown task {args.task!r}; one of: {', '.join(TASK_NAMES)}")
    for name in ("epochs", "batch_size", "hidden", "layers", "train_size", "dev_size", "test_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.hidden % 8:
        raise UsageError("--hidden must be a multiple of 8 (IA uses 8 attention heads)")
    run_file = args.out / "run.json"
    settings = _settings(args)
    if getattr(args, "init", None) is not None:
        settings["init"] = _init_record(args.init)
    if args.resume:
        if not run_file.exists():
            raise UsageError(f"nothing to resume in {args.out} (no run.json)")
        saved: dict[str, Any] = json.loads(run_file.read_text(encoding="utf-8"))
        different = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        if different:
            raise UsageError(f"--resume with settings that differ from the run: {different}")
        return {**saved, **settings}  # a resumed fine-tune keeps its "init" without --init
    if (args.out / "checkpoints").exists():
        raise UsageError(f"{args.out} already holds a run; pass --resume or another --out")
    return settings


def _init_record(folder: Path) -> dict[str, Any]:
    """What ``--init`` starts from: the folder's name and, for a shipped model, its training."""
    shipped = folder / "config.json"
    if shipped.exists():
        try:
            training = json.loads(shipped.read_text(encoding="utf-8")).get("training", {})
        except (OSError, ValueError) as exc:
            raise UsageError(f"--init: cannot read {shipped}: {exc}") from exc
        return {
            "folder": folder.name,
            "steps": training.get("steps"),
            "train_s": training.get("train_s"),
            "test_accuracy": training.get("test_accuracy"),
        }
    from ripple.training.checkpoints import STATE_FILE

    if (folder / STATE_FILE).exists():
        return {"folder": folder.name}
    raise UsageError(
        f"--init {folder}: not a model folder (expected config.json + model.safetensors of a "
        "shipped model, or a run's best/ folder)"
    )


def _initial_weights(folder: Path, kind: str, config: Any) -> dict[str, Any]:
    """The state dict (float32) of the model in ``folder``; UsageError unless it matches."""
    import torch

    from ripple.models.nets.zhao import ZhaoConfig
    from ripple.training.checkpoints import load_checkpoint
    from ripple.training.eval_synthetic import load_shipped

    try:
        if (folder / "config.json").exists():
            shipped = load_shipped(folder)
            their_kind, sizes = shipped.config["model"], shipped.config["zhao_config"]
            tensors = shipped.model.state_dict()
        else:
            checkpoint = load_checkpoint(folder)
            described = checkpoint.state["model_config"]
            their_kind = described["kind"]
            sizes = {k: v for k, v in described.items() if k not in ("kind", "settings")}
            tensors = checkpoint.model
        theirs = ZhaoConfig(**sizes).to_dict()
    except Exception as exc:  # damaged or foreign files are reported the same way
        raise UsageError(f"--init: cannot load {folder}: {type(exc).__name__}: {exc}") from exc
    if their_kind != kind:
        raise UsageError(f"--init: {folder} holds a {their_kind!r} model, not {kind!r}")
    ours = config.to_dict()
    different = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
    if different:
        raise UsageError(f"--init: {folder} has other sizes (theirs, ours): {different}")
    return {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in tensors.items()}


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ripple train synthetic`` (see the module docstring)."""
    settings = _check(args)
    if args.threads < 0:
        raise UsageError("--threads must be 0 (torch's default) or more")
    # torch is imported only here, so ``ripple --help`` stays light.
    import torch

    from ripple.models.nets.zhao import ZhaoConfig, build_zhao_model
    from ripple.training.synthetic import SyntheticEditDataset, collate_edits, generate_splits
    from ripple.training.trainer import TrainConfig, Trainer, seed_everything

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "run.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")

    started = time.monotonic()
    sizes = {"train": args.train_size, "dev": args.dev_size, "test": args.test_size}
    splits = generate_splits(args.task, args.seed, sizes)
    explicit = args.model == "e"
    data = {name: SyntheticEditDataset(items, explicit=explicit) for name, items in splits.items()}

    seed_everything(args.seed)
    model_config = ZhaoConfig(hidden=args.hidden, layers=args.layers)
    model = build_zhao_model(args.model, model_config)
    if getattr(args, "init", None) is not None and not args.resume:
        model.load_state_dict(_initial_weights(args.init, args.model, model_config))
    config = TrainConfig.from_args(args)
    trainer = Trainer(
        model,
        config,
        data["train"],
        data["dev"],
        collate_edits,
        model_config={"kind": args.model, **model_config.to_dict(), "settings": settings},
    )
    try:
        result = trainer.fit()

        # Table 1 reports test accuracy at the step with the best dev accuracy.
        from ripple.training.checkpoints import load_checkpoint

        best = args.out / "best"
        if (best / "model.safetensors").exists():
            model.load_state_dict(load_checkpoint(best).model)
        dev, test = trainer.evaluate(data["dev"]), trainer.evaluate(data["test"])
        report = {
            "task": args.task,
            "model": args.model,
            "parameters": sum(p.numel() for p in model.parameters()),
            "steps": result.steps,
            "best_step": result.best_step,
            "stopped_early": result.stopped_early,
            "dev": asdict(dev),
            "test": asdict(test),
            "wall_s": round(time.monotonic() - started, 1),
        }
        if trainer.rank == 0:
            (args.out / "results.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
            print(
                f"{args.task} {args.model.upper()}: dev accuracy {100 * dev.accuracy:.1f}%, "
                f"test accuracy {100 * test.accuracy:.1f}% (best step {result.best_step} of "
                f"{result.steps}; {report['wall_s']} s)",
                file=sys.stdout,
            )
    except BaseException:
        trainer.close(wait_for_others=False)
        raise
    trainer.close()
    return 0
