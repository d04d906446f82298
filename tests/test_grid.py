"""The Table 1 grid runner, ``ripple eval synthetic`` and the paper's Table 1 figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ripple.server.cli import build_parser, main
from ripple.training.grid import plan_runs, run_status, ship_run
from ripple.training.paper_table1 import PAPER_TABLE1, paper_accuracy
from ripple.training.synthetic import TASK_NAMES, TASKS

TINY = [
    "--hidden", "8", "--batch-size", "16", "--epochs", "3", "--max-steps", "2",
    "--train-size", "32", "--dev-size", "16", "--test-size", "16", "--quiet",
]  # fmt: skip


def _grid(out: Path, *extra: str) -> int:
    return main(
        ["train", "grid", "--out", str(out), "--tasks", "Append1,MetaAppend1",
         "--models", "ia,e", "--e-ir-tasks", "Append1", *TINY, *extra]
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three finished tiny runs: Append1 IA and E, MetaAppend1 IA (2 steps each)."""
    out = tmp_path_factory.mktemp("grid")
    assert _grid(out) == 0
    return out


def test_grid_trains_the_planned_runs_and_writes_a_summary(runs: Path) -> None:
    summary = json.loads((runs / "summary.json").read_text())
    assert summary["done"] == ["Append1-ia", "Append1-e", "MetaAppend1-ia"]
    assert summary["remaining"] == []
    by_name = {f"{r['task']}-{r['model']}": r for r in summary["runs"]}
    assert by_name["MetaAppend1-ia"]["paper"] == 83.0
    assert by_name["Append1-e"]["settings"]["hidden"] == 8
    for record in summary["runs"]:
        assert record["status"] == "done" and record["steps"] == 2
        assert 0.0 <= record["test"] <= 100.0


def test_grid_skips_finished_runs(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p: p.stat().st_mtime_ns for p in runs.glob("*/results.json")}
    assert len(before) == 3
    assert main(["train", "grid", "--out", str(runs), "--tasks", "Append1,MetaAppend1",
                 "--models", "ia,e", "--e-ir-tasks", "Append1", *TINY[:-1]]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("done already") == 3 and "training ..." not in out
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/results.json")} == before


def test_grid_resumes_an_interrupted_run_with_its_own_settings(runs: Path) -> None:
    folder = runs / "MetaAppend1-ia"
    # Make it a run stopped after 2 of its 6 steps: a checkpoint, no results.
    (folder / "results.json").unlink()
    grid = json.loads((folder / "grid.json").read_text())
    grid["settings"]["max_steps"] = None
    (folder / "grid.json").write_text(json.dumps(grid))
    assert run_status(folder) == "interrupted"
    summary = json.loads((runs / "summary.json").read_text())
    # The command line now asks for other settings; the run keeps its own (epochs 3).
    assert _grid(runs, "--epochs", "9") == 0
    results = json.loads((folder / "results.json").read_text())
    assert results["steps"] == 6  # 3 epochs of 2 batches, not 9 epochs
    assert "resumed at step 2" in (folder / "train.log").read_text()
    after = json.loads((runs / "summary.json").read_text())
    assert after["done"] == summary["done"]
    assert after["runs"][2]["train_s"] > summary["runs"][2]["train_s"]


def test_plan_runs_puts_e_and_ir_only_on_their_tasks() -> None:
    pairs = plan_runs(["Append1", "Flip33"], ["ia", "e", "ir"], ["Append1"])
    assert pairs == [("Append1", "ia"), ("Append1", "e"), ("Append1", "ir"), ("Flip33", "ia")]


def _eval(weights: Path, out: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    code = main(["eval", "synthetic", "--weights", str(weights), "--json", str(out),
                 "--test-size", "16", "--quiet", *extra])  # fmt: skip
    return code, json.loads(out.read_text())


def test_eval_synthetic_reports_shipped_models_beside_the_paper(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "weights"
    assert _grid(runs, "--ship-only", "--ship", str(weights)) == 0
    assert sorted(p.name for p in weights.iterdir()) == ["Append1-e", "Append1-ia", "MetaAppend1-ia"]
    config = json.loads((weights / "Append1-e" / "config.json").read_text())
    assert config["dtype"] == "float16" and config["zhao_config"]["hidden"] == 8
    assert config["model"] == "e" and config["training"]["steps"] == 2
    code, result = _eval(weights, tmp_path / "r.json", "--tasks", "Append1,MetaAppend1,Delete2")
    assert code == 0
    assert list(result) == ["tasks"]
    assert list(result["tasks"]) == ["Append1", "MetaAppend1", "Delete2"]
    assert set(result["tasks"]["Append1"]) == {"ia", "e"}
    assert set(result["tasks"]["MetaAppend1"]) == {"ia"}
    assert result["tasks"]["Delete2"] == {}
    for scores in result["tasks"].values():
        assert all(0.0 <= v <= 100.0 for v in scores.values())
    captured = capsys.readouterr()
    assert "Delete2: no checkpoint" in captured.err
    assert "99.9" in captured.out and "83.0" in captured.out  # paper's Append1 IA, MetaAppend1 IA

    # Same seed, same numbers; a damaged checkpoint is reported and the rest still scored.
    (weights / "MetaAppend1-ia" / "model.safetensors").write_bytes(b"not a safetensors file")
    code, damaged = _eval(weights, tmp_path / "d.json", "--tasks", "Append1,MetaAppend1")
    assert code == 1
    assert damaged == {"tasks": {"Append1": result["tasks"]["Append1"], "MetaAppend1": {}}}
    assert "MetaAppend1 IA: cannot load" in capsys.readouterr().err


def test_train_synthetic_fine_tunes_a_shipped_model(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from safetensors.torch import load_file

    from ripple.training.checkpoints import load_checkpoint

    weights = tmp_path / "weights"
    assert _grid(runs, "--ship-only", "--ship", str(weights)) == 0
    start = weights / "Append1-ia"
    shipped = load_file(str(start / "model.safetensors"))

    def train(out: Path, *extra: str) -> int:
        return main(["train", "synthetic", "--task", "Append1", "--model", "ia",
                     "--out", str(out), *TINY, *extra])  # fmt: skip

    # With a vanishing learning rate the fine-tuned model is the one it started from.
    out = tmp_path / "ft"
    assert train(out, "--init", str(start), "--lr", "1e-12") == 0
    tuned = load_checkpoint(out / "best").model
    assert tuned.keys() == shipped.keys()
    for name, value in shipped.items():
        assert torch.allclose(tuned[name].float(), value.float(), atol=1e-6), name
    run = json.loads((out / "run.json").read_text())
    assert run["init"] == {"folder": "Append1-ia", "steps": 2, "train_s": run["init"]["train_s"],
                           "test_accuracy": run["init"]["test_accuracy"]}  # fmt: skip
    # ... and shipping it records where it started.
    ship = ship_run(out, tmp_path / "again")
    training = json.loads((ship / "config.json").read_text())["training"]
    assert training["init"]["folder"] == "Append1-ia"
    # its training time counts the model it began from
    own = json.loads((out / "results.json").read_text())["wall_s"]
    assert training["train_s"] == round(own + run["init"]["train_s"], 1)
    # A fresh model does not start there.
    fresh = tmp_path / "fresh"
    assert train(fresh, "--lr", "1e-12") == 0
    other = load_checkpoint(fresh / "best").model
    assert not all(torch.allclose(other[n].float(), v.float(), atol=1e-6) for n, v in shipped.items())

    capsys.readouterr()
    # Other sizes, another kind, or no model at all: a usage error naming the problem.
    assert train(tmp_path / "a", "--init", str(start), "--hidden", "16") == 2
    assert "other sizes" in capsys.readouterr().err
    assert main(["train", "synthetic", "--task", "Append1", "--model", "e", "--out",
                 str(tmp_path / "b"), *TINY, "--init", str(start)]) == 2  # fmt: skip
    assert "holds a 'ia' model" in capsys.readouterr().err
    assert train(tmp_path / "c", "--init", str(tmp_path)) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_grid_fine_tunes_the_shipped_models_it_is_pointed_at(runs: Path, tmp_path: Path) -> None:
    from ripple.training.checkpoints import load_checkpoint

    weights = tmp_path / "weights"
    assert _grid(runs, "--ship-only", "--ship", str(weights)) == 0
    (weights / "Append1-e").rename(tmp_path / "elsewhere")  # E starts from scratch
    out = tmp_path / "ft"
    assert _grid(out, "--init", str(weights), "--lr", "1e-12") == 0
    started = {p.parent.name: json.loads(p.read_text())["settings"]["init"] for p in out.glob("*/grid.json")}
    assert started == {
        "Append1-ia": str((weights / "Append1-ia").resolve()),
        "MetaAppend1-ia": str((weights / "MetaAppend1-ia").resolve()),
        "Append1-e": None,
    }
    run = json.loads((out / "MetaAppend1-ia" / "run.json").read_text())
    shipped = json.loads((weights / "MetaAppend1-ia" / "config.json").read_text())["training"]
    assert run["init"]["folder"] == "MetaAppend1-ia" and run["init"]["steps"] == shipped["steps"]
    before = load_checkpoint(runs / "MetaAppend1-ia" / "best").model
    after = load_checkpoint(out / "MetaAppend1-ia" / "best").model
    # float16 shipping rounds the weights; the fine-tune starts from the rounded ones.
    assert all((after[n] - v).abs().max() < 1e-2 for n, v in before.items())


def test_grid_layers_option_trains_deeper_ia_models(runs: Path, tmp_path: Path) -> None:
    from ripple.training.checkpoints import load_checkpoint

    out = tmp_path / "deep"
    assert main(["train", "grid", "--out", str(out), "--tasks", "Append1", "--models", "ia",
                 *TINY, "--layers", "2"]) == 0  # fmt: skip
    settings = json.loads((out / "Append1-ia" / "grid.json").read_text())["settings"]
    assert settings["layers"] == 2
    names = load_checkpoint(out / "Append1-ia" / "best").model.keys()
    # the module's runs trained the same task at the default single layer
    assert len(names) > len(load_checkpoint(runs / "Append1-ia" / "best").model.keys())
    assert main(["train", "grid", "--out", str(tmp_path / "x"), "--tasks", "Append1", "--layers", "0"]) == 2


def test_eval_synthetic_rejects_unknown_tasks(tmp_path: Path) -> None:
    assert main(["eval", "synthetic", "--json", str(tmp_path / "x.json"), "--tasks", "Nope"]) == 2


def test_paper_table_has_every_task_with_the_papers_numbers() -> None:
    assert set(PAPER_TABLE1) == set(TASK_NAMES)  # 14 + 14 meta + MultiTask
    assert list(PAPER_TABLE1)[:3] == ["Append1", "ContextAppend11", "ContextAppend13"]
    assert list(PAPER_TABLE1)[14] == "MetaAppend1" and list(PAPER_TABLE1)[-1] == "MultiTask"
    assert len(PAPER_TABLE1) == 29 and sum(t.startswith("Meta") for t in PAPER_TABLE1) == 14
    assert all(set(v) == {"ia", "e", "ir"} for v in PAPER_TABLE1.values())
    assert len(TASKS) == 28
    assert paper_accuracy("Append1", "ia") == 99.9
    assert paper_accuracy("MetaAppend1", "e") == 99.9
    assert paper_accuracy("MetaContextAppend11", "ir") == 2.5
    assert paper_accuracy("ContextReverse51", "ia") == 95.2
    assert paper_accuracy("MultiTask", "ia") == 53.7
    assert paper_accuracy("Nope", "ia") is None


@pytest.mark.parametrize("command", [["train", "grid"], ["eval", "synthetic"]])
def test_help_describes_the_commands(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    text = capsys.readouterr().out
    assert "--json" in text or "--time-budget-min" in text
    assert len(text.splitlines()) > 10
