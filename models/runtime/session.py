"""Loading shipped models into onnxruntime sessions and running them safely.

``load_model`` reads the manifest, reads the ONNX file once and checks its sha256 (and
every other listed file's) before onnxruntime sees it, then builds the session from those
very bytes, so what runs is what was verified. The manifest's inputs and outputs must agree
with the graph's. ``OnnxModel.run`` checks every feed's name, dtype, rank and sizes against
the manifest, so a caller's mistake reads as one ``ModelError`` line, never an onnxruntime
traceback.

Devices: ``"cpu"``; ``"cuda"`` (the CUDA execution provider, or CPU with a logged warning
when it cannot start); ``"auto"`` (CUDA when onnxruntime offers it and it really starts,
else CPU, quietly). onnxruntime-gpu always *lists* the CUDA provider; whether it starts
depends on the CUDA and cuDNN libraries, so the session's own provider list decides, and
a failed start is remembered for the rest of the process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from hashlib import sha256
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort

from ripple.models.runtime.manifest import (
    MANIFEST_FILE,
    Manifest,
    ModelError,
    TensorSpec,
    read_manifest,
)

__all__ = ["DEVICES", "OnnxModel", "OnnxPart", "default_models_dir", "load_model", "load_models"]

log = logging.getLogger(__name__)

DEVICES: Final = ("auto", "cpu", "cuda")
CPU: Final = "CPUExecutionProvider"
CUDA: Final = "CUDAExecutionProvider"
# onnxruntime's severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
_ERROR_ONLY: Final = 3
_SILENT: Final = 4
# onnxruntime's tensor type strings -> numpy dtype names (manifest.DTYPES).
_ORT_TYPES: Final = {
    "tensor(bool)": "bool",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(float16)": "float16",
    "tensor(float)": "float32",
    "tensor(double)": "float64",
}

# None until a session has tried the CUDA provider; then whether it started.
_cuda_starts: bool | None = None


def default_models_dir() -> Path:
    """The bundled models: ``<ripple.models package folder>/weights``."""
    return Path(__file__).resolve().parent.parent / "weights"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1].strip() if text else type(exc).__name__


class OnnxModel:
    """A verified model and its onnxruntime session (built by ``load_model``)."""

    def __init__(
        self,
        manifest: Manifest,
        directory: Path,
        session: ort.InferenceSession,
        options: ort.SessionOptions | None = None,
    ) -> None:
        self.manifest = manifest
        self.directory = directory
        self.providers: list[str] = list(session.get_providers())
        self._session = session
        self._options = options if options is not None else _session_options(None)
        self._inputs = {spec.name: spec for spec in manifest.inputs}
        self._outputs = [spec.name for spec in manifest.outputs]

    def __repr__(self) -> str:
        return f"OnnxModel({self.manifest.name!r}, {str(self.directory)!r}, {self.providers})"

    def _error(self, message: str) -> ModelError:
        return ModelError(f"{self.manifest.name}: {message}", self.directory)

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        missing = [name for name in self._inputs if name not in feeds]
        unknown = sorted(name for name in feeds if name not in self._inputs)
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing input(s) {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown input(s) {', '.join(unknown)}")
            raise self._error(f"{'; '.join(parts)} (inputs: {', '.join(self._inputs)})")
        sizes: dict[str, tuple[int, str]] = {}  # symbolic dim -> (size, the input that set it)
        for name, spec in self._inputs.items():
            value = feeds[name]
            if not isinstance(value, np.ndarray):
                raise self._error(f"input {name} must be a numpy array, not {type(value).__name__}")
            if value.dtype.name != spec.dtype:
                raise self._error(f"input {name} must be {spec.dtype}, not {value.dtype.name}")
            if value.ndim != len(spec.shape):
                raise self._error(
                    f"input {name} must have rank {len(spec.shape)} {_shape_text(spec)}, "
                    f"not {value.ndim} {tuple(value.shape)}"
                )
            for axis, (want, got) in enumerate(zip(spec.shape, value.shape, strict=True)):
                if isinstance(want, int):
                    if want != got:
                        raise self._error(
                            f"input {name} must have size {want} on axis {axis} "
                            f"{_shape_text(spec)}, not {got}"
                        )
                elif want in sizes and sizes[want][0] != got:
                    size, other = sizes[want]
                    raise self._error(
                        f"input {name} has {want} = {got} on axis {axis}, but {other} has {want} = {size}"
                    )
                else:
                    sizes.setdefault(want, (got, name))

    def run(
        self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run the graph on ``feeds`` (input name -> array); the named outputs (default all).

        Feeds are checked against the manifest first; any failure, the checks' or
        onnxruntime's, is a ``ModelError`` naming the model and the problem.
        """
        self._check_feeds(feeds)
        names = list(self._outputs if outputs is None else outputs)
        unknown = [name for name in names if name not in self._outputs]
        if unknown:
            raise self._error(
                f"unknown output(s) {', '.join(unknown)} (outputs: {', '.join(self._outputs)})"
            )
        arrays = {name: np.ascontiguousarray(feeds[name]) for name in self._inputs}
        try:
            results = self._session.run(names, arrays)
        except Exception as exc:  # onnxruntime's pybind errors share no public base class
            raise self._error(f"onnxruntime failed: {_one_line(exc)}") from None
        return dict(zip(names, results, strict=True))

    def part(self, name: str) -> OnnxPart:
        """A second graph of this model, listed in the manifest's files (sha256 checked).

        For models that run as more than one graph (an encoder and a decoder step); the
        part runs on the same providers as the main graph.
        """
        if name not in self.manifest.files:
            raise self._error(
                f"{name} is not one of the model's files ({', '.join(self.manifest.files) or 'none'})"
            )
        path = self.directory / name
        data = _read_verified(path, self.manifest.files[name])
        device = "cuda" if CUDA in self.providers else "cpu"
        session = _create_session(data, path, self._options, device)
        return OnnxPart(f"{self.manifest.name}/{name}", path, session)

    def read_json(self, name: str) -> Any:
        """The parsed JSON of a file the manifest lists (its sha256 is checked again)."""
        if name not in self.manifest.files:
            raise self._error(
                f"{name} is not one of the model's files ({', '.join(self.manifest.files) or 'none'})"
            )
        path = self.directory / name
        data = _read_verified(path, self.manifest.files[name])
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"not valid JSON ({exc})", path) from None


class OnnxPart:
    """A further graph of a model (see ``OnnxModel.part``): run by name, errors as ModelError."""

    def __init__(self, name: str, path: Path, session: ort.InferenceSession) -> None:
        self.name = name
        self.path = path
        self._session = session
        self.inputs = [node.name for node in session.get_inputs()]
        self.outputs = [node.name for node in session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [name for name in self.inputs if name not in feeds]
        if missing:
            raise ModelError(f"{self.name}: missing input(s) {', '.join(missing)}", self.path)
        arrays = {name: np.ascontiguousarray(feeds[name]) for name in self.inputs}
        try:
            results = self._session.run(self.outputs, arrays)
        except Exception as exc:  # onnxruntime's pybind errors share no public base class
            raise ModelError(f"{self.name}: onnxruntime failed: {_one_line(exc)}", self.path) from None
        return dict(zip(self.outputs, results, strict=True))


def _shape_text(spec: TensorSpec) -> str:
    return "(" + ", ".join(str(d) for d in spec.shape) + ")"


def _read_verified(path: Path, expected: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError("listed in the manifest but missing", path) from None
    except OSError as exc:
        raise ModelError(f"cannot read: {exc.strerror or exc}", path) from None
    actual = sha256(data).hexdigest()
    if actual != expected:
        raise ModelError(
            f"sha256 mismatch, the file was changed or damaged (manifest {expected[:12]}..., "
            f"file {actual[:12]}...)",
            path,
        )
    return data


def _session_options(threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = _ERROR_ONLY
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def _create_session(
    data: bytes, path: Path, options: ort.SessionOptions, device: str
) -> ort.InferenceSession:
    global _cuda_starts
    want_cuda = (
        device in ("auto", "cuda")
        and CUDA in ort.get_available_providers()
        and _cuda_starts is not False
    )
    providers = [CUDA, CPU] if want_cuda else [CPU]
    # A CUDA provider that cannot start logs an error and falls back to CPU: expected under
    # "auto", reported below as one warning under "cuda", so onnxruntime keeps quiet meanwhile.
    ort.set_default_logger_severity(_SILENT if want_cuda else _ERROR_ONLY)
    try:
        session = ort.InferenceSession(data, options, providers=providers)
    except Exception as exc:
        raise ModelError(f"not a model onnxruntime can load: {_one_line(exc)}", path) from None
    finally:
        ort.set_default_logger_severity(_ERROR_ONLY)
    if want_cuda:
        _cuda_starts = CUDA in session.get_providers()
    if device == "cuda" and CUDA not in session.get_providers():
        log.warning(
            "%s: the CUDA execution provider is not available here (onnxruntime-gpu needs "
            "CUDA 13 and cuDNN 9); running on CPU",
            path,
        )
    return session


def _check_graph(manifest: Manifest, session: ort.InferenceSession, path: Path) -> None:
    """The manifest's inputs and outputs must be the graph's: names, dtypes, ranks, sizes."""
    for what, specs, nodes in (
        ("inputs", manifest.inputs, session.get_inputs()),
        ("outputs", manifest.outputs, session.get_outputs()),
    ):
        graph = {node.name: node for node in nodes}
        if set(graph) != {spec.name for spec in specs}:
            raise ModelError(
                f"the manifest's {what} ({', '.join(s.name for s in specs)}) are not the "
                f"graph's ({', '.join(graph)})",
                path,
            )
        for spec in specs:
            node = graph[spec.name]
            dtype = _ORT_TYPES.get(node.type, node.type)
            if dtype != spec.dtype:
                raise ModelError(
                    f"the manifest says {spec.name} is {spec.dtype}, the graph says {dtype}", path
                )
            shape = node.shape
            if shape is None:
                continue
            if len(shape) != len(spec.shape):
                raise ModelError(
                    f"the manifest gives {spec.name} rank {len(spec.shape)}, the graph {len(shape)}",
                    path,
                )
            for axis, (want, fixed) in enumerate(zip(spec.shape, shape, strict=True)):
                if isinstance(fixed, int) and want != fixed:
                    raise ModelError(
                        f"the manifest gives {spec.name} axis {axis} as {want!r}, "
                        f"the graph fixes it at {fixed}",
                        path,
                    )


def load_model(model_dir: Path, device: str = "auto", threads: int | None = None) -> OnnxModel:
    """Verify and load the model in ``model_dir``; ``ModelError`` if anything is wrong.

    Every sha256 in the manifest is checked before a session is created. ``device`` is
    ``"auto"``, ``"cpu"`` or ``"cuda"`` (see the module docstring); ``threads`` caps
    onnxruntime's intra-op threads (None: onnxruntime's default, one per core).
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    options = _session_options(threads)
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    onnx_path = model_dir / manifest.onnx
    data = _read_verified(onnx_path, manifest.sha256)
    for name, digest in manifest.files.items():
        _read_verified(model_dir / name, digest)
    session = _create_session(data, onnx_path, options, device)
    _check_graph(manifest, session, model_dir / MANIFEST_FILE)
    return OnnxModel(manifest, model_dir, session, options)


def load_models(
    root: Path, device: str = "auto", threads: int | None = None
) -> tuple[dict[str, OnnxModel], list[ModelError]]:
    """Load every model folder (an immediate subfolder with a manifest.json) under ``root``.

    Returns the models by manifest name and one ``ModelError`` per folder that failed; a
    bad model never keeps the others from loading. A missing ``root`` is one error.
    """
    models: dict[str, OnnxModel] = {}
    errors: list[ModelError] = []
    root = Path(root)
    if not root.is_dir():
        return models, [ModelError("models folder does not exist", root)]
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not (folder / MANIFEST_FILE).is_file():
            continue
        try:
            model = load_model(folder, device=device, threads=threads)
        except ModelError as exc:
            errors.append(exc)
            continue
        name = model.manifest.name
        if name in models:
            errors.append(
                ModelError(f"model name {name!r} is already used by {models[name].directory}", folder)
            )
            continue
        models[name] = model
    return models, errors
