"""Export a trained C3PO model as an ONNX model folder (``ripple.models.runtime.c3po_decode``).

The model runs as two graphs, batch size 1, with any number of paths and context items:

    encoder.onnx   ``c3po_features.encode_input`` feeds -> z_op, op_valid, z_c, h0, c0, start
    step.onnx      (previous, h, c, z_c, z_op, op_valid) -> (logits, h_out, c_out,
                   attention); the manifest's main graph
    vocab.json     ``C3POVocab.to_json``
    child_types.json  parent type -> child types seen in training (the validity rule of
                   ``enumerate_paths``; the server must enumerate P's paths with them)
    config.json    {"net": ``C3POConfig``, "features": the ``encode_input`` settings}
    manifest.json  kind ``c3po``, sha256 of every file, the same config

LSTMs are exported by the TorchScript exporter (``dynamo=False``; ONNX's own LSTM
operator for the path and context LSTMs; the decoder cell is written out). Before the
folder is kept, both graphs are checked against torch on random examples (every output,
max |diff| < 1e-4 on logits and states) and greedy decoding through onnxruntime must give
torch's ``C3PO.greedy`` labels; a failed check leaves no folder behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from torch import nn

from ripple.models.edits.completion import ContextPath
from ripple.models.edits.paths import DEL_TYPE, PathStep
from ripple.models.nets.c3po import C3PO
from ripple.models.runtime import Manifest, ModelError
from ripple.models.runtime.c3po_decode import (
    C3PO_KIND,
    CHILD_TYPES_FILE,
    CONFIG_FILE,
    ENCODER_FILE,
    ENCODER_OUTPUTS,
    STEP_FILE,
    STEP_INPUTS,
    STEP_OUTPUTS,
    VOCAB_FILE,
    C3POModel,
    encoder_inputs,
)
from ripple.models.suggest.c3po_features import (
    MAX_LEN,
    MAX_SUBTOKENS,
    MAX_TEXT,
    C3POVocab,
    encode_input,
)
from ripple.training.c3po_train import ChildTypes, collate_c3po, save_child_types
from ripple.training.copy_export import _export, _session_specs
from ripple.training.export import (
    ExportError,
    _check_out_dir,
    _graph_specs,
    _model_folder_in_progress,
    parity_diff,
    record_parity,
    write_model_manifest,
)

__all__ = ["PARITY_TOLERANCE", "check_parity", "export_c3po", "random_inputs"]

PARITY_TOLERANCE: Final = 1e-4
OPSET: Final = 17
Inputs = tuple[list[ContextPath], list[ContextPath], list[str]]


class _Encoder(nn.Module):
    def __init__(self, model: C3PO) -> None:
        super().__init__()
        self.model = model
        self.names = encoder_inputs(model.config.context_mode)

    def forward(self, *arrays: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = {name: array[None] for name, array in zip(self.names, arrays, strict=True)}
        if "context_text" in batch:
            # Every token is real: the length is the number of ids (ids are >= 0).
            batch["context_text_lengths"] = (batch["context_text"] >= 0).sum(1)
        enc = self.model.encode(batch, dense=True)
        return enc.z_op(), enc.op_valid, enc.z_c, enc.h0, enc.c0, enc.start


class _Step(nn.Module):
    def __init__(self, model: C3PO) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        previous: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        z_c: torch.Tensor,
        z_op: torch.Tensor,
        op_valid: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        context_valid = torch.ones_like(z_c[:, :, 0], dtype=torch.bool)  # batch 1: no padding
        return self.model.step(previous, h, c, z_c, context_valid, z_op, op_valid)


def random_inputs(
    rng: np.random.Generator, vocab: C3POVocab, paths: int, contexts: int, tokens: int
) -> Inputs:
    """A random example (P's paths, context paths, context text) over ``vocab``: path
    lengths 1..20 (some truncated), terminal and non-terminal ends, ``<DEL>`` targets,
    child indices past the largest embedded, unknown sub-tokens, old- and new-tree context
    paths interleaved (``encode_input`` reorders them)."""
    types = vocab.types[2:] or ["<unk>"]
    words = [*vocab.subtokens[2:], "neverseen"]

    def path(after: bool) -> ContextPath:
        length = int(rng.integers(1, 21))
        steps = [
            PathStep(types[int(rng.integers(len(types)))], int(rng.integers(0, 20)))
            for _ in range(length)
        ]
        if rng.random() < 0.15:
            steps[-1] = PathStep(DEL_TYPE, 0)

        def value() -> tuple[str, ...]:
            if rng.random() < 0.4:
                return ()
            return tuple(words[int(rng.integers(len(words)))] for _ in range(rng.integers(1, 7)))

        target = () if steps[-1].type == DEL_TYPE else value()
        return ContextPath("MOV", tuple(steps), value(), target, after, 0, "")

    text_words = [*vocab.text[2:], "neverseen"]
    return (
        [path(False) for _ in range(paths)],
        [path(bool(rng.random() < 0.4)) for _ in range(contexts)],
        [text_words[int(rng.integers(len(text_words)))] for _ in range(tokens)],
    )


def check_parity(model: C3PO, onnx_model: C3POModel, vocab: C3POVocab, seed: int = 1) -> float:
    """Max |torch - onnxruntime| over both graphs' outputs on random examples (ExportError
    past ``PARITY_TOLERANCE``), and greedy labels through both must be the same."""
    rng = np.random.default_rng(seed)
    model.eval()
    mode = model.config.context_mode
    worst = 0.0
    examples = [
        random_inputs(rng, vocab, n, m, t) for n, m, t in ((1, 0, 0), (7, 3, 5), (60, 12, 40))
    ]
    for paths, context, text in examples:
        where = f"{len(paths)} paths, {len(context)} context paths, {len(text)} tokens"
        feeds = encode_input(paths, context, text, vocab, mode)
        batch = collate_c3po([feeds], trie=False)
        with torch.no_grad():
            enc = model.encode(batch, dense=True)
            want = dict(zip(ENCODER_OUTPUTS, (enc.z_op(), enc.op_valid, enc.z_c, enc.h0,
                                               enc.c0, enc.start), strict=True))  # fmt: skip
        got = onnx_model.encode(feeds)
        for name in ENCODER_OUTPUTS:
            worst = max(
                worst,
                parity_diff(
                    f"encoder {name} ({where})",
                    want[name].detach().numpy(),
                    got[name],
                    PARITY_TOLERANCE,
                ),
            )
        # One step from the start and one from a random previous operation.
        k = got["z_op"].shape[1]
        for previous in (got["start"], got["z_op"][:, int(rng.integers(k))]):
            feeds_step = {"previous": previous, "h": got["h0"], "c": got["c0"], "z_c": got["z_c"],
                          "z_op": got["z_op"], "op_valid": got["op_valid"]}  # fmt: skip
            t = {name: torch.from_numpy(v) for name, v in feeds_step.items()}
            with torch.no_grad():
                want_step = model.step(
                    t["previous"], t["h"], t["c"], t["z_c"],
                    torch.ones_like(t["z_c"][:, :, 0], dtype=torch.bool), t["z_op"], t["op_valid"],
                )  # fmt: skip
            got_step = onnx_model.step_model.run(feeds_step)
            for name, value in zip(STEP_OUTPUTS, want_step, strict=True):
                worst = max(
                    worst,
                    parity_diff(
                        f"step {name} ({where})",
                        value.detach().numpy(),
                        got_step[name],
                        PARITY_TOLERANCE,
                    ),
                )
        torch_labels = model.greedy(collate_c3po([feeds]))[0].labels
        onnx_labels = onnx_model.decode(paths, context, text).labels
        if torch_labels != onnx_labels:
            raise ExportError(
                f"greedy decoding through onnxruntime ({onnx_labels}) differs from torch's "
                f"({torch_labels}) on {where}"
            )
    return worst


def export_c3po(
    model: C3PO,
    vocab: C3POVocab,
    child_types: ChildTypes,
    out_dir: Path,
    *,
    name: str = "c3po",
    metadata: dict[str, Any] | None = None,
) -> Manifest:
    """Write the model folder ``out_dir`` (module docstring); checked before it is kept."""
    config = model.config
    sizes = (len(vocab.types), len(vocab.subtokens), len(vocab.text), vocab.max_child_index)
    if sizes != (
        config.type_vocab,
        config.subtoken_vocab,
        config.text_vocab,
        config.max_child_index,
    ):
        raise ExportError(f"the vocabulary's sizes {sizes} are not the model's")
    _check_out_dir(out_dir)
    model = model.cpu().eval()
    mode = config.context_mode
    names = encoder_inputs(mode)
    paths, context, text = random_inputs(np.random.default_rng(0), vocab, 5, 3, 4)
    sample = encode_input(paths, context, text, vocab, mode)
    node_axes = {0: "paths", 1: "nodes"}
    value_axes = {0: "paths", 1: "subtokens"}
    context_node_axes = {0: "contexts", 1: "nodes"}
    context_value_axes = {0: "contexts", 1: "subtokens"}
    axes: dict[str, dict[int, str]] = {}
    for input_name in names:
        part, _, key = input_name.partition("_")
        row = "paths" if part == "path" else "contexts"
        if input_name == "context_text":
            axes[input_name] = {0: "tokens"}
        elif key in ("types", "indices"):
            axes[input_name] = node_axes if part == "path" else context_node_axes
        elif key in ("source_values", "target_values"):
            axes[input_name] = value_axes if part == "path" else context_value_axes
        else:
            axes[input_name] = {0: row}
    with _model_folder_in_progress(out_dir) as built:
        args = tuple(torch.from_numpy(sample[n]) for n in names)
        _export(
            _Encoder(model),
            args,
            built / ENCODER_FILE,
            names,
            ENCODER_OUTPUTS,
            {
                **axes,
                "z_op": {1: "operations"},
                "op_valid": {1: "operations"},
                "z_c": {1: "positions"},
            },
        )
        with torch.no_grad():
            enc = model.encode(collate_c3po([sample], trie=False), dense=True)
        z_op = enc.z_op()
        step_args = (z_op[:, 3], enc.h0, enc.c0, enc.z_c, z_op, enc.op_valid)
        batch_axis = {0: "batch"}
        _export(
            _Step(model),
            step_args,
            built / STEP_FILE,
            STEP_INPUTS,
            STEP_OUTPUTS,
            {
                "previous": batch_axis,
                "h": batch_axis,
                "c": batch_axis,
                "z_c": {0: "batch", 1: "positions"},
                "z_op": {0: "batch", 1: "operations"},
                "op_valid": {0: "batch", 1: "operations"},
                "logits": {0: "batch", 1: "operations"},
                "h_out": batch_axis,
                "c_out": batch_axis,
                "attention": {0: "batch", 1: "positions"},
            },
        )
        settings = {
            "net": config.to_dict(),
            "features": {"max_len": MAX_LEN, "max_subtokens": MAX_SUBTOKENS, "max_text": MAX_TEXT},
        }
        (built / VOCAB_FILE).write_text(
            json.dumps(vocab.to_json(), ensure_ascii=False) + "\n", encoding="utf-8"
        )
        save_child_types(child_types, built / CHILD_TYPES_FILE)
        (built / CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        inputs, outputs = _session_specs(built / STEP_FILE)
        _, _, opset = _graph_specs(built / STEP_FILE)
        manifest = write_model_manifest(
            built,
            name=name,
            kind=C3PO_KIND,
            main_file=STEP_FILE,
            inputs=inputs,
            outputs=outputs,
            other_files=(ENCODER_FILE, VOCAB_FILE, CHILD_TYPES_FILE, CONFIG_FILE),
            config=settings,
            description=f"Brody et al. 2020, C3PO (context: {mode})",
            parameters=model.parameter_count(),
            exporter="torch.onnx.export(dynamo=False)",
            opset=opset,
            metadata=metadata,
        )
        try:
            onnx_model = C3POModel.load(built, device="cpu", threads=1)
        except ModelError as exc:
            raise ExportError(f"the export does not load: {exc}") from exc
        worst = check_parity(model, onnx_model, vocab)
        manifest = record_parity(built, manifest, worst)
    return manifest
