"""The shared trainer: overfitting, exact resume, early stopping, safetensors checkpoints."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from ripple.models.nets import Batch, EditModel, StepOutput
from ripple.server.cli import main
from ripple.training.checkpoints import latest_checkpoint, load_checkpoint
from ripple.training.trainer import TrainConfig, Trainer, seed_everything


class Points(Dataset[Batch]):
    """``n`` random points in 4-d, labelled by their largest coordinate (4 classes)."""

    def __init__(self, n: int, seed: int, random_labels: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = torch.randint(0, 4, (n,), generator=g) if random_labels else self.x.argmax(-1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Batch:
        return {"x": self.x[i], "y": self.y[i]}


def stack(items: Sequence[Batch]) -> Batch:
    return {k: torch.stack([item[k] for item in items]) for k in items[0]}


class TinyClassifier(EditModel):
    """An MLP with dropout, so resuming must restore the RNG too."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4))

    def loss(self, batch: Batch) -> StepOutput:
        logits = self.net(batch["x"])
        right = logits.argmax(-1) == batch["y"]
        return StepOutput(
            loss=nn.functional.cross_entropy(logits, batch["y"]),
            correct=right.sum(),
            total=torch.tensor(len(right)),
        )


def make(tmp: Path, data: Points, dev: Points | None = None, **overrides: object) -> Trainer:
    seed_everything(0)
    config = TrainConfig(out_dir=str(tmp), batch_size=8, lr=1e-2, quiet=True, cpu_threads=1)
    for key, value in overrides.items():
        setattr(config, key, value)
    return Trainer(TinyClassifier(), config, data, dev, stack, model_config={"kind": "tiny"})


def test_overfits_a_tiny_dataset(tmp_path: Path) -> None:
    data = Points(32, seed=1)
    trainer = make(tmp_path, data, data, epochs=60, patience=100)
    result = trainer.fit()
    assert result.losses[-1] < result.losses[0] / 4
    assert trainer.evaluate(data).accuracy >= 0.95
    assert result.best_metric is not None and result.best_metric >= 0.95


@pytest.mark.parametrize("stop_at", [5, 7])  # an epoch boundary (40 / 8 = 5) and mid-epoch
def test_resume_takes_the_same_next_step(tmp_path: Path, stop_at: int) -> None:
    data, dev = Points(40, seed=2), Points(16, seed=3)
    unbroken = make(tmp_path / "a", data, dev, epochs=10, max_steps=stop_at + 3).fit()
    make(tmp_path / "b", data, dev, epochs=10, max_steps=stop_at).fit()
    resumed = make(tmp_path / "b", data, dev, epochs=10, max_steps=stop_at + 3, resume=True)
    # A different initialisation proves the weights come from the checkpoint.
    torch.nn.init.zeros_(resumed.model.net[0].weight)  # type: ignore[index]
    result = resumed.fit()
    assert result.losses == unbroken.losses[stop_at:]
    assert result.steps == unbroken.steps == stop_at + 3


def test_early_stopping(tmp_path: Path) -> None:
    data = Points(16, seed=4)
    # lr = 0: dev accuracy never improves after the first evaluation.
    result = make(tmp_path, data, data, epochs=50, lr=0.0, patience=2).fit()
    assert result.stopped_early
    assert result.epochs_done == 3
    assert len(result.history) == 3 and result.best_step == 2


def test_run_then_load_best_restores_the_best_dev_weights(tmp_path: Path) -> None:
    data, dev = Points(32, seed=6), Points(16, seed=7)
    trainer = make(tmp_path / "a", data, dev, epochs=6)
    result = trainer.run()
    torch.nn.init.zeros_(trainer.model.net[0].weight)  # type: ignore[index]
    assert trainer.load_best()
    from ripple.training.checkpoints import load_checkpoint

    saved = load_checkpoint(tmp_path / "a" / "best").model
    assert all(torch.equal(trainer.model.state_dict()[k], saved[k]) for k in saved)
    assert result.best_step is not None and saved
    # Without a dev set there is no best model: the last weights stay.
    alone = make(tmp_path / "b", data, None, epochs=2)
    alone.run()
    assert not alone.load_best()


def test_checkpoints_are_safetensors_and_json(tmp_path: Path) -> None:
    data = Points(24, seed=5)
    trainer = make(tmp_path, data, data, epochs=4, keep_checkpoints=2)
    trainer.fit()
    root = tmp_path / "checkpoints"
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == ["step-00000009", "step-00000012"]
    latest = latest_checkpoint(root)
    assert latest is not None and latest.name == "step-00000012"
    assert {p.name for p in latest.iterdir()} == {
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    }
    ckpt = load_checkpoint(latest)
    assert ckpt.state["step"] == 12 and ckpt.state["model_config"] == {"kind": "tiny"}
    assert ckpt.optimizer is not None
    # The optimizer state round-trips into a fresh Adam.
    fresh = torch.optim.Adam(trainer.model.parameters(), lr=1.0)
    fresh.load_state_dict(ckpt.optimizer)
    for key, value in trainer.optimizer.state_dict()["state"][0].items():
        assert torch.equal(fresh.state_dict()["state"][0][key], value)
    best = json.loads((tmp_path / "best" / "state.json").read_text())
    assert best["best_step"] in {3, 6, 9, 12}
    # Nothing on disk is a pickle.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert path.suffix in {".safetensors", ".json"}, path


# -- ripple train synthetic -------------------------------------------------------------

TINY_RUN = [
    "train",
    "synthetic",
    "--task",
    "Append1",
    "--model",
    "ia",
    "--epochs",
    "2",
    "--train-size",
    "64",
    "--dev-size",
    "16",
    "--test-size",
    "16",
    "--batch-size",
    "16",
    "--hidden",
    "32",
    "--quiet",
]


def test_cli_trains_resumes_and_refuses_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([*TINY_RUN, "--out", str(out), "--max-steps", "3"]) == 0
    # A second run into the same folder must say --resume; a resume must match the run.
    assert main([*TINY_RUN, "--out", str(out)]) == 2
    assert main([*TINY_RUN, "--out", str(out), "--resume", "--seed", "9"]) == 2
    assert main([*TINY_RUN, "--out", str(out), "--resume"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 8 and 0.0 <= results["test"]["accuracy"] <= 1.0
    assert main([*TINY_RUN, "--out", str(tmp_path / "x"), "--task", "Append9"]) == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_torchrun_two_processes(tmp_path: Path) -> None:
    # DDP on CPU (gloo): each rank trains on half of every epoch; rank 0 writes.
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "torchrun"),
            "--nproc-per-node",
            "2",
            "--master-port",
            str(_free_port()),
            "-m",
            "ripple.server.cli",
            *TINY_RUN,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # A rank's own error comes before torchrun's summary of it: show both ends.
    assert proc.returncode == 0, proc.stderr[:4000] + "\n...\n" + proc.stderr[-1500:]
    state = json.loads((out / "checkpoints" / "step-00000004" / "state.json").read_text())
    assert state["epoch"] == 2  # 64 items / 2 ranks / 16 per batch = 2 steps per epoch
