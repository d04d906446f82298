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
        "--log-file", type=Path, help="write the server's log here (default: stderr, at WARNING)"
    )
    p.add_argument("--verbose", action="store_true", help="log at DEBUG level")


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _add(
        sub,
        "demo",
        "ripple.server.demo:run",
        "show ripple end to end on a small generated example",
        description=(
            "Run ripple end to end on a small example it generates: a file is edited once,\n"
            "ripple parses every state incrementally, computes what changed, and prints the\n"
            "next edits it would suggest."
        ),
    )
    p.add_argument("--json", dest="json_out", type=Path, help="also write the result as JSON")


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
        "diff",
        "ripple.training.bench_diff:run",
        "time ripple's AST diff against the code-diff package on real file pairs",
    )
    p.add_argument("--commits", type=Path, nargs="+", required=True, metavar="FILE")
    p.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT.json")
    p.add_argument("--max-pairs", type=int, default=500, metavar="N")


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
    group = _group(
        sub,
        "export",
        "export trained models to ONNX + manifest",
        "Export trained checkpoints to ONNX files with a JSON manifest (sha256 of each file).",
    )
    del group


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
    _add_mine(sub)
    _add_train_and_export(sub)
    _add_eval(sub)
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
