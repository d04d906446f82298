"""The manifest of a shipped model: what a model folder holds and how to check it.

A model folder is::

    manifest.json   this file: format, name, kind, the ONNX file and its sha256, the
                    graph's inputs and outputs, other files with their sha256, the model's
                    hyper-parameters and free-form metadata (training data, metrics,
                    export tool versions, creation date)
    model.onnx      the graph with its weights
    vocab.json ...  any other files the code driving the model needs

``read_manifest`` checks the structure and types of every field and raises ``ModelError``
with one line naming the folder and the problem; it never checks file contents (that is
``load_model``'s job, before onnxruntime reads a byte).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "DTYPES",
    "FORMAT",
    "MANIFEST_FILE",
    "Manifest",
    "ModelError",
    "TensorSpec",
    "file_sha256",
    "manifest_from_dict",
    "read_manifest",
    "write_manifest",
]

FORMAT: Final = "ripple-onnx/1"
MANIFEST_FILE: Final = "manifest.json"
# Element types a manifest may name: numpy's dtype names, as ``ndarray.dtype.name`` spells them.
DTYPES: Final = frozenset(
    {"bool", "int8", "uint8", "int16", "int32", "int64", "float16", "float32", "float64"}
)
_FIELDS: Final = (
    "format",
    "name",
    "kind",
    "onnx",
    "sha256",
    "inputs",
    "outputs",
    "files",
    "config",
    "metadata",
)
_OPTIONAL: Final = frozenset({"files", "config", "metadata"})
_HEX: Final = frozenset("0123456789abcdef")


class ModelError(Exception):
    """A model that cannot be used: one line naming the model folder or file and the problem.

    ``path`` is the folder or file at fault when there is one; ``str(error)`` starts with it.
    """

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(f"{path}: {message}" if path is not None else message)
        self.path = path


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a graph: name, numpy dtype name, shape.

    A shape entry is a fixed size (int) or a symbolic dimension (str, e.g. ``"batch"``):
    every tensor fed in one call must give the same size to the same symbolic name.
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Manifest:
    """Everything ripple needs to know about a model folder before loading it."""

    format: str  # FORMAT
    name: str  # unique among loaded models, e.g. "zhao-ia"
    kind: str  # which code can drive the model, e.g. "zhao-ia"
    onnx: str  # the ONNX file, relative to the model folder
    sha256: str  # of the ONNX file
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    files: dict[str, str] = field(default_factory=dict)  # other file -> its sha256
    config: dict[str, Any] = field(default_factory=dict)  # model hyper-parameters
    metadata: dict[str, Any] = field(default_factory=dict)  # data, metrics, tools, date

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "name": self.name,
            "kind": self.kind,
            "onnx": self.onnx,
            "sha256": self.sha256,
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
            "files": dict(self.files),
            "config": self.config,
            "metadata": self.metadata,
        }


def file_sha256(path: Path) -> str:
    """The lowercase hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _is_plain_file_name(value: object) -> bool:
    # A file of the model lives in the model folder itself: no folders, no way out of it.
    return (
        isinstance(value, str)
        and value not in ("", ".", "..", MANIFEST_FILE)
        and "/" not in value
        and "\\" not in value
        and "\x00" not in value
    )


def _tensor_specs(value: object, what: str) -> tuple[TensorSpec, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"'{what}' must be a non-empty list of tensors")
    specs = []
    for i, item in enumerate(value):
        where = f"{what}[{i}]"
        if not isinstance(item, dict) or set(item) != {"name", "dtype", "shape"}:
            raise ValueError(f"{where} must be an object with exactly name, dtype and shape")
        name, dtype, shape = item["name"], item["dtype"], item["shape"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.name must be a non-empty string")
        if dtype not in DTYPES:
            raise ValueError(f"{where} ({name}): unknown dtype {dtype!r}; one of {sorted(DTYPES)}")
        if not isinstance(shape, list) or not all(
            (isinstance(d, int) and not isinstance(d, bool) and d >= 0)
            or (isinstance(d, str) and d)
            for d in shape
        ):
            raise ValueError(
                f"{where} ({name}): shape must be a list of sizes (int >= 0) or dimension names"
            )
        specs.append(TensorSpec(name=name, dtype=dtype, shape=tuple(shape)))
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"'{what}' names a tensor twice: {names}")
    return tuple(specs)


def manifest_from_dict(data: object) -> Manifest:
    """Check a parsed manifest.json and build the ``Manifest``; ValueError says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("the manifest must be a JSON object")
    fmt = data.get("format")
    if fmt != FORMAT:
        if isinstance(fmt, str) and fmt.startswith("ripple-onnx/"):
            raise ValueError(f"unsupported manifest format {fmt!r} (this ripple reads {FORMAT})")
        raise ValueError(f"not a ripple model manifest (format {fmt!r}, expected {FORMAT!r})")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown manifest field(s) {unknown}")
    missing = [name for name in _FIELDS if name not in data and name not in _OPTIONAL]
    if missing:
        raise ValueError(f"missing manifest field(s) {missing}")
    for name in ("name", "kind"):
        if not isinstance(data[name], str) or not data[name]:
            raise ValueError(f"'{name}' must be a non-empty string")
    if not _is_plain_file_name(data["onnx"]):
        raise ValueError(f"'onnx' must be a file name inside the model folder, not {data['onnx']!r}")
    if not _is_sha256(data["sha256"]):
        raise ValueError("'sha256' must be 64 lowercase hex digits")
    files = data.get("files", {})
    if not isinstance(files, dict):
        raise ValueError("'files' must be an object of file name -> sha256")
    for file_name, digest in files.items():
        if not _is_plain_file_name(file_name) or file_name == data["onnx"]:
            raise ValueError(f"'files' lists {file_name!r}, which is not a plain, separate file name")
        if not _is_sha256(digest):
            raise ValueError(f"'files' gives {file_name!r} a sha256 that is not 64 lowercase hex digits")
    for name in ("config", "metadata"):
        if not isinstance(data.get(name, {}), dict):
            raise ValueError(f"'{name}' must be a JSON object")
    return Manifest(
        format=FORMAT,
        name=data["name"],
        kind=data["kind"],
        onnx=data["onnx"],
        sha256=data["sha256"],
        inputs=_tensor_specs(data["inputs"], "inputs"),
        outputs=_tensor_specs(data["outputs"], "outputs"),
        files=dict(files),
        config=dict(data.get("config", {})),
        metadata=dict(data.get("metadata", {})),
    )


def read_manifest(model_dir: Path) -> Manifest:
    """Read and check ``model_dir/manifest.json``; ``ModelError`` on any problem."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError("model folder does not exist", model_dir)
    path = model_dir / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"no {MANIFEST_FILE} in the model folder", model_dir) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read the manifest: {exc}", path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"not valid JSON ({exc})", path) from None
    try:
        return manifest_from_dict(data)
    except ValueError as exc:
        raise ModelError(str(exc), path) from None


def write_manifest(model_dir: Path, manifest: Manifest) -> None:
    """Write ``model_dir/manifest.json`` (checked first, replaced atomically)."""
    data = manifest.to_dict()
    manifest_from_dict(json.loads(json.dumps(data)))  # the file written must read back
    path = model_dir / MANIFEST_FILE
    tmp = path.with_name(f".{MANIFEST_FILE}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
