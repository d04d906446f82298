"""The span-copying editor (Copy That!): tokens, data, objectives, export, predictor, CLI.

Real parts throughout: tree-sitter tokens, the replay benchmark's own steps on commit files
written here, the torch net checked against brute-force enumeration of every action
sequence, ONNX graphs exported here and run by onnxruntime, and the shared trainer.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ripple.models.nets.copy_span import CopyConfig, CopyEditor
from ripple.models.runtime import ModelError, load_model
from ripple.models.suggest.api import Cursor, EditContext, LiveEdit
from ripple.models.suggest.copy_features import (
    EOS,
    SPECIALS,
    CopyVocab,
    EditorConfig,
    fragment_tokens,
    make_fragment,
    run_lengths,
)
from ripple.models.suggest.copy_predictor import (
    CopyPredictor,
    OnnxEditor,
    changed_lines,
    load_bundled_editor,
)
from ripple.models.suggest.registry import make_predictor, system_names
from ripple.server.cli import main
from ripple.training.copy_data import (
    CopyDataset,
    CopyExample,
    collate_copy,
    iter_examples,
    longest_path,
)
from ripple.training.copy_export import export_copy_editor
from ripple.training.data import CommitRecord, FileChange, write_commits
from ripple.training.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    "text",
    [
        "    def f(self, a):  \n        return 'x'  # note\n\n\tx=1\r\n",
        '"""doc\nstring"""\nvalue = f"{a!r:>{w}}"\n',
        "naïve = '日本'  \u00a0# odd space\n",
        "if x:\n    pass",
        "   \n\n",
    ],
)
def test_fragment_tokens_join_back_exactly(text: str) -> None:
    tokens = fragment_tokens(text)
    assert "".join(tokens) == text
    assert all(tokens)
    # Line breaks start whitespace tokens and carry the next line's indentation.
    for token in tokens:
        if "\n" in token and not token.strip():
            assert token.rstrip(" \t").endswith("\n") or token.lstrip(" \t\r\n") == ""


def test_run_lengths_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        inputs = [str(x) for x in rng.integers(0, 3, size=rng.integers(1, 9))]
        outputs = [str(x) for x in rng.integers(0, 4, size=rng.integers(1, 9))]
        runs = run_lengths(inputs, outputs)
        for k in range(len(outputs)):
            for i in range(len(inputs)):
                n = 0
                while (
                    i + n < len(inputs) and k + n < len(outputs) and inputs[i + n] == outputs[k + n]
                ):
                    n += 1
                assert runs[k, i] == n


def test_longest_path_copies_the_longest_run_and_skips_inside_it() -> None:
    runs = run_lengths(list("abcde"), [*"abfde", EOS])
    # a b copied as one span, f generated, d e copied, </s> generated.
    assert longest_path(runs).tolist() == [2, -1, 0, 2, -1, 0]


# ---------------------------------------------------------------- the net and its objectives

VOCAB = CopyVocab([*SPECIALS, "a", "b", "c", "d", "f"])


def tiny_net(max_span: int | None = None, objective: str = "marginal", seed: int = 0) -> CopyEditor:
    torch.manual_seed(seed)
    config = CopyConfig(
        len(VOCAB), embedding=8, hidden=8, dropout=0.0, max_span=max_span,
        objective=objective, blocked=(0, 2, 4, 5),  # type: ignore[arg-type]
    )  # fmt: skip
    return CopyEditor(config).eval()


def batch_of(pairs: list[tuple[list[str], list[str]]]) -> dict[str, torch.Tensor]:
    data = CopyDataset([CopyExample(tuple(i), tuple(o), len(i)) for i, o in pairs], VOCAB)
    return collate_copy([data[n] for n in range(len(data))])


def brute_force(net: CopyEditor, inputs: list[str], outputs: list[str]) -> float:
    """log p(outputs + </s>) summed over every action sequence, one by one."""
    batch = batch_of([(inputs, outputs)])
    with torch.no_grad():
        gen, start, end, _ = net.scores(batch)
        log_z = net._normaliser(gen, start, end)
    full = [*outputs, EOS]
    max_span = net.config.max_span

    def rest(k: int) -> float:
        if k == len(full):
            return 0.0
        terms = []
        token = VOCAB.id(full[k])
        if not (token == VOCAB.unk_id and full[k] in inputs):
            terms.append(float(gen[0, k, token] - log_z[0, k]) + rest(k + 1))
        for i in range(len(inputs)):
            for j in range(i, len(inputs)):
                if max_span is not None and j - i + 1 > max_span:
                    continue
                if inputs[i : j + 1] == full[k : k + j - i + 1]:
                    terms.append(
                        float(start[0, k, i] + end[0, k, j] - log_z[0, k]) + rest(k + j - i + 1)
                    )
        return float(torch.logsumexp(torch.tensor(terms), 0)) if terms else -math.inf

    return rest(0)


@pytest.mark.parametrize("max_span", [None, 1])
@pytest.mark.parametrize(
    ("inputs", "outputs"),
    [
        (list("abcde"), list("abfde")),
        (list("abab"), list("ababab")),
        (["a", "zz", "b"], ["zz", "b", "zz"]),  # zz is out of vocabulary but copyable
        (["a"], ["qq", "a"]),  # qq can only be generated as <unk>
    ],
)
def test_the_dynamic_program_equals_the_sum_over_all_action_sequences(
    max_span: int | None, inputs: list[str], outputs: list[str]
) -> None:
    net = tiny_net(max_span)
    batch = batch_of([(inputs, outputs), (list("dcba"), list("dcb"))])  # padded beside another
    with torch.no_grad():
        gen_ok, copy, _, _ = net.action_terms(batch)
        log_p = net.log_likelihood(gen_ok, copy, batch["output_length"])
    assert float(log_p[0]) == pytest.approx(brute_force(net, inputs, outputs), abs=1e-4)
    assert float(log_p[1]) == pytest.approx(brute_force(net, list("dcba"), list("dcb")), abs=1e-4)


@pytest.mark.parametrize("max_span", [None, 1])
def test_one_softmax_over_generation_and_every_span(max_span: int | None) -> None:
    net = tiny_net(max_span)
    batch = batch_of([(list("abcd"), list("ab"))])
    with torch.no_grad():
        gen, start, end, _ = net.scores(batch)
        log_z = net._normaliser(gen, start, end)
    k = 1
    spans = [
        start[0, k, i] + end[0, k, j]
        for i in range(4)
        for j in range(i, 4)
        if max_span is None or j - i + 1 <= max_span
    ]
    allowed = gen[0, k][~net.blocked]
    total = torch.logsumexp(torch.cat([allowed, torch.stack(spans)]) - log_z[0, k], 0)
    assert float(total) == pytest.approx(0.0, abs=1e-5)


def test_the_unk_rule() -> None:
    net = tiny_net()
    batch = batch_of([(["zz", "a"], ["zz", "qq"])])  # zz copyable, qq not
    with torch.no_grad():
        gen_ok, _, _, _ = net.action_terms(batch)
        gen, start, end, _ = net.scores(batch)
        log_z = net._normaliser(gen, start, end)
    assert gen_ok[0, 0] == -math.inf  # generating <unk> for a copyable token is wrong
    assert float(gen_ok[0, 1]) == pytest.approx(
        float(gen[0, 1, VOCAB.unk_id] - log_z[0, 1]), abs=1e-6
    )


def test_objectives_order_and_give_finite_gradients() -> None:
    pairs = [(list("abcde"), list("abfde")), (list("ab"), list("ba"))]
    batch = batch_of(pairs)
    losses = {}
    for objective in ("marginal", "longest", "nomarg"):
        net = tiny_net(objective=objective)
        net.train()
        out = net.loss(batch)
        out.loss.backward()
        for p in net.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
        losses[objective] = float(out.loss.detach())
    # The marginal likelihood sums over every sequence, the longest-copy one included.
    assert losses["marginal"] < losses["longest"]
    # With nothing to copy there is one action sequence, and all three agree.
    nothing = batch_of([(list("ab"), list("ccd"))])
    same = {
        float(tiny_net(objective=o).loss(nothing).loss.detach())
        for o in ("marginal", "longest", "nomarg")
    }
    assert max(same) - min(same) < 1e-5


# ---------------------------------------------------------------- training, export, decoding


def toy_examples(n: int, seed: int) -> list[CopyExample]:
    """Copy a sequence of 6-10 tokens with its third token replaced by "f"."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tokens = [str(x) for x in rng.choice(list("abcd"), size=rng.integers(6, 11))]
        edited = list(tokens)
        edited[2] = "f"
        out.append(CopyExample(tuple(tokens), tuple(edited), len(tokens)))
    return out


def train_toy(tmp_path: Path, max_span: int | None, steps: int = 150) -> CopyEditor:
    torch.manual_seed(0)
    net = CopyEditor(
        CopyConfig(
            len(VOCAB),
            embedding=24,
            hidden=24,
            dropout=0.0,
            max_span=max_span,
            blocked=(0, 2, 4, 5),
        )
    )
    config = TrainConfig(out_dir=str(tmp_path / f"run-{max_span}"), batch_size=16, lr=1e-2,
                         max_steps=steps, epochs=100, quiet=True)  # fmt: skip
    data = CopyDataset(toy_examples(400, 0), VOCAB)
    Trainer(net, config, data, None, collate_copy).fit()  # type: ignore[arg-type]
    return net.eval()


@pytest.fixture(scope="module")
def toy_editors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("editors")
    folders = {}
    for name, max_span in (("copy-span", None), ("copy-token", 1)):
        net = train_toy(root, max_span)
        folder = root / name
        export_copy_editor(net, VOCAB, EditorConfig(radius=0), folder, name=name)
        folders[name] = folder
    return folders


def test_export_is_checked_and_verified(toy_editors: dict[str, Path], tmp_path: Path) -> None:
    manifest = json.loads((toy_editors["copy-span"] / "manifest.json").read_text())
    assert manifest["kind"] == "copy-editor" and manifest["onnx"] == "step.onnx"
    assert set(manifest["files"]) == {"encoder.onnx", "vocab.json"}
    assert manifest["metadata"]["parity"]["max_abs_diff"] <= 1e-4
    # A damaged encoder is refused before onnxruntime reads it.
    broken = tmp_path / "broken"
    shutil.copytree(toy_editors["copy-span"], broken)
    data = bytearray((broken / "encoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (broken / "encoder.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_model(broken, device="cpu")


def test_span_copying_edits_in_fewer_actions(toy_editors: dict[str, Path]) -> None:
    span = OnnxEditor(load_model(toy_editors["copy-span"], device="cpu", threads=1))
    token = OnnxEditor(load_model(toy_editors["copy-token"], device="cpu", threads=1))
    examples = toy_examples(30, 1)
    results = {}
    for name, editor in (("span", span), ("token", token)):
        exact = actions = 0
        for example in examples:
            best = editor.beam(example.input, beam_size=5)[0]
            exact += best.tokens == example.output
            actions += best.actions
            assert editor.greedy(example.input).tokens  # greedy decodes too
        results[name] = (exact / len(examples), actions / len(examples))
    # Both learn the task; span copying takes far fewer decisions for the same output.
    assert results["span"][0] >= 0.3 and results["token"][0] >= 0.3
    assert results["span"][1] * 2 < results["token"][1]


# ---------------------------------------------------------------- data from commits


def lines(*items: str) -> tuple[str, ...]:
    return tuple(f"{item}\n" for item in items)


def rename_commit(sha: str, old: str, new: str) -> CommitRecord:
    body = lines(
        f"def load({old}):", f"    data = fetch({old})", "", f"    return parse({old}, data)"
    )
    after = "".join(line.replace(old, new) for line in body)
    return CommitRecord(
        "o/r", sha * 40, "0" * 40, 0, "rename", (FileChange("a.py", "".join(body), after),)
    )


def test_examples_are_the_next_hunk_of_each_replay_step(tmp_path: Path) -> None:
    path = tmp_path / "psf__requests.jsonl.xz"
    write_commits(path, [rename_commit("1", "url", "address")])
    examples = list(iter_examples([path], EditorConfig(radius=1), None))
    assert len(examples) == 1  # two hunks (lines 1-2 and line 4), one step
    first = examples[0]
    fragment = "".join(first.input[: first.fragment])
    assert fragment == "\n    return parse(url, data)\n"  # the hunk's line and one above
    assert "".join(first.output) == "\n    return parse(address, data)\n"
    # The context is the previous hunk, as its changed tokens.
    context = first.input[first.fragment :]
    assert context[0] == "<edit>" and "url" in context and "address" in context


def test_make_fragment_is_none_for_a_huge_fragment() -> None:
    base = ("x = [" + ", ".join(str(i) for i in range(200)) + "]\n",)
    ctx = EditContext({"a.py": base}, {"a.py": base}, (), Cursor("a.py", 0, 0))
    assert make_fragment(ctx, "a.py", 0, 1, EditorConfig()) is None


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (["a\n", "b\n", "c\n"], ["a\n", "B\n", "c\n"], (1, 2, ("B\n",))),
        (["a\n", "c\n"], ["a\n", "b\n", "c\n"], (1, 1, ("b\n",))),
        (["a\n", "b\n"], ["a\n", "b\n"], None),
    ],
)
def test_changed_lines(old: list[str], new: list[str], expected: object) -> None:
    assert changed_lines(old, new) == expected


def test_the_predictor_suggests_whole_line_edits_inside_the_file(
    toy_editors: dict[str, Path],
) -> None:
    editor = OnnxEditor(load_model(toy_editors["copy-span"], device="cpu", threads=1))
    base = lines("a = b(c)", "a = b(c)", "d = a")
    now = ("a = f(c)\n", *base[1:])
    ctx = EditContext(
        {"m.py": now}, {"m.py": base},
        (LiveEdit("m.py", 0, 1, base[:1], now[:1]),), Cursor("m.py", 0, 7),
    )  # fmt: skip
    suggestions = CopyPredictor(editor).suggest(ctx)
    for s in suggestions:
        assert s.path == "m.py" and 0 <= s.start_line <= s.end_line <= len(now)
        assert s.new_lines != now[s.start_line : s.end_line]
        assert 0.0 < s.score <= 1.0


def test_copy_systems_are_registered() -> None:
    names = system_names()
    assert {"copy-span", "copy-token", "seq2seq-copy"} <= set(names)


@pytest.mark.parametrize(("name", "max_span"), [("copy-span", None), ("copy-token", 1)])
def test_the_bundled_editors_load_verified_and_edit(name: str, max_span: int | None) -> None:
    editor = load_bundled_editor(name)
    assert editor.max_span == max_span and editor.editor == EditorConfig()
    manifest = editor.step_model.manifest
    assert not {"marshmallow-code/marshmallow", "PyCQA/flake8", "pylint-dev/pylint"} & set(
        manifest.metadata["train_repos"]
    )
    tokens = fragment_tokens("def f(url):\n    return fetch(url)\n")
    hyps = editor.beam(tokens, beam_size=3)
    assert 1 <= len(hyps) <= 3 and all(h.finished for h in hyps)
    assert [h.logp for h in hyps] == sorted((h.logp for h in hyps), reverse=True)
    predictor = make_predictor("seq2seq-copy" if max_span == 1 else name)
    assert isinstance(predictor, CopyPredictor) and predictor.editor.max_span == max_span


# ---------------------------------------------------------------- command line


def write_data_dir(root: Path) -> Path:
    commits = root / "commits"
    commits.mkdir(parents=True)
    for name in (
        "PyCQA__flake8",
        "marshmallow-code__marshmallow",
        "psf__requests",
        "pallets__click",
        "psf__black",
    ):
        write_commits(
            commits / f"{name}.jsonl.xz",
            [rename_commit("1", "url", "address"), rename_commit("2", "key", "name")],
        )
    return root


def test_train_export_and_eval_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_data_dir(tmp_path / "data")
    examples = tmp_path / "examples"
    small = ["--data", str(data), "--examples", str(examples), "--embedding", "16", "--hidden", "16",
             "--vocab-size", "40", "--max-steps", "3", "--eval-every", "2", "--quiet"]  # fmt: skip
    for system in ("copy-span", "copy-token", "copy-span-longest", "copy-span-nomarg"):
        run = tmp_path / system
        assert main(["train", "copy", "--system", system, "--out", str(run), *small]) == 0
        results = json.loads((run / "results.json").read_text())
        assert results["data"]["train_repos"] == ["psf/black"]  # never the validation ones
        assert results["steps"] == 3
        assert main(["export", "copy", str(run), "--out", str(tmp_path / "editors" / system)]) == 0
    assert main(["train", "copy", "--out", str(tmp_path / "copy-span"), *small]) == 2
    assert "already holds a run" in capsys.readouterr().err
    out = tmp_path / "copy.json"
    commits = [str(data / "commits" / "PyCQA__flake8.jsonl.xz")]
    assert main(["eval", "copy", "--commits", *commits, "--json", str(out),
                 "--models", str(tmp_path), "--beam", "3", "--quiet"]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    assert report["examples"] == 2  # two commits, one step each
    assert set(report["systems"]) == {
        "copy-span",
        "copy-token",
        "copy-span-longest",
        "copy-span-nomarg",
    }
    for metrics in report["systems"].values():
        assert 0.0 <= metrics["exact"] <= metrics["exact@3"] <= 1.0
        assert metrics["decoder_actions"] >= 0.0
    assert main(["eval", "copy", "--commits", *commits, "--json", str(out), "--models",
                 str(tmp_path / "nowhere"), "--quiet"]) == 2  # fmt: skip
    assert "no exported editor" in capsys.readouterr().err
