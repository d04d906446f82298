"""Function drafts by retrieve-and-edit: training data, ``ripple train drafts``, ``ripple eval drafts``.

A repository's functions are read from its last version of every Python file in its commit
records (a file deleted later is gone). Each function with a body is a pair: header
(signature + docstring) -> body, in the canonical token form the server uses
(``ripple.models.suggest.retrieve_edit.function_tokens``). Retrieval stays inside a
repository, as the server's workspace index does.

``ripple train drafts`` trains the vMF retriever (header -> body) and the editor on the
permissively licensed training repositories (``--dev-repos`` held out for early stopping;
never the validation repositories) and exports both (``--export``, the bundled
``models/weights/drafts``).

``ripple eval drafts --commits FILE... --json OUT`` takes functions of the given
repositories (the validation ones) as queries: with the rest of the repository as the
workspace, draft the body from the header, and score body exact match (canonical form) and
BLEU (Yin & Neubig tokens, as ``ripple eval hearthstone``) for retrieve+edit, the learned
retriever alone, and the lexical retriever alone (the server's fallback).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ripple.models.errors import UsageError
from ripple.models.suggest.functions import FunctionRecord, extract_functions
from ripple.models.suggest.retrieve_edit import MAX_BODY, canonical_body, function_tokens
from ripple.training.data import (
    VALIDATION_REPOS,
    iter_commits,
    permissive_training_repos,
    repo_of_file,
)

__all__ = ["function_pairs", "latest_files", "repository_functions", "run_eval", "run_train"]

DEV_REPOS: Final = ("psf/requests", "pallets/click")
MIN_BODY: Final = 3  # body tokens: a function that only returns a name teaches nothing


def repository_functions(path: Path, max_files: int | None = None) -> list[FunctionRecord]:
    """Every function of the repository's last version of each Python file in ``path``."""
    latest = latest_files(path)
    out: list[FunctionRecord] = []
    for name in sorted(latest)[:max_files]:
        out.extend(extract_functions(latest[name], name))
    return out


def function_pairs(
    records: Sequence[FunctionRecord], group: str
) -> tuple[list[Any], list[FunctionRecord]]:
    """The pairs (and their functions) of the functions with a body of ``MIN_BODY`` to
    ``MAX_BODY`` tokens; duplicates (same header and body) kept once."""
    from ripple.training.retrieve_edit import Pair

    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    pairs, kept = [], []
    for record in records:
        x, y = function_tokens(record)
        if not MIN_BODY <= len(y) <= MAX_BODY or (x, y) in seen:
            continue
        seen.add((x, y))
        pairs.append(Pair(x, y, group))
        kept.append(record)
    return pairs, kept


def _repo_pairs(files: Sequence[Path], quiet: bool, label: str) -> list[Any]:
    from ripple.training.progress import Progress

    out: list[Any] = []
    with Progress(len(files), label, quiet=quiet) as bar:
        for path in files:
            repo = repo_of_file(path)
            pairs, _ = function_pairs(repository_functions(path), repo)
            out.extend(pairs)
            bar.advance(note=f"{repo}: {len(pairs)} functions")
    return out


def run_train(args: argparse.Namespace) -> int:
    """``ripple train drafts``."""
    import torch

    from ripple.models.runtime import load_model
    from ripple.models.suggest.copy_features import EditorConfig
    from ripple.models.suggest.retrieval import OnnxRetriever
    from ripple.training.copy_export import export_copy_editor
    from ripple.training.retrieve_edit import (
        IDENTITY_P,
        EditorDataset,
        build_vocab,
        check_export,
        export_retriever,
        fresh_folder,
        log,
        retrieve,
        train_editor,
        train_retriever,
        train_settings,
        write_json,
    )

    if not args.data.is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    by_repo = {repo_of_file(p): p for p in permissive_training_repos(args.data)}
    bad = [r for r in args.dev_repos if r not in by_repo or r in VALIDATION_REPOS]
    if bad:
        raise UsageError(f"--dev-repos: {', '.join(bad)} is not a permissive training repository")
    export: Path = args.export or args.out / "models"
    check_export(export, ("retriever", "editor"), args.force)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    train_files = [p for r, p in by_repo.items() if r not in args.dev_repos]
    dev_files = [by_repo[r] for r in args.dev_repos]
    train = _repo_pairs(train_files, args.quiet, "training functions")
    dev = _repo_pairs(dev_files, args.quiet, "dev functions")
    rng = random.Random(args.seed)
    if args.max_dev and len(dev) > args.max_dev:
        dev = rng.sample(dev, args.max_dev)
    vocab = build_vocab(train, args.vocab_size, min_count=2)
    meta = {
        "train_repos": sorted(repo_of_file(p) for p in train_files),
        "dev_repos": list(args.dev_repos),
        "train_functions": len(train),
        "dev_functions": len(dev),
    }
    log(
        f"{len(train)} training functions, {len(dev)} dev functions, vocabulary {len(vocab)}",
        args.quiet,
    )
    settings = train_settings(args)
    report: dict[str, Any] = {"data": meta, "vocab_size": len(vocab)}
    if not args.only or "retriever" in args.only:
        log(f"training the retriever ({args.retriever_steps} steps)", args.quiet)
        model, rep = train_retriever(
            train, dev, vocab, args.out / "retriever", steps=args.retriever_steps, settings=settings
        )
        export_retriever(
            model, vocab, fresh_folder(export / "retriever", args.force), name="drafts-retriever",
            metadata={**meta, "training": rep},
        )  # fmt: skip
        report["retriever"] = rep
    if not args.only or "editor" in args.only:
        retriever = OnnxRetriever(load_model(export / "retriever", device="cpu", threads=1))
        log("retrieving neighbours", args.quiet)
        train_n = retrieve(retriever.embed, train, train, skip_self=True)
        dev_n = retrieve(retriever.embed, dev, dev, skip_self=True)
        log(f"training the editor ({args.editor_steps} steps)", args.quiet)
        editor_model, rep = train_editor(
            EditorDataset(train, train_n, train, vocab, identity_p=IDENTITY_P, seed=args.seed),
            EditorDataset(dev, dev_n, dev, vocab),
            vocab,
            args.out / "editor",
            steps=args.editor_steps,
            settings=settings,
        )
        export_copy_editor(
            editor_model,
            vocab,
            EditorConfig(max_input=1000, max_output=MAX_BODY),
            fresh_folder(export / "editor", args.force),
            name="drafts-editor",
            metadata={**meta, "training": rep},
        )
        report["editor"] = rep
    report["wall_s"] = round(time.monotonic() - t0, 1)
    write_json(args.out / "results.json", report)
    print(f"trained the drafts models in {report['wall_s']} s; models in {export}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """``ripple eval drafts``."""
    from ripple.models.suggest.functions import FunctionIndex, HashedBagOfWords
    from ripple.models.suggest.retrieve_edit import load_function_models
    from ripple.training.hearthstone import score, tokenize
    from ripple.training.progress import Progress
    from ripple.training.retrieve_edit import write_json

    missing = [str(p) for p in args.commits if not p.is_file()]
    if missing:
        raise UsageError(f"--commits: no such file {', '.join(missing)}")
    t0 = time.monotonic()
    embedder, drafter = load_function_models(args.models, threads=args.threads)
    lexical = HashedBagOfWords()
    names = ("retrieve-edit", "retriever", "lexical-edit", "retriever-lexical")
    refs: list[list[str]] = []
    outs: dict[str, list[list[str]]] = {n: [] for n in names}
    exact_text: dict[str, int] = {n: 0 for n in names}
    per_repo: dict[str, Any] = {}
    rng = random.Random(args.seed)
    for path in args.commits:
        repo = repo_of_file(path)
        texts = latest_files(path)
        records = [r for name in sorted(texts) for r in extract_functions(texts[name], name)]
        _, kept = function_pairs(records, repo)
        indexes = {"learned": FunctionIndex(embedder), "lexical": FunctionIndex(lexical)}
        by_file: dict[str, list[FunctionRecord]] = {}
        for record in kept:
            by_file.setdefault(record.path, []).append(record)
        for index in indexes.values():
            for name in by_file:
                index.update_file(name, texts[name])
        queries = kept if len(kept) <= args.max_functions else rng.sample(kept, args.max_functions)
        start = len(refs)
        with Progress(len(queries), f"{repo}: drafting", quiet=args.quiet) as bar:
            for record in queries:
                truth = canonical_body(record)
                refs.append(tokenize(truth))
                exclude = (record.path, record.start_line)
                learned = indexes["learned"].query(record.header, 1, exclude=exclude)
                lex = indexes["lexical"].query(record.header, 1, exclude=exclude)
                drafts = {
                    "retrieve-edit": drafter.draft_canonical(record.header, learned[0][1])
                    if learned
                    else None,
                    "retriever": canonical_body(learned[0][1]) if learned else None,
                    # The editor on the lexical retriever's neighbour (the server's fallback).
                    "lexical-edit": drafter.draft_canonical(record.header, lex[0][1])
                    if lex
                    else None,
                    "retriever-lexical": canonical_body(lex[0][1]) if lex else None,
                }
                for name, text in drafts.items():
                    outs[name].append(tokenize(text or ""))
                    exact_text[name] += int((text or "") == truth)
                bar.advance()
        per_repo[repo] = {
            "functions": len(kept),
            "queries": len(queries),
            "systems": {n: score(refs[start:], outs[n][start:]) for n in names},
        }
    systems = {
        n: {**score(refs, outs[n]), "exact_text": round(exact_text[n] / max(1, len(refs)), 4)}
        for n in names
    }
    result = {
        "examples": len(refs),
        "systems": systems,
        "repos": per_repo,
        "wall_s": round(time.monotonic() - t0, 1),
    }
    print(f"function drafts: {len(refs)} functions of {', '.join(per_repo)}")
    print(f"{'system':<20} {'BLEU':>6} {'exact':>7} {'exact text':>11}")
    for name, row in systems.items():
        print(f"{name:<20} {row['bleu']:>6.1f} {row['exact']:>7.3f} {row['exact_text']:>11.3f}")
    if args.json is not None:
        write_json(args.json, result)
    return 0


def latest_files(path: Path) -> dict[str, str]:
    """The last text of every Python file of the commit records ``path`` (deleted: gone)."""
    latest: dict[str, str | None] = {}
    for rec in iter_commits(path):
        for change in rec.files:
            latest[change.path] = change.after
    return {p: t for p, t in latest.items() if t is not None and p.endswith(".py")}
