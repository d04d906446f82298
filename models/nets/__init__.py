"""ripple.models.nets: the torch modules, one file per paper's model. Only training imports it.

Every net is an ``EditModel``: an ``nn.Module`` with ``loss(batch) -> StepOutput``. That one
method is all ``ripple.training.trainer.Trainer`` knows of a model (nanoGPT's habit: the
training loop knows nothing of the model's internals), so one trainer serves every paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Batch", "EditModel", "StepOutput"]

# A collated batch: named tensors, padded; each dataset documents its keys.
Batch = dict[str, torch.Tensor]


@dataclass
class StepOutput:
    """A model's answer on one batch.

    ``loss`` is the differentiable mean loss over the counted items; ``correct`` and
    ``total`` (0-d tensors) count the items the model gets exactly right and the items
    counted, so the trainer can compute accuracy over a whole split without knowing what
    an item is (an edit, for Zhao et al.: position AND content right, §6.1).
    """

    loss: torch.Tensor
    correct: torch.Tensor
    total: torch.Tensor


class EditModel(nn.Module):
    """The contract between a net and the shared trainer."""

    def loss(self, batch: Batch) -> StepOutput:
        raise NotImplementedError
