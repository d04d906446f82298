"""The ``ripple`` command line: every subcommand explains itself, and the light
commands never import torch."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from ripple.server.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent

def _all_commands() -> list[list[str]]:
    """Every command and subcommand the parser knows, so a new one cannot skip its --help."""

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        found = [prefix]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found += walk(child, [*prefix, name])
        return found

    return walk(build_parser(), [])


COMMANDS = _all_commands()


def _ripple(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ripple.server.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "ripple")
def test_help_explains_each_command(command: list[str]) -> None:
    proc = _ripple(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: ripple"), proc.stdout
    # A useful help text says what the command does, not only its usage line.
    assert len(proc.stdout.splitlines()) >= 5


def test_every_command_in_the_parser_is_covered() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    names = set(sub.choices)  # type: ignore[attr-defined]
    core = {"serve", "demo", "mine", "train", "export", "eval", "diff", "bench", "replay"}
    assert core <= names
    # Leaf commands that the issues name explicitly.
    assert {("eval", "replay"), ("eval", "calibrate"), ("bench", "latency")} <= {
        tuple(c) for c in COMMANDS if len(c) == 2
    }


IMPORT_PROBE = """
import runpy, sys
sys.argv = {argv!r}
try:
    runpy.run_module("ripple.server.cli", run_name="__main__")
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "onnx", "onnxscript", "safetensors") if m in sys.modules)
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
sys.stderr.write("SERVER=" + str("ripple.server.lsp" in sys.modules) + "\\n")
"""


@pytest.mark.parametrize(
    "argv",
    [["ripple", "--help"], ["ripple", "serve"], ["ripple", "serve", "--help"]],
    ids=lambda a: " ".join(a),
)
def test_light_commands_never_import_torch(argv: list[str]) -> None:
    # `ripple serve` reads LSP from stdin; empty stdin makes it start and stop at once.
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE.format(argv=argv)],
        capture_output=True,
        text=True,
        input="",
        timeout=60,
        cwd=ROOT,
    )
    assert "HEAVY=" in proc.stderr, proc.stderr
    assert "HEAVY=\n" in proc.stderr, f"heavy modules imported: {proc.stderr}"
    if argv == ["ripple", "serve"]:
        assert "SERVER=True" in proc.stderr, "the server itself must have started"


def test_bad_tcp_address_is_one_line_and_exit_2() -> None:
    proc = _ripple("serve", "--tcp", "nonsense")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("ripple: error: --tcp expects HOST:PORT")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_group_without_kind_prints_help_and_fails() -> None:
    proc = _ripple("eval")
    assert proc.returncode == 2
    assert "replay" in proc.stdout
