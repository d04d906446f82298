"""Export a trained structural editor (Yao et al. 2021) as an ONNX model folder.

The folder is what ``ripple.models.runtime.treeedit_decode.TreeEditModel`` loads:

    edit.onnx      act_* [1, A] -> z [1, D] (A may be 0)
    encoder.onnx   node_* [1, N], z -> H [1, N, D]
    step.onnx      H, src, z, slot_* [1, S] -> op_logits, delete_logits, slot_logits,
                   label_logits, source_logits; the manifest's main graph
    vocab.json     ``TreeEditVocab.to_json``
    config.json    {"net": ``TreeEditConfig``, "features": {...}, "graphs": every graph's
                   inputs and outputs (name, dtype, shape)}
    manifest.json  kind ``treeedit``, sha256 of every file

The graphs are exported by ``torch.onnx.export(dynamo=True)`` with dynamic A, N, M and S
(batch 1). Before the folder is kept, every graph is run through onnxruntime on random
inputs of several sizes (A = 0 and S = 1 among them) and compared with torch (max |diff|
<= ``PARITY_TOLERANCE`` on every output); a failed check leaves no folder behind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from torch import nn

from ripple.models.nets.treeedit import TreeEditNet
from ripple.models.runtime import Manifest, ModelError, TensorSpec
from ripple.models.runtime.treeedit_decode import (
    CONFIG_FILE,
    EDIT_FILE,
    EDIT_INPUTS,
    EDIT_OUTPUTS,
    ENCODER_FILE,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    STEP_FILE,
    STEP_INPUTS,
    STEP_OUTPUTS,
    TREEEDIT_KIND,
    VOCAB_FILE,
    TreeEditModel,
)
from ripple.models.suggest.treeedit_features import MAX_ACTIONS, MAX_DEPTH, TreeEditVocab
from ripple.training.export import (
    ExportError,
    _check_out_dir,
    _exporter_quiet,
    _graph_specs,
    _model_folder_in_progress,
    parity_diff,
    record_parity,
    write_model_manifest,
)

__all__ = [
    "PARITY_SHAPES",
    "PARITY_TOLERANCE",
    "TorchBackend",
    "check_parity",
    "export_treeedit",
    "random_features",
]

PARITY_TOLERANCE: Final = 1e-4
# (A context actions, N tree nodes, M source nodes, S slots) of the parity check.
PARITY_SHAPES: Final = ((0, 1, 1, 1), (3, 6, 9, 1), (1, 2, 4, 5), (70, 37, 80, 23))
_SAMPLE: Final = (5, 7, 9, 3)  # the export's sample sizes: >= 2 and distinct


class _Edit(nn.Module):
    def __init__(self, model: TreeEditNet) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        act_op: torch.Tensor,
        act_type: torch.Tensor,
        act_value: torch.Tensor,
        act_field: torch.Tensor,
        act_parent_type: torch.Tensor,
    ) -> torch.Tensor:
        return self.model.edit_graph(act_op, act_type, act_value, act_field, act_parent_type)


class _Encoder(nn.Module):
    def __init__(self, model: TreeEditNet) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        node_type: torch.Tensor,
        node_value: torch.Tensor,
        node_field: torch.Tensor,
        node_depth: torch.Tensor,
        node_origin: torch.Tensor,
        node_parent: torch.Tensor,
        z: torch.Tensor,
    ) -> torch.Tensor:
        return self.model.encoder_graph(
            node_type, node_value, node_field, node_depth, node_origin, node_parent, z
        )


class _Step(nn.Module):
    def __init__(self, model: TreeEditNet) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        H: torch.Tensor,  # the graph input name
        src: torch.Tensor,
        z: torch.Tensor,
        slot_parent: torch.Tensor,
        slot_field: torch.Tensor,
        slot_left: torch.Tensor,
        slot_right: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        return self.model.step_graph(H, src, z, slot_parent, slot_field, slot_left, slot_right)


class TorchBackend:
    """The torch net as a decoding ``Backend`` (``treeedit_decode.decode_with``): the three
    graphs' functions on numpy arrays, batch 1, no gradient. Training rolls the editor out
    with it (DAgger) and the parity check decodes through it."""

    def __init__(self, model: TreeEditNet, device: torch.device | str = "cpu") -> None:
        self.model = model
        self.device = torch.device(device)
        self.hidden = model.config.hidden

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        array = np.asarray(array)
        return torch.from_numpy(array if array.ndim == 2 else array[None]).to(self.device)

    @torch.no_grad()
    def encode_edit(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        t = {k: self._tensor(feeds[k]) for k in EDIT_INPUTS}
        z = self.model.edit_graph(
            t["act_op"], t["act_type"], t["act_value"], t["act_field"], t["act_parent_type"]
        )
        return z.cpu().numpy()

    @torch.no_grad()
    def encode_tree(self, feeds: Mapping[str, np.ndarray], z: np.ndarray) -> np.ndarray:
        t = {k: self._tensor(feeds[k]) for k in ENCODER_INPUTS[:-1]}
        t["z"] = torch.from_numpy(np.asarray(z)).to(self.device)
        return _encode(self.model, t, "node").cpu().numpy()

    def encode_sources(self, feeds: Mapping[str, np.ndarray], z: np.ndarray) -> np.ndarray:
        return self.encode_tree({f"node_{k[4:]}": v for k, v in feeds.items()}, z)

    @torch.no_grad()
    def step(
        self, h: np.ndarray, src: np.ndarray, z: np.ndarray, slots: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        t = {k: self._tensor(slots[k]) for k in STEP_INPUTS[3:]}
        t["z"] = torch.from_numpy(np.asarray(z)).to(self.device)
        out = _step(
            self.model,
            torch.from_numpy(np.asarray(h)).to(self.device),
            torch.from_numpy(np.asarray(src)).to(self.device),
            t,
        )
        return {name: value.cpu().numpy() for name, value in zip(STEP_OUTPUTS, out, strict=True)}


def random_features(
    rng: np.random.Generator, model: TreeEditNet, actions: int, nodes: int, sources: int, slots: int
) -> dict[str, np.ndarray]:
    """Random batch-1 inputs of every graph over the model's vocabularies: ``act_*``
    [1, A], a random tree's ``node_*`` [1, N] and a random forest's ``src_*`` [1, M]
    (pre-order, parents before children, depths consistent, some unknown ids), ``slot_*``
    [1, S] pointing into the tree (neighbours -1 at times), and ``z`` [1, D]."""
    c = model.config

    def ids(high: int, size: int) -> np.ndarray:
        return rng.integers(0, high, size=(1, size), dtype=np.int64)

    def tree(n: int, prefix: str, forest: bool) -> dict[str, np.ndarray]:
        parent = np.full(n, -1, dtype=np.int64)
        depth = np.zeros(n, dtype=np.int64)
        for i in range(1, n):
            if forest and rng.random() < 0.1:
                continue  # a new root
            parent[i] = rng.integers(0, i)
            depth[i] = min(depth[parent[i]] + 1, MAX_DEPTH)
        return {
            f"{prefix}_type": ids(c.type_vocab, n),
            f"{prefix}_value": ids(c.value_vocab, n),
            f"{prefix}_field": ids(c.field_vocab, n),
            f"{prefix}_depth": depth[None],
            f"{prefix}_origin": ids(4, n),
            f"{prefix}_parent": parent[None],
        }

    return {
        "act_op": ids(4, actions),
        "act_type": ids(c.type_vocab, actions),
        "act_value": ids(c.value_vocab, actions),
        "act_field": ids(c.field_vocab, actions),
        "act_parent_type": ids(c.type_vocab, actions),
        **tree(nodes, "node", False),
        **tree(sources, "src", True),
        "slot_parent": ids(nodes, slots),
        "slot_field": ids(c.field_vocab, slots),
        "slot_left": rng.integers(-1, nodes, size=(1, slots), dtype=np.int64),
        "slot_right": rng.integers(-1, nodes, size=(1, slots), dtype=np.int64),
        "z": rng.standard_normal((1, c.hidden)).astype(np.float32),
    }


def _encode(model: TreeEditNet, t: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """The encoder graph's function on the ``node_*`` or ``src_*`` tensors of ``t``."""
    return model.encoder_graph(
        t[f"{prefix}_type"],
        t[f"{prefix}_value"],
        t[f"{prefix}_field"],
        t[f"{prefix}_depth"],
        t[f"{prefix}_origin"],
        t[f"{prefix}_parent"],
        t["z"],
    )


def _step(
    model: TreeEditNet, h: torch.Tensor, src: torch.Tensor, t: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, ...]:
    """The step graph's function on encoded trees and the slot tensors of ``t``."""
    return model.step_graph(
        h, src, t["z"], t["slot_parent"], t["slot_field"], t["slot_left"], t["slot_right"]
    )


def _export_graph(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    inputs: Sequence[str],
    outputs: Sequence[str],
    dynamic: dict[str, dict[int, Any] | None],
) -> None:
    module.eval()
    with _exporter_quiet(), torch.no_grad():
        try:
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_shapes=dynamic,
                external_data=False,
                verbose=False,
            )
        except Exception as exc:
            summary = str(exc).split("## Exception summary", 1)[-1].strip().splitlines()
            raise ExportError(
                f"torch.onnx.export of {path.name} failed: {summary[0] if summary else exc}"
            ) from exc
        if program is None:  # only the legacy exporter returns None
            raise ExportError("torch.onnx.export returned no program")
        program.save(str(path), external_data=False)


def check_parity(
    model: TreeEditNet,
    onnx_model: TreeEditModel,
    shapes: Sequence[tuple[int, int, int, int]] = PARITY_SHAPES,
    seed: int = 1,
) -> float:
    """Max |torch - onnxruntime| over the three graphs' outputs on random inputs of the
    given (A, N, M, S) sizes; ExportError past ``PARITY_TOLERANCE``."""
    rng = np.random.default_rng(seed)
    model.eval()
    worst = 0.0
    for a, n, m, s in shapes:
        where = f"A={a}, N={n}, M={m}, S={s}"
        f = random_features(rng, model, a, n, m, s)
        t = {k: torch.from_numpy(v) for k, v in f.items()}
        with torch.no_grad():
            z = model.edit_graph(*(t[k] for k in EDIT_INPUTS))
            h = _encode(model, t, "node")
            src = _encode(model, t, "src")
            step = _step(model, h, src, t)
        got_z = onnx_model.encode_edit(f)
        worst = max(worst, parity_diff(f"edit z ({where})", z.numpy(), got_z, PARITY_TOLERANCE))
        got_h = onnx_model.encode_tree(f, f["z"])
        worst = max(worst, parity_diff(f"encoder H ({where})", h.numpy(), got_h, PARITY_TOLERANCE))
        got_src = onnx_model.encode_sources(f, f["z"])
        worst = max(
            worst, parity_diff(f"encoder src ({where})", src.numpy(), got_src, PARITY_TOLERANCE)
        )
        got = onnx_model.step(h.numpy(), src.numpy(), f["z"], f)
        for name, value in zip(STEP_OUTPUTS, step, strict=True):
            worst = max(
                worst,
                parity_diff(f"step {name} ({where})", value.numpy(), got[name], PARITY_TOLERANCE),
            )
    return worst


def _specs(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
    return [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in specs]


def export_treeedit(
    model: TreeEditNet,
    vocab: TreeEditVocab,
    out_dir: Path,
    *,
    name: str = "treeedit",
    metadata: dict[str, Any] | None = None,
) -> Manifest:
    """Write the model folder ``out_dir`` (module docstring); checked before it is kept."""
    config = model.config
    sizes = (len(vocab.types), len(vocab.values), len(vocab.fields), len(vocab.labels))
    want = (config.type_vocab, config.value_vocab, config.field_vocab, config.label_vocab)
    if sizes != want:
        raise ExportError(f"the vocabulary's sizes {sizes} are not the model's {want}")
    _check_out_dir(out_dir)
    model = model.cpu().eval()
    sample = random_features(np.random.default_rng(0), model, *_SAMPLE)
    t = {k: torch.from_numpy(v) for k, v in sample.items()}
    dim_a = torch.export.Dim("A", min=0)
    dim_n = torch.export.Dim("N", min=1)
    dim_m = torch.export.Dim("M", min=1)
    dim_s = torch.export.Dim("S", min=1)
    with _model_folder_in_progress(out_dir) as built:
        _export_graph(
            _Edit(model),
            tuple(t[k] for k in EDIT_INPUTS),
            built / EDIT_FILE,
            EDIT_INPUTS,
            EDIT_OUTPUTS,
            {k: {1: dim_a} for k in EDIT_INPUTS},
        )
        _export_graph(
            _Encoder(model),
            tuple(t[k] for k in ENCODER_INPUTS),
            built / ENCODER_FILE,
            ENCODER_INPUTS,
            ENCODER_OUTPUTS,
            {**{k: {1: dim_n} for k in ENCODER_INPUTS[:-1]}, "z": None},
        )
        with torch.no_grad():
            h = _encode(model, t, "node")
            src = _encode(model, t, "src")
        _export_graph(
            _Step(model),
            (h, src, t["z"], *(t[k] for k in STEP_INPUTS[3:])),
            built / STEP_FILE,
            STEP_INPUTS,
            STEP_OUTPUTS,
            {
                "H": {1: dim_n},
                "src": {1: dim_m},
                "z": None,
                **{k: {1: dim_s} for k in STEP_INPUTS[3:]},
            },
        )
        graphs: dict[str, Any] = {}
        for file in (EDIT_FILE, ENCODER_FILE, STEP_FILE):
            inputs, outputs, opset = _graph_specs(built / file)
            graphs[file] = {"inputs": _specs(inputs), "outputs": _specs(outputs)}
        settings = {
            "net": config.to_dict(),
            "features": {"max_actions": MAX_ACTIONS, "max_depth": MAX_DEPTH},
            "graphs": graphs,
        }
        (built / VOCAB_FILE).write_text(
            json.dumps(vocab.to_json(), ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (built / CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        step_inputs, step_outputs, opset = _graph_specs(built / STEP_FILE)
        manifest = write_model_manifest(
            built,
            name=name,
            kind=TREEEDIT_KIND,
            main_file=STEP_FILE,
            inputs=step_inputs,
            outputs=step_outputs,
            other_files=(EDIT_FILE, ENCODER_FILE, VOCAB_FILE, CONFIG_FILE),
            config=settings,
            description="Yao et al. 2021, structural edits (tree editor)",
            parameters=model.parameter_count(),
            exporter="torch.onnx.export(dynamo=True)",
            opset=opset,
            metadata=metadata,
        )
        try:
            onnx_model = TreeEditModel.load(built, device="cpu", threads=1)
        except ModelError as exc:
            raise ExportError(f"the export does not load: {exc}") from exc
        worst = check_parity(model, onnx_model)
        manifest = record_parity(built, manifest, worst)
    return manifest
