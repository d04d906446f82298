"""The structural editor end to end: training with DAgger, evaluation, one-shot transfer,
the ``treeedit`` next-edit predictor and ``ripple train/eval completion --systems treeedit``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from ripple.models.edits.completion import BuildStats, CompletionExample
from ripple.models.edits.grammar import python_grammar
from ripple.models.edits.treeedit import STOP, EditState, gold_actions
from ripple.models.runtime.treeedit_decode import TreeEditModel
from ripple.models.suggest.api import Cursor, EditContext, LiveEdit
from ripple.models.suggest.registry import make_shipped, system_names
from ripple.models.suggest.treeedit_predictor import TreeEditPredictor
from ripple.server.cli import main
from ripple.training.completion_data import commit_examples
from ripple.training.data import CommitRecord, FileChange, write_commits
from ripple.training.treeedit_export import export_treeedit
from ripple.training.treeedit_train import (
    dagger_items,
    evaluate_transfer,
    evaluate_treeedit,
    prepare,
    train_treeedit,
    transfer_pairs,
)

NAMES = ["alpha", "beta", "gamma", "delta", "size", "count", "name", "value", "path", "item"]
# Two edits of one statement shape; which one a commit makes is only known from the
# context (the commit's other changes).
KINDS = {
    "unwrap": "x{i} = {a}",
    "swap": "x{i} = pick({b}, {a})",
}


def _commit(
    k: int, rng: random.Random, calls: int = 4, repo: str = "o/r", kind: str | None = None
) -> CommitRecord:
    """A commit that makes one edit to every ``pick(a, b)`` call of a function: each
    changed statement has the others as context."""
    names = rng.sample(NAMES, 2 * calls)
    template = KINDS[kind or rng.choice(sorted(KINDS))]
    pairs = [(names[2 * i], names[2 * i + 1]) for i in range(calls)]
    old = "def run():\n" + "".join(f"    x{i} = pick({a}, {b})\n" for i, (a, b) in enumerate(pairs))
    new = "def run():\n" + "".join(
        "    " + template.format(i=i, a=a, b=b) + "\n" for i, (a, b) in enumerate(pairs)
    )
    return CommitRecord(repo, f"{k:040x}", "0" * 40, k, "edit", (FileChange("m.py", old, new),))


def _examples(commits: range, seed: int) -> list[CompletionExample]:
    rng = random.Random(seed)
    return [
        e for k in commits for e in commit_examples(_commit(k, rng), BuildStats(), scope="commit")
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A small editor trained on argument-adding commits (supervised + one DAgger round),
    exported to ONNX in a models folder."""
    torch.set_num_threads(1)
    train = _examples(range(20), 0)
    dev = _examples(range(100, 104), 1)
    out = tmp_path_factory.mktemp("treeedit")
    net, vocab, report = train_treeedit(
        train, dev, out / "run", steps=250, dagger_rounds=1, dagger_examples=24,
        dagger_steps=60, batch_size=16, eval_every=50, patience=4, quiet=True,
        net={"hidden": 32, "heads": 2, "ffn": 64},
    )  # fmt: skip
    folder = out / "models" / "completion" / "treeedit"
    export_treeedit(net, vocab, folder, metadata={"scope": "commit"})
    return folder, report


def test_examples_carry_what_the_editor_needs() -> None:
    examples = _examples(range(2), 3)
    assert len(examples) == 8
    grammar = python_grammar()
    for example in examples:
        assert len(example.context_edits) == 3  # the commit's other three calls
        p = prepare(example, grammar)
        assert p is not None
        assert len(p.sources) == 4 and p.infos  # P and three after-trees; their actions
        actions = gold_actions(p.before, p.after, grammar, p.sources)
        assert actions[-1].op == STOP and len(actions) >= 2


def test_transfer_pairs_repeat_one_edit_within_a_commit() -> None:
    examples = _examples(range(3), 4)
    pairs = transfer_pairs(examples)
    assert len(pairs) == 3 * 4 * 3  # ordered pairs of distinct calls, per commit
    for i, j in pairs:
        assert examples[i].commit == examples[j].commit and examples[i].line != examples[j].line
    assert len(transfer_pairs(examples, max_pairs=5)) == 5


def test_training_learns_the_edit_and_reports_dagger(trained: tuple[Path, dict]) -> None:
    folder, report = trained
    phases = [p["phase"] for p in report["phases"]]
    assert phases == ["supervised", "dagger-1"]
    assert report["phases"][1]["visited_states"] > 0
    assert all(0.0 <= p["dev_exact"] <= 1.0 for p in report["phases"])
    # The phase that decodes dev best is the model returned.
    chosen = next(p for p in report["phases"] if p["phase"] == report["chosen_phase"])
    assert chosen["dev_exact"] == max(p["dev_exact"] for p in report["phases"])
    model = TreeEditModel.load(folder)
    held_out = _examples(range(200, 206), 9)
    gold, predicted, exact = evaluate_treeedit(model, held_out, quiet=True)
    assert len(exact) == 24 and all(g for g in gold)
    assert sum(exact) / len(exact) >= 0.75, (gold[:2], predicted[:2])
    result = evaluate_transfer(model, held_out, transfer_pairs(held_out), quiet=True)
    assert result["pairs"] == 6 * 12 and result["skipped"] == 0
    # The donor's edit alone says which of the two edits to make.
    assert result["exact_transfer"] >= 0.75
    assert result["exact_transfer"] > result["exact_no_context"]


def test_dagger_labels_the_states_the_editor_visits(trained: tuple[Path, dict]) -> None:
    folder, _ = trained
    model = TreeEditModel.load(folder)
    grammar = python_grammar()
    p = prepare(_examples(range(300, 301), 2)[0], grammar)
    assert p is not None
    from ripple.models.suggest.treeedit_features import TreeEditVocab

    vocab = TreeEditVocab.from_json(json.loads((folder / "vocab.json").read_text()))
    items, exact = dagger_items(p, model, vocab, grammar)
    decoded = model.decode(p.before, p.sources, p.infos, grammar)
    assert len(items) == len(decoded.actions) + (0 if decoded.stopped else 1)
    # The first visited state is P itself: the expert's first action is the gold one.
    first = gold_actions(p.before, p.after, grammar, p.sources)[0]
    assert int(items[0]["target_op"]) == first.op
    assert exact == (decoded.stopped and len(items) == len(gold_actions(
        p.before, p.after, grammar, p.sources)))  # fmt: skip
    state = EditState(p.before, grammar, p.sources)
    assert len(items[0]["node_type"]) == len(state.nodes)


def _half_done(record: CommitRecord, done: int) -> EditContext:
    change = record.files[0]
    assert change.before is not None and change.after is not None
    old = tuple(change.before.splitlines(keepends=True))
    new = change.after.splitlines(keepends=True)
    current = list(old)
    edits = []
    for line in range(1, 1 + done):
        edits.append(LiveEdit("m.py", line, line + 1, (current[line],), (new[line],)))
        current[line] = new[line]
    cursor = Cursor("m.py", done, len(new[done].rstrip("\n")))
    return EditContext({"m.py": tuple(current)}, {"m.py": old}, tuple(edits), cursor)


def test_the_predictor_completes_the_half_done_edit(trained: tuple[Path, dict]) -> None:
    folder, _ = trained
    predictor = TreeEditPredictor(model=TreeEditModel.load(folder))
    assert predictor.scope == "commit"
    record = _commit(77, random.Random(11), kind="swap")
    ctx = _half_done(record, 2)
    suggestions = predictor.suggest(ctx)
    assert suggestions
    top = suggestions[0]
    after = record.files[0].after
    assert after is not None
    assert top.path == "m.py" and top.start_line in (3, 4)
    assert top.new_lines == (after.splitlines(keepends=True)[top.start_line],)
    assert "like your edit at line" in top.explanation
    assert "treeedit" in system_names()
    shipped = make_shipped(folder.parent)
    assert not shipped.problems and "treeedit" in shipped.models


def test_train_and_eval_completion_cli(tmp_path: Path) -> None:
    data = tmp_path / "commits"
    data.mkdir()
    rng = random.Random(0)
    for repo in ("pallets/flask", "psf/requests", "PyCQA/flake8"):
        write_commits(
            data / (repo.replace("/", "__") + ".jsonl.xz"),
            [_commit(k, rng, repo=repo) for k in range(8)],
        )
    run = tmp_path / "run"
    code = main(
        [
            "train", "completion", "--data", str(data), "--out", str(run), "--systems",
            "treeedit", "--steps", "40", "--eval-every", "20", "--batch-size", "8",
            "--dev-repos", "psf/requests", "--dagger-rounds", "1", "--dagger-examples", "8",
            "--dagger-steps", "10", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    manifest = json.loads((run / "models" / "treeedit" / "manifest.json").read_text())
    assert manifest["kind"] == "treeedit"
    assert manifest["metadata"]["train_repos"] == ["pallets/flask"]
    assert [p["phase"] for p in manifest["metadata"]["phases"]] == ["supervised", "dagger-1"]
    out = tmp_path / "eval.json"
    code = main(
        [
            "eval", "completion", "--commits", str(data / "PyCQA__flake8.jsonl.xz"),
            "--models", str(run / "models"), "--systems", "treeedit", "--json", str(out),
            "--max-transfer", "20", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    row = report["systems"]["treeedit"]
    assert report["examples"] == 32 and row["unconverted"] == 0 and row["parameters"] > 0
    assert 0.0 <= row["exact"] <= 1.0 and 0.0 <= row["precision"] <= 1.0
    assert report["transfer"]["pairs"] == 20


def test_the_bundled_model_loads_and_never_saw_validation_or_gpl_code() -> None:
    from ripple.models.suggest.registry import make_predictor

    predictor = make_predictor("treeedit")
    assert isinstance(predictor, TreeEditPredictor)
    meta = predictor.model.metadata()
    repos = set(meta["train_repos"])
    assert repos and not repos & {"PyCQA/flake8", "marshmallow-code/marshmallow"}
    assert "pylint-dev/pylint" not in repos
    assert predictor.scope == meta["scope"] == "commit"
    assert meta["phases"][0]["phase"] == "supervised"
    # It serves a live request: an answer or silence, no error.
    assert isinstance(predictor.suggest(_half_done(_commit(3, random.Random(9)), 2)), list)
