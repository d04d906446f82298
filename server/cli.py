"""The ``ripple`` command line.

This module is the outermost edge of ripple: it only builds the argument parser and
hands each subcommand to the module that implements it. Handlers are named as
``"module:function"`` strings and imported only when their subcommand runs, so
``ripple --help`` and ``ripple serve`` never import torch (or anything else heavy).
It is the one place in ``ripple.server`` allowed to reach ``ripple.training``, and
only lazily, inside the training subcommands.

Every handler takes the parsed ``argparse.Namespace`` and returns an exit code.
A ``UsageError`` raised by a handler is printed as one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ripple.models.errors import UsageError

DEFAULT_DATA_DIR = Path(os.environ.get("RIPPLE_DATA", "../shared/data"))


Handler = Callable[[argparse.Namespace], int]


def _handler(spec: str) -> Handler:
    module_name, _, func_name = spec.partition(":")

    def run(args: argparse.Namespace) -> int:
        module = importlib.import_module(module_name)
        func: Handler = getattr(module, func_name)
        return func(args)

    return run


def _add(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: str,
    help: str,
    description: str | None = None,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=_handler(handler))
    return parser


def _group(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help: str,
    description: str,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    parser = subparsers.add_parser(
        name, help=help, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(handler=None, group_parser=parser)
    return parser.add_subparsers(title="what to run", metavar="KIND")


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        sub,
        "serve",
        "ripple.server.serve:run",
        "run the language server (stdio by default)",
        description=(
            "Run ripple's language server. Editors start it over stdio; --tcp listens on a\n"
            "socket instead (useful for debugging a client)."
        ),
    )
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on a TCP socket instead of stdio")
    p.add_argument(
        "--stdio", action="store_true", help="serve over stdio (the default; accepted because many clients pass it)"
    )
    p.add_argument(
        "--log-file", type=Path, help="write the server's log here (default: stderr, at WARNING)"
    )
    p.add_argument("--verbose", action="store_true", help="log at DEBUG level")
    p.add_argument(
        "--models",
        type=Path,
        metavar="DIR",
        help="serve the models in DIR (one folder per model with a manifest.json, and an "
        "optional gate.json) instead of the bundled ones",
    )


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        sub,
        "demo",
        "ripple.server.demo:run",
        "show ripple end to end on a small generated example",
        description=(
            "Start `ripple serve` and talk LSP to it over stdio like an editor: open a small\n"
            "generated project, type an edit (an argument added to one call), ask for the\n"
            "next edits, and print them with their latency and explanation."
        ),
    )
    p.add_argument("--json", dest="json_out", type=Path, help="also write the result as JSON")
    p.add_argument("--models", type=Path, metavar="DIR", help="serve these models instead of the bundled ones")


def _add_nvim_path(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add(
        sub,
        "nvim-path",
        "ripple.server.nvim_path:run",
        "print the Neovim runtime folder to add to 'runtimepath'",
        description=(
            "Print the folder, shipped inside the package, to add to Neovim's 'runtimepath'\n"
            "(Neovim 0.11+). It holds lsp/ripple.lua, the defaults of vim.lsp.config('ripple'),\n"
            "and lua/ripple/init.lua, the module that shows ripple's next edits in the buffer:\n"
            "require('ripple').setup() after vim.lsp.enable('ripple')."
        ),
        epilog=(
            "example (init.lua):\n"
            "  vim.opt.runtimepath:append(vim.trim(vim.fn.system({ 'ripple', 'nvim-path' })))\n"
            "  vim.lsp.enable('ripple')\n"
            "  require('ripple').setup({})"
        ),
    )


def _add_mine(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        sub,
        "mine",
        "ripple.training.mine:run",
        "mine a git repository's history into commit records (.jsonl.xz)",
        description=(
            "Mine the history of a local git repository (work tree or bare) into the commit\n"
            "record schema of the data README: non-merge commits reachable from HEAD, oldest\n"
            "first, each with the full before/after text of its changed .py files."
        ),
    )
    p.add_argument("repo", type=Path, metavar="REPO_PATH", help="a git work tree or bare git dir")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.jsonl.xz", help="output file")
    p.add_argument("--max-commits", type=int, metavar="N", help="keep only the N most recent kept commits")
    p.add_argument("--branch", metavar="REF", default="HEAD", help="mine history reachable from REF (default HEAD)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_diff(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        sub,
        "diff",
        "ripple.models.edits.diff_cli:run",
        "print the AST edit script between two files (GumTree + Chawathe)",
        description=(
            "Print the AST edit script that turns OLD_FILE into NEW_FILE, one action per line:\n"
            '  UPD identifier "old" -> "new" @ line:col\n'
            "  INS / DEL / MOV ...\n"
            "Lines and columns are 0-based (NEW file for INS, OLD file otherwise)."
        ),
    )
    p.add_argument("old", type=Path, metavar="OLD_FILE")
    p.add_argument("new", type=Path, metavar="NEW_FILE")
    p.add_argument("--json", action="store_true", help="print a JSON list of actions instead")


def _add_eval(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = _group(sub, "eval", "evaluate predictors and models", "Evaluate predictors and models.")
    p = _add(
        group,
        "replay",
        "ripple.training.replay:run",
        "the replay benchmark: next-edit prediction on real commits",
        description=(
            "Replay real commits hunk by hunk and score every system's suggested next edits\n"
            "(exact@1, exact@5, location@1, precision@1, coverage, latency). Systems are\n"
            "scored side by side on the same steps."
        ),
    )
    p.add_argument("--commits", type=Path, nargs="+", required=True, metavar="FILE", help="commit record files (.jsonl.xz)")
    p.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT.json", help="write the results here")
    p.add_argument("--max-commits", type=int, metavar="N", help="only the first N kept commits of each file")
    p.add_argument("--systems", metavar="A,B,...", help="comma-separated systems to run (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = _add(
        group,
        "calibrate",
        "ripple.training.calibrate:run",
        "choose the confidence gate of the shipped system (gate.json)",
        description=(
            "Replay commits (the validation repositories) through every member of the shipped\n"
            "system and pick, per member, the lowest score at which its suggestions are right\n"
            "at least --precision of the time. Writes gate.json, read by the server next to\n"
            "its models (the bundled gate lives in models/weights/gate.json)."
        ),
        epilog=(
            "example: ripple eval calibrate --commits ../shared/data/commits/"
            "marshmallow-code__marshmallow.jsonl.xz ../shared/data/commits/PyCQA__flake8.jsonl.xz "
            "--max-commits 300 --precision 0.5 --out models/weights/gate.json"
        ),
    )
    p.add_argument("--commits", type=Path, nargs="+", required=True, metavar="FILE", help="commit record files (.jsonl.xz)")
    p.add_argument("--out", type=Path, required=True, metavar="gate.json", help="where to write the gate")
    p.add_argument("--precision", type=float, default=0.5, help="target precision of shown suggestions (default 0.5)")
    p.add_argument("--min-support", type=int, default=20, metavar="N", help="at least N suggestions at the threshold (default 20)")
    p.add_argument("--max-commits", type=int, metavar="N", help="only the first N kept commits of each file")
    p.add_argument("--models", type=Path, metavar="DIR", help="calibrate these models instead of the bundled ones")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = _add(
        group,
        "synthetic",
        "ripple.training.eval_synthetic:run",
        "score the shipped Zhao E/IR/IA checkpoints on fresh synthetic test sets",
        description=(
            "Generate a fresh test set (--seed; training used seed 0) for each of Zhao et al.'s\n"
            "synthetic tasks, score every shipped checkpoint of the task (an edit counts only if\n"
            "position and content are both right), print the accuracy next to the paper's\n"
            "Table 1, and write {\"tasks\": {TASK: {\"ia\": pct, \"e\": pct, \"ir\": pct}}} with a\n"
            "model's key only where it was trained. A missing or damaged checkpoint is\n"
            "reported for its task; the other tasks are still scored (exit code 1)."
        ),
        epilog="example: ripple eval synthetic --json out/synthetic.json --tasks Append1,MetaAppend1",
    )
    p.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT.json", help="write the results here")
    p.add_argument("--tasks", metavar="T1,T2,...", help="tasks to score (default: all 29)")
    p.add_argument("--seed", type=int, default=1, help="seed of the test sets (default 1)")
    p.add_argument("--test-size", type=int, default=1000, help="instances per task (default 1000)")
    p.add_argument("--weights", type=Path, metavar="DIR", help="checkpoint folder (default: the shipped models/weights/zhao-synthetic)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_eval_edits(group)
    _add_eval_hearthstone(group)
    _add_eval_drafts(group)
    _add_eval_completion(group)
    p = _add(
        group,
        "copy",
        "ripple.training.copy_eval:run",
        "the span-copying editor vs CopyTok and the ablations on held-out edit pairs",
        description=(
            "Build edit pairs (fragment + recent edits -> edited fragment) from the given commits\n"
            "with the training builder, decode each with every exported editor through\n"
            "onnxruntime (merged-ray beam search), and score exact match of the top candidate\n"
            "that changes the input, exact@BEAM, MRR and decoder actions per example."
        ),
        epilog=(
            "example: ripple eval copy --commits ../shared/data/commits/PyCQA__flake8.jsonl.xz \\\n"
            "           ../shared/data/commits/marshmallow-code__marshmallow.jsonl.xz --json out/copy.json"
        ),
    )
    p.add_argument("--commits", type=Path, nargs="+", required=True, metavar="FILE", help="commit record files (.jsonl.xz)")
    p.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT.json", help="write the results here")
    p.add_argument("--systems", default=",".join(("copy-span", "copy-token", "copy-span-longest", "copy-span-nomarg")), metavar="A,B,...", help="editors to score (default: all four)")
    p.add_argument("--models", type=Path, metavar="DIR", help="folder holding editors/NAME (default: the bundled models)")
    p.add_argument("--system-dir", action="append", metavar="NAME=DIR", help="score the editor in DIR as NAME (repeatable)")
    p.add_argument("--max-commits", type=int, default=100, metavar="N", help="kept commits per file (default 100)")
    p.add_argument("--max-examples", type=int, metavar="N", help="stop at N examples")
    p.add_argument("--beam", type=int, default=20, help="beam size (default 20, as the paper)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_train_hearthstone(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        group,
        "hearthstone",
        "ripple.training.hearthstone:run_train",
        "train retrieve-and-edit on the Hearthstone card -> code benchmark",
        description=(
            "Train, on the Hearthstone training cards, the four models `ripple eval hearthstone`\n"
            "scores (Hashimoto et al. 2018): the vMF task retriever and the InputRetriever\n"
            "(--retriever-steps each), the span-copying editor without retrieval (seq2seq) and\n"
            "the same editor fed the task retriever's neighbours (2nd neighbour of a training\n"
            "card, with (x', x', y') -> y' at rate 0.1), which starts from the seq2seq weights\n"
            "(--editor-init; --editor-steps each). Each model is exported to ONNX + manifest in\n"
            "--export (default RUN/models); the best dev step of each is kept."
        ),
        epilog="example: ripple train hearthstone --data ../shared/data/hearthstone --out runs/hs --export models/weights/hearthstone --force",
    )
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="folder with {train,dev,test}_hs.{in,out}")
    p.add_argument("--out", type=Path, required=True, metavar="RUN", help="run folder (checkpoints, results.json)")
    p.add_argument("--export", type=Path, metavar="DIR", help="where the four model folders go (default RUN/models)")
    p.add_argument("--force", action="store_true", help="replace model folders that exist")
    p.add_argument("--only", type=lambda s: s.split(","), metavar="A,B", help="train only these of retriever,input-retriever,editor,seq2seq")
    p.add_argument("--retriever-steps", type=int, default=1000, help="retriever steps (default 1000, as the paper)")
    p.add_argument("--editor-steps", type=int, default=3000, help="editor steps (default 3000: 3x the retriever's)")
    p.add_argument("--editor-init", choices=("seq2seq", "none"), default="seq2seq", help="start the editor from the trained seq2seq baseline's weights (default) or from random ones (none)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--vocab-size", type=int, default=5000, help="vocabulary size (default 5000)")
    p.add_argument("--eval-every", type=int, default=100, help="dev evaluation every N steps (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--resume", action="store_true", help="continue each model's training from its latest checkpoint in --out (finished models are only re-exported)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_eval_hearthstone(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        group,
        "hearthstone",
        "ripple.training.hearthstone:run_eval",
        "retrieve-and-edit vs retriever only vs seq2seq on Hearthstone (BLEU, exact match)",
        description=(
            "Score, on a Hearthstone split (default test), retrieve+edit (task retriever through\n"
            "annoy, then the editor with beam 5), the retriever alone (the neighbour's code as\n"
            "it is) and seq2seq without retrieval, plus the lexical and input retrievers. BLEU is\n"
            "Yin & Neubig (2017)'s: tokens split on spaces and punctuation (and camelCase),\n"
            "sentence BLEU-4 with NLTK smoothing 3, averaged; exact = identical tokens. Writes\n"
            '{"examples": n, "systems": {NAME: {"bleu": 0-100, "exact": 0-1}}}.'
        ),
        epilog="example: ripple eval hearthstone --data ../shared/data/hearthstone --json out/hearthstone.json",
    )
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="folder with {train,dev,test}_hs.{in,out}")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="write the results here")
    p.add_argument("--models", type=Path, metavar="DIR", help="the four model folders (default: the bundled models/weights/hearthstone)")
    p.add_argument("--split", choices=("dev", "test"), default="test", help="split to score (default test)")
    p.add_argument("--beam", type=int, default=5, help="beam size (default 5, as the paper)")
    p.add_argument("--neighbours", type=int, default=3, metavar="K", help="also score retrieve-edit-topK: the editor run on each of the K nearest cards, keeping the edit with the best log-probability per decision (default 3; 1 = off)")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N cards")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_train_drafts(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        group,
        "drafts",
        "ripple.training.drafts:run_train",
        "train the retriever and editor that draft function bodies from the workspace",
        description=(
            "Read every function of the permissively licensed training repositories (their\n"
            "last version of each file) as header (signature + docstring) -> body, train the\n"
            "vMF retriever (header -> body) and the span-copying editor that rewrites the\n"
            "nearest function's body (retrieved within the same repository) for a new header,\n"
            "and export both to --export (ONNX + manifest). --dev-repos drive early stopping;\n"
            "the validation repositories are never read."
        ),
        epilog="example: nice ripple train drafts --data ../shared/data/commits --out runs/drafts --export models/weights/drafts --force",
    )
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="folder of commit record files (*.jsonl.xz)")
    p.add_argument("--out", type=Path, required=True, metavar="RUN", help="run folder (checkpoints, results.json)")
    p.add_argument("--export", type=Path, metavar="DIR", help="where retriever/ and editor/ go (default RUN/models)")
    p.add_argument("--force", action="store_true", help="replace model folders that exist")
    p.add_argument("--only", type=lambda s: s.split(","), metavar="A,B", help="train only these of retriever,editor")
    p.add_argument("--dev-repos", type=lambda s: s.split(","), default=["psf/requests", "pallets/click"], metavar="A,B", help="training repositories held out for early stopping (default psf/requests,pallets/click)")
    p.add_argument("--max-dev", type=int, default=1000, metavar="N", help="dev functions sampled (default 1000)")
    p.add_argument("--retriever-steps", type=int, default=2000, help="retriever steps (default 2000)")
    p.add_argument("--editor-steps", type=int, default=6000, help="editor steps (default 6000)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--vocab-size", type=int, default=20000, help="vocabulary size (default 20000)")
    p.add_argument("--eval-every", type=int, default=250, help="dev evaluation every N steps (default 250)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--resume", action="store_true", help="continue each model's training from its latest checkpoint in --out (finished models are only re-exported)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


_COMPLETION_SYSTEMS = "c3po,c3po-text,c3po-none,lasertagger,seq2seq-copy"


def _add_train_completion(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        group,
        "completion",
        "ripple.training.completion:run_train",
        "train C3PO (edit completion by AST path-operations) and its textual baselines",
        description=(
            "Build EditCompletion examples (C3PO §6.1: a changed statement of at most 50 AST\n"
            "nodes, the edits made around it, the gold path-operations) from the permissively\n"
            "licensed training repositories (never the validation ones), cached per repository\n"
            "in --datasets, and train each of --systems: c3po (path context), c3po-text and\n"
            "c3po-none (the §7 ablation), lasertagger and seq2seq-copy (the textual baselines),\n"
            "treeedit (Yao et al.'s structural editor: supervised, then DAgger rounds), and\n"
            "copy-span (seq2seq-copy copying spans of any length, Copy That!'s Seq2Seq+CopySpan,\n"
            "marginalised objective). treeedit and copy-span train only when named in --systems.\n"
            "C3PO and treeedit models are exported to ONNX + manifest in --export; the baselines are kept\n"
            "there as safetensors checkpoints for `ripple eval completion`."
        ),
        epilog="example: nice ripple train completion --data ../shared/data/commits --out runs/completion",
    )
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="folder of commit record files (*.jsonl.xz)")
    p.add_argument("--out", type=Path, required=True, metavar="RUN", help="run folder (datasets, checkpoints, results.json)")
    p.add_argument("--export", type=Path, metavar="DIR", help="where the model folders go (default RUN/models)")
    p.add_argument("--datasets", type=Path, metavar="DIR", help="example cache, one file per repository (default RUN/datasets)")
    p.add_argument("--force", action="store_true", help="replace model folders that exist")
    p.add_argument("--systems", default=_COMPLETION_SYSTEMS, metavar="A,B", help=f"what to train (default {_COMPLETION_SYSTEMS}; also treeedit, copy-span)")
    p.add_argument("--scope", choices=("window", "commit"), default="commit", help="context: edits within 10 lines (C3PO's), or those first and then the rest of the commit (default commit)")
    p.add_argument("--dev-repos", default="psf/requests,pallets/click", metavar="A,B", help="training repositories held out for early stopping (default psf/requests,pallets/click)")
    p.add_argument("--max-dev", type=int, default=1000, metavar="N", help="dev examples sampled (default 1000)")
    p.add_argument("--max-commits", type=int, metavar="N", help="commits read per repository (default all)")
    p.add_argument("--max-paths", type=int, metavar="N", help="leave out training examples with more valid paths (default none)")
    p.add_argument("--steps", type=int, metavar="N", help="optimizer steps per system (default: C3PO until early stopping, baselines 4000)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64, as C3PO)")
    p.add_argument("--eval-every", type=int, default=0, metavar="N", help="dev evaluation every N steps (default: each epoch for C3PO, 200 for the baselines)")
    p.add_argument("--patience", type=int, default=10, help="evaluations without improvement before stopping (default 10)")
    p.add_argument("--workers", type=int, default=1, help="processes building datasets (default 1)")
    p.add_argument("--dagger-rounds", type=int, default=2, metavar="N", help="treeedit: imitation-learning rounds after supervised training (default 2; 0 = supervised only)")
    p.add_argument("--dagger-examples", type=int, default=1500, metavar="N", help="treeedit: training examples the editor runs on in each round (default 1500)")
    p.add_argument("--dagger-steps", type=int, default=1000, metavar="N", help="treeedit: optimizer steps per round (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_eval_completion(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        group,
        "completion",
        "ripple.training.completion:run_eval",
        "C3PO vs LaserTagger and seq2seq-copy on EditCompletion examples, with the §7 ablation",
        description=(
            "Build EditCompletion examples from the given commits with the training builder and\n"
            "score every system: exact match of the whole predicted script (C3PO, decoded\n"
            "greedily through onnxruntime) or of the whole predicted fragment (the textual\n"
            "baselines), and micro precision/recall of the predicted edit operations. With all\n"
            "three C3PO variants the JSON holds the ablation (no / textual / path context).\n"
            "treeedit (the structural editor) is scored by exact match of the edited tree with\n"
            "P' and precision/recall of its tree-edit actions, and on the one-shot transfer\n"
            "test: examples of one commit that make the same token change, the edit of one\n"
            "given as the only context of the other (JSON key transfer). copy-span (the span-\n"
            "copying editor) is scored as the textual baselines; name it in --systems."
        ),
        epilog=(
            "example: ripple eval completion --commits ../shared/data/commits/PyCQA__flake8.jsonl.xz \\\n"
            "           ../shared/data/commits/marshmallow-code__marshmallow.jsonl.xz --models runs/completion/models --json out/completion.json"
        ),
    )
    p.add_argument("--commits", type=Path, nargs="+", required=True, metavar="FILE", help="commit record files (.jsonl.xz)")
    p.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT.json", help="write the results here")
    p.add_argument("--models", type=Path, required=True, metavar="DIR", help="folder holding one folder per system (`ripple train completion`'s --export)")
    p.add_argument("--systems", default=_COMPLETION_SYSTEMS, metavar="A,B", help=f"systems to score (default {_COMPLETION_SYSTEMS}; also treeedit, copy-span)")
    p.add_argument("--scope", choices=("window", "commit"), default="commit", help="context of the examples (default commit; window = C3PO's 10 lines)")
    p.add_argument("--max-commits", type=int, metavar="N", help="commits read per file (default all)")
    p.add_argument("--max-examples", type=int, metavar="N", help="score a random sample of N examples")
    p.add_argument("--beam", type=int, default=1, help="seq2seq-copy, copy-span (merged-ray search) and treeedit beam size (default 1, greedy like C3PO)")
    p.add_argument("--max-transfer", type=int, default=500, metavar="N", help="treeedit: one-shot transfer pairs scored at most (default 500; 0 = none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_eval_drafts(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        group,
        "drafts",
        "ripple.training.drafts:run_eval",
        "function-body drafts (retrieve+edit) vs retrieval alone on held-out repositories",
        description=(
            "For functions of the given repositories (the validation ones), with the rest of the\n"
            "repository as the workspace: draft the body from the header by retrieve+edit (the\n"
            "server's drafts), by the learned retriever alone, and by the lexical retriever alone\n"
            "(the server's fallback). Scores body BLEU and exact match on Yin & Neubig tokens\n"
            "(as `ripple eval hearthstone`), and exact text in canonical indentation."
        ),
        epilog=(
            "example: ripple eval drafts --commits ../shared/data/commits/PyCQA__flake8.jsonl.xz \\\n"
            "           ../shared/data/commits/marshmallow-code__marshmallow.jsonl.xz --json out/drafts.json"
        ),
    )
    p.add_argument("--commits", type=Path, nargs="+", required=True, metavar="FILE", help="commit record files (.jsonl.xz)")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="write the results here")
    p.add_argument("--models", type=Path, metavar="DIR", help="folder with retriever/ and editor/ (default: the bundled models/weights/drafts)")
    p.add_argument("--max-functions", type=int, default=300, metavar="N", help="functions drafted per repository (default 300, sampled)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_eval_edits(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        group,
        "edits",
        "ripple.training.zhao_real:run_eval",
        "sub-token accuracy of a `ripple train edits` run on real commits (Zhao et al. §6.2)",
        description=(
            "Build Zhao et al.'s token-level edit sequences from commit records (the same\n"
            "examples `ripple train edits` trains on) and score the run's best IA model,\n"
            "teacher-forced: an edit counts only if position and content are both right, and\n"
            "an edit whose content is outside the vocabulary counts as wrong. Writes the\n"
            "accuracy, per repository, and the confidence-vs-accuracy curve of Fig. 4d as\n"
            "JSON (and as a PNG with --plot). Default commits: the validation repositories."
        ),
        epilog="example: ripple eval edits --run runs/ia-real --json out/ia-val.json --plot out/fig4d.png",
    )
    p.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="a `ripple train edits` run folder")
    p.add_argument("--commits", type=Path, nargs="+", metavar="FILE", help="commit record files (default: the validation repositories)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR", help="data folder for the default commits (default $RIPPLE_DATA or ../shared/data)")
    p.add_argument("--max-commits", type=int, metavar="N", help="only the first N kept commits of each file")
    p.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT.json", help="write the results here")
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="draw the Fig. 4d curve here")
    p.add_argument("--model", type=Path, metavar="DIR", help="also run this exported model as the `ia` predictor on the replay steps, at every threshold")
    p.add_argument("--replay-max-commits", type=int, default=300, metavar="N", help="kept commits per file for --model (default 300)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_train_edits(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        group,
        "edits",
        "ripple.training.zhao_real:run_train",
        "train Zhao et al.'s IA on real edits from commit histories (the `ia` predictor)",
        description=(
            "Train Zhao et al.'s implicit attention model (IA, §6.2) on real edits. Replay the\n"
            "permissively licensed training repositories' commits hunk by hunk,\n"
            "turn each changed file's history into a sub-token edit sequence with the `ia`\n"
            "predictor's own featurizer, count the sub-token vocabulary on the training split,\n"
            "and train IA with early stopping on the dev repositories (training repositories\n"
            "held out; never the validation ones). The data set is built once into RUN_DIR/data;\n"
            "--resume continues an interrupted run. With --export, the best model is exported\n"
            "to ONNX with its vocabulary, and the `ia` confidence threshold is chosen on the dev\n"
            "repositories' replay steps."
        ),
        epilog=(
            "example: nice -n 10 ripple train edits --out runs/ia-real --max-steps 2500 \\\n"
            "           --export models/weights/zhao-ia"
        ),
    )
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run folder (data, checkpoints, results)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR", help="data folder (default $RIPPLE_DATA or ../shared/data)")
    p.add_argument("--vocab-size", type=int, default=4096, help="sub-token vocabulary, specials included (default 4096)")
    p.add_argument("--max-commits", type=int, default=1200, metavar="N", help="kept commits per training repository (default 1200)")
    p.add_argument("--max-examples", type=int, metavar="N", help="stop building training examples at N")
    p.add_argument(
        "--dev-repos",
        type=lambda text: [r.strip() for r in text.split(",") if r.strip()],
        default=["psf/requests", "pallets/click"],
        metavar="OWNER/NAME,...",
        help="training repositories held out for early stopping and the threshold (default psf/requests,pallets/click)",
    )
    p.add_argument("--dev-max-commits", type=int, default=150, metavar="N", help="kept commits per dev repository (default 150)")
    p.add_argument("--window", type=int, default=126, help="initial-state pieces around the edits (default 126)")
    p.add_argument("--max-edits", type=int, default=64, help="most recent token edits kept (default 64)")
    p.add_argument("--max-hunks", type=int, default=16, help="most recent live edits of the file kept (default 16)")
    p.add_argument(
        "--hunk-markers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="end each live edit with the <hunk> insert/delete pair (default on)",
    )
    p.add_argument("--hidden", type=int, default=64, help="IA hidden size (default 64: about 0.8M parameters)")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps")
    p.add_argument("--eval-every", type=int, default=250, help="steps between dev evaluations (0 = every epoch)")
    p.add_argument("--patience", type=int, default=8, help="evaluations without improvement before stopping")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--export", type=Path, metavar="DIR", help="export the best model here (ONNX + vocab + manifest)")
    p.add_argument("--calibrate-commits", type=int, default=150, metavar="N", help="dev replay commits per dev repository for the threshold (default 150)")
    p.add_argument("--target-precision", type=float, default=0.3, help="dev precision@1 the threshold aims for (default 0.3)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or evaluation lines")


def _add_train_copy(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        group,
        "copy",
        "ripple.training.copy_train:run",
        "train the span-copying editor (Copy That!), its CopyTok baseline or an ablation",
        description=(
            "Train Panthaplackel et al.'s Seq2Seq+CopySpan editor on real edit pairs: replay\n"
            "the permissively licensed training repositories' commits hunk by hunk; each step's\n"
            "next hunk gives (fragment before + the commit's previous hunks -> fragment after).\n"
            "--system picks the model: copy-span (marginalised objective, Eq. 2), copy-token\n"
            "(single-token copying), copy-span-longest or copy-span-nomarg (the Table 2\n"
            "ablations). The examples are built once into --examples and reused by every run\n"
            "with the same settings. Early stopping on held-out training repositories (never the\n"
            "validation ones); --export writes the best model as ONNX + vocab + manifest."
        ),
        epilog=(
            "example: nice ripple train copy --system copy-span --out runs/copy-span \\\n"
            "           --examples runs/copy-data --max-steps 2000 --export models/weights/editors/copy-span"
        ),
    )
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run folder (checkpoints, results.json)")
    p.add_argument("--system", default="copy-span", help="copy-span (default), copy-token, copy-span-longest, copy-span-nomarg")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR", help="data folder (default $RIPPLE_DATA or ../shared/data)")
    p.add_argument("--examples", type=Path, metavar="DIR", help="where the examples are built or reused (default RUN_DIR/data)")
    p.add_argument("--max-commits", type=int, default=800, metavar="N", help="kept commits per training repository (default 800)")
    p.add_argument(
        "--dev-repos",
        type=lambda text: [r.strip() for r in text.split(",") if r.strip()],
        default=["psf/requests", "pallets/click"],
        metavar="OWNER/NAME,...",
        help="training repositories held out for early stopping (default psf/requests,pallets/click)",
    )
    p.add_argument("--dev-max-commits", type=int, default=100, metavar="N", help="kept commits per dev repository (default 100)")
    p.add_argument("--radius", type=int, default=2, help="fragment lines above and below the edited lines (default 2)")
    p.add_argument("--context-edits", type=int, default=3, help="recent edits in the input (default 3)")
    p.add_argument("--vocab-size", type=int, default=5000, help="generation vocabulary, specials included (default 5000)")
    p.add_argument("--embedding", type=int, default=128)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps")
    p.add_argument("--eval-every", type=int, default=250, help="steps between dev evaluations (0 = every epoch)")
    p.add_argument("--patience", type=int, default=6, help="evaluations without improvement before stopping")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--export", type=Path, metavar="DIR", help="export the best model here (ONNX + vocab + manifest)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or evaluation lines")


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = _group(
        sub,
        "bench",
        "speed and quality benchmarks (print a table, write JSON)",
        "Benchmarks: each prints a table and writes its figures as JSON.",
    )
    p = _add(
        group,
        "keystroke",
        "ripple.training.bench_keystroke:run",
        "time incremental re-parsing for single-character typing edits",
        description=(
            "Generate Python files of 1k and 10k lines and time ParsedDocument.apply_edit for\n"
            "single-character typing edits (p50/p99 microseconds)."
        ),
    )
    p.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT.json")
    p.add_argument("--edits", type=int, default=2000, help="typing edits per file (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p = _add(
        group,
        "robustness",
        "ripple.server.robustness:run",
        "hostile input against a real `ripple serve`, with figures",
        description=(
            "Run real `ripple serve` processes through: damaged LSP frames of every kind (bad\n"
            "or absurd Content-Length, truncated bodies, invalid UTF-8, odd ids, unknown\n"
            "methods, bad and huge params); a predictor failing in 1% of 10,000 requests; a\n"
            "hostile workspace (100,000 directories, a 100 MB file, NUL bytes, symlink loops);\n"
            "a 30 s typing burst. Prints the figures; exit code 1 when a check failed."
        ),
    )
    p.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT.json")
    p.add_argument("--frames", type=int, default=10_000, help="damaged frames to send (default 10000)")
    p.add_argument("--requests", type=int, default=10_000, help="requests in the fault-injection run (default 10000)")
    p.add_argument("--directories", type=int, default=100_000, help="directories in the hostile workspace (default 100000)")
    p.add_argument("--burst-seconds", type=float, default=30.0, help="length of the typing burst (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p = _add(
        group,
        "diff",
        "ripple.training.bench_diff:run",
        "time ripple's AST diff against the code-diff package on real file pairs",
    )
    p.add_argument("--commits", type=Path, nargs="+", required=True, metavar="FILE")
    p.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT.json")
    p.add_argument("--max-pairs", type=int, default=500, metavar="N")
    p = _add(
        group,
        "retrieval",
        "ripple.training.bench_retrieval:run",
        "annoy vs exact nearest-neighbour search: recall@10, query latency, build time",
        description=(
            "Index 10k and 100k unit vectors of the retriever's dimension (random, or --vectors)\n"
            "in annoy (angular) for each (trees, search_k) of the grid, and time single queries\n"
            "against exact search (one thread). Reports recall@10 against the exact top 10,\n"
            "p50/p99 query latency and build time per setting, and per size the cheapest setting\n"
            "reaching --target-recall."
        ),
        epilog="example: ripple bench retrieval --json out/bench-retrieval.json",
    )
    p.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT.json")
    p.add_argument("--dim", type=int, default=None, help="vector dimension (default 64, the retrievers'; with --vectors, the file's)")
    p.add_argument("--sizes", default="10000,100000", metavar="N,N", help="index sizes (default 10000,100000)")
    p.add_argument("--queries", type=int, default=500, metavar="N", help="timed queries per setting (default 500)")
    p.add_argument("--trees", default="10,50,100,200", metavar="N,N", help="annoy tree counts to try (default 10,50,100,200)")
    p.add_argument("--search-k", default="2000,5000,10000,20000,30000,50000", metavar="N,N", help="annoy search_k values to try; -1 = annoy's default")
    p.add_argument("--target-recall", type=float, default=0.95, help="recall@10 the reported setting must reach (default 0.95)")
    p.add_argument("--vectors", type=Path, metavar="FILE.npy", help="real embeddings (2-D .npy, one vector a row) instead of random ones")
    p.add_argument("--jobs", type=int, default=-1, help="threads for annoy's build (default -1: every core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p = _add(
        group,
        "onnx",
        "ripple.training.bench_onnx:run",
        "time Zhao IA per prediction: ONNX (onnxruntime) against torch, on CPU",
        description=(
            "Build Zhao's IA at its default size (about 1M parameters, seeded random weights),\n"
            "export it to ONNX, and time one prediction (batch 1) at several state lengths and\n"
            "edit counts: onnxruntime through ripple.models.runtime against torch eager\n"
            "(no_grad), each with 1 thread and with the default thread count. Prints p50/p99\n"
            "milliseconds and the speedup, and writes them as JSON. Needs the [train] extra."
        ),
    )
    p.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT.json")
    p.add_argument("--repeats", type=int, default=200, metavar="N", help="timed calls per case (default 200)")
    p.add_argument("--warmup", type=int, default=20, metavar="N", help="untimed calls first (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = _add(
        group,
        "latency",
        "ripple.server.bench_latency:run",
        "time the real server's next-edit answers while a generated file is typed into",
        description=(
            "Start `ripple serve` over stdio, open a generated Python file and type into it\n"
            "at --rate edits per second for --seconds (renames, added arguments, new lines),\n"
            "each edit followed by ripple/nextEdits for the new version, cancelling the\n"
            "previous request if it is still pending. Prints and writes the latency of the\n"
            "answers (p50/p99 ms), answers, cancelled and stale answers (must be 0), the\n"
            "server's RSS growth, and the per-keystroke bookkeeping time (p99 us)."
        ),
        epilog="example: ripple bench latency --json bench-latency.json",
    )
    p.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT.json")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the typing burst (default 30)")
    p.add_argument("--rate", type=float, default=20.0, help="edits per second (default 20)")
    p.add_argument("--lines", type=int, default=2000, help="lines of the generated file (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the file and the typing")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the server runs its models"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        sub,
        "replay",
        "ripple.training.replay_repo:run",
        "replay a git repository's last commits: what ripple would have suggested",
        description=(
            "Replay the last N non-merge commits of a local git repository hunk by hunk\n"
            "through the engine `ripple serve` runs, and print for every step where the\n"
            "true next hunk was, ripple's top suggestion, and whether it was exactly right\n"
            "and at the right place; then exact@1, location@1 and precision@1 as the replay\n"
            "benchmark defines them. Commits without Python changes, or with fewer than 2\n"
            "or more than 20 hunks, are listed as skipped."
        ),
        epilog="example: ripple replay . --last 50 --json replay.json",
    )
    p.add_argument("repo", type=Path, metavar="REPO_PATH", help="the top of a git work tree (or a bare git dir)")
    p.add_argument("--last", type=int, default=20, metavar="N", help="how many recent commits (default 20)")
    p.add_argument("--verbose", action="store_true", help="print the true and suggested texts of each step")
    p.add_argument("--json", dest="json_out", type=Path, metavar="OUT.json", help="also write the summary and every step")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_train_and_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = _group(
        sub, "train", "train ripple's models (needs the [train] extra)", "Train ripple's models."
    )
    p = _add(
        group,
        "synthetic",
        "ripple.training.train_cli:run",
        "train E, IR or IA on one of Zhao et al.'s synthetic edit tasks",
        description=(
            "Generate one of Zhao et al.'s synthetic edit-sequence datasets (Table 2, 10k/1k/1k,\n"
            "seeded), train the explicit (e), implicit RNN (ir) or implicit attention (ia)\n"
            "model with early stopping on dev accuracy, and print dev and test accuracy\n"
            "(an edit counts only if its position and content are both right)."
        ),
        epilog="example: ripple train synthetic --task Append1 --model ia --out runs/append1-ia",
    )
    p.add_argument("--task", required=True, help="a Table 2 task (e.g. Append1) or MultiTask")
    p.add_argument("--model", required=True, choices=("ia", "ir", "e"))
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, results)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--init",
        type=Path,
        metavar="DIR",
        help="start from a trained model's weights instead of random ones: a shipped "
        "<task>-<model> folder (models/weights/zhao-synthetic) or a run's best/ folder; "
        "its model kind, --hidden and --layers must match (fine-tuning with a fresh optimizer)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=0, help="steps; 0 = every epoch")
    p.add_argument("--patience", type=int, default=10, help="evaluations without improvement")
    p.add_argument("--train-size", type=int, default=10_000)
    p.add_argument("--dev-size", type=int, default=1_000)
    p.add_argument("--test-size", type=int, default=1_000)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p = _add(
        group,
        "grid",
        "ripple.training.grid:run",
        "train Zhao et al.'s Table 1 grid task by task (resumable, time-boxed)",
        description=(
            "Train IA on every synthetic task (the 14 of Table 2, their meta variants and\n"
            "MultiTask) and E and IR on --e-ir-tasks, one `ripple train synthetic` run at a\n"
            "time in RUNS_DIR/<task>-<model>. Finished runs are skipped, interrupted ones\n"
            "resume with the settings they started with; a line per run reports test accuracy\n"
            "next to the paper's, and RUNS_DIR/summary.json lists what is done and what remains.\n"
            "Settings default per model (see ripple.training.grid.MODEL_DEFAULTS); the options\n"
            "below override them for every model. Stop it with Ctrl-C or SIGINT/SIGTERM to its\n"
            "PID: the current run resumes next time."
        ),
        epilog=(
            "example: nice -n 15 ripple train grid --out runs/grid --time-budget-min 120 \\\n"
            "           --ship models/weights/zhao-synthetic"
        ),
    )
    p.add_argument("--out", type=Path, required=True, metavar="RUNS_DIR", help="one folder per run, summary.json")
    p.add_argument("--tasks", metavar="T1,T2,...", help="tasks in the order to train (default: all 29)")
    p.add_argument("--models", default="ia,e,ir", metavar="M,...", help="subset of ia,e,ir (default all three)")
    p.add_argument(
        "--e-ir-tasks",
        metavar="T1,...|all",
        help="the tasks E and IR train on (default: Append1, ContextAppend11, ContextAppend31 and their Meta variants)",
    )
    p.add_argument("--time-budget-min", type=float, metavar="M", help="stop after M minutes; the current run resumes next time")
    p.add_argument("--run-cap-min", type=float, metavar="M", help="end a run after M minutes of training and score its best model")
    p.add_argument(
        "--init",
        type=Path,
        metavar="WEIGHTS_DIR",
        help="fine-tune: start each run from WEIGHTS_DIR/<task>-<model> where it exists "
        "(e.g. models/weights/zhao-synthetic), with that model's sizes and a fresh optimizer",
    )
    p.add_argument("--ship", type=Path, metavar="DIR", help="copy finished runs' best models here (float16 + config.json)")
    p.add_argument("--ship-only", action="store_true", help="train nothing; only write summary.json (and --ship)")
    for name in ("--hidden", "--batch-size", "--epochs", "--patience", "--eval-every", "--seed", "--max-steps"):
        p.add_argument(name, type=int, help="override the per-model default")
    p.add_argument(
        "--layers",
        type=int,
        help="IA's attention layers per stage (default 1; the README's Table 1 lists the shipped "
        "models' layers); a fine-tune keeps its starting model's",
    )
    for name in ("--train-size", "--dev-size", "--test-size"):
        p.add_argument(name, type=int, help="override the split size (default 10000/1000/1000)")
    p.add_argument("--lr", type=float, help="override the per-model default learning rate")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-run lines")
    _add_train_edits(group)
    _add_train_copy(group)
    _add_train_hearthstone(group)
    _add_train_drafts(group)
    _add_train_completion(group)
    group = _group(
        sub,
        "export",
        "export trained models to ONNX + manifest",
        "Export trained checkpoints to ONNX files with a JSON manifest (sha256 of each file).",
    )
    p = _add(
        group,
        "zhao",
        "ripple.training.export:run",
        "export a trained Zhao IA checkpoint to an ONNX model folder",
        description=(
            "Rebuild the IA model of a `ripple train synthetic` checkpoint (a run's best/, a\n"
            "checkpoints/step-* folder, or the run folder itself for its best/) and export it\n"
            "to ONNX with dynamic batch size, state length and edit count. DIR gets\n"
            "model.onnx, manifest.json (input/output shapes, config, sha256 of every file,\n"
            "where it came from) and vocab.json with --vocab. The export is checked against\n"
            "torch on random batches through onnxruntime before it is moved into DIR; if the\n"
            "finite logits differ by more than 1e-4, or a masked (-inf) position differs,\n"
            "nothing is written. An earlier export in DIR is replaced. IR and E cannot be\n"
            "exported (their packed LSTM inputs do not trace with dynamic shapes)."
        ),
        epilog="example: ripple export zhao runs/append1-ia/best --out models/weights/zhao-ia",
    )
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="checkpoint or run folder")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the model folder to write")
    p.add_argument("--name", default="zhao-ia", help="the model's name in its manifest (default zhao-ia)")
    p.add_argument(
        "--vocab", type=Path, metavar="FILE", help="JSON list of the model's tokens (id i = entry i)"
    )
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: the exporter's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = _add(
        group,
        "copy",
        "ripple.training.copy_export:run",
        "export a `ripple train copy` run's best editor to an ONNX model folder",
        description=(
            "Export the best model of a `ripple train copy` run as two ONNX graphs (encoder and\n"
            "decoder step, dynamic batch and length) with its vocabulary and a manifest (sha256\n"
            "of every file). The export is checked against torch before it is kept: every output\n"
            "within 1e-4, and greedy decoding through onnxruntime gives torch's tokens."
        ),
        epilog="example: ripple export copy runs/copy-span --out models/weights/editors/copy-span",
    )
    p.add_argument("run", type=Path, metavar="RUN_DIR", help="a `ripple train copy` run folder")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the model folder to write")
    p.add_argument("--name", help="the model's name in its manifest (default: the run's system)")
    p.add_argument("--examples", type=Path, metavar="DIR", help="the run's examples folder, for the manifest's data record (default RUN_DIR/data)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ripple",
        description=(
            "ripple watches how code is being edited and suggests the next edit.\n"
            "Editors talk to it through `ripple serve`; the other commands mine edit\n"
            "histories, train and export models, and measure them."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=None, group_parser=parser)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_serve(sub)
    _add_demo(sub)
    _add_nvim_path(sub)
    _add_mine(sub)
    _add_train_and_export(sub)
    _add_eval(sub)
    _add_replay(sub)
    _add_diff(sub)
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.handler is None:
        args.group_parser.print_help()
        return 2
    try:
        code: int = args.handler(args)
    except UsageError as exc:
        print(f"ripple: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ripple: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
