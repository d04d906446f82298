"""The one training loop every ripple model shares.

The trainer knows a model only through ``EditModel.loss(batch) -> StepOutput`` (loss, and
counts of items right and counted). It runs on CPU, one GPU, or many under ``torchrun``
(DDP: a ``DistributedSampler`` shards each epoch, only rank 0 writes checkpoints and draws
progress). It evaluates on dev, keeps the best model, stops early after ``patience``
evaluations without improvement (Zhao et al. §6.1 and Table 1 report the step with the best
dev accuracy), and resumes from its latest checkpoint exactly: the epoch's sample order is a
function of (seed, epoch), the batches already done are skipped, and the optimizer and RNG
states come back, so a resumed run takes the same next step as an uninterrupted one.

Defaults follow Zhao et al. Appendix B.1: Adam, gradients clipped at global norm 1.0.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ripple.models.nets import Batch, EditModel, StepOutput
from ripple.training.checkpoints import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_model,
)
from ripple.training.progress import Progress

__all__ = ["EvalResult", "TrainConfig", "TrainResult", "Trainer", "seed_everything"]

Collate = Callable[[Sequence[Batch]], Batch]


@dataclass
class TrainConfig:
    """Everything about a run that is not the model or the data."""

    out_dir: str
    epochs: int = 20
    batch_size: int = 64  # Zhao et al. Appendix B.2
    lr: float = 1e-3  # Zhao et al. grid: .005, .001, .0005, .0001 (Appendix B.1)
    grad_clip: float = 1.0  # "We clip gradients at 1.0 by global gradients norm" (B.1)
    seed: int = 0
    device: str = "cpu"  # "cpu" or "cuda"; under torchrun each rank takes cuda:LOCAL_RANK
    # Evaluate every this many steps; 0 = at the end of each epoch.
    eval_every: int = 0
    # Checkpoint every this many steps; 0 = at each evaluation (and always at the end).
    checkpoint_every: int = 0
    patience: int = 10  # evaluations without a better dev metric before stopping
    metric: Literal["accuracy", "loss"] = "accuracy"
    max_steps: int | None = None  # stop after this many optimizer steps in total
    num_workers: int = 0
    # torch's CPU threads; 0 leaves torch's default. Small models gain little from more
    # threads and lose a lot when the cores are shared (OpenMP threads spin and wait).
    cpu_threads: int = 0
    resume: bool = False
    keep_checkpoints: int = 2
    quiet: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """The config from the training options every ``ripple train`` command shares."""
        return cls(
            out_dir=str(args.out),
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            device=args.device,
            eval_every=args.eval_every,
            patience=args.patience,
            max_steps=args.max_steps,
            resume=args.resume,
            quiet=args.quiet,
            cpu_threads=args.threads,
        )


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    total: int


@dataclass
class TrainResult:
    steps: int
    epochs_done: int
    best_metric: float | None
    best_step: int | None
    stopped_early: bool
    # Training loss of each step this process ran (rank-local), for tests and logs.
    losses: list[float] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed every generator a run touches (Python, numpy, torch CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _LossForward(nn.Module):
    """DDP synchronises gradients through ``forward``; route it to ``model.loss``."""

    def __init__(self, model: EditModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model.loss(batch)
        # A tuple, not the dataclass: DDP walks outputs looking for tensors.
        return out.loss, out.correct, out.total


def _pin_gloo_to_loopback() -> None:
    """Single-node gloo: talk over the loopback interface.

    By default gloo picks its network device from the machine's hostname, and aborts the
    process (no Python exception) where that name resolves to an address it cannot bind,
    as in some containers. When the rendezvous is on this machine (torchrun's default
    MASTER_ADDR) and the user has not chosen an interface, the loopback one is right.
    """
    if "GLOO_SOCKET_IFNAME" in os.environ:
        return
    if os.environ.get("MASTER_ADDR", "127.0.0.1") not in {"127.0.0.1", "localhost", "::1"}:
        return
    names = [name for _, name in socket.if_nameindex()]
    loopback = next((n for n in names if n in ("lo", "lo0")), None)
    if loopback is not None:
        os.environ["GLOO_SOCKET_IFNAME"] = loopback


def _better(metric: str, new: float, best: float | None) -> bool:
    if best is None:
        return True
    return new > best if metric == "accuracy" else new < best


class Trainer:
    """``Trainer(model, config, train, dev, collate).fit()``; see the module docstring."""

    def __init__(
        self,
        model: EditModel,
        config: TrainConfig,
        train_data: Dataset[Batch],
        dev_data: Dataset[Batch] | None,
        collate: Collate,
        model_config: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.out_dir = Path(config.out_dir)
        self.train_data = train_data
        self.dev_data = dev_data
        self.collate = collate
        self.model_config = model_config or {}
        if config.cpu_threads > 0:
            torch.set_num_threads(config.cpu_threads)
        self._owns_group = False
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if self.world_size > 1 and not dist.is_initialized():
            backend = "nccl" if config.device == "cuda" else "gloo"
            if backend == "gloo":
                _pin_gloo_to_loopback()
            dist.init_process_group(backend)
            self._owns_group = True
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        if config.device == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        self.model = model.to(self.device)
        forward: nn.Module = _LossForward(self.model)
        if dist.is_initialized() and self.world_size > 1:
            forward = DistributedDataParallel(
                forward, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.forward = forward
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.step = 0
        self.epoch = 0
        self.batches_done = 0  # batches of ``self.epoch`` already trained on
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.evals_since_best = 0
        self.history: list[dict[str, float]] = []
        self._saved_step: int | None = None

    # -- data ---------------------------------------------------------------------------

    def _sampler(self, data: Dataset[Batch], shuffle: bool) -> DistributedSampler[int]:
        # The same sampler in every setting (num_replicas=1 on one process): the epoch's
        # order depends only on (seed, epoch), which is what makes resuming exact.
        return DistributedSampler(
            data,
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=shuffle,
            seed=self.config.seed,
        )

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        sampler = self._sampler(self.train_data, shuffle=True)
        sampler.set_epoch(epoch)
        order = list(sampler)
        size = self.config.batch_size
        return [order[i : i + size] for i in range(0, len(order), size)]

    def _loader(self, data: Dataset[Batch], batches: list[list[int]]) -> DataLoader[Batch]:
        return DataLoader(
            data,
            batch_sampler=batches,
            collate_fn=self.collate,
            num_workers=self.config.num_workers,
            # Its own generator: a DataLoader iterator otherwise draws a seed from the global
            # RNG, so a resumed run (one more iterator) would drift from an unbroken one.
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    def _to_device(self, batch: Batch) -> Batch:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    # -- steps --------------------------------------------------------------------------

    def train_step(self, batch: Batch) -> float:
        """One optimizer step on ``batch``; returns its loss."""
        self.forward.train()
        loss, _, _ = self.forward(self._to_device(batch))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(self, data: Dataset[Batch]) -> EvalResult:
        """Loss (weighted by items) and accuracy over ``data``, summed across ranks.

        Under DDP the sampler pads the split with repeats to a multiple of the world size,
        so up to ``world_size - 1`` examples count twice: negligible at 1k dev examples,
        and it keeps every rank's loop the same length (no hang in all_reduce).
        """
        self.model.eval()
        order = list(self._sampler(data, shuffle=False))
        size = self.config.batch_size
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        for batch in self._loader(data, batches):
            out: StepOutput = self.model.loss(self._to_device(batch))
            total = out.total.double()
            sums += torch.stack([out.loss.double() * total, out.correct.double(), total])
        if dist.is_initialized() and self.world_size > 1:
            dist.all_reduce(sums)
        loss_sum, correct, total = sums.tolist()
        return EvalResult(
            loss=loss_sum / total if total else math.nan,
            accuracy=correct / total if total else math.nan,
            total=int(total),
        )

    # -- checkpoints --------------------------------------------------------------------

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "evals_since_best": self.evals_since_best,
            "history": self.history,
            "train_config": asdict(self.config),
            "model_config": self.model_config,
        }

    def save(self) -> None:
        """Write a resumable checkpoint (rank 0 only; the others wait for it)."""
        if self._saved_step == self.step:
            return  # the end of fit() after an end-of-epoch checkpoint: nothing new
        self._saved_step = self.step
        if self.rank == 0:
            rng = {"torch": torch.get_rng_state()}
            if self.device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(self.device)
            save_checkpoint(
                self.out_dir / "checkpoints",
                f"step-{self.step:08d}",
                self.model.state_dict(),
                self.optimizer.state_dict(),
                rng,
                self._trainer_state(),
                keep=self.config.keep_checkpoints,
            )
        if dist.is_initialized() and self.world_size > 1:
            dist.barrier()

    def restore(self) -> bool:
        """Load the latest checkpoint under ``out_dir`` if there is one; True if loaded."""
        folder = latest_checkpoint(self.out_dir / "checkpoints")
        if folder is None:
            return False
        ckpt = load_checkpoint(folder)
        self.model.load_state_dict(ckpt.model)
        if ckpt.optimizer is not None:
            self.optimizer.load_state_dict(ckpt.optimizer)
        if "torch" in ckpt.rng:
            torch.set_rng_state(ckpt.rng["torch"])
        if "cuda" in ckpt.rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt.rng["cuda"], self.device)
        s = ckpt.state
        self.step, self.epoch, self.batches_done = s["step"], s["epoch"], s["batches_done"]
        self.best_metric, self.best_step = s["best_metric"], s["best_step"]
        self.evals_since_best = s["evals_since_best"]
        self.history = list(s["history"])
        return True

    def _evaluate_and_track(self) -> bool:
        """Evaluate on dev, keep the best model; True when early stopping says stop."""
        if self.dev_data is None:
            return False
        result = self.evaluate(self.dev_data)
        value = result.accuracy if self.config.metric == "accuracy" else result.loss
        self.history.append(
            {"step": self.step, "dev_loss": result.loss, "dev_accuracy": result.accuracy}
        )
        if _better(self.config.metric, value, self.best_metric):
            self.best_metric, self.best_step, self.evals_since_best = value, self.step, 0
            if self.rank == 0:
                save_model(self.out_dir / "best", self.model.state_dict(), self._trainer_state())
        else:
            self.evals_since_best += 1
        self._log(
            f"step {self.step}: dev loss {result.loss:.4f} accuracy {result.accuracy:.4f} "
            f"(best {self.best_metric:.4f} at step {self.best_step})"
        )
        return self.evals_since_best >= self.config.patience

    def close(self, wait_for_others: bool = True) -> None:
        """Leave the process group this trainer joined (torchrun); evaluate() needs it till then.

        Ranks leave together (a barrier first): a rank whose peer has already torn down its
        gloo connections can abort in gloo's transport thread instead of exiting cleanly.
        After an error on this rank (``wait_for_others=False``) the barrier is skipped, as
        the others may never reach it.
        """
        if self._owns_group:
            if wait_for_others:
                dist.barrier()
            dist.destroy_process_group()
            self._owns_group = False

    def run(self) -> TrainResult:
        """``fit``, then leave the process group (``close``), also when training fails."""
        try:
            result = self.fit()
        except BaseException:
            self.close(wait_for_others=False)
            raise
        self.close()
        return result

    def load_best(self) -> bool:
        """Put the best dev checkpoint's weights (``out_dir/best``) into the model; False
        when there is none (no dev set: the model keeps its last weights)."""
        best = self.out_dir / "best"
        if not (best / "model.safetensors").exists():
            return False
        self.model.load_state_dict(load_checkpoint(best).model)
        return True

    def _log(self, line: str) -> None:
        if self.rank == 0 and not self.config.quiet:
            print(line, file=sys.stderr, flush=True)

    # -- the loop -----------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train until ``epochs``, ``max_steps`` or early stopping; checkpoint at the end."""
        cfg = self.config
        if cfg.resume and self.restore():
            self._log(f"resumed at step {self.step} (epoch {self.epoch})")
        losses: list[float] = []
        stop = self.evals_since_best >= cfg.patience
        done = cfg.max_steps is not None and self.step >= cfg.max_steps
        while self.epoch < cfg.epochs and not stop and not done:
            batches = self._epoch_batches(self.epoch)[self.batches_done :]
            bar = Progress(
                len(batches), f"epoch {self.epoch + 1}", quiet=cfg.quiet or self.rank != 0
            )
            with bar:
                for batch in self._loader(self.train_data, batches):
                    losses.append(self.train_step(batch))
                    self.step += 1
                    self.batches_done += 1
                    bar.advance(note=f"loss {losses[-1]:.4f}")
                    evaluated = False
                    if cfg.eval_every and self.step % cfg.eval_every == 0:
                        stop = self._evaluate_and_track()
                        evaluated = True
                    every = cfg.checkpoint_every or (cfg.eval_every if evaluated else 0)
                    if every and self.step % every == 0:
                        self.save()
                    done = cfg.max_steps is not None and self.step >= cfg.max_steps
                    if stop or done:
                        break
            if self.batches_done >= len(self._epoch_batches(self.epoch)):
                self.epoch += 1
                self.batches_done = 0
                if not cfg.eval_every and not stop:
                    stop = self._evaluate_and_track()
                    if not cfg.checkpoint_every:
                        self.save()
        self.save()
        return TrainResult(
            steps=self.step,
            epochs_done=self.epoch,
            best_metric=self.best_metric,
            best_step=self.best_step,
            stopped_early=stop,
            losses=losses,
            history=list(self.history),
        )
