"""Zhao et al.'s IA on real edits: featurizer, text mapping, data set, training, ``ia``.

Everything runs on real parts: tree-sitter pieces, the replay benchmark's own contexts,
real commit files written here, a real IA trained a few steps, and onnxruntime sessions on
ONNX files made here (a tiny random IA exported and checked against torch, and a
hand-built graph whose logits are scripted so the decoder's choices are known).
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from ripple.models.edits.sequences import DELETE, Edit, ImplicitState
from ripple.models.nets.zhao import ImplicitAttention, ZhaoConfig
from ripple.models.runtime import (
    FORMAT,
    Manifest,
    ModelError,
    TensorSpec,
    default_models_dir,
    file_sha256,
    load_model,
    write_manifest,
)
from ripple.models.suggest.api import Cursor, EditContext, LiveEdit, Suggestion
from ripple.models.suggest.registry import make_predictor, system_names
from ripple.models.suggest.zhao_features import (
    HUNK_END,
    SPECIALS,
    FeatureConfig,
    SubtokenVocab,
    ZhaoFeatures,
    edits_to_suggestion,
    encode,
    featurize,
    file_pieces,
    next_edits,
    split_identifier,
)
from ripple.models.suggest.zhao_predictor import IA_KIND, ZhaoPredictor, load_bundled
from ripple.server.cli import main
from ripple.training.data import CommitRecord, FileChange, write_commits
from ripple.training.export import IA_INPUTS, IA_OUTPUTS, _IAGraph, check_parity, random_ia_feeds
from ripple.training.plot import line_plot
from ripple.training.replay import is_exact, replay_steps
from ripple.training.synthetic import collate_edits
from ripple.training.zhao_real import (
    SILENT,
    PieceTable,
    RealEditDataset,
    ScoredStep,
    build_arrays,
    choose_threshold,
    commit_contexts,
    confidence_curve,
    content_logits_at,
    lookup_table,
    remap,
    teacher_forced,
    vocab_from_arrays,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def lines(*items: str) -> tuple[str, ...]:
    return tuple(f"{item}\n" for item in items)


def context(path: str, base: tuple[str, ...], *changes: tuple[int, int, Sequence[str]]) -> EditContext:
    """Apply ``(start, end, new lines)`` edits one after another to ``base``."""
    state = base
    edits = []
    for start, end, new in changes:
        new_lines = tuple(new)
        edits.append(LiveEdit(path, start, end, tuple(state[start:end]), new_lines))
        state = (*state[:start], *new_lines, *state[end:])
    last = edits[-1]
    cursor = Cursor(path, last.start, 0)
    return EditContext({path: state}, {path: base}, tuple(edits), cursor)


RENAME_BASE = lines("def load(url):", "    data = fetch(url)", "    return parse(url, data)")
# Half-done rename: the definition and the first use are done, the last use is not.
HALF_RENAME = context(
    "m.py",
    RENAME_BASE,
    (0, 1, lines("def load(address):")),
    (1, 2, lines("    data = fetch(address)")),
)
ARG_BASE = lines("a = compute(x)", "b = 2", "c = compute(x)")
ADDED_ARGUMENT = context("m.py", ARG_BASE, (0, 1, lines("a = compute(x, y)")))


def replay_invariant(features: ZhaoFeatures) -> list[str]:
    """Replaying the window's edits gives exactly the pieces ``live`` points at."""
    state = ImplicitState(features.tokens)
    for edit in features.edits:
        state.apply(edit)
    assert state.tokens == [features.live[i].text for i in state.indices]
    return state.tokens


# ---------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    ("identifier", "pieces"),
    [
        ("get_value", ["get", "_value"]),
        ("HTTPServer", ["HTTP", "Server"]),
        ("__init__", ["__init", "__"]),
        ("utf8Decode", ["utf", "8", "Decode"]),
        ("x", ["x"]),
        ("_", ["_"]),
        ("naïve", ["naïve"]),
    ],
)
def test_identifiers_split_into_pieces_that_join_back(identifier: str, pieces: list[str]) -> None:
    assert split_identifier(identifier) == pieces
    assert "".join(split_identifier(identifier)) == identifier


def test_pieces_mark_spaces_and_line_breaks() -> None:
    texts = [p.text for p in file_pieces(lines("def f(a, b):", "    return a_b"))]
    assert texts == [
        "def", "▁f", "(", "a", ",", "▁b", ")", ":", "<nl>", "return", "▁a", "_b",
    ]  # fmt: skip


# ---------------------------------------------------------------- featurizer


def test_half_done_rename_is_two_edits_per_site() -> None:
    f = featurize(HALF_RENAME)
    assert f is not None
    assert f.tokens[:7] == ("def", "▁load", "(", "url", ")", ":", "<nl>")
    assert len(f.tokens) == 21 and f.end_index == 22
    # Each site: delete `url`, insert `address` after `(` (§2 implicit positions), then the
    # end-of-edit pair: <hunk> inserted after `address` (index M + 2 = 24), deleted.
    assert f.edits == (
        Edit(4, DELETE), Edit(3, "address"), Edit(24, HUNK_END), Edit(25, DELETE),
        Edit(12, DELETE), Edit(11, "address"), Edit(28, HUNK_END), Edit(29, DELETE),
    )  # fmt: skip
    assert f.explicit == (4, 4, 5, 5, 12, 12, 13, 13)
    assert f.sources == (0, 0, 0, 0, 1, 1, 1, 1)
    assert replay_invariant(f)[:6] == ["def", "▁load", "(", "address", ")", ":"]
    # The model's made tokens are live under the indices the edits gave them (M + t).
    assert f.live[24].text == "address" and f.live[24].line == 0
    assert f.live[28].text == "address" and f.live[28].line == 1
    assert 25 not in f.live and 29 not in f.live  # the markers are gone
    plain = featurize(HALF_RENAME, FeatureConfig(hunk_markers=False))
    assert plain is not None
    assert plain.edits == (Edit(4, DELETE), Edit(3, "address"), Edit(12, DELETE), Edit(11, "address"))


def test_added_argument_inserts_a_comma_then_a_spaced_name() -> None:
    f = featurize(ADDED_ARGUMENT)
    assert f is not None
    assert f.tokens[2:6] == ("▁compute", "(", "x", ")")
    # The comma is made as index M + 1 = 19; the end-of-edit pair follows `▁y`.
    assert f.edits == (Edit(5, ","), Edit(19, "▁y"), Edit(20, HUNK_END), Edit(21, DELETE))
    replay_invariant(f)


def test_gold_next_edits_map_back_to_the_exact_next_hunk() -> None:
    rename = featurize(HALF_RENAME)
    assert rename is not None
    nxt = lines("def load(address):", "    data = fetch(address)", "    return parse(address, data)")
    gold = next_edits(rename, nxt)
    assert gold == [Edit(18, DELETE), Edit(17, "address")]
    s = edits_to_suggestion(rename, gold, 0.5, "why")
    assert s == Suggestion("m.py", 2, 3, ("    return parse(address, data)\n",), 0.5, "why")

    arg = featurize(ADDED_ARGUMENT)
    assert arg is not None
    gold = next_edits(arg, lines("a = compute(x, y)", "b = 2", "c = compute(x, y)"))
    assert gold == [Edit(16, ","), Edit(23, "▁y")]
    assert edits_to_suggestion(arg, gold) == Suggestion("m.py", 2, 3, ("c = compute(x, y)\n",))


def test_replacing_the_first_piece_keeps_the_indentation() -> None:
    f = featurize(ADDED_ARGUMENT)
    assert f is not None
    # `c` is index 12, the <nl> opening its line is 11: delete c, insert z at the line start.
    assert f.live[12].text == "c" and f.live[11].text == "<nl>"
    s = edits_to_suggestion(f, [Edit(12, DELETE), Edit(11, "z")])
    assert s is not None and s.new_lines == ("z = compute(x)\n",)


def test_every_replay_step_whose_next_hunk_is_one_line_maps_back_exactly() -> None:
    old = ("def f(x):", "    y = 1", "    return g(x)", "", "v = f(1)", "", "w = f(2)", "", "z = f(3)")
    new = (
        "def f(x, k=0):", "    y = 1", "    return g(x, k)", "", "v = f(1, k=0)", "", "w = f(2, k=0)", "",
        "z = f(3, k=0)",
    )  # fmt: skip
    before, after = "".join(lines(*old)), "".join(lines(*new))
    rec = CommitRecord("o/r", "a" * 40, "b" * 40, 0, "m", (FileChange("m.py", before, after),))
    steps = replay_steps(rec)
    assert steps is not None and len(steps) == 4
    for step in steps:
        f = featurize(step.ctx)
        assert f is not None
        truth = step.truth[0]
        current = step.ctx.files["m.py"]
        nxt = (*current[: truth.start_line], *truth.new_lines, *current[truth.end_line :])
        gold = next_edits(f, nxt)
        assert gold is not None
        s = edits_to_suggestion(f, gold)
        assert s is not None and is_exact(s, truth)


@pytest.mark.parametrize(
    ("edits", "why"),
    [
        ([Edit(0, ",")], "before the window"),
        ([Edit(5, "<nl>")], "a line break"),
        ([Edit(5, "<unk>")], "an unknown piece"),
        ([Edit(5, ","), Edit(13, DELETE)], "leaves the line"),
        ([Edit(11, DELETE)], "joins two lines"),
    ],
)
def test_edits_without_a_clean_text_form_give_no_suggestion(edits: list[Edit], why: str) -> None:
    f = featurize(ADDED_ARGUMENT)
    assert f is not None
    assert edits_to_suggestion(f, edits) is None, why


def test_a_line_inside_a_multi_line_string_is_not_edited() -> None:
    base = lines('x = """doc', 'more"""', "y = 1")
    ctx = context("m.py", base, (2, 3, lines("y = 2")))
    f = featurize(ctx)
    assert f is not None
    string = next(i for i, p in f.live.items() if '"""' in p.text)
    assert f.live[string].line == 0 and f.live[string].end_line == 1
    assert edits_to_suggestion(f, [Edit(string, DELETE)]) is None
    assert edits_to_suggestion(f, [Edit(1, ",")]) is None  # `x`, on the same line


def test_featurize_is_silent_without_python_edits() -> None:
    ctx = EditContext({"a.py": lines("x")}, {"a.py": lines("x")}, (), Cursor("a.py", 0, 0))
    assert featurize(ctx) is None
    assert featurize(context("notes.txt", lines("a b"), (0, 1, lines("a c")))) is None
    assert featurize(context("m.py", lines("x = 1"), (0, 1, lines("x  =  1")))) is None


def test_long_files_are_windowed_around_the_recent_edits() -> None:
    base = lines(*(f"v{i} = compute(x{i})" for i in range(300)))
    ctx = context(
        "m.py", base, (20, 21, lines("v20 = compute(x20, y)")), (200, 201, lines("v200 = compute(x200, y)"))
    )
    config = FeatureConfig(window=40, max_span_lines=30, margin_lines=5)
    f = featurize(ctx, config)
    assert f is not None
    assert len(f.tokens) == 40
    # Lines 20 and 200 are too far apart: only the recent edit is kept, in the window.
    assert f.sources == (1, 1, 1, 1)
    assert {f.live[i].line for i in f.live} <= set(range(195, 206))
    assert replay_invariant(f)


def test_long_edit_histories_keep_the_most_recent_edits() -> None:
    base = lines("a = [1]")
    ctx = context("m.py", base, (0, 1, lines("a = [1, 2, 3, 4, 5, 6, 7]")))
    f = featurize(ctx, FeatureConfig(max_edits=4))
    assert f is not None
    assert len(f.edits) == 4
    assert "".join(replay_invariant(f)).replace("▁", " ") == "a = [1, 2, 3, 4, 5, 6, 7]"


# ---------------------------------------------------------------- vocabulary


def test_vocabulary_has_the_specials_first_and_maps_the_rest_to_unk() -> None:
    vocab = SubtokenVocab.from_counts({"b": 5, "a": 5, "c": 1, "<nl>": 9}, size=len(SPECIALS) + 2)
    assert vocab.tokens == (*SPECIALS, "a", "b")
    assert vocab.token_id("a") == len(SPECIALS) and vocab.token_id("c") == vocab.unk_id == 4
    assert vocab.content_id(DELETE) == 3 and vocab.decode_content(3) is DELETE
    assert vocab.decode_content(vocab.token_id("b")) == "b"
    assert SubtokenVocab.from_json(json.loads(json.dumps(vocab.to_json()))) == vocab
    with pytest.raises(ValueError):
        SubtokenVocab.from_json(["a", "b"])
    with pytest.raises(ValueError):
        SubtokenVocab.from_json({"tokens": []})


def test_encode_gives_the_model_inputs() -> None:
    f = featurize(HALF_RENAME)
    assert f is not None
    vocab = SubtokenVocab.build([f], size=12)
    inputs = encode(f, vocab)
    assert inputs.state[0] == vocab.start_id and inputs.state[-1] == vocab.end_id
    assert len(inputs.state) == len(f.tokens) + 2
    assert list(inputs.edit_position) == [4, 3, 24, 25, 12, 11, 28, 29]
    assert inputs.edit_content[0] == vocab.delete_id
    assert (inputs.state == vocab.unk_id).any()  # 12 entries cannot hold every piece


# ---------------------------------------------------------------- data set and training


def rename_commit(sha: str, old: str, new: str) -> CommitRecord:
    body = lines(f"def load({old}):", f"    data = fetch({old})", "", f"    return parse({old}, data)")
    after = "".join(line.replace(old, new) for line in body)
    other = lines("x = 1", f"y = {old}")
    return CommitRecord(
        "o/r",
        sha * 40,
        "0" * 40,
        0,
        "rename",
        (
            FileChange("a.py", "".join(body), after),
            FileChange("b.py", "".join(other), "".join(other).replace(old, new)),
        ),
    )


COMMITS = [rename_commit("1", "url", "address"), rename_commit("2", "key", "name")]


def test_commit_contexts_end_after_each_files_last_hunk() -> None:
    contexts = commit_contexts(COMMITS[0])
    assert [c.last_edit.path for c in contexts if c.last_edit] == ["a.py", "b.py"]
    assert contexts[0].text("a.py").count("address") == 3
    assert contexts[1].text("b.py") == "x = 1\ny = address\n"


def test_data_set_from_a_commit_file(tmp_path: Path) -> None:
    path = tmp_path / "o__r.jsonl.xz"
    write_commits(path, COMMITS)
    table = PieceTable()
    arrays = build_arrays([path], FeatureConfig(), table)
    assert len(arrays) == 4  # two commits, two files each
    # Per commit: three sites x (delete + insert) and one site, each hunk + an end pair.
    assert arrays.edits() == 2 * (6 + 2 + 3 * 2)
    assert list(arrays.state[: arrays.state_at[1]][:3]) == [1, table.id("def"), table.id("▁load")]
    vocab = vocab_from_arrays(arrays, table, size=len(SPECIALS) + 3)
    counts = np.bincount(np.concatenate([arrays.state, arrays.content]), minlength=len(table.pieces))
    counts[: len(SPECIALS)] = 0
    chosen = [table.id(t) for t in vocab.tokens[len(SPECIALS) :]]
    assert len(chosen) == 3 and min(counts[chosen]) >= max(np.delete(counts, chosen))
    data = RealEditDataset(remap(arrays, lookup_table(table, vocab)))
    item = data[0]
    assert item["state"].dtype == torch.int64 and bool(item["loss_mask"].all())
    assert int((item["edit_content"] == vocab.delete_id).sum()) == 3 + 2
    end_id = vocab.token_id(HUNK_END)
    assert end_id != vocab.unk_id
    marked = RealEditDataset(remap(arrays, lookup_table(table, vocab)), end_id)[0]
    closing = torch.nonzero(~marked["loss_mask"])[:, 0].tolist()
    assert [int(marked["edit_content"][i - 1]) for i in closing] == [end_id, end_id]
    batch = collate_edits([data[i] for i in range(len(data))])
    assert batch["state"].shape[0] == 4
    arrays.save(tmp_path / "a.npz")
    again = type(arrays).load(tmp_path / "a.npz")
    assert np.array_equal(again.content, arrays.content)


def tiny_ia(vocab_size: int, seed: int = 0) -> ImplicitAttention:
    torch.manual_seed(seed)
    return ImplicitAttention(ZhaoConfig(vocab_size=vocab_size, hidden=16, heads=4, dropout=0.0)).eval()


def test_content_at_another_position_equals_a_forward_pass_there(tmp_path: Path) -> None:
    path = tmp_path / "o__r.jsonl.xz"
    write_commits(path, COMMITS)
    table = PieceTable()
    arrays = build_arrays([path], FeatureConfig(), table)
    vocab = vocab_from_arrays(arrays, table, 30)
    data = RealEditDataset(remap(arrays, lookup_table(table, vocab)))
    model = tiny_ia(len(vocab))
    batch = collate_edits([data[0]])
    with torch.no_grad():
        h = model.encode(batch)
        _, content = model(batch)
        gold = model.columns(batch)
        moved_to = gold.clone()
        moved_to[0, -1] = 2  # the last edit, moved to state column 2
        shortcut = content_logits_at(model, h, content, gold, moved_to)
        direct_batch = dict(batch)
        direct_batch["edit_position"] = batch["edit_position"].clone()
        direct_batch["edit_position"][0, -1] = 2
        _, direct = model(direct_batch)
    assert torch.allclose(shortcut[0, -1], direct[0, -1], atol=1e-5)
    assert torch.allclose(shortcut[0, :-1], content[0, :-1])
    end_id = vocab.token_id(HUNK_END)
    outcome = teacher_forced(model, RealEditDataset(data.arrays, end_id), end_id=end_id)
    ends = int((data.arrays.content == end_id).sum())
    assert ends == 6 and len(outcome.end_right) == ends  # one per hunk
    assert len(outcome.correct) == arrays.edits() - 2 * ends  # token edits only
    assert int(outcome.first_of_edit.sum()) == 2  # a.py's second hunk, in each commit
    summary = outcome.summary()
    assert summary["subtoken_accuracy"] <= summary["position_accuracy"]


def test_confidence_curve_is_accuracy_among_the_most_confident() -> None:
    confidence = np.array([0.9, 0.8, 0.7, 0.1])
    correct = np.array([True, True, False, False])
    curve = confidence_curve(confidence, correct, percentiles=[0, 50, 75])
    assert curve["accuracy"] == [0.5, 1.0, 1.0]
    assert curve["count"] == [4.0, 2.0, 1.0]


def test_threshold_is_the_lowest_score_reaching_the_precision() -> None:
    steps = [ScoredStep(s / 100, s >= 50, 1.0) for s in range(1, 100)]
    threshold, how = choose_threshold(steps, target_precision=0.9, min_answered=5)
    answered = [s for s in steps if s.score >= threshold]
    assert sum(s.exact for s in answered) / len(answered) >= 0.9
    assert threshold == pytest.approx(0.45) and "lowest" in how
    silent, how = choose_threshold(steps[:3], target_precision=0.9, min_answered=5)
    assert silent == SILENT > 1.0 and "silent" in how  # too few answers to trust
    silent, how = choose_threshold(steps, target_precision=1.01, min_answered=5)
    assert silent == SILENT and "best 1.000" in how  # the target is never reached


def write_data_dir(root: Path) -> Path:
    commits = root / "commits"
    commits.mkdir(parents=True)
    for name in (
        "PyCQA__flake8", "marshmallow-code__marshmallow", "psf__requests", "pallets__click", "psf__black",
    ):  # fmt: skip
        write_commits(commits / f"{name}.jsonl.xz", COMMITS)
    return root


def test_train_edits_then_eval_edits(
    tmp_path: Path, random_ia: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_data_dir(tmp_path / "data")
    run = tmp_path / "run"
    common = ["--data", str(data), "--out", str(run), "--vocab-size", "40", "--hidden", "16"]
    args = ["train", "edits", *common, "--max-steps", "3", "--eval-every", "2", "--quiet"]
    assert main(args) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["data"]["train_repos"] == ["psf/black"]  # never the validation ones
    assert results["data"]["train_examples"] == 4 and results["steps"] == 3
    assert 0.0 <= results["dev"]["subtoken_accuracy"] <= 1.0
    vocab = json.loads((run / "vocab.json").read_text())
    assert len(vocab) <= 40 and vocab[: len(SPECIALS)] == list(SPECIALS)
    # A finished run resumes to the same end; other settings are refused.
    assert main([*args, "--resume"]) == 0
    assert main(["train", "edits", *common, "--window", "50", "--resume", "--quiet"]) == 2
    assert "differ" in capsys.readouterr().err

    out = tmp_path / "eval.json"
    plot = tmp_path / "fig4d.png"
    assert main(["eval", "edits", "--run", str(run), "--data", str(data), "--json", str(out),
                 "--plot", str(plot), "--model", str(random_ia), "--quiet"]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    # Two validation files, two kept commits each, three hunks (two steps) per commit.
    assert report["replay"]["steps"] == 8 and report["replay"]["sweep"][0]["threshold"] == 0.0
    assert set(report["per_repository"]) == {"PyCQA/flake8", "marshmallow-code/marshmallow"}
    assert report["edits"] == 2 * 16 and len(report["fig4d"]["accuracy"]) == 20
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_data_dir(tmp_path / "data")
    assert main(["train", "edits", "--data", str(data), "--out", str(tmp_path / "r"),
                 "--dev-repos", "nobody/nothing"]) == 2  # fmt: skip
    assert main(["eval", "edits", "--run", str(tmp_path / "none"), "--data", str(data),
                 "--json", str(tmp_path / "x.json")]) == 2  # fmt: skip
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("ripple: error:") for e in errors)


@pytest.mark.parametrize("command", [["train", "edits"], ["eval", "edits"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "Zhao" in capsys.readouterr().out


# ---------------------------------------------------------------- the ia predictor

IA_SPECS = tuple(
    TensorSpec(name, "int64", shape)
    for name, shape in (
        ("state", ("batch", "state")),
        ("state_length", ("batch",)),
        ("edit_position", ("batch", "edits")),
        ("edit_content", ("batch", "edits")),
        ("edit_explicit", ("batch", "edits")),
    )
)


def ia_outputs(vocab_size: int) -> tuple[TensorSpec, ...]:
    return (
        TensorSpec("position_logits", "float32", ("batch", "edits", "columns")),
        TensorSpec("content_logits", "float32", ("batch", "edits", vocab_size)),
    )


def model_folder(
    folder: Path, proto: onnx.ModelProto, vocab: SubtokenVocab, metadata: dict[str, object]
) -> Path:
    """A model folder as ``training.export`` writes it: ONNX, vocab.json, manifest."""
    folder.mkdir(parents=True)
    onnx.save(proto, str(folder / "model.onnx"))
    (folder / "vocab.json").write_text(json.dumps(vocab.to_json()), encoding="utf-8")
    write_manifest(
        folder,
        Manifest(
            format=FORMAT,
            name="zhao-ia",
            kind=IA_KIND,
            onnx="model.onnx",
            sha256=file_sha256(folder / "model.onnx"),
            inputs=IA_SPECS,
            outputs=ia_outputs(len(vocab)),
            files={"vocab.json": file_sha256(folder / "vocab.json")},
            config={"vocab_size": len(vocab)},
            metadata=metadata,
        ),
    )
    return folder


def scripted_graph(position: np.ndarray, content: np.ndarray) -> onnx.ModelProto:
    """An IA-shaped graph whose logits depend only on T, the number of edits it is fed.

    ``position[T]`` (columns) and ``content[T]`` (vocabulary) are broadcast to every row of
    the (B, T, S + T) and (B, T, V) outputs: the predictor's k-th decoding step feeds
    T0 + k edits, so the script decides each step.
    """
    i64 = TensorProto.INT64
    zero, one = helper.make_tensor("zero", i64, [1], [0]), helper.make_tensor("one", i64, [1], [1])
    nodes = [
        helper.make_node("Shape", ["state"], ["s_shape"]),
        helper.make_node("Shape", ["edit_position"], ["t_shape"]),
        helper.make_node("Gather", ["s_shape", "zero"], ["b"]),
        helper.make_node("Gather", ["s_shape", "one"], ["s"]),
        helper.make_node("Gather", ["t_shape", "one"], ["t"]),
        helper.make_node("Add", ["s", "t"], ["c"]),
        helper.make_node("Gather", ["position_table", "t"], ["p_rows"], axis=0),  # (1, C_max)
        helper.make_node("Slice", ["p_rows", "zero", "c", "one"], ["p_row"]),
        helper.make_node("Shape", ["content_table"], ["v_shape"]),
        helper.make_node("Gather", ["v_shape", "one"], ["v"]),
        helper.make_node("Concat", ["b", "t", "c"], ["p_out_shape"], axis=0),
        helper.make_node("Expand", ["p_row", "p_out_shape"], ["position_logits"]),
        helper.make_node("Gather", ["content_table", "t"], ["c_row"], axis=0),
        helper.make_node("Concat", ["b", "t", "v"], ["c_out_shape"], axis=0),
        helper.make_node("Expand", ["c_row", "c_out_shape"], ["content_logits"]),
    ]
    inputs = [helper.make_tensor_value_info(s.name, i64, list(s.shape)) for s in IA_SPECS]
    outputs = [
        helper.make_tensor_value_info(s.name, TensorProto.FLOAT, list(s.shape))
        for s in ia_outputs(content.shape[1])
    ]
    tables = [
        helper.make_tensor("position_table", TensorProto.FLOAT, position.shape, position.ravel()),
        helper.make_tensor("content_table", TensorProto.FLOAT, content.shape, content.ravel()),
    ]
    graph = helper.make_graph(nodes, "scripted-ia", inputs, outputs, initializer=[zero, one, *tables])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


RENAME_VOCAB = SubtokenVocab([*SPECIALS, "address", "url", "(", ",", HUNK_END])


def scripted_predictor(tmp_path: Path, steps: list[tuple[int, int]], threshold: float) -> ZhaoPredictor:
    """An ``ia`` predictor on HALF_RENAME whose model makes the (column, content id) steps."""
    t0 = 8  # HALF_RENAME's edits: two sites, each two edits and an end pair
    position = np.zeros((12, 40), dtype=np.float32)
    content = np.zeros((12, len(RENAME_VOCAB)), dtype=np.float32)
    for k, (column, content_id) in enumerate(steps):
        position[t0 + 1 + k, column] = 6.0
        content[t0 + 1 + k, content_id] = 6.0
    folder = model_folder(
        tmp_path / "scripted",
        scripted_graph(position, content),
        RENAME_VOCAB,
        {"features": FeatureConfig().to_dict(), "threshold": threshold},
    )
    return ZhaoPredictor.from_model(load_model(folder, device="cpu", threads=1))


def test_the_predictor_decodes_a_rename_until_the_model_moves_on(tmp_path: Path) -> None:
    address = RENAME_VOCAB.token_id("address")
    # Delete `url` at 18, insert `address` after `(` at 17, then point at line 0: stop.
    predictor = scripted_predictor(tmp_path, [(18, 3), (17, address), (2, 0)], threshold=0.05)
    suggestions = predictor.suggest(HALF_RENAME)
    assert suggestions[0].new_lines == ("    return parse(address, data)\n",)
    assert (suggestions[0].start_line, suggestions[0].end_line) == (2, 3)
    assert "continues your edit on line 2" in suggestions[0].explanation
    assert "url → address" in suggestions[0].explanation
    # The score is the probability of the two decoded edits (position x content each).
    columns, vocab = 21 + 2 + 8 + 1, len(RENAME_VOCAB)  # S + T columns at the first step
    p_position = [np.exp(6) / (np.exp(6) + n - 1) for n in (columns, columns + 1)]
    p_content = np.exp(6) / (np.exp(6) + vocab - 1)
    assert suggestions[0].score == pytest.approx(p_position[0] * p_position[1] * p_content**2, rel=1e-4)
    assert [s.score for s in suggestions] == sorted((s.score for s in suggestions), reverse=True)


def test_the_predicted_end_of_the_edit_completes_the_suggestion(tmp_path: Path) -> None:
    address, end = RENAME_VOCAB.token_id("address"), RENAME_VOCAB.token_id(HUNK_END)
    # After delete + insert, the model ends the edit right after the inserted `address`
    # (made by the second predicted edit: index M + 8 + 2 = 32, column 23 + 32 - 22 - 1).
    predictor = scripted_predictor(tmp_path, [(18, 3), (17, address), (32, end)], threshold=0.05)
    suggestions = predictor.suggest(HALF_RENAME)
    assert suggestions[0].new_lines == ("    return parse(address, data)\n",)
    columns, vocab = 32, len(RENAME_VOCAB)
    p_position = [np.exp(6) / (np.exp(6) + n - 1) for n in (columns, columns + 1, columns + 2)]
    p_content = np.exp(6) / (np.exp(6) + vocab - 1)
    expected = float(np.prod(p_position)) * p_content**3  # the end is part of the score
    assert suggestions[0].score == pytest.approx(expected, rel=1e-4)


def test_the_predictor_is_silent_below_its_threshold(tmp_path: Path) -> None:
    address = RENAME_VOCAB.token_id("address")
    predictor = scripted_predictor(tmp_path, [(18, 3), (17, address), (2, 0)], threshold=0.99)
    assert predictor.threshold == 0.99
    assert predictor.suggest(HALF_RENAME) == []
    assert predictor.ranked(HALF_RENAME)  # the suggestion is there, just not confident enough


def test_a_prediction_with_no_text_form_is_dropped(tmp_path: Path) -> None:
    # Insert <nl> after `(`: the content ids without text are never chosen, and every other
    # content is equally unlikely, so no candidate is left above the threshold.
    predictor = scripted_predictor(tmp_path, [(17, SPECIALS.index("<nl>"))], threshold=0.05)
    assert predictor.suggest(HALF_RENAME) == []


@pytest.fixture(scope="module")
def random_ia(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random IA exported to ONNX, checked against torch through onnxruntime."""
    vocab = SubtokenVocab.build([f for f in (featurize(HALF_RENAME), featurize(ADDED_ARGUMENT)) if f], 40)
    model = tiny_ia(len(vocab), seed=3)
    folder = tmp_path_factory.mktemp("ia") / "zhao-ia"
    sample = random_ia_feeds(np.random.default_rng(0), 2, 9, 5, model.config)
    args = tuple(torch.from_numpy(sample[name]) for name in IA_INPUTS)
    edits = {0: "batch", 1: "edits"}
    dynamic = {
        "state": {0: "batch", 1: "state"},
        "state_length": {0: "batch"},
        "edit_position": edits,
        "edit_content": edits,
        "edit_explicit": edits,
    }
    onnx_file = folder.parent / "graph.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter takes seconds where training.export's dynamo path takes
        # a minute; check_parity below holds it to the same standard.
        torch.onnx.export(
            _IAGraph(model), args, str(onnx_file), dynamo=False, input_names=list(IA_INPUTS),
            output_names=list(IA_OUTPUTS), dynamic_axes=dynamic, opset_version=17,
        )  # fmt: skip
    model_folder(
        folder,
        onnx.load(str(onnx_file)),
        vocab,
        {"features": FeatureConfig().to_dict(), "threshold": 0.0},
    )
    check_parity(model, load_model(folder, device="cpu", threads=1))
    return folder


def test_the_predictor_runs_a_real_ia_end_to_end(random_ia: Path) -> None:
    predictor = ZhaoPredictor.from_model(load_model(random_ia, device="cpu", threads=1))
    answered = 0
    for ctx in (HALF_RENAME, ADDED_ARGUMENT):
        suggestions = predictor.suggest(ctx)
        answered += len(suggestions)
        current = ctx.files["m.py"]
        for s in suggestions:
            assert s.path == "m.py" and 0 <= s.start_line < len(current)
            assert s.end_line == s.start_line + 1 and len(s.new_lines) <= 1
            assert 0.0 < s.score <= 1.0 and s.explanation.startswith("IA")
            assert s.new_lines != (current[s.start_line],)
        assert [s.score for s in suggestions] == sorted((s.score for s in suggestions), reverse=True)
    assert answered  # threshold 0: whatever maps to a line edit is suggested
    f = featurize(HALF_RENAME)
    assert f is not None
    position, content = predictor._run(f, [([], [])], [0])
    assert position.shape == (1, len(f.tokens) + 2 + len(f.edits) + 1)
    assert position.sum() == pytest.approx(1.0) and content.sum() == pytest.approx(1.0)
    end = len(f.tokens) + 1
    deleting = [len(f.tokens) + 2 + t for t, e in enumerate(f.edits) if e.is_delete]
    assert position[0, end] == 0.0 and (position[0, deleting] == 0.0).all()  # masked (§2)


def test_models_that_are_not_real_edit_ia_are_refused(random_ia: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(random_ia, copy)
    data = json.loads((copy / "manifest.json").read_text())
    del data["metadata"]["features"]
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="not an IA model trained on real edits"):
        ZhaoPredictor.from_model(load_model(copy, device="cpu"))
    with pytest.raises(ModelError, match="missing"):
        load_bundled(tmp_path / "no-models")


def test_ia_is_a_registered_system() -> None:
    assert "ia" in system_names()


BUNDLED = default_models_dir() / "zhao-ia"


def test_the_bundled_model_loads_verified_and_serves(tmp_path: Path) -> None:
    model = load_model(BUNDLED, device="cpu", threads=1)  # sha256 of every file checked
    assert model.manifest.kind == IA_KIND
    metadata = model.manifest.metadata
    assert metadata["features"]["hunk_markers"] and metadata["threshold"] >= 0.0
    predictor = make_predictor("ia")
    assert isinstance(predictor, ZhaoPredictor)
    assert predictor.threshold == metadata["threshold"]
    assert len(predictor.vocab) == model.manifest.config["vocab_size"]
    assert predictor.end_id is not None  # trained with end-of-edit markers
    for s in predictor.suggest(HALF_RENAME):
        assert s.score >= predictor.threshold
    for s in predictor.ranked(HALF_RENAME):  # what it would say, threshold aside
        assert s.path == "m.py" and 0.0 < s.score <= 1.0
    tampered = tmp_path / "zhao-ia"
    shutil.copytree(BUNDLED, tampered)
    vocab = json.loads((tampered / "vocab.json").read_text())
    vocab[-1] = vocab[-1] + "x"
    (tampered / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ModelError, match="sha256"):
        load_bundled(tmp_path)


def test_plot_writes_a_png_with_the_lines_drawn(tmp_path: Path) -> None:
    import struct
    import zlib

    path = tmp_path / "p.png"
    canvas = line_plot(path, {"IA": ([0, 50, 95], [10, 50, 90])}, title="t", y_range=(0, 100))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (canvas.width, canvas.height)
    idat = data.index(b"IDAT")
    (size,) = struct.unpack(">I", data[idat - 4 : idat])
    raw = zlib.decompress(data[idat + 4 : idat + 4 + size])
    assert len(raw) == height * (1 + 3 * width)
    colored = {canvas.get(x, y) for x in range(width) for y in range(height)}
    assert (31, 119, 180) in colored  # the series' line
