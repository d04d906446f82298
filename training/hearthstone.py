"""The Hearthstone card -> code benchmark for retrieve-and-edit (Hashimoto et al. 2018, §4.2).

``ripple train hearthstone --data DIR --out RUN`` trains, on the 533 training cards: the task
retriever and the InputRetriever (1000 steps each), the seq2seq baseline without retrieval
and the editor with retrievals from the task retriever (3000 steps each; batch 16, Adam
1e-3, as the paper), and exports the four models to ``RUN/models`` (or ``--export``). The
editor is the seq2seq net reading more input, so it starts from the trained seq2seq's
weights (``--editor-init seq2seq``, the default): on 533 cards an editor trained from random
weights learns to lean on the neighbour's code and ends below seq2seq itself.

``ripple eval hearthstone --data DIR --json OUT`` scores them on the test split:

* ``retrieve-edit``: the task retriever's nearest training card (annoy, angular), edited by
  the editor (beam 5);
* ``retriever``: the retrieved card's code as it is;
* ``seq2seq``: the same editor net trained without retrieval, reading the card alone;
* extra rows: the paper's other retrievers (``retriever-lexical``, ``retriever-input``),
  the editor given the lexical retriever's neighbour (``lexical-edit``), and
  ``retrieve-edit-topK`` (``--neighbours K``): the editor run on each of the K nearest
  training cards, keeping the edit with the best log-probability per decision.

Tokens are those of Yin & Neubig (2017)'s evaluation (``tokenize``: split on spaces and
punctuation, and camelCase words into their parts), which the models also read and write;
``§`` (the dataset's line break) is a token the models write and the scoring drops. BLEU is
their sentence-level BLEU-4 with NLTK's smoothing method 3, averaged over the cards, and
exact match compares the token sequences.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ripple.models.errors import UsageError

__all__ = ["bleu", "load_split", "run_eval", "run_train", "score", "tokenize"]

SPLITS: Final = ("train", "dev", "test")
LINE_BREAK: Final = "§"
MODELS: Final = ("retriever", "input-retriever", "editor", "seq2seq")
BEAM: Final = 5
MAX_OUTPUT: Final = 400


def tokenize(text: str) -> list[str]:
    """Yin & Neubig (2017)'s evaluation tokens: spaces and punctuation, camelCase parts."""
    text = re.sub(r"([^A-Za-z0-9_])", r" \1 ", text)
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    text = text.replace('"', "`").replace("'", "`")
    return text.split()


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """Sentence BLEU-4 (0..1) as NLTK's ``sentence_bleu`` with ``SmoothingFunction().method3``."""
    if not hypothesis or not reference:
        return 0.0
    precisions: list[tuple[int, int]] = []  # unreduced, as NLTK's Fraction(_normalize=False)
    for n in range(1, 5):
        hyp = _ngrams(hypothesis, n)
        ref = _ngrams(reference, n)
        clipped = sum(min(c, ref[g]) for g, c in hyp.items())
        precisions.append((clipped, max(1, sum(hyp.values()))))
    if precisions[0][0] == 0:
        return 0.0
    logs = []
    k = 1
    for matched, total in precisions:  # method 3: k-th zero precision -> 1 / (2^k * total)
        if matched == 0:
            logs.append(math.log(1 / (2**k * total)))
            k += 1
        else:
            logs.append(math.log(matched / total))
    c, r = len(hypothesis), len(reference)
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(sum(logs) / 4)


def _scored(tokens: Sequence[str]) -> list[str]:
    return [t for t in tokens if t != LINE_BREAK]


def score(
    references: Sequence[Sequence[str]], outputs: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Average sentence BLEU (0-100) and exact match rate (0-1) over the examples."""
    if not references:
        return {"bleu": 0.0, "exact": 0.0}
    refs = [_scored(r) for r in references]
    outs = [_scored(o) for o in outputs]
    return {
        "bleu": round(
            100 * sum(bleu(r, o) for r, o in zip(refs, outs, strict=True)) / len(refs), 2
        ),
        "exact": round(sum(r == o for r, o in zip(refs, outs, strict=True)) / len(refs), 4),
    }


def load_split(data: Path, split: str) -> list[Any]:
    """The pairs (card tokens -> code tokens) of one split."""
    from ripple.training.retrieve_edit import Pair

    files = [data / f"{split}_hs.in", data / f"{split}_hs.out"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UsageError(
            f"--data {data}: missing {', '.join(missing)} (the Hearthstone data folder)"
        )
    cards = files[0].read_text(encoding="utf-8").splitlines()
    code = files[1].read_text(encoding="utf-8").splitlines()
    if len(cards) != len(code):
        raise UsageError(f"{files[0]} has {len(cards)} lines but {files[1]} has {len(code)}")
    return [Pair(tuple(tokenize(x)), tuple(tokenize(y))) for x, y in zip(cards, code, strict=True)]


# -- training ------------------------------------------------------------------------------


def run_train(args: argparse.Namespace) -> int:
    """``ripple train hearthstone``."""
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

    for name in ("retriever_steps", "editor_steps", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    train, dev = load_split(args.data, "train"), load_split(args.data, "dev")
    export: Path = args.export or args.out / "models"
    check_export(export, MODELS, args.force)
    editor_init: Path | None = None
    if args.editor_init == "seq2seq" and (not args.only or "editor" in args.only):
        editor_init = args.out / "seq2seq" / "best"
        if args.only and "seq2seq" not in args.only and not editor_init.is_dir():
            raise UsageError(
                f"{editor_init}: no seq2seq model to start the editor from; train it too "
                "(--only seq2seq,editor) or pass --editor-init none"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    vocab = build_vocab(train, args.vocab_size)
    settings = train_settings(args)
    meta = {
        "data": "Hearthstone (Ling et al. 2016)",
        "train_examples": len(train),
        "dev_examples": len(dev),
    }
    report: dict[str, Any] = {"vocab_size": len(vocab)}
    for name, target in (("retriever", "output"), ("input-retriever", "input")):
        if args.only and name not in args.only:
            continue
        log(f"training the {name} ({args.retriever_steps} steps)", args.quiet)
        model, rep = train_retriever(
            train,
            dev,
            vocab,
            args.out / name,
            target=target,
            steps=args.retriever_steps,
            settings=settings,
        )
        export_retriever(
            model,
            vocab,
            fresh_folder(export / name, args.force),
            name=f"hearthstone-{name}",
            metadata={**meta, "training": rep},
        )
        report[name] = rep
    for name in ("seq2seq", "editor"):  # the editor starts from the seq2seq weights
        if args.only and name not in args.only:
            continue
        with_retrieval = name == "editor"
        init = editor_init if with_retrieval else None
        train_n: list[int | None] = [None] * len(train)
        dev_n: list[int | None] = [None] * len(dev)
        if with_retrieval:
            retriever = OnnxRetriever(load_model(export / "retriever", device="cpu", threads=1))
            train_n = retrieve(retriever.embed, train, train, skip_self=True)
            dev_n = retrieve(retriever.embed, train, dev, skip_self=False)
        log(f"training the {name} ({args.editor_steps} steps)", args.quiet)
        editor_model, rep = train_editor(
            EditorDataset(
                train,
                train_n,
                train,
                vocab,
                identity_p=IDENTITY_P if with_retrieval else 0.0,
                seed=args.seed,
            ),
            EditorDataset(dev, dev_n, train, vocab),
            vocab,
            args.out / name,
            steps=args.editor_steps,
            settings=settings,
            init=init,
        )
        if init is not None:  # recorded relative to the run folder (the manifest keeps it)
            rep["init"] = init.relative_to(args.out).as_posix()
        export_copy_editor(
            editor_model,
            vocab,
            EditorConfig(max_input=1200, max_output=MAX_OUTPUT),
            fresh_folder(export / name, args.force),
            name=f"hearthstone-{name}",
            metadata={**meta, "training": rep, "retrieval": with_retrieval},
        )
        report[name] = rep
    report["wall_s"] = round(time.monotonic() - t0, 1)
    write_json(args.out / "results.json", report)
    print(
        f"trained {', '.join(n for n in MODELS if n in report)} in {report['wall_s']} s; models in {export}"
    )
    return 0


# -- evaluation ----------------------------------------------------------------------------


def default_models_dir() -> Path:
    from ripple.models.runtime import default_models_dir as weights

    return weights() / "hearthstone"


def run_eval(args: argparse.Namespace) -> int:
    """``ripple eval hearthstone``."""
    from ripple.models.runtime import load_model
    from ripple.models.runtime.copy_decode import Hypothesis
    from ripple.models.suggest.copy_predictor import OnnxEditor
    from ripple.models.suggest.retrieval import OnnxRetriever
    from ripple.training.progress import Progress
    from ripple.training.retrieve_edit import (
        Pair,
        editor_input,
        retrieve,
        retrieve_top,
        write_json,
    )

    models: Path = args.models or default_models_dir()
    missing = [n for n in MODELS if not (models / n / "manifest.json").is_file()]
    if missing:
        raise UsageError(
            f"--models {models}: no {', '.join(missing)} model (train them with `ripple train hearthstone`)"
        )
    train, split = load_split(args.data, "train"), load_split(args.data, args.split)
    if args.limit:
        split = split[: args.limit]
    t0 = time.monotonic()
    retriever = OnnxRetriever(load_model(models / "retriever", device="cpu", threads=args.threads))
    inputs = OnnxRetriever(
        load_model(models / "input-retriever", device="cpu", threads=args.threads)
    )
    editor = OnnxEditor(load_model(models / "editor", device="cpu", threads=args.threads))
    seq2seq = OnnxEditor(load_model(models / "seq2seq", device="cpu", threads=args.threads))
    if args.neighbours < 1:
        raise UsageError("--neighbours must be at least 1")
    top = retrieve_top(retriever.embed, train, split, args.neighbours, skip_self=False)
    found = [hits[0] if hits else None for hits in top]
    found_in = retrieve(inputs.embed, train, split, skip_self=False)
    found_lex = retrieve(None, train, split, skip_self=False, lexical=True)

    def nearest(i: int | None) -> tuple[str, ...]:
        return train[i].y if i is not None else ()

    def edit(pair: Pair, n: int | None) -> list[Hypothesis]:
        source = editor_input(pair.x, train[n].x, train[n].y) if n is not None else pair.x
        return editor.beam(source, args.beam, MAX_OUTPUT)[:1]

    refs = [p.y for p in split]
    reranked = f"retrieve-edit-top{args.neighbours}"
    outputs: dict[str, list[tuple[str, ...]]] = {
        "retrieve-edit": [],
        "seq2seq": [],
        "lexical-edit": [],
        reranked: [],
    }
    with Progress(len(split), f"decoding {args.split} (beam {args.beam})", quiet=args.quiet) as bar:
        for pair, hits, lex in zip(split, top, found_lex, strict=True):
            first = edit(pair, hits[0] if hits else None)
            outputs["retrieve-edit"].append(_best(first, nearest(hits[0] if hits else None)))
            outputs["seq2seq"].append(_best(seq2seq.beam(pair.x, args.beam, MAX_OUTPUT), ()))
            outputs["lexical-edit"].append(_best(edit(pair, lex), nearest(lex)))
            if args.neighbours > 1:  # the edit the editor is surest of, per decision
                candidates = first + [h for n in hits[1:] for h in edit(pair, n)]
                best = max(candidates, key=lambda h: h.logp / max(1, h.actions), default=None)
                outputs[reranked].append(_best([best] if best else [], ()))
            bar.advance()
    systems = {
        "retrieve-edit": score(refs, outputs["retrieve-edit"]),
        "retriever": score(refs, [nearest(i) for i in found]),
        "seq2seq": score(refs, outputs["seq2seq"]),
        "retriever-lexical": score(refs, [nearest(i) for i in found_lex]),
        "retriever-input": score(refs, [nearest(i) for i in found_in]),
        "lexical-edit": score(refs, outputs["lexical-edit"]),
    }
    if args.neighbours > 1:
        systems[reranked] = score(refs, outputs[reranked])
    result = {
        "examples": len(split),
        "split": args.split,
        "beam": args.beam,
        "systems": systems,
        "paper_table3": {
            "retrieve-edit": {"bleu": 70.0, "exact": 0.091},
            "retriever": {"bleu": 62.5, "exact": 0.0},
            "seq2seq": {"bleu": 60.4, "exact": 0.015},
            "asn": {"bleu": 79.2, "exact": 0.227},
        },
        "models": str(models),
        "wall_s": round(time.monotonic() - t0, 1),
    }
    print(f"Hearthstone {args.split} ({len(split)} cards, beam {args.beam})")
    print(f"{'system':<22} {'BLEU':>6} {'exact':>7}")
    for name, row in systems.items():
        print(f"{name:<22} {row['bleu']:>6.1f} {row['exact']:>7.3f}")
    if args.json is not None:
        write_json(args.json, result)
    return 0


def _best(hyps: Sequence[Any], fallback: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(hyps[0].tokens) if hyps else fallback
