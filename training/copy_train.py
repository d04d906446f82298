"""``ripple train copy``: train the span-copying editor (or its baseline and ablations).

Systems (Panthaplackel et al. 2021, Table 2):

=====================  =========================================================
``copy-span``          Seq2Seq+CopySpan, marginalised objective (Eq. 2)
``copy-token``         Seq2Seq+CopyTok: single-token copying, same sizes
``copy-span-longest``  CopySpan trained to always copy the longest span
``copy-span-nomarg``   CopySpan with the per-token "any correct action" objective
=====================  =========================================================

The examples (``ripple.training.copy_data``) come from the permissively licensed training
repositories; ``--dev-repos`` (training repositories held out) drive early stopping, never
the validation repositories. They are built once into ``--examples`` (default
``RUN_DIR/data``) and reused by any run with the same editor settings, so the four systems
train on identical data. ``--export DIR`` writes the best model as ONNX (encoder + decoder
step) with its vocabulary and manifest (``ripple.training.copy_export``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Final

import torch

from ripple.models.errors import UsageError
from ripple.models.suggest.copy_features import SPECIALS, CopyVocab, EditorConfig
from ripple.training.copy_data import (
    CopyDataset,
    build_examples,
    collate_copy,
    count_tokens,
    load_examples,
    save_examples,
)
from ripple.training.data import VALIDATION_REPOS, permissive_training_repos, repo_of_file

__all__ = ["SYSTEMS", "run"]

# system -> (max_span, objective)
SYSTEMS: Final[dict[str, tuple[int | None, str]]] = {
    "copy-span": (None, "marginal"),
    "copy-token": (1, "marginal"),
    "copy-span-longest": (None, "longest"),
    "copy-span-nomarg": (None, "nomarg"),
}


def editor_config(args: argparse.Namespace) -> EditorConfig:
    return EditorConfig(radius=args.radius, context_edits=args.context_edits)


def _split(data: Path, dev_repos: list[str]) -> tuple[list[Path], list[Path]]:
    by_repo = {repo_of_file(p): p for p in permissive_training_repos(data)}
    bad = [r for r in dev_repos if r not in by_repo or r in VALIDATION_REPOS]
    if bad:
        raise UsageError(
            f"--dev-repos: {', '.join(bad)} is not a permissive training repository in {data}"
        )
    return [p for r, p in by_repo.items() if r not in dev_repos], [by_repo[r] for r in dev_repos]


def prepare_examples(
    args: argparse.Namespace, log: Any
) -> tuple[list[Any], list[Any], CopyVocab, dict[str, Any]]:
    """Build (or reuse) the train/dev examples and the vocabulary in ``--examples``."""
    folder: Path = args.examples or args.out / "data"
    config = editor_config(args)
    settings = {
        "editor": config.to_json(),
        "max_commits": args.max_commits,
        "dev_repos": list(args.dev_repos),
        "dev_max_commits": args.dev_max_commits,
        "vocab_size": args.vocab_size,
        "data": str(args.data),
    }
    meta_file = folder / "meta.json"
    if meta_file.exists():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("settings") != settings:
            raise UsageError(
                f"{folder} holds examples built with other settings; choose another --examples"
            )
        log(f"reusing the examples in {folder}")
        return (
            load_examples(folder / "train.jsonl.gz"),
            load_examples(folder / "dev.jsonl.gz"),
            CopyVocab.load(folder / "vocab.json"),
            meta,
        )
    train_files, dev_files = _split(args.data, list(args.dev_repos))
    t0 = time.monotonic()
    train = build_examples(
        train_files, config, args.max_commits, label="train examples", quiet=args.quiet
    )
    dev = build_examples(
        dev_files, config, args.dev_max_commits, label="dev examples", quiet=args.quiet
    )
    vocab = CopyVocab.build(count_tokens(train), args.vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    save_examples(train, folder / "train.jsonl.gz")
    save_examples(dev, folder / "dev.jsonl.gz")
    vocab.save(folder / "vocab.json")
    meta = {
        "settings": settings,
        "train_repos": [repo_of_file(p) for p in train_files],
        "dev_repos": [repo_of_file(p) for p in dev_files],
        "train_examples": len(train),
        "dev_examples": len(dev),
        "build_s": round(time.monotonic() - t0, 1),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log(f"examples: {len(train)} train, {len(dev)} dev ({meta['build_s']} s) in {folder}")
    return train, dev, vocab, meta


def _check(args: argparse.Namespace) -> None:
    if args.system not in SYSTEMS:
        raise UsageError(f"--system must be one of {', '.join(SYSTEMS)}")
    for name in ("epochs", "batch_size", "embedding", "hidden", "max_commits", "dev_max_commits"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.vocab_size <= len(SPECIALS):
        raise UsageError(f"--vocab-size must be more than {len(SPECIALS)}")
    if args.radius < 0 or args.context_edits < 0:
        raise UsageError("--radius and --context-edits must be 0 or more")
    if not 0.0 <= args.dropout < 1.0:
        raise UsageError("--dropout must be in [0, 1)")
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError("--max-steps must be at least 1")
    if not args.data.is_dir() and not (args.examples and (args.examples / "meta.json").exists()):
        raise UsageError(f"--data {args.data}: no such folder")
    if not args.resume and (args.out / "checkpoints").exists():
        raise UsageError(f"{args.out} already holds a run; pass --resume or another --out")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ripple train copy``."""
    _check(args)
    from ripple.models.nets.copy_span import CopyConfig, CopyEditor
    from ripple.training.trainer import TrainConfig, Trainer, seed_everything

    def log(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    train, dev, vocab, meta = prepare_examples(args, log)
    vocab.save(args.out / "vocab.json")
    max_span, objective = SYSTEMS[args.system]
    seed_everything(args.seed)
    model_config = CopyConfig(
        vocab_size=len(vocab),
        embedding=args.embedding,
        hidden=args.hidden,
        dropout=args.dropout,
        max_span=max_span,
        objective=objective,  # type: ignore[arg-type]
        blocked=tuple(sorted(vocab.blocked - {vocab.unk_id})),
    )
    model = CopyEditor(model_config)
    config = TrainConfig.from_args(args)
    trainer = Trainer(
        model,
        config,
        CopyDataset(train, vocab),  # type: ignore[arg-type]
        CopyDataset(dev, vocab),  # type: ignore[arg-type]
        collate_copy,  # type: ignore[arg-type]
        model_config={
            "system": args.system,
            **model_config.to_dict(),
            "editor": editor_config(args).to_json(),
        },
    )
    result = trainer.run()
    if trainer.rank != 0:
        return 0
    trainer.load_best()
    report: dict[str, Any] = {
        "system": args.system,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": result.steps,
        "best_step": result.best_step,
        "best_dev_action_accuracy": result.best_metric,
        "stopped_early": result.stopped_early,
        "data": meta,
        "vocab_size": len(vocab),
        "wall_s_until_trained": round(time.monotonic() - started, 1),
    }
    if args.export is not None:
        from ripple.training.copy_export import export_copy_editor

        manifest = export_copy_editor(
            model,
            vocab,
            editor_config(args),
            args.export,
            name=args.system,
            metadata={
                "training": {k: report[k] for k in ("steps", "best_step", "parameters")},
                "train_repos": meta["train_repos"],
                "dev_repos": meta["dev_repos"],
            },
        )
        report["export"] = {"dir": str(args.export), "parity": manifest.metadata.get("parity")}
    report["wall_s"] = round(time.monotonic() - started, 1)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"{args.system}: best dev action accuracy {result.best_metric} at step {result.best_step} "
        f"of {result.steps}; {report['parameters']:,} parameters; {report['wall_s']} s"
    )
    return 0
