"""Zhao et al.'s models E, IR and IA: shapes, causal masking (§4, Appendix D), learning."""

from __future__ import annotations

import pytest
import torch

from ripple.models.nets import Batch, EditModel
from ripple.models.nets.zhao import ZhaoConfig, build_zhao_model
from ripple.training.synthetic import SyntheticEditDataset, collate_edits, generate_split

KINDS = ["ia", "ir", "e"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMALL = ZhaoConfig(hidden=32, heads=4, dropout=0.0)


def batch_of(task: str, size: int, seed: int = 0) -> Batch:
    instances = generate_split(task, "dev", seed=seed, size=size)
    dataset = SyntheticEditDataset(instances, explicit=True)
    return collate_edits([dataset[i] for i in range(size)])


def model(kind: str, config: ZhaoConfig = SMALL) -> EditModel:
    torch.manual_seed(0)
    return build_zhao_model(kind, config).eval()


@pytest.mark.parametrize("kind", KINDS)
def test_shapes(kind: str) -> None:
    batch = batch_of("MetaContextAppend13", 4)
    b, t = batch["edit_content"].shape
    positions, contents = model(kind)(batch)
    assert contents.shape == (b, t, SMALL.vocab_size)
    columns = {
        "ia": batch["state"].shape[1] + t,
        "ir": SMALL.max_positions,
        "e": batch["states"].shape[2],
    }[kind]
    assert positions.shape == (b, t, columns)
    # The gold position is always allowed (finite) for every real edit.
    out = model(kind).loss(batch)
    assert torch.isfinite(out.loss)
    assert int(out.total) == int((batch["loss_mask"] & batch["edit_mask"]).sum())


def test_ia_is_about_a_million_parameters() -> None:
    count = sum(p.numel() for p in build_zhao_model("ia", ZhaoConfig()).parameters())
    assert 0.5e6 < count < 2e6


def _changed_edit(batch: Batch, k: int, field: str) -> Batch:
    """The same batch with edit ``k`` of instance 0 changed (content or position)."""
    other = {key: value.clone() for key, value in batch.items()}
    if field == "content":
        other["edit_content"][0, k] = 4 + (int(batch["edit_content"][0, k]) - 3) % 10
    else:
        other["edit_position"][0, k] = 1 + int(batch["edit_position"][0, k]) % 5
        other["edit_explicit"][0, k] += 3
    # E sees edits only through the states after them: s(k) onwards (inputs of e(k+1)...).
    other["states"][0, k + 1 :, 1] = 4 + (other["states"][0, k + 1 :, 1] - 3) % 10
    return other


@pytest.mark.parametrize("field", ["content", "position"])
@pytest.mark.parametrize("kind", KINDS)
def test_no_information_flows_back_in_time(kind: str, field: str) -> None:
    batch = batch_of("ContextAppend33", 2)
    k = 5
    net = model(kind)
    with torch.no_grad():
        positions, contents = net(batch)
        positions2, contents2 = net(_changed_edit(batch, k, field))
    # Position of edit t depends on edits before t only: t <= k is untouched.
    torch.testing.assert_close(positions[0, : k + 1], positions2[0, : k + 1])
    # Content of edit t also sees the gold position of edit t: t < k is untouched.
    torch.testing.assert_close(contents[0, :k], contents2[0, :k])
    assert not torch.equal(positions[0, k + 1 :], positions2[0, k + 1 :])
    # The other instance of the batch is untouched throughout.
    torch.testing.assert_close(positions[1], positions2[1])


@pytest.mark.parametrize("kind", KINDS)
def test_conditioning_steps_are_not_counted(kind: str) -> None:
    batch = batch_of("MetaAppend1", 3)
    batch["loss_mask"][:] = False
    assert int(model(kind).loss(batch).total) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_loss_decreases(kind: str) -> None:
    batch = batch_of("Append1", 8)
    torch.manual_seed(0)
    net = build_zhao_model(kind, SMALL).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = net.loss(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.6 * losses[0]


def test_ia_vanilla_decoder_and_sum_aggregation_run() -> None:
    batch = batch_of("Flip11", 2)
    config = ZhaoConfig(hidden=32, heads=4, decoder="vanilla", aggregation="sum")
    assert torch.isfinite(model("ia", config).loss(batch).loss)
