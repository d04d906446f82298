"""``ripple train completion`` / ``ripple eval completion`` end to end on tiny commit files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ripple.server.cli import _COMPLETION_SYSTEMS, main
from ripple.training.completion import operation_scores
from ripple.training.data import CommitRecord, FileChange, write_commits

NAMES = ["alpha", "beta", "gamma", "delta", "size", "count", "name", "value"]


def _commit(repo: str, k: int, rng: random.Random) -> CommitRecord:
    """A commit that swaps the two arguments of every call in a small function: each
    changed statement has the others as context, and the edit is a MOV."""
    a, b = rng.sample(NAMES, 2)
    calls = [f"f{i}" for i in range(3)]
    old = "def run():\n" + "".join(f"    x{i} = {c}({a}, {b})\n" for i, c in enumerate(calls))
    new = "def run():\n" + "".join(f"    x{i} = {c}({b}, {a})\n" for i, c in enumerate(calls))
    return CommitRecord(repo, f"{k:040x}", "0" * 40, k, "swap", (FileChange("m.py", old, new),))


@pytest.fixture()
def commits(tmp_path: Path) -> Path:
    data = tmp_path / "commits"
    data.mkdir()
    rng = random.Random(0)
    for repo in ("pallets/flask", "psf/requests", "PyCQA/flake8", "pylint-dev/pylint"):
        write_commits(
            data / (repo.replace("/", "__") + ".jsonl.xz"),
            [_commit(repo, k, rng) for k in range(12)],
        )
    return data


def test_train_and_eval(commits: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = main(
        [
            "train", "completion", "--data", str(commits), "--out", str(run),
            "--systems", "c3po,c3po-none,lasertagger,seq2seq-copy,copy-span", "--steps", "40",
            "--eval-every", "20", "--batch-size", "8", "--dev-repos", "psf/requests", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((run / "results.json").read_text())
    # Only the permissive training repository trains; the dev one stops early; the
    # validation (flake8) and GPL (pylint) repositories are never read.
    assert results["train_repos"] == ["pallets/flask"]
    assert results["train_examples"] == 36 and results["dev_examples"] == 36
    assert results["statistics"]["pallets/flask"]["operation_share"]["MOV"] > 0
    built = json.loads((run / "datasets" / "build.json").read_text())
    assert set(built) == {"pallets/flask", "psf/requests"}
    manifest = json.loads((run / "models" / "c3po" / "manifest.json").read_text())
    assert manifest["kind"] == "c3po" and manifest["metadata"]["train_repos"] == ["pallets/flask"]
    # copy-span: the seq2seq editor with spans of any length, saved with its max span.
    span_dir = run / "models" / "copy-span"
    assert json.loads((span_dir / "system.json").read_text())["system"] == "copy-span"
    assert json.loads((span_dir / "vocabs.json").read_text())["max_span"] is None
    seq_dir = run / "models" / "seq2seq-copy"
    assert json.loads((seq_dir / "vocabs.json").read_text())["max_span"] == 1
    sizes = {n: results["systems"][n]["parameters"] for n in ("seq2seq-copy", "copy-span")}
    assert sizes["copy-span"] == sizes["seq2seq-copy"]  # the same net and vocabulary
    out = tmp_path / "eval.json"
    code = main(
        [
            "eval", "completion", "--commits", str(commits / "PyCQA__flake8.jsonl.xz"),
            "--models", str(run / "models"),
            "--systems", "c3po,c3po-none,lasertagger,seq2seq-copy,copy-span",
            "--json", str(out), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert report["examples"] == 36 and report["repos"] == ["PyCQA/flake8"]
    for name in ("c3po", "c3po-none", "lasertagger", "seq2seq-copy", "copy-span"):
        row = report["systems"][name]
        assert 0.0 <= row["exact"] <= 1.0 and row["parameters"] > 0
    assert set(report["ablation"]) == {"no context", "path context"}
    # One edit pattern, seen 36 times in training: the models learn it.
    assert report["systems"]["c3po"]["exact"] > 0.5
    # copy-span decodes with the merged-ray beam search too.
    beam_out = tmp_path / "beam.json"
    code = main(
        [
            "eval", "completion", "--commits", str(commits / "PyCQA__flake8.jsonl.xz"),
            "--models", str(run / "models"), "--systems", "copy-span", "--beam", "3",
            "--max-examples", "4", "--json", str(beam_out), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    row = json.loads(beam_out.read_text())["systems"]["copy-span"]
    assert 0.0 <= row["exact"] <= 1.0 and row["parameters"] > 0


def test_bad_arguments(
    commits: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def error(argv: list[str]) -> str:
        assert main(argv) == 2
        return capsys.readouterr().err

    train = ["train", "completion", "--data", str(commits), "--out", str(tmp_path / "r")]
    assert "unknown nope" in error([*train, "--systems", "nope"])
    assert "copy-span" not in _COMPLETION_SYSTEMS.split(",")  # only when asked for
    assert "validation repository" in error([*train, "--dev-repos", "PyCQA/flake8"])
    assert "no model folder for c3po" in error(
        ["eval", "completion", "--commits", str(commits / "PyCQA__flake8.jsonl.xz"),
         "--models", str(tmp_path), "--json", str(tmp_path / "o.json"), "--systems", "c3po"]
    )  # fmt: skip


def test_operation_scores() -> None:
    scores = operation_scores([[1, 2], [3], [4]], [[1, 2], [3, 5], None])
    assert scores["exact"] == pytest.approx(1 / 3)
    assert scores["precision"] == pytest.approx(3 / 4)
    assert scores["recall"] == pytest.approx(3 / 4)
