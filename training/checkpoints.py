"""Training checkpoints as safetensors + JSON, never pickle.

A checkpoint is a folder::

    model.safetensors      the model's state_dict
    optimizer.safetensors  every tensor of the optimizer's state (Adam moments, step counts)
                           and the RNG states, flattened to "state.<param>.<name>" keys
    state.json             the optimizer's param_groups, the trainer's counters and config

``optimizer.state_dict()`` is a nest of dicts whose leaves are tensors (safetensors) or
plain numbers and lists (JSON), so it splits cleanly in two and is rebuilt on load; nothing
needs ``torch.save``. A folder is written under a temporary name and renamed into place, and
``latest.json`` (replaced atomically) names the newest complete one: a run killed mid-write
resumes from the previous checkpoint instead of a torn one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from safetensors.torch import load_file, save_file

__all__ = ["Checkpoint", "latest_checkpoint", "load_checkpoint", "save_checkpoint", "save_model"]

MODEL_FILE: Final = "model.safetensors"
OPTIMIZER_FILE: Final = "optimizer.safetensors"
STATE_FILE: Final = "state.json"
LATEST_FILE: Final = "latest.json"


@dataclass
class Checkpoint:
    """What a checkpoint folder holds once loaded (tensors on CPU)."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    rng: dict[str, torch.Tensor]
    state: dict[str, Any]


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; copies cost nothing at this size.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def save_model(folder: Path, model: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """A model-only folder (the best model for export): weights + JSON sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(_contiguous(model), str(folder / MODEL_FILE))
    _atomic_write_text(folder / STATE_FILE, json.dumps(state, indent=2, sort_keys=True))


def _split_optimizer(
    optimizer: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for param_id, slots in optimizer["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param_id}.{name}"] = value
            else:
                plain.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": optimizer["param_groups"], "plain_state": plain}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, param_id, name = key.split(".", 2)
        state.setdefault(int(param_id), {})[name] = value
    for param_id, slots in meta["plain_state"].items():
        state.setdefault(int(param_id), {}).update(slots)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    root: Path,
    name: str,
    model: dict[str, torch.Tensor],
    optimizer: dict[str, Any],
    rng: dict[str, torch.Tensor],
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``root/name`` atomically, point ``latest.json`` at it, keep the newest ``keep``."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    opt_tensors, opt_meta = _split_optimizer(optimizer)
    save_file(_contiguous(model), str(tmp / MODEL_FILE))
    rng_tensors = {f"rng.{k}": v for k, v in rng.items()}
    save_file(_contiguous({**opt_tensors, **rng_tensors}), str(tmp / OPTIMIZER_FILE))
    (tmp / STATE_FILE).write_text(
        json.dumps({**state, "optimizer": opt_meta}, indent=2, sort_keys=True), encoding="utf-8"
    )
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _atomic_write_text(root / LATEST_FILE, json.dumps({"checkpoint": name}))
    # Older checkpoints go only after latest.json names the new one.
    older = sorted(
        (p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p != final),
        key=lambda p: p.stat().st_mtime,
    )
    for stale in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(stale)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The folder ``latest.json`` names, or None when there is no complete checkpoint."""
    pointer = root / LATEST_FILE
    if not pointer.exists():
        return None
    folder = root / json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
    return folder if (folder / STATE_FILE).exists() else None


def load_checkpoint(folder: Path) -> Checkpoint:
    """Read a folder written by ``save_checkpoint`` (or ``save_model``: no optimizer)."""
    state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    model = load_file(str(folder / MODEL_FILE))
    optimizer: dict[str, Any] | None = None
    rng: dict[str, torch.Tensor] = {}
    if (folder / OPTIMIZER_FILE).exists():
        tensors = load_file(str(folder / OPTIMIZER_FILE))
        rng = {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}
        opt = {k: v for k, v in tensors.items() if k.startswith("state.")}
        optimizer = _join_optimizer(opt, state.pop("optimizer"))
    return Checkpoint(model=model, optimizer=optimizer, rng=rng, state=state)
