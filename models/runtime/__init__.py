"""ripple.models.runtime: shipped models as ONNX + a JSON manifest, run by onnxruntime.

numpy and onnxruntime only (never torch): ``read_manifest`` / ``write_manifest`` describe a
model folder, ``load_model`` verifies every file's sha256 and builds the session,
``OnnxModel.run`` checks feeds against the manifest, and ``load_models`` loads a whole
folder of models (the bundled ones live in ``default_models_dir()``).
"""

from __future__ import annotations

from ripple.models.runtime.manifest import (
    FORMAT,
    MANIFEST_FILE,
    Manifest,
    ModelError,
    TensorSpec,
    file_sha256,
    read_manifest,
    write_manifest,
)
from ripple.models.runtime.session import (
    DEVICES,
    OnnxModel,
    OnnxPart,
    default_models_dir,
    load_model,
    load_models,
)

__all__ = [
    "DEVICES",
    "FORMAT",
    "MANIFEST_FILE",
    "Manifest",
    "ModelError",
    "OnnxModel",
    "OnnxPart",
    "TensorSpec",
    "default_models_dir",
    "file_sha256",
    "load_model",
    "load_models",
    "read_manifest",
    "write_manifest",
]
