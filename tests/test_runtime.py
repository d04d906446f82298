"""ripple.models.runtime on real onnxruntime sessions: manifests, sha256 checks, feed checks,
devices, and loading a folder of models where one is broken."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ripple.models
from ripple.models.runtime import (
    FORMAT,
    Manifest,
    ModelError,
    TensorSpec,
    default_models_dir,
    file_sha256,
    load_model,
    load_models,
    read_manifest,
    write_manifest,
)

VOCAB = ["<pad>", "a", "b"]


def _doubler() -> onnx.ModelProto:
    """y = x + x (float32 (batch, 4)); total = sum of ids over axis 1 (int64 (batch, n))."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "x"], ["y"]),
            helper.make_node("ReduceSum", ["ids", "axes"], ["total"], keepdims=0),
        ],
        "doubler",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "n"]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("total", TensorProto.INT64, ["batch"]),
        ],
        initializer=[axes],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


DOUBLER_INPUTS = (
    TensorSpec("x", "float32", ("batch", 4)),
    TensorSpec("ids", "int64", ("batch", "n")),
)
DOUBLER_OUTPUTS = (TensorSpec("y", "float32", ("batch", 4)), TensorSpec("total", "int64", ("batch",)))


def make_model_dir(
    folder: Path,
    name: str = "doubler",
    proto: onnx.ModelProto | None = None,
    inputs: tuple[TensorSpec, ...] = DOUBLER_INPUTS,
    outputs: tuple[TensorSpec, ...] = DOUBLER_OUTPUTS,
) -> Path:
    """A complete model folder: model.onnx, vocab.json and a manifest with their sha256."""
    folder.mkdir(parents=True)
    onnx.save(proto or _doubler(), str(folder / "model.onnx"))
    (folder / "vocab.json").write_text(json.dumps(VOCAB), encoding="utf-8")
    manifest = Manifest(
        format=FORMAT,
        name=name,
        kind="test-doubler",
        onnx="model.onnx",
        sha256=file_sha256(folder / "model.onnx"),
        inputs=inputs,
        outputs=outputs,
        files={"vocab.json": file_sha256(folder / "vocab.json")},
        config={"width": 4},
        metadata={"created": "today"},
    )
    write_manifest(folder, manifest)
    return folder


def feeds(batch: int = 2, n: int = 3) -> dict[str, np.ndarray]:
    return {
        "x": np.arange(batch * 4, dtype=np.float32).reshape(batch, 4),
        "ids": np.arange(batch * n, dtype=np.int64).reshape(batch, n),
    }


def manifest_json(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return data


def rewrite_manifest(folder: Path, **changes: Any) -> None:
    data = {**manifest_json(folder), **changes}
    (folder / "manifest.json").write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model_dir(tmp_path / "doubler")


def test_load_and_run(model_dir: Path) -> None:
    model = load_model(model_dir, device="cpu")
    assert model.providers == ["CPUExecutionProvider"]
    assert model.directory == model_dir
    assert model.manifest == read_manifest(model_dir)
    out = model.run(feeds(batch=2, n=3))
    assert set(out) == {"y", "total"}
    np.testing.assert_array_equal(out["y"], 2 * feeds()["x"])
    np.testing.assert_array_equal(out["total"], [3, 12])
    # Dynamic sizes: another batch and length; and one output by name.
    only = model.run(feeds(batch=5, n=1), outputs=["total"])
    assert list(only) == ["total"]
    np.testing.assert_array_equal(only["total"], np.arange(5))
    assert model.read_json("vocab.json") == VOCAB


def test_manifest_round_trip(model_dir: Path, tmp_path: Path) -> None:
    manifest = read_manifest(model_dir)
    assert manifest.inputs == DOUBLER_INPUTS and manifest.outputs == DOUBLER_OUTPUTS
    assert manifest.config == {"width": 4} and manifest.metadata == {"created": "today"}
    other = tmp_path / "copy"
    other.mkdir()
    write_manifest(other, manifest)
    assert read_manifest(other) == manifest


def test_file_sha256_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = bytes(range(256)) * 5000  # more than one read block
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_default_models_dir_is_inside_the_models_package() -> None:
    assert default_models_dir() == Path(ripple.models.__file__).resolve().parent / "weights"


def test_tampered_onnx_file_is_refused(model_dir: Path) -> None:
    data = bytearray((model_dir / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (model_dir / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"model\.onnx: sha256 mismatch") as err:
        load_model(model_dir, device="cpu")
    assert err.value.path == model_dir / "model.onnx"


def test_tampered_extra_file_is_refused(model_dir: Path) -> None:
    (model_dir / "vocab.json").write_text(json.dumps(["<pad>", "evil"]), encoding="utf-8")
    with pytest.raises(ModelError, match=r"vocab\.json: sha256 mismatch"):
        load_model(model_dir, device="cpu")


def test_read_json_rechecks_and_only_reads_listed_files(model_dir: Path) -> None:
    model = load_model(model_dir, device="cpu")
    with pytest.raises(ModelError, match=r"manifest\.json is not one of the model's files"):
        model.read_json("manifest.json")
    (model_dir / "vocab.json").write_text("[]", encoding="utf-8")  # changed after loading
    with pytest.raises(ModelError, match="sha256 mismatch"):
        model.read_json("vocab.json")


@pytest.mark.parametrize(
    "content",
    [b"this is not an onnx graph" * 10, b"", None],
    ids=["garbage", "empty", "truncated"],
)
def test_unloadable_onnx_with_a_matching_sha256_is_a_model_error(
    model_dir: Path, content: bytes | None
) -> None:
    # The manifest vouches for the bytes, but onnxruntime cannot load them.
    if content is None:
        content = (model_dir / "model.onnx").read_bytes()[:100]
    (model_dir / "model.onnx").write_bytes(content)
    rewrite_manifest(model_dir, sha256=hashlib.sha256(content).hexdigest())
    with pytest.raises(ModelError, match=r"model\.onnx: not a model onnxruntime can load: ") as err:
        load_model(model_dir, device="cpu")
    assert "\n" not in str(err.value)


def test_missing_folder_manifest_and_onnx(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(ModelError, match="model folder does not exist"):
        load_model(tmp_path / "nowhere")
    (model_dir / "model.onnx").unlink()
    with pytest.raises(ModelError, match=r"model\.onnx: listed in the manifest but missing"):
        load_model(model_dir)
    (model_dir / "manifest.json").unlink()
    with pytest.raises(ModelError, match=r"no manifest\.json in the model folder"):
        load_model(model_dir)


BAD_MANIFESTS: list[tuple[str, Any, str]] = [
    # (case, manifest.json contents or a change to it, what the error says)
    ("not json", "{not json", "not valid JSON"),
    ("not an object", [1, 2], "must be a JSON object"),
    ("newer format", {"format": "ripple-onnx/2"}, "unsupported manifest format 'ripple-onnx/2'"),
    ("other format", {"format": "something-else"}, "not a ripple model manifest"),
    ("unknown field", {"extra": 1}, r"unknown manifest field\(s\) \['extra'\]"),
    ("bad sha256", {"sha256": "abc"}, "'sha256' must be 64 lowercase hex digits"),
    ("onnx outside the folder", {"onnx": "../model.onnx"}, "'onnx' must be a file name inside"),
    ("empty name", {"name": ""}, "'name' must be a non-empty string"),
    ("bad dtype", {"inputs": [{"name": "x", "dtype": "complex", "shape": [1]}]}, "unknown dtype"),
    ("bad shape", {"inputs": [{"name": "x", "dtype": "float32", "shape": [1.5]}]}, "shape must be"),
    ("no outputs", {"outputs": []}, "'outputs' must be a non-empty list"),
    ("files not an object", {"files": ["vocab.json"]}, "'files' must be an object"),
    ("files bad digest", {"files": {"vocab.json": "x"}}, "sha256 that is not 64"),
    ("config not an object", {"config": 3}, "'config' must be a JSON object"),
]


@pytest.mark.parametrize(("case", "change", "message"), BAD_MANIFESTS, ids=[c[0] for c in BAD_MANIFESTS])
def test_bad_manifest_is_one_clear_model_error(
    model_dir: Path, case: str, change: Any, message: str
) -> None:
    path = model_dir / "manifest.json"
    if isinstance(change, dict):
        rewrite_manifest(model_dir, **change)
    elif isinstance(change, str):
        path.write_text(change, encoding="utf-8")
    else:
        path.write_text(json.dumps(change), encoding="utf-8")
    with pytest.raises(ModelError, match=message) as err:
        load_model(model_dir, device="cpu")
    assert str(err.value).startswith(str(path)), case
    assert "\n" not in str(err.value)


def test_missing_manifest_field(model_dir: Path) -> None:
    data = manifest_json(model_dir)
    del data["kind"]
    (model_dir / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelError, match=r"missing manifest field\(s\) \['kind'\]"):
        read_manifest(model_dir)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ((TensorSpec("x", "float32", ("batch", 4)), TensorSpec("idz", "int64", ("batch", "n"))), "not the graph's"),
        ((TensorSpec("x", "float64", ("batch", 4)), DOUBLER_INPUTS[1]), "x is float64, the graph says float32"),
        ((TensorSpec("x", "float32", ("batch",)), DOUBLER_INPUTS[1]), "rank 1, the graph 2"),
        ((TensorSpec("x", "float32", ("batch", "width")), DOUBLER_INPUTS[1]), "fixes it at 4"),
    ],
)
def test_manifest_must_describe_the_graph(
    tmp_path: Path, inputs: tuple[TensorSpec, ...], message: str
) -> None:
    folder = make_model_dir(tmp_path / "m", inputs=inputs)
    with pytest.raises(ModelError, match=message):
        load_model(folder, device="cpu")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"x": feeds()["x"]}, "missing input\\(s\\) ids"),
        ({**feeds(), "extra": np.zeros(1)}, "unknown input\\(s\\) extra"),
        ({"x": feeds()["x"].astype(np.float64), "ids": feeds()["ids"]}, "input x must be float32, not float64"),
        ({"x": feeds()["x"], "ids": feeds()["ids"].astype(np.int32)}, "input ids must be int64, not int32"),
        ({"x": feeds()["x"][0], "ids": feeds()["ids"]}, "input x must have rank 2 \\(batch, 4\\), not 1"),
        ({"x": np.zeros((2, 5), np.float32), "ids": feeds()["ids"]}, "size 4 on axis 1"),
        ({"x": feeds(batch=2)["x"], "ids": feeds(batch=3)["ids"]}, "ids has batch = 3 on axis 0, but x has batch = 2"),
        ({"x": [[1.0, 2.0, 3.0, 4.0]], "ids": feeds()["ids"]}, "input x must be a numpy array, not list"),
    ],
    ids=["missing", "unknown", "dtype-float", "dtype-int", "rank", "fixed-size", "batch-mismatch", "list"],
)
def test_bad_feeds_are_model_errors(model_dir: Path, bad: dict[str, Any], message: str) -> None:
    model = load_model(model_dir, device="cpu")
    with pytest.raises(ModelError, match=message) as err:
        model.run(bad)
    assert str(err.value).startswith(f"{model_dir}: doubler: ")


def test_unknown_output_name(model_dir: Path) -> None:
    with pytest.raises(ModelError, match="unknown output\\(s\\) z \\(outputs: y, total\\)"):
        load_model(model_dir, device="cpu").run(feeds(), outputs=["z"])


def test_onnxruntime_failure_while_running_is_a_model_error(tmp_path: Path) -> None:
    # Reshape (batch, 4) to (-1, 3) loads, but fails at run time unless 3 divides 4 * batch.
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 3])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["r"])],
        "reshaper",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, ["rows", 3])],
        initializer=[shape],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    folder = make_model_dir(
        tmp_path / "reshaper",
        proto=proto,
        inputs=(TensorSpec("x", "float32", ("batch", 4)),),
        outputs=(TensorSpec("r", "float32", ("rows", 3)),),
    )
    model = load_model(folder, device="cpu")
    assert model.run({"x": np.zeros((3, 4), np.float32)})["r"].shape == (4, 3)
    with pytest.raises(ModelError, match="onnxruntime failed: ") as err:
        model.run({"x": np.zeros((1, 4), np.float32)})
    assert "\n" not in str(err.value)


def test_load_models_keeps_the_good_ones(tmp_path: Path) -> None:
    root = tmp_path / "models"
    make_model_dir(root / "a-good", name="good")
    bad = make_model_dir(root / "b-bad", name="bad")
    (bad / "vocab.json").write_text("[]", encoding="utf-8")
    make_model_dir(root / "c-same-name", name="good")
    (root / "not-a-model").mkdir()  # no manifest.json: not a model folder, no error
    (root / "README.txt").write_text("loose files are ignored", encoding="utf-8")
    models, errors = load_models(root, device="cpu")
    assert list(models) == ["good"]
    assert models["good"].directory == root / "a-good"
    assert models["good"].run(feeds())["total"].tolist() == [3, 12]
    assert [e.path for e in errors] == [bad / "vocab.json", root / "c-same-name"]
    assert "sha256 mismatch" in str(errors[0])
    assert "model name 'good' is already used by" in str(errors[1])


def test_load_models_on_a_missing_folder(tmp_path: Path) -> None:
    models, errors = load_models(tmp_path / "nowhere")
    assert models == {}
    assert len(errors) == 1 and "models folder does not exist" in str(errors[0])


def test_cuda_without_cuda_runs_on_cpu_with_a_warning(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # This machine has no CUDA libraries: the CUDA provider cannot start.
    with caplog.at_level(logging.WARNING, logger="ripple.models.runtime"):
        model = load_model(model_dir, device="cuda")
    assert model.providers == ["CPUExecutionProvider"]
    assert any("running on CPU" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(model.run(feeds())["y"], 2 * feeds()["x"])
    auto = load_model(model_dir, device="auto", threads=1)
    assert auto.providers == ["CPUExecutionProvider"]
    np.testing.assert_array_equal(auto.run(feeds())["total"], [3, 12])


def test_bad_device_and_threads_are_value_errors(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda"):
        load_model(model_dir, device="gpu")
    with pytest.raises(ValueError, match="threads must be at least 1"):
        load_model(model_dir, threads=0)


def test_write_manifest_refuses_an_invalid_manifest(model_dir: Path, tmp_path: Path) -> None:
    manifest = read_manifest(model_dir)
    with pytest.raises(ValueError, match="'sha256' must be 64"):
        write_manifest(tmp_path, replace(manifest, sha256="nope"))
    assert not (tmp_path / "manifest.json").exists()


def test_a_copied_model_folder_still_loads(model_dir: Path, tmp_path: Path) -> None:
    # Nothing in a model folder depends on where it lives.
    copy = tmp_path / "elsewhere" / "doubler"
    shutil.copytree(model_dir, copy)
    assert load_model(copy, device="cpu").run(feeds())["y"].shape == (2, 4)
