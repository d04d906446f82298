"""``ripple train completion`` and ``ripple eval completion``: C3PO and its baselines.

Training builds EditCompletion datasets (``completion_data``; cached per repository under
``--datasets``) from the permissively licensed training repositories, never the validation
ones, holds out ``--dev-repos`` for early stopping, and trains:

* ``c3po``: the path-operation pointer network (C3PO §5), exported to ONNX;
* ``c3po-text`` / ``c3po-none``: the same with the context as text or without it (§7);
* ``lasertagger``: the textual tagger (KEEP/DELETE + phrase insertion; §6.2);
* ``seq2seq-copy``: the SequenceR-style token seq2seq with attention and copying (§6.2),
  the span-copying editor restricted to one-token spans, exported to ONNX;
* ``copy-span``: that editor copying spans of any length (Copy That!'s Seq2Seq+CopySpan,
  its default maximum span), trained with the marginalised objective, decoded greedily
  (or with ``--beam``, the merged-ray beam search); not trained unless named in
  ``--systems``;
* ``treeedit``: Yao et al.'s structural editor (tree-edit actions on P's tree, conditioned
  on the context edits' actions by the edit encoder), supervised then DAgger, exported to
  ONNX (``treeedit_train``).

Evaluation builds examples from ``--commits`` with the same builder and scores each system:
exact match of the whole predicted script (C3PO), of the edited tree (treeedit) or of the
whole predicted P' (the textual systems), and micro precision/recall of the predicted edit
operations (path-operations for C3PO; tree-edit actions for treeedit; token-level edit
operations for the textual systems). With treeedit, the one-shot transfer test too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ripple.models.edits.completion import CompletionExample
from ripple.models.errors import UsageError
from ripple.training.data import (
    VALIDATION_REPOS,
    commit_files,
    is_permissive,
    repo_of_file,
)

__all__ = ["operation_scores", "run_eval", "run_train"]

C3PO_SYSTEMS = ("c3po", "c3po-text", "c3po-none")
TEXT_SYSTEMS = ("lasertagger", "seq2seq-copy", "copy-span")
TREE_SYSTEMS = ("treeedit",)
SYSTEMS = (*C3PO_SYSTEMS, *TEXT_SYSTEMS, *TREE_SYSTEMS)
CONTEXT_MODE = {"c3po": "paths", "c3po-text": "text", "c3po-none": "none"}
DEFAULT_DEV = ("psf/requests", "pallets/click")


def operation_scores(
    gold: Sequence[Sequence[Any]], predicted: Sequence[Sequence[Any] | None]
) -> dict[str, float]:
    """Exact match of whole sequences, and micro precision/recall of their items as sets
    (a missing prediction, None, is a miss that predicts nothing)."""
    exact = hits = n_pred = n_gold = 0
    for want, got in zip(gold, predicted, strict=True):
        want_set = set(want)
        n_gold += len(want_set)
        if got is None:
            continue
        got_set = set(got)
        exact += list(got) == list(want)
        n_pred += len(got_set)
        hits += len(got_set & want_set)
    n = max(len(gold), 1)
    return {
        "exact": exact / n,
        "precision": hits / n_pred if n_pred else 0.0,
        "recall": hits / n_gold if n_gold else 0.0,
    }


def _log(args: argparse.Namespace, line: str) -> None:
    if not getattr(args, "quiet", False):
        print(line, file=sys.stderr, flush=True)


def _split_repos(data: Path, dev_repos: Sequence[str]) -> tuple[list[Path], list[Path]]:
    files = commit_files(data)
    # Permissive licences only (bundled weights ship under MIT), never a validation repo.
    training = {r for r in files if r not in VALIDATION_REPOS and is_permissive(r)}
    for repo in dev_repos:
        if repo not in files:
            raise UsageError(f"--dev-repos: {repo} has no commit file in {data}")
        if repo in VALIDATION_REPOS:
            raise UsageError(f"--dev-repos: {repo} is a validation repository")
    train = [files[r] for r in sorted(training) if r not in dev_repos]
    dev = [files[r] for r in dev_repos]
    return train, dev


def _load_datasets(
    files: Sequence[Path], folder: Path, args: argparse.Namespace
) -> list[CompletionExample]:
    from ripple.training.completion_data import build_datasets, read_examples

    build_datasets(
        files,
        folder,
        scope=args.scope,
        max_commits=args.max_commits,
        workers=args.workers,
        quiet=args.quiet,
    )
    report = json.loads((folder / "build.json").read_text())
    examples: list[CompletionExample] = []
    for path in files:
        entry = report.get(repo_of_file(path), {})
        if entry.get("scope") != args.scope:
            raise UsageError(
                f"{folder}: {repo_of_file(path)} was built with context scope "
                f"{entry.get('scope')!r}, not {args.scope!r}; use another --datasets folder"
            )
        examples.extend(read_examples(folder / path.name))
    return examples


def _systems(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SYSTEMS]
    if unknown or not names:
        raise UsageError(
            f"--systems: unknown {', '.join(unknown) or '(none given)'} "
            f"(choose from {', '.join(SYSTEMS)})"
        )
    return names


def _sample(examples: list[CompletionExample], limit: int | None, seed: int) -> list:
    import random

    if limit is None or len(examples) <= limit:
        return examples
    return random.Random(seed).sample(examples, limit)


def run_train(args: argparse.Namespace) -> int:
    """``ripple train completion``: datasets, then each system of ``--systems``."""
    from ripple.training.completion_data import statistics

    systems = _systems(args.systems)
    dev_repos = [r.strip() for r in args.dev_repos.split(",") if r.strip()]
    train_files, dev_files = _split_repos(args.data, dev_repos)
    run = args.out
    export = args.export or run / "models"
    for name in systems:
        target = export / name
        if target.exists() and not args.force:
            raise UsageError(f"{target} exists; pass --force to replace it")
    datasets = args.datasets or run / "datasets"
    started = time.monotonic()
    train = _load_datasets(train_files, datasets, args)
    dev = _sample(_load_datasets(dev_files, datasets, args), args.max_dev, args.seed)
    if not train:
        raise UsageError("no training examples were built; check --data and --max-commits")
    _log(args, f"datasets: {len(train)} training, {len(dev)} dev examples ({_elapsed(started)})")
    table = {repo: row.to_json() for repo, row in statistics(train).items()}
    results: dict[str, Any] = {
        "scope": args.scope,
        "train_repos": sorted({e.repo for e in train}),
        "dev_repos": dev_repos,
        "train_examples": len(train),
        "dev_examples": len(dev),
        "statistics": table,
        "systems": {},
    }
    for name in systems:
        _log(args, f"training {name}")
        report = _train_one(name, train, dev, export / name, args)
        results["systems"][name] = report
        _write_json(run / "results.json", results)
        _log(args, f"{name}: {json.dumps(report, sort_keys=True)[:400]}")
    _write_json(run / "results.json", results)
    _log(args, f"done in {_elapsed(started)}; models in {export}")
    return 0


def _train_one(
    name: str,
    train: list[CompletionExample],
    dev: list[CompletionExample],
    target: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    import shutil

    common = {"batch_size": args.batch_size, "threads": args.threads, "quiet": args.quiet}
    if name in C3PO_SYSTEMS:
        from ripple.training.c3po_export import export_c3po
        from ripple.training.c3po_train import train_c3po

        work = args.out / "runs" / name
        if work.exists():
            shutil.rmtree(work)
        c3po, vocab, child_types, report = train_c3po(
            train,
            dev,
            work,
            context_mode=CONTEXT_MODE[name],
            steps=args.steps,
            eval_every=args.eval_every,
            patience=args.patience,
            max_paths=args.max_paths,
            seed=args.seed,
            **common,
        )
        if target.exists():
            shutil.rmtree(target)
        metadata = {
            "scope": args.scope,
            "train_repos": sorted({e.repo for e in train}),
            "train_examples": len(train),
            "parameters": c3po.parameter_count(),
            "best_dev": report.get("best_dev_accuracy"),
        }
        export_c3po(c3po, vocab, child_types, target, name=name, metadata=metadata)
        return {**report, "parameters": c3po.parameter_count()}
    if name in TREE_SYSTEMS:
        from ripple.training.treeedit_export import export_treeedit
        from ripple.training.treeedit_train import train_treeedit

        work = args.out / "runs" / name
        if work.exists():
            shutil.rmtree(work)
        net, tree_vocab, report = train_treeedit(
            train,
            dev,
            work,
            steps=args.steps or 3000,
            dagger_rounds=args.dagger_rounds,
            dagger_examples=args.dagger_examples,
            dagger_steps=args.dagger_steps,
            eval_every=args.eval_every or 250,
            patience=args.patience,
            seed=args.seed,
            log=lambda line: _log(args, line),
            **{**common, "batch_size": min(args.batch_size, 32)},
        )
        if target.exists():
            shutil.rmtree(target)
        metadata = {
            "scope": args.scope,
            "train_repos": sorted({e.repo for e in train}),
            "train_examples": len(train),
            "parameters": net.parameter_count(),
            "phases": [
                {k: p[k] for k in ("phase", "dev_exact", "steps")} for p in report["phases"]
            ],
            "chosen_phase": report["chosen_phase"],
        }
        export_treeedit(net, tree_vocab, target, name=name, metadata=metadata)
        return report
    from ripple.training import completion_baselines as baselines

    if target.exists():
        shutil.rmtree(target)
    model: torch.nn.Module
    if name == "lasertagger":
        model, _vocabs, report = baselines.train_tagger(
            train, dev, target, steps=args.steps or 4000, eval_every=args.eval_every or 200,
            patience=args.patience, seed=args.seed, **common,
        )  # fmt: skip
    else:
        model, _vocab, report = baselines.train_seq2seq(
            train, dev, target, steps=args.steps or 4000, eval_every=args.eval_every or 200,
            patience=args.patience, seed=args.seed, max_span=baselines.SEQ2SEQ_MAX_SPAN[name],
            **common,
        )  # fmt: skip
    (target / "system.json").write_text(json.dumps({"system": name, "scope": args.scope}) + "\n")
    return {**report, "parameters": baselines.parameter_count(model)}


def _c3po_predictions(
    folder: Path, examples: Sequence[CompletionExample], quiet: bool
) -> tuple[list[list[int] | None], list[list[int] | None], list[bool], int]:
    """Gold and predicted label sequences (EOS dropped) and whether the predicted script
    rebuilds P' (tree exact), through onnxruntime as the server runs the model."""
    from ripple.models.edits.completion import example_paths
    from ripple.models.edits.paths import AugmentedTree, PathOperation, apply_operations
    from ripple.models.edits.tree import isomorphic
    from ripple.models.runtime.c3po_decode import C3POModel, TooManyPaths
    from ripple.models.suggest.c3po_features import label_operation
    from ripple.training.progress import Progress

    model = C3POModel.load(folder)
    gold: list[list[int] | None] = []
    predicted: list[list[int] | None] = []
    rebuilt: list[bool] = []
    with Progress(len(examples), f"decoding {folder.name}", quiet=quiet) as bar:
        for example in examples:
            _, paths, labels = example_paths(example, model.child_types)
            gold.append(labels[:-1] if labels is not None else None)
            try:
                prediction = model.decode(paths, example.context, example.context_text)
            except TooManyPaths:
                predicted.append(None)
                rebuilt.append(False)
                bar.advance()
                continue
            ops = [label for label in prediction.labels if label > 1]
            predicted.append(ops)
            ok = False
            try:
                tree = AugmentedTree(example.before)
                operations = []
                for label in ops:
                    decoded = label_operation(label, len(paths))
                    if decoded is None:
                        raise ValueError(f"label {label} is no operation")
                    kind, index = decoded
                    operations.append(
                        PathOperation(kind, paths[index].source, paths[index].target)
                    )
                ok = isomorphic(apply_operations(tree, operations), example.after)
            except Exception:  # an invalid script does not rebuild anything
                ok = False
            rebuilt.append(ok)
            bar.advance()
    parameters = int(model.step_model.manifest.metadata.get("parameters", 0) or 0)
    return gold, predicted, rebuilt, parameters


def _treeedit_scores(
    folder: Path, examples: Sequence[CompletionExample], args: argparse.Namespace, out: dict
) -> dict[str, Any]:
    """Exact match of the edited tree, precision/recall of the tree-edit actions, and
    (into ``out["transfer"]``) the one-shot transfer test."""
    from ripple.models.runtime.treeedit_decode import TreeEditModel
    from ripple.training.treeedit_train import (
        evaluate_transfer,
        evaluate_treeedit,
        transfer_pairs,
    )

    model = TreeEditModel.load(folder, threads=1)
    gold, predicted, exact = evaluate_treeedit(model, examples, beam=args.beam, quiet=args.quiet)
    scores = operation_scores([g or [] for g in gold], predicted)
    scores["exact"] = sum(exact) / len(examples)
    scores["unconverted"] = sum(g is None for g in gold)
    scores["parameters"] = int(model.metadata().get("parameters", 0) or 0)
    if args.max_transfer:
        pairs = transfer_pairs(examples, max_pairs=args.max_transfer, seed=args.seed)
        out["transfer"] = evaluate_transfer(model, examples, pairs, quiet=args.quiet)
        _log(args, f"one-shot transfer: {json.dumps(out['transfer'])}")
    return scores


def run_eval(args: argparse.Namespace) -> int:
    """``ripple eval completion``: every system found in ``--models`` on ``--commits``."""
    from ripple.training.completion_data import examples_from_files, statistics

    systems = _systems(args.systems)
    models = args.models
    missing = [name for name in systems if not (models / name).is_dir()]
    if missing:
        raise UsageError(
            f"{models}: no model folder for {', '.join(missing)} (train them with "
            "`ripple train completion`, or choose --systems)"
        )
    started = time.monotonic()
    examples = list(
        examples_from_files(
            args.commits, max_commits=args.max_commits, scope=args.scope, quiet=args.quiet
        )
    )
    examples = _sample(examples, args.max_examples, args.seed)
    if not examples:
        raise UsageError("no EditCompletion examples in these commits")
    _log(args, f"{len(examples)} examples ({_elapsed(started)})")
    out: dict[str, Any] = {
        "examples": len(examples),
        "scope": args.scope,
        "repos": sorted({e.repo for e in examples}),
        "statistics": {r: row.to_json() for r, row in statistics(examples).items()},
        "systems": {},
    }
    for name in systems:
        t0 = time.monotonic()
        folder = models / name
        if name in TREE_SYSTEMS:
            scores = _treeedit_scores(folder, examples, args, out)
        elif name in C3PO_SYSTEMS:
            gold, predicted, rebuilt, parameters = _c3po_predictions(folder, examples, args.quiet)
            scores = operation_scores([g or [] for g in gold], [
                p if g is not None else None for g, p in zip(gold, predicted, strict=True)
            ])  # fmt: skip
            scores["exact_tree"] = sum(rebuilt) / len(examples)
            scores["unsolvable"] = sum(g is None for g in gold)
            scores["parameters"] = parameters
        else:
            from ripple.training import completion_baselines as baselines

            if name == "lasertagger":
                tagger, vocabs = baselines.load_tagger(folder)
                predictions: list[Any] = baselines.predict_tagger(tagger, vocabs, examples)
                parameters = baselines.parameter_count(tagger)
            else:
                editor, vocab = baselines.load_seq2seq(folder)
                predictions = baselines.predict_seq2seq(editor, vocab, examples, beam=args.beam)
                parameters = baselines.parameter_count(editor)
            scores = dict(baselines.text_scores(examples, predictions))
            scores["parameters"] = parameters
        scores["seconds"] = round(time.monotonic() - t0, 1)
        out["systems"][name] = scores
        _log(args, f"{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
    ablation = {
        label: out["systems"][name]["exact"]
        for label, name in (
            ("no context", "c3po-none"),
            ("textual context", "c3po-text"),
            ("path context", "c3po"),
        )
        if name in out["systems"]
    }
    if ablation:
        out["ablation"] = ablation
    baseline_exact = [out["systems"][n]["exact"] for n in TEXT_SYSTEMS if n in out["systems"]]
    if "c3po" in out["systems"] and baseline_exact and max(baseline_exact) > 0:
        out["c3po_vs_best_baseline"] = out["systems"]["c3po"]["exact"] / max(baseline_exact)
    _write_json(args.json_out, out)
    _print_table(out)
    return 0


def _print_table(out: dict[str, Any]) -> None:
    print(f"{out['examples']} examples ({out['scope']} context) from {', '.join(out['repos'])}")
    print(f"{'system':<14} {'exact':>7} {'prec':>7} {'recall':>7} {'params':>10}")
    for name, row in out["systems"].items():
        print(
            f"{name:<14} {row['exact']:>7.3f} {row['precision']:>7.3f} {row['recall']:>7.3f} "
            f"{row['parameters']:>10,}"
        )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _elapsed(start: float) -> str:
    return f"{time.monotonic() - start:.0f}s"
