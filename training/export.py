"""``ripple export zhao``: a trained Zhao IA checkpoint -> an ONNX model folder ripple can serve.

The checkpoint (a run's ``best/`` or a ``checkpoints/step-*`` folder of ``ripple train
synthetic``) is rebuilt with its stored ``model_config`` and exported with
``torch.onnx.export(..., dynamo=True)``. Batch size, state length and edit count are
dynamic (``torch.export.Dim``), so one graph serves every request. The graph's inputs are
exactly the batch keys IA's forward reads (all int64); its outputs are ``position_logits``
(B, T, S + T), with masked positions at -inf exactly as in torch, and ``content_logits``
(B, T, vocab).

The folder gets ``model.onnx``, ``manifest.json`` (shapes, config, sha256 of every file,
provenance) and ``vocab.json`` when a vocabulary is given. Before it is moved into place,
the export is loaded through ``ripple.models.runtime`` and compared with torch on random
batches whose sizes differ from the export sample; an export whose finite logits differ by
more than 1e-4, or whose -inf entries differ, is deleted and refused. The folder is built
next to ``--out`` under a temporary name and renamed into place, so a reader never sees a
half-written model.

Only IA is exported. IR and E read their inputs through ``pack_padded_sequence``, whose
batch sizes come from the data: ``torch.export`` cannot trace that with dynamic shapes
(IR's ``int(position.max())`` check is data-dependent too), so they stay torch-only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from torch import nn

from ripple.models.errors import UsageError
from ripple.models.nets.zhao import ImplicitAttention, ZhaoConfig, build_zhao_model
from ripple.models.runtime import (
    FORMAT,
    MANIFEST_FILE,
    Manifest,
    ModelError,
    OnnxModel,
    TensorSpec,
    file_sha256,
    load_model,
    write_manifest,
)
from ripple.training.progress import Progress

__all__ = [
    "IA_INPUTS",
    "IA_KIND",
    "IA_OUTPUTS",
    "PARITY_SHAPES",
    "PARITY_TOLERANCE",
    "ExportError",
    "check_parity",
    "export_ia_model",
    "export_zhao",
    "parity_diff",
    "random_ia_feeds",
    "record_parity",
    "run",
    "write_model_manifest",
]

IA_KIND: Final = "zhao-ia"
# The batch keys ImplicitAttention.forward reads, in the graph's input order.
IA_INPUTS: Final = ("state", "state_length", "edit_position", "edit_content", "edit_explicit")
IA_OUTPUTS: Final = ("position_logits", "content_logits")
ONNX_FILE: Final = "model.onnx"
VOCAB_FILE: Final = "vocab.json"
PARITY_TOLERANCE: Final = 1e-4
# (batch, state slots, edits) traced by the exporter, and the parity batches: none of the
# latter has the sample's sizes, so a size baked into the graph would show as a failure.
EXPORT_SAMPLE: Final = (3, 11, 7)
PARITY_SHAPES: Final = ((1, 6, 1), (3, 23, 9), (2, 40, 16), (1, 64, 8))
# Synthetic vocabulary ids of <S> and <E> (training.synthetic.SyntheticVocab).
_START, _END = 1, 2


class ExportError(Exception):
    """An export that must not be shipped (torch and onnxruntime disagree, or it failed)."""


def random_ia_feeds(
    rng: np.random.Generator,
    batch: int,
    state: int,
    edits: int,
    config: ZhaoConfig,
    ragged: bool = True,
) -> dict[str, np.ndarray]:
    """A valid random IA batch as int64 arrays: (batch, state) slots, (batch, edits) edits.

    Row 0 fills every slot and edit; with ``ragged`` the other rows are shorter and padded,
    as collated batches are. States are ``<S> symbols <E>``; each edit points at an initial
    token other than ``<E>`` or at a token an earlier edit inserted (the implicit positions
    of Zhao et al. §2), so every gather the model makes is in range.
    """
    if state < 2 or edits < 1:
        raise ValueError("an IA batch needs at least 2 state slots (<S> <E>) and 1 edit")
    symbols = np.arange(4 if config.vocab_size > 4 else 1, config.vocab_size)
    feeds = {
        "state": np.full((batch, state), config.pad_id, dtype=np.int64),
        "state_length": np.zeros(batch, dtype=np.int64),
        "edit_position": np.zeros((batch, edits), dtype=np.int64),
        "edit_content": np.full((batch, edits), config.pad_id, dtype=np.int64),
        "edit_explicit": np.zeros((batch, edits), dtype=np.int64),
    }
    for row in range(batch):
        full = row == 0 or not ragged
        length = state if full else int(rng.integers(2, state + 1))
        count = edits if full else int(rng.integers(1, edits + 1))
        feeds["state"][row, 0], feeds["state"][row, length - 1] = _START, _END
        feeds["state"][row, 1 : length - 1] = rng.choice(symbols, size=length - 2)
        feeds["state_length"][row] = length
        contents = rng.choice(np.append(symbols, config.delete_id), size=count)
        feeds["edit_content"][row, :count] = contents
        for t in range(count):
            inserted = [length + k for k in range(t) if contents[k] != config.delete_id]
            choices = list(range(length - 1)) + inserted
            feeds["edit_position"][row, t] = choices[int(rng.integers(len(choices)))]
            feeds["edit_explicit"][row, t] = int(rng.integers(0, length + t))
    return feeds


class _IAGraph(nn.Module):
    """IA with positional tensor inputs, the form ``torch.onnx.export`` traces."""

    def __init__(self, model: ImplicitAttention) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        state: torch.Tensor,
        state_length: torch.Tensor,
        edit_position: torch.Tensor,
        edit_content: torch.Tensor,
        edit_explicit: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(
            {
                "state": state,
                "state_length": state_length,
                "edit_position": edit_position,
                "edit_content": edit_content,
                "edit_explicit": edit_explicit,
            }
        )


@contextlib.contextmanager
def _exporter_quiet() -> Iterator[None]:
    """Keep the exporter's progress lines, warnings and log records off the user's terminal."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _trace_ia(model: ImplicitAttention, path: Path, opset: int | None) -> None:
    """Export ``model`` to ``path`` with dynamic batch, state length and edit count."""
    rng = np.random.default_rng(0)
    sample = random_ia_feeds(rng, *EXPORT_SAMPLE, model.config)
    args = tuple(torch.from_numpy(sample[name]) for name in IA_INPUTS)
    batch = torch.export.Dim("batch", min=1)
    state = torch.export.Dim("state", min=2)
    edits = torch.export.Dim("edits", min=1)
    dynamic = {
        "state": {0: batch, 1: state},
        "state_length": {0: batch},
        "edit_position": {0: batch, 1: edits},
        "edit_content": {0: batch, 1: edits},
        "edit_explicit": {0: batch, 1: edits},
    }
    with _exporter_quiet():
        try:
            program = torch.onnx.export(
                _IAGraph(model).eval(),
                args,
                dynamo=True,
                input_names=list(IA_INPUTS),
                output_names=list(IA_OUTPUTS),
                dynamic_shapes=dynamic,
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
        except Exception as exc:
            summary = str(exc).split("## Exception summary", 1)[-1].strip().splitlines()
            raise ExportError(
                f"torch.onnx.export failed: {summary[0] if summary else exc}"
            ) from exc
        if program is None:  # only the legacy exporter returns None
            raise ExportError("torch.onnx.export returned no program")
        program.save(str(path), external_data=False)


def _graph_specs(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...], int]:
    """The inputs and outputs of the ONNX file as the manifest lists them, and its opset."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    proto = onnx.load(str(path), load_external_data=False)

    def specs(values: Sequence[onnx.ValueInfoProto]) -> tuple[TensorSpec, ...]:
        out = []
        for value in values:
            tensor = value.type.tensor_type
            shape: list[int | str] = [
                d.dim_param or (d.dim_value if d.HasField("dim_value") else f"dim{i}")
                for i, d in enumerate(tensor.shape.dim)
            ]
            dtype = np.dtype(tensor_dtype_to_np_dtype(tensor.elem_type)).name
            out.append(TensorSpec(value.name, dtype, tuple(shape)))
        return tuple(out)

    opset = next(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx"))
    return specs(proto.graph.input), specs(proto.graph.output), opset


def check_parity(
    model: ImplicitAttention,
    onnx_model: OnnxModel,
    shapes: Sequence[tuple[int, int, int]] = PARITY_SHAPES,
    tolerance: float = PARITY_TOLERANCE,
    seed: int = 1,
    progress: Progress | None = None,
) -> float:
    """Max |torch - onnxruntime| over finite logits of random batches of ``shapes``.

    Raises ``ExportError`` when it exceeds ``tolerance``, when an entry is -inf in one and
    not the other (a masked position must stay masked), or when either holds a NaN.
    """
    rng = np.random.default_rng(seed)
    worst = 0.0
    model.eval()
    for shape in shapes:
        feeds = random_ia_feeds(rng, *shape, model.config)
        with torch.no_grad():
            expected = model({k: torch.from_numpy(v) for k, v in feeds.items()})
        got = onnx_model.run(feeds)
        for name, want_t in zip(IA_OUTPUTS, expected, strict=True):
            want, have = want_t.numpy(), got[name]
            where = f"{name} at (batch, state, edits) = {shape}"
            if want.shape != have.shape:
                raise ExportError(f"{where}: shape {have.shape}, torch gives {want.shape}")
            if np.isnan(want).any() or np.isnan(have).any():
                raise ExportError(f"{where}: NaN in the logits")
            masked = np.isneginf(want)
            if not np.array_equal(masked, np.isneginf(have)):
                raise ExportError(f"{where}: masked (-inf) entries differ from torch's")
            finite = np.isfinite(want)
            if not np.array_equal(finite, np.isfinite(have)):
                raise ExportError(f"{where}: +inf entries differ from torch's")
            diff = float(np.max(np.abs(want[finite] - have[finite]), initial=0.0))
            if diff > tolerance:
                raise ExportError(f"{where}: max |diff| {diff:.3g} > {tolerance:g}")
            worst = max(worst, diff)
        if progress is not None:
            progress.advance(note=f"parity {shape}")
    return worst


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).exists():
        raise UsageError(f"--out {out_dir} holds other files (no {MANIFEST_FILE}); choose another")


def _move_into_place(built: Path, out_dir: Path) -> None:
    """Rename ``built`` to ``out_dir``, replacing an earlier export there."""
    old: Path | None = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
    os.replace(built, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxscript

    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def parity_diff(
    where: str, want: np.ndarray, have: np.ndarray, tolerance: float = PARITY_TOLERANCE
) -> float:
    """Max |torch - onnxruntime| of one output; ExportError on a shape mismatch, a NaN, a
    value finite on one side only, a boolean output that differs, or a gap past
    ``tolerance``. The exporters' parity checks all go through it."""
    if want.shape != have.shape:
        raise ExportError(f"{where}: shape {have.shape}, torch gives {want.shape}")
    if want.dtype == bool or have.dtype == bool:
        if not np.array_equal(want, have):
            raise ExportError(f"{where}: differs from torch")
        return 0.0
    if np.isnan(have).any():
        raise ExportError(f"{where}: NaN")
    finite = np.isfinite(want)
    if (finite != np.isfinite(have)).any():
        raise ExportError(f"{where}: not finite where torch is (or the reverse)")
    diff = float(np.max(np.abs(want[finite] - have[finite]), initial=0.0))
    if diff > tolerance:
        raise ExportError(f"{where}: max |diff| {diff:.3g} > {tolerance:g}")
    return diff


def write_model_manifest(
    folder: Path,
    *,
    name: str,
    kind: str,
    main_file: str,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    other_files: Iterable[str],
    config: dict[str, Any],
    description: str,
    parameters: int,
    exporter: str,
    opset: int,
    metadata: dict[str, Any] | None,
    extra_info: dict[str, Any] | None = None,
) -> Manifest:
    """Write ``folder/manifest.json`` for an exported model and return the manifest.

    ``main_file`` is the manifest's ONNX graph and ``other_files`` the folder's other files,
    each recorded with its sha256. The metadata holds the creation time, ``description``
    (as "model"), ``parameters``, ``extra_info``, the exporter with its opset and tool
    versions, then ``metadata`` (whose keys win over the others).
    """
    info: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": description,
        "parameters": parameters,
        **(extra_info or {}),
        "export": {"exporter": exporter, "opset": opset, **_tool_versions()},
        **(metadata or {}),
    }
    manifest = Manifest(
        format=FORMAT,
        name=name,
        kind=kind,
        onnx=main_file,
        sha256=file_sha256(folder / main_file),
        inputs=inputs,
        outputs=outputs,
        files={f: file_sha256(folder / f) for f in other_files},
        config=config,
        metadata=info,
    )
    write_manifest(folder, manifest)
    return manifest


def record_parity(
    folder: Path,
    manifest: Manifest,
    max_abs_diff: float,
    tolerance: float = PARITY_TOLERANCE,
    **extra: Any,
) -> Manifest:
    """Add the measured torch/onnxruntime gap to the manifest's metadata (``parity``:
    ``max_abs_diff``, ``tolerance`` and ``extra``), rewrite ``folder/manifest.json`` and
    return the new manifest."""
    parity = {"max_abs_diff": max_abs_diff, "tolerance": tolerance, **extra}
    manifest = replace(manifest, metadata={**manifest.metadata, "parity": parity})
    write_manifest(folder, manifest)
    return manifest


@contextlib.contextmanager
def _model_folder_in_progress(out_dir: Path) -> Iterator[Path]:
    """A temporary folder beside ``out_dir``: renamed to it on success, deleted on failure."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        built.chmod(0o755)  # mkdtemp's folder is private; a model folder is read by everyone
        yield built
        _move_into_place(built, out_dir)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise


def _package_ia(
    model: ImplicitAttention,
    built: Path,
    *,
    name: str,
    vocab: list[str] | None,
    metadata: dict[str, Any] | None,
    opset: int | None,
    tolerance: float,
    progress: Progress | None,
) -> Manifest:
    """Write the manifest (and vocab) beside ``built/model.onnx``, then check it against torch."""
    onnx_path = built / ONNX_FILE
    inputs, outputs, used_opset = _graph_specs(onnx_path)
    if opset is not None and used_opset != opset:
        raise ExportError(f"asked for opset {opset}, the exporter wrote opset {used_opset}")
    if vocab is not None:
        (built / VOCAB_FILE).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    manifest = write_model_manifest(
        built,
        name=name,
        kind=IA_KIND,
        main_file=ONNX_FILE,
        inputs=inputs,
        outputs=outputs,
        other_files=() if vocab is None else (VOCAB_FILE,),
        config=model.config.to_dict(),
        description="Zhao et al. 2019, implicit attention (IA)",
        parameters=sum(p.numel() for p in model.parameters()),
        exporter="torch.onnx.export(dynamo=True)",
        opset=used_opset,
        metadata=metadata,
    )
    try:
        exported = load_model(built, device="cpu", threads=1)
    except ModelError as exc:
        raise ExportError(f"the export does not load: {exc}") from exc
    worst = check_parity(model, exported, tolerance=tolerance, progress=progress)
    return record_parity(
        built, manifest, worst, tolerance, shapes=[list(shape) for shape in PARITY_SHAPES]
    )


def export_ia_model(
    model: ImplicitAttention,
    out_dir: Path,
    *,
    name: str = IA_KIND,
    vocab: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    opset: int | None = None,
    tolerance: float = PARITY_TOLERANCE,
    progress: Progress | None = None,
) -> Manifest:
    """Export an IA module to the model folder ``out_dir`` (see the module docstring)."""
    if not isinstance(model, ImplicitAttention):
        raise ExportError(f"only IA can be exported, not {type(model).__name__}")
    if vocab is not None and len(vocab) != model.config.vocab_size:
        raise UsageError(
            f"the vocabulary has {len(vocab)} entries but the model has {model.config.vocab_size}"
        )
    _check_out_dir(out_dir)
    model.eval()
    with _model_folder_in_progress(out_dir) as built:
        _trace_ia(model, built / ONNX_FILE, opset)
        if progress is not None:
            progress.advance(note="exported")
        manifest = _package_ia(
            model,
            built,
            name=name,
            vocab=vocab,
            metadata=metadata,
            opset=opset,
            tolerance=tolerance,
            progress=progress,
        )
    return manifest


def _checkpoint_folder(checkpoint: Path) -> Path:
    if (checkpoint / "model.safetensors").is_file():
        return checkpoint
    if (checkpoint / "best" / "model.safetensors").is_file():
        return checkpoint / "best"  # a run folder: its best-on-dev model
    if not checkpoint.exists():
        raise UsageError(f"{checkpoint} does not exist")
    raise UsageError(
        f"{checkpoint} is not a checkpoint (no model.safetensors); pass a run's best/ "
        "or a checkpoints/step-* folder"
    )


def export_zhao(
    checkpoint: Path,
    out_dir: Path,
    *,
    name: str = IA_KIND,
    vocab: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    opset: int | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Export the Zhao IA checkpoint folder ``checkpoint`` to the model folder ``out_dir``.

    ``checkpoint`` is a run's ``best/``, a ``checkpoints/step-*`` folder, or a run folder
    (its ``best/`` is used). Bad input is a ``UsageError``; an export that fails or
    disagrees with torch is an ``ExportError`` and leaves nothing behind.
    """
    from ripple.training.checkpoints import STATE_FILE, load_checkpoint

    folder = _checkpoint_folder(checkpoint)
    try:
        loaded = load_checkpoint(folder)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot read the checkpoint {folder}: {exc}") from None
    stored = loaded.state.get("model_config")
    if not isinstance(stored, dict) or "kind" not in stored:
        raise UsageError(f"{folder / STATE_FILE} has no model_config: not a Zhao checkpoint")
    kind = stored["kind"]
    if kind in ("ir", "e"):
        raise UsageError(
            f"{folder} holds Zhao {kind.upper()}, which cannot be exported: its LSTMs read "
            "packed sequences, which torch.export cannot trace with dynamic shapes; export IA"
        )
    if kind != "ia":
        raise UsageError(f"{folder} holds a {kind!r} model, not Zhao IA")
    names = {f.name for f in fields(ZhaoConfig)}
    config = ZhaoConfig(**{k: v for k, v in stored.items() if k in names})
    model = build_zhao_model("ia", config)
    try:
        model.load_state_dict(loaded.model)
    except RuntimeError as exc:
        raise UsageError(
            f"{folder}: the weights do not fit the stored config ({str(exc).splitlines()[0]})"
        ) from None
    assert isinstance(model, ImplicitAttention)
    source = {
        "checkpoint": str(folder.resolve()),
        "model_sha256": file_sha256(folder / "model.safetensors"),
        "step": loaded.state.get("step"),
        "best_step": loaded.state.get("best_step"),
        "best_dev_metric": loaded.state.get("best_metric"),
        "training": stored.get("settings"),
    }
    return export_ia_model(
        model,
        out_dir,
        name=name,
        vocab=vocab,
        metadata={"source": source, **(metadata or {})},
        opset=opset,
        progress=progress,
    )


def _read_vocab(path: Path) -> list[str]:
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--vocab {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--vocab {path} is not a JSON file ({exc})") from None
    if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
        raise UsageError(f"--vocab {path} must be a JSON list of strings (token i = id i)")
    return vocab


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ripple export zhao`` (see the module docstring)."""
    vocab = _read_vocab(args.vocab) if args.vocab is not None else None
    if args.opset is not None and args.opset < 18:
        raise UsageError("--opset must be 18 or newer (the dynamo exporter's range)")
    with Progress(1 + len(PARITY_SHAPES), "export zhao", quiet=args.quiet) as bar:
        try:
            manifest = export_zhao(
                args.checkpoint,
                args.out,
                name=args.name,
                vocab=vocab,
                opset=args.opset,
                progress=bar,
            )
        except ExportError as exc:
            print(f"ripple: export refused: {exc}", file=sys.stderr)
            return 1
    parity = manifest.metadata["parity"]
    size = (args.out / manifest.onnx).stat().st_size
    print(
        f"exported {manifest.name} ({manifest.metadata['parameters']:,} parameters, "
        f"{size / 1e6:.1f} MB, opset {manifest.metadata['export']['opset']}) to {args.out}; "
        f"onnxruntime matches torch to {parity['max_abs_diff']:.1e} on "
        f"{len(parity['shapes'])} batch shapes"
    )
    return 0
