"""Export a trained ``CopyEditor`` as an ONNX model folder served by ``models/runtime``.

The editor runs as two graphs, so that the search (``ripple.models.runtime.copy_decode``)
stays in numpy and can merge rays between decoder steps:

    step.onnx      one decoder step for R rays: (token, state, memory, keys, starts, ends,
                   input_length) -> (state_out, gen, start, end); the manifest's main graph
    encoder.onnx   (input, input_length) -> (memory, keys, starts, ends, state)
    vocab.json     the generation vocabulary
    manifest.json  kind ``copy-editor``; config = the net's sizes + the editor settings
                   (``copy_features.EditorConfig``), so the server cuts fragments exactly
                   as training did; sha256 of every file

GRUs are exported by the TorchScript exporter (``dynamo=False``), which writes ONNX's own
GRU operator for the encoder. The export is checked before it is kept: every output of
both graphs against torch on random batches (max |diff| <= 1e-4), and greedy decoding
through onnxruntime against greedy decoding through torch (identical tokens).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from torch import nn

from ripple.models.nets.copy_span import CopyConfig, CopyEditor
from ripple.models.runtime import (
    Manifest,
    ModelError,
    TensorSpec,
    load_model,
)
from ripple.models.runtime.copy_decode import StepScores, greedy_decode
from ripple.models.suggest.copy_features import CopyVocab, EditorConfig
from ripple.models.suggest.copy_predictor import (
    COPY_KIND,
    ENCODER_FILE,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    STEP_FILE,
    STEP_INPUTS,
    STEP_OUTPUTS,
    VOCAB_FILE,
    OnnxEditor,
    decode_vocab,
)
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

__all__ = ["PARITY_TOLERANCE", "export_copy_editor", "load_copy_run", "run"]

PARITY_TOLERANCE: Final = 1e-4
OPSET: Final = 17


class _Encoder(nn.Module):
    def __init__(self, model: CopyEditor) -> None:
        super().__init__()
        self.model = model

    def forward(self, input: torch.Tensor, input_length: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.encode(input, input_length)


class _Step(nn.Module):
    def __init__(self, model: CopyEditor) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        token: torch.Tensor,
        state: torch.Tensor,
        memory: torch.Tensor,
        keys: torch.Tensor,
        starts: torch.Tensor,
        ends: torch.Tensor,
        input_length: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        pad = torch.arange(memory.shape[1])[None, :] >= input_length[:, None]
        return self.model.step(token, state, memory, keys, starts, ends, pad)


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    axes: dict[str, dict[int, str]],
) -> None:
    module.eval()
    with _exporter_quiet(), torch.no_grad():
        try:
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=False,
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_axes=axes,
                opset_version=OPSET,
            )
        except Exception as exc:
            raise ExportError(f"torch.onnx.export failed: {str(exc).splitlines()[0]}") from exc
    module.eval()  # the exporter restores the wrapper's mode onto the wrapped model


def _random_batch(
    rng: np.random.Generator, vocab_size: int, batch: int, length: int
) -> tuple[np.ndarray, np.ndarray]:
    ids = rng.integers(6, vocab_size, size=(batch, length), dtype=np.int64)
    lengths = rng.integers(1, length + 1, size=batch, dtype=np.int64)
    lengths[0] = length
    return ids, lengths


def _session_specs(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs as onnxruntime sees them (the TorchScript exporter leaves some
    fixed sizes symbolic in the file; the manifest must agree with the session)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    types = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(bool)": "bool"}

    def specs(nodes: Any) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(
                n.name, types[n.type], tuple(d if isinstance(d, int) else str(d) for d in n.shape)
            )
            for n in nodes
        )

    return specs(session.get_inputs()), specs(session.get_outputs())


def _torch_stepper(
    model: CopyEditor,
    memory: torch.Tensor,
    keys: torch.Tensor,
    starts: torch.Tensor,
    ends: torch.Tensor,
    pad: torch.Tensor,
) -> Any:
    """The torch decoder step as a ``StepFn`` for one encoded input (R rays at once), on
    the device the encoded input is on."""

    def step(states: np.ndarray, token_ids: np.ndarray) -> StepScores:
        n = len(token_ids)
        with torch.no_grad():
            h, gen, start, end = model.step(
                torch.from_numpy(token_ids).to(memory.device),
                torch.from_numpy(states).to(memory.device),
                memory.expand(n, -1, -1),
                keys.expand(n, -1, -1),
                starts.expand(n, -1, -1),
                ends.expand(n, -1, -1),
                pad.expand(n, -1),
            )
        return StepScores(
            h.cpu().numpy(), gen.cpu().numpy(), start.cpu().numpy(), end.cpu().numpy()
        )

    return step


def check_parity(model: CopyEditor, editor: OnnxEditor, vocab: CopyVocab, seed: int = 1) -> float:
    """Max |torch - onnxruntime| over both graphs' outputs; greedy tokens must agree too."""
    rng = np.random.default_rng(seed)
    model.eval()
    worst = 0.0
    for batch, length in ((1, 3), (3, 17), (5, 64)):
        ids, lengths = _random_batch(rng, len(vocab), batch, length)
        with torch.no_grad():
            want_enc = model.encode(torch.from_numpy(ids), torch.from_numpy(lengths))
        got_enc = editor.encode(ids, lengths)
        for name, want in zip(ENCODER_OUTPUTS, want_enc, strict=True):
            worst = max(
                worst,
                parity_diff(
                    f"encoder {name} {ids.shape}", want.numpy(), got_enc[name], PARITY_TOLERANCE
                ),
            )
        token = rng.integers(0, len(vocab), size=batch, dtype=np.int64)
        state = got_enc["state"]
        feeds = {
            "token": token,
            "state": state,
            "memory": got_enc["memory"],
            "keys": got_enc["keys"],
            "starts": got_enc["starts"],
            "ends": got_enc["ends"],
            "input_length": lengths,
        }
        with torch.no_grad():
            pad = torch.arange(length)[None, :] >= torch.from_numpy(lengths)[:, None]
            t = {n: torch.from_numpy(feeds[n]) for n in STEP_INPUTS[:-1]}
            want_step = model.step(
                t["token"], t["state"], t["memory"], t["keys"], t["starts"], t["ends"], pad
            )
        got_step = editor.step_model.run(feeds)
        for name, want in zip(STEP_OUTPUTS, want_step, strict=True):
            worst = max(
                worst,
                parity_diff(
                    f"step {name} {ids.shape}", want.numpy(), got_step[name], PARITY_TOLERANCE
                ),
            )
    # Greedy decoding through both, on real-looking inputs: the same tokens.
    dvocab = decode_vocab(vocab)
    for length in (5, 40):
        ids, _ = _random_batch(rng, len(vocab), 1, length)
        tokens = [vocab.tokens[i] for i in ids[0]]
        onnx_hyp = editor.greedy(tokens, max_len=30)
        with torch.no_grad():
            enc = model.encode(torch.from_numpy(ids), torch.tensor([length]))
        memory, keys, starts, ends, state0 = enc
        pad = torch.zeros(1, length, dtype=torch.bool)
        torch_step = _torch_stepper(model, memory, keys, starts, ends, pad)
        torch_hyp = greedy_decode(
            torch_step, state0[0].numpy(), tokens, dvocab, model.config.max_span, 30
        )
        if torch_hyp.tokens != onnx_hyp.tokens:
            raise ExportError("greedy decoding through onnxruntime differs from torch's")
        worst = max(worst, abs(torch_hyp.logp - onnx_hyp.logp) / max(1, len(torch_hyp.tokens)))
    return worst


def export_copy_editor(
    model: CopyEditor,
    vocab: CopyVocab,
    editor: EditorConfig,
    out_dir: Path,
    *,
    name: str,
    metadata: dict[str, Any] | None = None,
) -> Manifest:
    """Write the model folder ``out_dir`` (see the module docstring); checked before kept."""
    if len(vocab) != model.config.vocab_size:
        raise ExportError(
            f"the vocabulary has {len(vocab)} tokens, the model {model.config.vocab_size}"
        )
    _check_out_dir(out_dir)
    model = model.cpu().eval()
    with _model_folder_in_progress(out_dir) as built:
        ids = torch.randint(6, len(vocab), (2, 9))
        lengths = torch.tensor([9, 6])
        _export(
            _Encoder(model),
            (ids, lengths),
            built / ENCODER_FILE,
            ENCODER_INPUTS,
            ENCODER_OUTPUTS,
            {
                "input": {0: "batch", 1: "length"},
                "input_length": {0: "batch"},
                **{n: {0: "batch", 1: "length"} for n in ENCODER_OUTPUTS[:-1]},
                "state": {0: "batch"},
            },
        )
        with torch.no_grad():
            memory, keys, starts, ends, state = model.encode(ids, lengths)
        token = torch.tensor([3, 7])
        _export(
            _Step(model),
            (token, state, memory, keys, starts, ends, lengths),
            built / STEP_FILE,
            STEP_INPUTS,
            STEP_OUTPUTS,
            {
                "token": {0: "rays"},
                "state": {0: "rays"},
                "input_length": {0: "rays"},
                **{n: {0: "rays", 1: "length"} for n in ("memory", "keys", "starts", "ends")},
                "state_out": {0: "rays"},
                "gen": {0: "rays"},
                "start": {0: "rays", 1: "length"},
                "end": {0: "rays", 1: "length"},
            },
        )
        vocab.save(built / VOCAB_FILE)
        inputs, outputs = _session_specs(built / STEP_FILE)
        _, _, opset = _graph_specs(built / STEP_FILE)
        manifest = write_model_manifest(
            built,
            name=name,
            kind=COPY_KIND,
            main_file=STEP_FILE,
            inputs=inputs,
            outputs=outputs,
            other_files=(ENCODER_FILE, VOCAB_FILE),
            config={"net": model.config.to_dict(), "editor": editor.to_json()},
            description="Panthaplackel et al. 2021, Seq2Seq+Copy"
            + ("Tok" if model.config.max_span == 1 else "Span"),
            parameters=sum(p.numel() for p in model.parameters()),
            exporter="torch.onnx.export(dynamo=False)",
            opset=opset,
            metadata=metadata,
            extra_info={"hidden": model.config.hidden},
        )
        try:
            onnx_editor = OnnxEditor(load_model(built, device="cpu", threads=1))
        except ModelError as exc:
            raise ExportError(f"the export does not load: {exc}") from exc
        worst = check_parity(model, onnx_editor, vocab)
        manifest = record_parity(built, manifest, worst)
    return manifest


def load_copy_run(run_dir: Path) -> tuple[CopyEditor, CopyVocab, EditorConfig, str]:
    """The best model of a ``ripple train copy`` run, its vocabulary, editor settings, system."""
    from ripple.models.errors import UsageError
    from ripple.training.checkpoints import load_checkpoint

    best = run_dir / "best"
    if not (best / "model.safetensors").is_file():
        raise UsageError(
            f"{run_dir}: no best/model.safetensors (not a finished `ripple train copy` run)"
        )
    ckpt = load_checkpoint(best)
    config = dict(ckpt.state["model_config"])
    system = config.pop("system")
    editor = EditorConfig.from_json(config.pop("editor"))
    model = CopyEditor(CopyConfig.from_dict(config))
    model.load_state_dict(ckpt.model)
    vocab_file = run_dir / "vocab.json"
    if not vocab_file.is_file():
        vocab_file = run_dir / "data" / "vocab.json"
    return model.eval(), CopyVocab.load(vocab_file), editor, system


def run(args: Any) -> int:
    """``ripple export copy RUN_DIR DIR``."""
    model, vocab, editor, system = load_copy_run(args.run)
    results = args.run / "results.json"
    extra = json.loads(results.read_text(encoding="utf-8")) if results.is_file() else {}
    metadata = {
        k: extra[k] for k in ("steps", "best_step", "best_dev_action_accuracy") if k in extra
    }
    data = extra.get("data")
    examples = args.examples or args.run / "data"
    if data is None and (examples / "meta.json").is_file():
        data = json.loads((examples / "meta.json").read_text(encoding="utf-8"))
    if data is not None:
        for key in ("train_repos", "dev_repos", "train_examples", "dev_examples"):
            metadata[key] = data.get(key)
    if "steps" not in metadata:  # a run stopped by hand: its best model's own record
        from ripple.training.checkpoints import load_checkpoint

        state = load_checkpoint(args.run / "best").state
        metadata["best_step"] = state.get("best_step")
        metadata["best_dev_action_accuracy"] = state.get("best_metric")
    manifest = export_copy_editor(
        model, vocab, editor, args.out, name=args.name or system, metadata=metadata
    )
    parity = manifest.metadata.get("parity", {})
    size = sum(f.stat().st_size for f in args.out.iterdir()) / 1e6
    print(
        f"exported {system} to {args.out} ({size:.1f} MB; parity max |diff| {parity.get('max_abs_diff', 0):.2g})"
    )
    return 0
