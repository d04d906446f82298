"""``ripple export zhao``: a small random IA checkpoint exported to ONNX, then checked against
torch through ripple.models.runtime at sizes the exporter never saw."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ripple.models.nets.zhao import ImplicitAttention, ZhaoConfig, build_zhao_model
from ripple.models.runtime import ModelError, TensorSpec, file_sha256, load_model, read_manifest
from ripple.server.cli import main
from ripple.training.checkpoints import save_model
from ripple.training.export import (
    EXPORT_SAMPLE,
    IA_INPUTS,
    ExportError,
    _model_folder_in_progress,
    _package_ia,
    check_parity,
    random_ia_feeds,
)
from ripple.training.synthetic import VOCAB, SyntheticEditDataset, collate_edits, generate_split

SMALL = ZhaoConfig(hidden=32, heads=4, dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_ia() -> ImplicitAttention:
    torch.manual_seed(0)
    model = build_zhao_model("ia", SMALL).eval()
    assert isinstance(model, ImplicitAttention)
    return model


def write_checkpoint(folder: Path, model: torch.nn.Module, kind: str = "ia") -> Path:
    """A folder as the trainer writes ``best/``: weights + a state JSON with model_config."""
    state = {
        "step": 40,
        "best_step": 30,
        "best_metric": 0.5,
        "model_config": {"kind": kind, **SMALL.to_dict(), "settings": {"task": "Append1"}},
    }
    save_model(folder, model.state_dict(), state)
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImplicitAttention, Path]:
    """The small IA and the model folder ``ripple export zhao`` made of it."""
    root = tmp_path_factory.mktemp("export")
    model = small_ia()
    checkpoint = write_checkpoint(root / "run" / "best", model)
    vocab = root / "vocab.json"
    vocab.write_text(json.dumps(list(VOCAB.tokens)), encoding="utf-8")
    out = root / "models" / "zhao-ia"
    code = main(["export", "zhao", str(checkpoint), "--out", str(out), "--vocab", str(vocab), "--quiet"])
    assert code == 0
    return model, out


def torch_logits(model: ImplicitAttention, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        position, content = model({k: torch.from_numpy(v) for k, v in feeds.items()})
    return [position.numpy(), content.numpy()]


def synthetic_feeds(size: int) -> dict[str, np.ndarray]:
    """A collated batch of real synthetic instances (ragged, padded)."""
    items = SyntheticEditDataset(generate_split("MetaContextAppend13", "dev", seed=3, size=size))
    batch = collate_edits([items[i] for i in range(size)])
    return {name: batch[name].numpy() for name in IA_INPUTS}


def test_the_output_folder_holds_the_model_and_nothing_is_left_behind(
    exported: tuple[ImplicitAttention, Path],
) -> None:
    _, out = exported
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "vocab.json"]
    assert [p.name for p in out.parent.iterdir()] == ["zhao-ia"]  # no temporary folders


def test_manifest_lists_shapes_config_and_sha256(exported: tuple[ImplicitAttention, Path]) -> None:
    model, out = exported
    manifest = read_manifest(out)
    assert (manifest.name, manifest.kind, manifest.onnx) == ("zhao-ia", "zhao-ia", "model.onnx")
    assert manifest.inputs == (
        TensorSpec("state", "int64", ("batch", "state")),
        TensorSpec("state_length", "int64", ("batch",)),
        TensorSpec("edit_position", "int64", ("batch", "edits")),
        TensorSpec("edit_content", "int64", ("batch", "edits")),
        TensorSpec("edit_explicit", "int64", ("batch", "edits")),
    )
    assert [(o.name, o.dtype, len(o.shape)) for o in manifest.outputs] == [
        ("position_logits", "float32", 3),
        ("content_logits", "float32", 3),
    ]
    assert manifest.outputs[1].shape == ("batch", "edits", SMALL.vocab_size)
    assert manifest.config == SMALL.to_dict()
    assert manifest.sha256 == file_sha256(out / "model.onnx")
    assert manifest.files == {"vocab.json": file_sha256(out / "vocab.json")}
    meta = manifest.metadata
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())
    assert meta["source"]["step"] == 40 and meta["source"]["training"] == {"task": "Append1"}
    assert {"torch", "onnx", "onnxscript", "onnxruntime", "opset"} <= set(meta["export"])
    assert 0 <= meta["parity"]["max_abs_diff"] <= 1e-4
    assert load_model(out, device="cpu").read_json("vocab.json") == list(VOCAB.tokens)


@pytest.mark.parametrize(
    "shape",
    [(1, 5, 2), (3, 30, 20), (1, 100, 3), (3, 11, 7), "synthetic"],
    ids=lambda s: "x".join(map(str, s)) if isinstance(s, tuple) else s,
)
def test_onnx_matches_torch_at_other_sizes(
    exported: tuple[ImplicitAttention, Path], shape: tuple[int, int, int] | str
) -> None:
    model, out = exported
    if isinstance(shape, str):
        feeds = synthetic_feeds(3)
    else:
        feeds = random_ia_feeds(np.random.default_rng(7), *shape, SMALL)
    b, s = feeds["state"].shape
    t = feeds["edit_content"].shape[1]
    got = load_model(out, device="cpu", threads=1).run(feeds)
    want = torch_logits(model, feeds)
    assert got["position_logits"].shape == (b, t, s + t)
    assert got["content_logits"].shape == (b, t, SMALL.vocab_size)
    for name, expected in zip(("position_logits", "content_logits"), want, strict=True):
        actual = got[name]
        masked = np.isneginf(expected)
        np.testing.assert_array_equal(np.isneginf(actual), masked)  # masked stays -inf
        assert np.isfinite(expected[~masked]).all() and np.isfinite(actual[~masked]).all()
        assert np.max(np.abs(expected[~masked] - actual[~masked])) <= 1e-4
    # Position logits do mask something: at least <E> and every padded state slot.
    assert np.isneginf(got["position_logits"]).any()


def test_the_export_sample_size_is_not_baked_in(exported: tuple[ImplicitAttention, Path]) -> None:
    _, out = exported
    model = load_model(out, device="cpu")
    b, s, t = EXPORT_SAMPLE
    for shape in [(b + 2, s, t), (b, s + 9, t), (b, s, t + 5)]:
        feeds = random_ia_feeds(np.random.default_rng(0), *shape, SMALL)
        assert model.run(feeds)["position_logits"].shape == (shape[0], shape[2], shape[1] + shape[2])


def test_a_tampered_export_fails_to_load(
    exported: tuple[ImplicitAttention, Path], tmp_path: Path
) -> None:
    _, out = exported
    copy_dir = tmp_path / "zhao-ia"
    shutil.copytree(out, copy_dir)
    data = bytearray((copy_dir / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    (copy_dir / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"model\.onnx: sha256 mismatch"):
        load_model(copy_dir, device="cpu")


def test_parity_check_catches_a_model_that_differs(exported: tuple[ImplicitAttention, Path]) -> None:
    model, out = exported
    onnx_model = load_model(out, device="cpu", threads=1)
    assert check_parity(model, onnx_model) <= 1e-4
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.content_out.bias += 0.01
    with pytest.raises(ExportError, match=r"content_logits at .*: max \|diff\| 0\.01"):
        check_parity(changed, onnx_model)


def _repackage(model: ImplicitAttention, traced: Path, target: Path, tolerance: float) -> None:
    """The export's steps after tracing, on a copy of an ONNX file already traced from ``model``
    (tracing takes seconds; the packaging, checking and moving into place are what differ)."""
    with _model_folder_in_progress(target) as built:
        shutil.copy(traced, built / "model.onnx")
        _package_ia(
            model,
            built,
            name="zhao-ia",
            vocab=None,
            metadata=None,
            opset=None,
            tolerance=tolerance,
            progress=None,
        )


def test_a_refused_export_keeps_the_earlier_one_and_leaves_nothing(
    exported: tuple[ImplicitAttention, Path], tmp_path: Path
) -> None:
    model, out = exported
    target = tmp_path / "zhao-ia"
    shutil.copytree(out, target)
    before = (target / "manifest.json").read_bytes()
    with pytest.raises(ExportError, match=r"max \|diff\|"):
        _repackage(model, out / "model.onnx", target, tolerance=-1.0)  # no export can meet it
    assert (target / "manifest.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["zhao-ia"]


def test_an_export_replaces_the_earlier_one(
    exported: tuple[ImplicitAttention, Path], tmp_path: Path
) -> None:
    model, out = exported
    target = tmp_path / "zhao-ia"
    shutil.copytree(out, target)
    (target / "stale.txt").write_text("from the earlier export")
    _repackage(model, out / "model.onnx", target, tolerance=1e-4)
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "model.onnx"]
    assert [p.name for p in tmp_path.iterdir()] == ["zhao-ia"]
    assert read_manifest(target).files == {}  # no --vocab this time
    assert load_model(target, device="cpu").run(random_ia_feeds(np.random.default_rng(0), 1, 9, 4, SMALL))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "does not exist"),
        ("not-a-checkpoint", "is not a checkpoint (no model.safetensors)"),
        ("ir", "Zhao IR, which cannot be exported: its LSTMs read packed sequences"),
        ("vocab", "the vocabulary has 2 entries but the model has 14"),
        ("occupied-out", "holds other files"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    checkpoint = tmp_path / "ckpt"
    out = tmp_path / "out"
    extra: list[str] = []
    if case == "not-a-checkpoint":
        checkpoint.mkdir()
    elif case == "ir":
        torch.manual_seed(0)
        write_checkpoint(checkpoint, build_zhao_model("ir", SMALL), kind="ir")
    elif case in ("vocab", "occupied-out"):
        write_checkpoint(checkpoint, small_ia())
        vocab = tmp_path / "vocab.json"
        vocab.write_text(json.dumps(["a", "b"] if case == "vocab" else list(VOCAB.tokens)))
        extra = ["--vocab", str(vocab)]
        if case == "occupied-out":
            out.mkdir()
            (out / "notes.txt").write_text("mine")
    code = main(["export", "zhao", str(checkpoint), "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ripple: error: ") and message in err and err.count("\n") == 1
    assert case == "occupied-out" or not out.exists()


@pytest.mark.parametrize("command", [["export", "zhao"], ["bench", "onnx"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: ripple {' '.join(command)}") and len(text.splitlines()) >= 8
