"""Zhao et al.'s IA on real edits: data set, training, evaluation, threshold (§6.2, Fig. 4d).

**Examples.** Every kept commit of the replay benchmark (2 to 20 hunks) is replayed hunk by
hunk with the benchmark's own :func:`~ripple.training.replay.replay_steps`; for each file
the commit changes, the context right after that file's last hunk goes through
:func:`~ripple.models.suggest.zhao_features.featurize`, the very function the ``ia``
predictor calls on a live context. One example is one file's token-level edit sequence in
the implicit form; its loss covers every edit (no conditioning steps on real data, §6.2).

**Splits** (by repository, never by commit). Training: the permissively licensed training
repositories (``permissive_training_repos``) minus the dev ones; dev (early stopping and
the ``ia`` confidence threshold): ``psf/requests`` and ``pallets/click`` by default, also
training repositories; the validation repositories (marshmallow, flake8) are only ever
evaluated (``ripple eval edits``, ``ripple eval replay``). The sub-token vocabulary is
counted on the training split only.

**Run folder** (``--out``)::

    run.json         settings (``--resume`` checks them)
    data/            the encoded examples (pieces.json + train.npz + dev.npz), built once
    vocab.json       the sub-token vocabulary
    checkpoints/     resumable trainer checkpoints; best/ the best-on-dev model
    results.json     dev accuracy, threshold sweep, timings
    export/          with ``--export``: the ONNX model folder written there as well

**Evaluation** (``ripple eval edits``): sub-token accuracy, teacher-forced as in §6.2: an
edit counts only if the predicted position AND the predicted content are right; an edit
whose gold content is outside the vocabulary (``<unk>``) counts as wrong. The
confidence-vs-accuracy curve of Fig. 4d is drawn over the same edits, the confidence being
the probability of the model's own predicted edit, P(p̂)·P(ĉ | p̂).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import torch
from torch.utils.data import Dataset

from ripple.models.errors import UsageError
from ripple.models.nets import Batch
from ripple.models.suggest.api import Cursor, EditContext, LiveEdit
from ripple.models.suggest.zhao_features import (
    HUNK_END,
    SPECIALS,
    FeatureConfig,
    SubtokenVocab,
    ZhaoFeatures,
    featurize,
)
from ripple.training.data import (
    VALIDATION_REPOS,
    iter_commits,
    permissive_training_repos,
    repo_of_file,
)
from ripple.training.progress import Progress
from ripple.training.replay import is_exact, iter_replay_commits, replay_steps

if TYPE_CHECKING:
    from ripple.models.nets.zhao import ImplicitAttention
    from ripple.models.suggest.zhao_predictor import ZhaoPredictor

__all__ = [
    "DEV_REPOS",
    "SILENT",
    "EditArrays",
    "PieceTable",
    "RealEditDataset",
    "build_arrays",
    "choose_threshold",
    "commit_contexts",
    "confidence_curve",
    "content_logits_at",
    "run_eval",
    "run_train",
    "teacher_forced",
]

DEV_REPOS: Final = ("psf/requests", "pallets/click")
# A piece longer than this (a long string literal or comment) never makes a vocabulary of
# a few thousand entries; it is <unk> from the start and costs no table entry.
MAX_PIECE_CHARS: Final = 40
_UNK: Final = SPECIALS.index("<unk>")
_DELETE: Final = SPECIALS.index("DELETE")
# A threshold above every probability: the ``ia`` predictor never speaks.
SILENT: Final = 1.01


# ---------------------------------------------------------------- contexts and examples


def commit_contexts(rec: Any) -> list[EditContext]:
    """The replay contexts right after each changed file's last hunk, in hunk order.

    ``replay_steps`` gives the context after hunks 1..j for j < H; the context after the
    last hunk is built the same way from the last step and its first remaining hunk.
    Empty when the replay benchmark does not keep the commit.
    """
    steps = replay_steps(rec)
    if steps is None:
        return []
    contexts = [step.ctx for step in steps]
    last = steps[-1]
    nxt = last.truth[0]
    lines = last.ctx.files[nxt.path]
    state = (*lines[: nxt.start_line], *nxt.new_lines, *lines[nxt.end_line :])
    edit = LiveEdit(
        nxt.path,
        nxt.start_line,
        nxt.end_line,
        tuple(lines[nxt.start_line : nxt.end_line]),
        nxt.new_lines,
    )
    row = nxt.start_line + max(len(nxt.new_lines) - 1, 0)
    column = len(nxt.new_lines[-1].rstrip("\r\n")) if nxt.new_lines else 0
    contexts.append(
        EditContext(
            {**last.ctx.files, nxt.path: state},
            last.ctx.base,
            (*last.ctx.edits, edit),
            Cursor(nxt.path, row, column),
        )
    )
    last_of: dict[str, int] = {}
    for i, ctx in enumerate(contexts):
        last_of[ctx.edits[-1].path] = i
    return [contexts[i] for i in sorted(last_of.values())]


class PieceTable:
    """Provisional ids for every piece seen while building (the vocabulary comes later).

    Ids 0..5 are the specials (so ``DELETE`` is 3 and ``<unk>`` 4 in both numberings);
    a piece longer than ``MAX_PIECE_CHARS`` is ``<unk>`` at once.
    """

    def __init__(self, pieces: Sequence[str] = SPECIALS) -> None:
        self.pieces = list(pieces)
        self._ids = {p: i for i, p in enumerate(self.pieces)}

    def id(self, piece: str) -> int:
        found = self._ids.get(piece)
        if found is not None:
            return found
        if len(piece) > MAX_PIECE_CHARS:
            return _UNK
        self._ids[piece] = len(self.pieces)
        self.pieces.append(piece)
        return len(self.pieces) - 1

    def content_id(self, content: object) -> int:
        return _DELETE if not isinstance(content, str) else self.id(content)


@dataclass
class EditArrays:
    """Encoded examples, concatenated: example i owns ``state[state_at[i]:state_at[i+1]]``.

    ``state`` holds ``<S> window <E>`` ids; the edit arrays hold implicit positions,
    contents and explicit (landed) positions. Ids are provisional (``PieceTable``) or
    vocabulary ids, as the holder says. ``repo`` is the example's repository index.
    """

    state: np.ndarray
    state_at: np.ndarray
    position: np.ndarray
    content: np.ndarray
    explicit: np.ndarray
    edit_at: np.ndarray
    repo: np.ndarray

    def __len__(self) -> int:
        return len(self.state_at) - 1

    def save(self, path: Path) -> None:
        np.savez_compressed(path, **asdict(self))

    @classmethod
    def load(cls, path: Path) -> EditArrays:
        with np.load(path) as data:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    def edits(self) -> int:
        return int(self.edit_at[-1])


class _ArrayBuilder:
    def __init__(self) -> None:
        self.state: list[np.ndarray] = []
        self.position: list[np.ndarray] = []
        self.content: list[np.ndarray] = []
        self.explicit: list[np.ndarray] = []
        self.repo: list[int] = []

    def add(self, features: ZhaoFeatures, table: PieceTable, repo: int) -> None:
        ids = [1, *(table.id(t) for t in features.tokens), 2]
        self.state.append(np.asarray(ids, dtype=np.int32))
        self.position.append(np.asarray([e.position for e in features.edits], dtype=np.int32))
        self.content.append(
            np.asarray([table.content_id(e.content) for e in features.edits], dtype=np.int32)
        )
        self.explicit.append(np.asarray(features.explicit, dtype=np.int32))
        self.repo.append(repo)

    def __len__(self) -> int:
        return len(self.state)

    def arrays(self) -> EditArrays:
        def offsets(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)

        def cat(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)

        return EditArrays(
            state=cat(self.state),
            state_at=offsets(self.state),
            position=cat(self.position),
            content=cat(self.content),
            explicit=cat(self.explicit),
            edit_at=offsets(self.position),
            repo=np.asarray(self.repo, dtype=np.int32),
        )


def iter_features(
    paths: Sequence[Path], config: FeatureConfig, max_commits: int | None
) -> Iterator[tuple[int, ZhaoFeatures | None]]:
    """``(file index, features)`` for each example; ``None`` once after each commit."""
    for index, path in enumerate(paths):
        kept = 0
        for rec in iter_commits(path):
            if max_commits is not None and kept >= max_commits:
                break
            contexts = commit_contexts(rec)
            if not contexts:
                continue
            kept += 1
            for ctx in contexts:
                features = featurize(ctx, config)
                if features is not None and features.edits:
                    yield index, features
            yield index, None


def build_arrays(
    paths: Sequence[Path],
    config: FeatureConfig,
    table: PieceTable,
    max_commits: int | None = None,
    max_examples: int | None = None,
    label: str = "examples",
    quiet: bool = True,
) -> EditArrays:
    """The examples of the kept commits of ``paths`` (the first ``max_commits`` of each)."""
    builder = _ArrayBuilder()
    total = max_commits * len(paths) if max_commits is not None else None
    with Progress(total, label, quiet=quiet) as bar:
        for index, features in iter_features(paths, config, max_commits):
            if features is None:
                bar.advance(note=f"{len(builder)} examples")
                continue
            builder.add(features, table, index)
            if max_examples is not None and len(builder) >= max_examples:
                break
    return builder.arrays()


def vocab_from_arrays(arrays: EditArrays, table: PieceTable, size: int) -> SubtokenVocab:
    """The ``size`` most frequent pieces of states and inserted contents (training split)."""
    counts = np.bincount(arrays.state, minlength=len(table.pieces))
    counts += np.bincount(arrays.content, minlength=len(table.pieces))
    counts[: len(SPECIALS)] = 0
    return SubtokenVocab.from_counts(
        {table.pieces[i]: int(counts[i]) for i in np.flatnonzero(counts)}, size
    )


def lookup_table(table: PieceTable, vocab: SubtokenVocab) -> np.ndarray:
    """Provisional id -> vocabulary id (``<unk>`` for pieces outside the vocabulary)."""
    return np.asarray([vocab.token_id(p) for p in table.pieces], dtype=np.int64)


def remap(arrays: EditArrays, lut: np.ndarray) -> EditArrays:
    """The same examples with vocabulary ids."""
    return EditArrays(
        state=lut[arrays.state],
        state_at=arrays.state_at,
        position=arrays.position.astype(np.int64),
        content=lut[arrays.content],
        explicit=arrays.explicit.astype(np.int64),
        edit_at=arrays.edit_at,
        repo=arrays.repo,
    )


class RealEditDataset(Dataset[dict[str, torch.Tensor]]):
    """Encoded examples (vocabulary ids) as the tensors ``synthetic.collate_edits`` pads.

    Every edit counts in the loss (Zhao et al. use no conditioning steps on real data,
    §6.2) but the deletion that closes an end-of-edit pair: it always follows its
    ``<hunk>`` insertion (``end_id``), so there is nothing to learn.
    """

    def __init__(self, arrays: EditArrays, end_id: int | None = None) -> None:
        self.arrays = arrays
        self.end_id = end_id

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a = self.arrays
        s0, s1 = int(a.state_at[i]), int(a.state_at[i + 1])
        e0, e1 = int(a.edit_at[i]), int(a.edit_at[i + 1])

        def tensor(values: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.asarray(values, dtype=np.int64))

        content = tensor(a.content[e0:e1])
        return {
            "state": tensor(a.state[s0:s1]),
            "edit_position": tensor(a.position[e0:e1]),
            "edit_content": content,
            "edit_explicit": tensor(a.explicit[e0:e1]),
            "loss_mask": ~_after_end(content[None], self.end_id)[0],
        }


def _after_end(content: torch.Tensor, end_id: int | None) -> torch.Tensor:
    """(B, T): True at the edit right after a ``<hunk>`` insertion (its deletion)."""
    out = torch.zeros_like(content, dtype=torch.bool)
    if end_id is not None:
        out[:, 1:] = content[:, :-1] == end_id
    return out


# ---------------------------------------------------------------- evaluation


@dataclass
class TeacherForced:
    """Per-edit outcomes of a teacher-forced pass (§6.2), one entry per token edit.

    End-of-edit pairs are not token edits: they are left out of these arrays, except that
    ``first_of_edit`` marks the token edits that follow one (the first edit of a change:
    where it goes is the next-edit question) and ``end_right`` holds, per ``<hunk>``
    insertion, whether the model predicted it.
    """

    correct: np.ndarray  # position and content right, gold content not <unk>
    position_right: np.ndarray
    content_right: np.ndarray  # at the gold position
    unknown: np.ndarray  # gold content is <unk>
    confidence: np.ndarray  # log P(p̂) + log P(ĉ | p̂)
    first_of_edit: np.ndarray
    example: np.ndarray  # the dataset index each edit comes from
    end_right: np.ndarray

    def summary(self) -> dict[str, float | int]:
        n = max(len(self.correct), 1)
        first = self.first_of_edit
        return {
            "edits": len(self.correct),
            "subtoken_accuracy": float(self.correct.sum() / n),
            "position_accuracy": float(self.position_right.sum() / n),
            "content_accuracy_at_gold_position": float(self.content_right.sum() / n),
            "unk_rate": float(self.unknown.sum() / n),
            "first_edits": int(first.sum()),
            "first_edit_accuracy": float(self.correct[first].mean()) if first.any() else 0.0,
            "first_edit_position_accuracy": (
                float(self.position_right[first].mean()) if first.any() else 0.0
            ),
            "ends": len(self.end_right),
            "end_accuracy": float(self.end_right.mean()) if len(self.end_right) else 0.0,
        }


def content_logits_at(
    model: ImplicitAttention,
    h: torch.Tensor,
    content_logits: torch.Tensor,
    gold_columns: torch.Tensor,
    columns: torch.Tensor,
) -> torch.Tensor:
    """IA's content logits had each edit been at ``columns`` instead of its gold position.

    The analogical decoder's content logits are ``W (a + u) + b`` with ``u = H[:, column]``
    and ``a`` built from earlier edits only (§4, Appendix D.2), so moving edit t to another
    column adds ``W (H[column] - H[gold])`` to its row and changes no other row.
    ``h`` is ``model.encode(batch)``; all index tensors are (B, T).
    """
    d = model.config.hidden
    u_gold = h.gather(1, gold_columns[..., None].expand(-1, -1, d))
    u_new = h.gather(1, columns[..., None].expand(-1, -1, d))
    return content_logits + (u_new - u_gold) @ model.content_out.weight.T


def teacher_forced(
    model: ImplicitAttention,
    dataset: Dataset[Batch],
    batch_size: int = 32,
    quiet: bool = True,
    end_id: int | None = None,
) -> TeacherForced:
    """Every edit of ``dataset`` predicted from the gold history (§6.2, Fig. 4d).

    Position and content are right when both argmaxes hit the gold edit (content at the
    gold position, as teacher forcing gives it); the confidence is that of the model's own
    predicted edit, P(p̂)·P(ĉ | p̂), with the content at p̂ from :func:`content_logits_at`.
    """
    from ripple.training.synthetic import collate_edits

    if model.config.decoder != "analogical":
        raise ValueError("the confidence of Fig. 4d is computed for the analogical decoder")
    model.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in TeacherForced.__dataclass_fields__}
    size = len(dataset)  # type: ignore[arg-type]
    with torch.no_grad(), Progress(size, "teacher-forced", quiet=quiet) as bar:
        for start in range(0, size, batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, size))]
            batch = collate_edits(items)
            h = model.encode(batch)
            position_logits, content_logits = model(batch)
            gold_cols = model.columns(batch)
            gold_content = batch["edit_content"]
            p_hat, pos_hat = position_logits.softmax(-1).max(-1)
            moved = content_logits_at(model, h, content_logits, gold_cols, pos_hat)
            c_hat_p, _ = moved.softmax(-1).max(-1)
            position_right = pos_hat == gold_cols
            content_right = content_logits.argmax(-1) == gold_content
            unknown = gold_content == _UNK
            right = position_right & content_right
            ends = (gold_content == end_id) if end_id is not None else torch.zeros_like(right)
            closing = _after_end(gold_content, end_id)
            mask = batch["edit_mask"] & ~ends & ~closing
            first = torch.zeros_like(right)
            first[:, 1:] = closing[:, :-1]
            values = {
                "correct": right & ~unknown,
                "position_right": position_right,
                "content_right": content_right & ~unknown,
                "unknown": unknown,
                "confidence": p_hat.clamp_min(1e-30).log() + c_hat_p.clamp_min(1e-30).log(),
                "first_of_edit": first,
                "example": torch.arange(start, start + len(items))[:, None].expand_as(right),
            }
            for key, value in values.items():
                parts[key].append(value[mask].numpy())
            parts["end_right"].append(right[ends & batch["edit_mask"]].numpy())
            bar.advance(len(items))
    return TeacherForced(**{k: np.concatenate(v) for k, v in parts.items()})


def confidence_curve(
    confidence: np.ndarray, correct: np.ndarray, percentiles: Sequence[float] | None = None
) -> dict[str, list[float]]:
    """Fig. 4d: accuracy among the predictions above each confidence percentile.

    At percentile x the model predicts only on the (100 - x)% of edits where it is most
    confident; ``accuracy`` is the mean of ``correct`` there, ``count`` how many there are.
    """
    points = list(percentiles) if percentiles is not None else [float(x) for x in range(0, 100, 5)]
    order = np.argsort(-confidence, kind="stable")
    ranked = correct[order].astype(np.float64)
    cumulative = np.cumsum(ranked)
    accuracy, count, threshold = [], [], []
    n = len(ranked)
    for x in points:
        keep = max(math.ceil(n * (100.0 - x) / 100.0), 1) if n else 0
        accuracy.append(float(cumulative[keep - 1] / keep) if keep else 0.0)
        count.append(float(keep))
        threshold.append(float(confidence[order][keep - 1]) if keep else 0.0)
    return {
        "percentile": points,
        "accuracy": accuracy,
        "count": count,
        "min_log_confidence": threshold,
    }


# ---------------------------------------------------------------- threshold on dev replay


@dataclass
class ScoredStep:
    """The ``ia`` predictor's top suggestion at one replay step, with no threshold."""

    score: float  # 0 when silent
    exact: bool
    latency_ms: float


def score_replay_steps(
    predictor: ZhaoPredictor,
    paths: Sequence[Path],
    max_commits: int | None,
    quiet: bool = True,
) -> list[ScoredStep]:
    """Run ``predictor`` (its threshold ignored) on every replay step of ``paths``."""
    out: list[ScoredStep] = []
    total = max_commits * len(paths) if max_commits is not None else None
    with Progress(total, "dev replay", quiet=quiet) as bar:
        for _, steps in iter_replay_commits(paths, max_commits):
            for step in steps:
                t0 = time.perf_counter()
                suggestions = predictor.ranked(step.ctx)
                ms = (time.perf_counter() - t0) * 1000
                if suggestions:
                    top = suggestions[0]
                    exact = any(is_exact(top, t) for t in step.truth)
                    out.append(ScoredStep(top.score, exact, ms))
                else:
                    out.append(ScoredStep(0.0, False, ms))
            bar.advance(note=f"{len(out)} steps")
    return out


def threshold_sweep(steps: Sequence[ScoredStep]) -> list[dict[str, float]]:
    """exact@1, precision@1 and coverage of the predictor at a range of thresholds."""
    n = max(len(steps), 1)
    rows = []
    for threshold in (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        answered = [s for s in steps if s.score > 0 and s.score >= threshold]
        exact = sum(s.exact for s in answered)
        rows.append(
            {
                "threshold": threshold,
                "exact@1": exact / n,
                "precision@1": exact / len(answered) if answered else 0.0,
                "coverage": len(answered) / n,
                "answered": float(len(answered)),
            }
        )
    return rows


def choose_threshold(
    steps: Sequence[ScoredStep], target_precision: float, min_answered: int = 20
) -> tuple[float, str]:
    """The lowest score threshold whose top suggestions reach ``target_precision`` on dev.

    Only thresholds that keep at least ``min_answered`` answered steps count. When none
    reaches the target, the predictor is made silent (``SILENT``, above every probability):
    a wrong suggestion costs the user more than no suggestion. Returns it and how it was
    chosen.
    """
    scores = sorted({s.score for s in steps if s.score > 0})
    best = 0.0
    for threshold in scores:
        answered = [s for s in steps if s.score >= threshold]
        if len(answered) < min_answered:
            break
        precision = sum(s.exact for s in answered) / len(answered)
        if precision >= target_precision:
            return threshold, f"lowest score with dev precision@1 >= {target_precision}"
        best = max(best, precision)
    return SILENT, (
        f"no threshold reaches dev precision@1 {target_precision} (best {best:.3f} with "
        f">= {min_answered} answers): silent"
    )


# ---------------------------------------------------------------- ripple train edits

_SETTINGS: Final = (
    "seed",
    "vocab_size",
    "max_commits",
    "max_examples",
    "dev_repos",
    "dev_max_commits",
    "window",
    "max_edits",
    "max_hunks",
    "hidden",
    "layers",
    "dropout",
    "hunk_markers",
)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings = {name: getattr(args, name) for name in _SETTINGS}
    settings["dev_repos"] = list(args.dev_repos)  # as JSON gives it back
    return settings


def _feature_config(settings: dict[str, Any]) -> FeatureConfig:
    return FeatureConfig(
        window=settings["window"],
        max_edits=settings["max_edits"],
        max_hunks=settings["max_hunks"],
        hunk_markers=settings.get("hunk_markers", False),
    )


def _check_train_args(args: argparse.Namespace) -> dict[str, Any]:
    positive = ("epochs", "batch_size", "hidden", "layers", "window", "max_edits", "max_hunks")
    for name in positive:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.vocab_size <= len(SPECIALS):
        raise UsageError(f"--vocab-size must be more than {len(SPECIALS)}")
    if args.hidden % 8:
        raise UsageError("--hidden must be a multiple of 8 (IA uses 8 attention heads)")
    for name in ("max_commits", "max_examples", "dev_max_commits", "max_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.threads < 0:
        raise UsageError("--threads must be 0 (torch's default) or more")
    if not 0.0 <= args.dropout < 1.0:
        raise UsageError("--dropout must be in [0, 1)")
    if not 0.0 < args.target_precision <= 1.0:
        raise UsageError("--target-precision must be in (0, 1]")
    settings = _settings(args)
    run_file = args.out / "run.json"
    if args.resume:
        if not run_file.exists():
            raise UsageError(f"nothing to resume in {args.out} (no run.json)")
        saved = json.loads(run_file.read_text(encoding="utf-8"))
        different = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        if different:
            raise UsageError(f"--resume with settings that differ from the run: {different}")
    elif (args.out / "checkpoints").exists():
        raise UsageError(f"{args.out} already holds a run; pass --resume or another --out")
    return settings


def _end_id(vocab: SubtokenVocab) -> int | None:
    """The id of the end-of-edit piece, when the data has it."""
    return vocab.token_id(HUNK_END) if HUNK_END in vocab.tokens else None


def _split_files(data: Path, dev_repos: Sequence[str]) -> tuple[list[Path], list[Path]]:
    permissive = permissive_training_repos(data)
    by_repo = {repo_of_file(p): p for p in permissive}
    unknown = [r for r in dev_repos if r not in by_repo]
    if unknown:
        raise UsageError(
            f"--dev-repos: {', '.join(unknown)} is not a permissive training repository in {data}"
        )
    train = [p for r, p in by_repo.items() if r not in dev_repos]
    dev = [by_repo[r] for r in dev_repos]
    return train, dev


def _build_data(
    args: argparse.Namespace, settings: dict[str, Any], log: Any
) -> tuple[EditArrays, EditArrays, SubtokenVocab, dict[str, Any]]:
    """Build (or reload) the encoded train/dev examples and the vocabulary of a run."""
    folder = args.out / "data"
    meta_file = folder / "meta.json"
    config = _feature_config(settings)
    if meta_file.exists():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("settings") == settings:
            table = PieceTable(json.loads((folder / "pieces.json").read_text(encoding="utf-8")))
            train, dev = EditArrays.load(folder / "train.npz"), EditArrays.load(folder / "dev.npz")
            vocab = SubtokenVocab.from_json(
                json.loads((args.out / "vocab.json").read_text(encoding="utf-8"))
            )
            log(f"reusing the data set in {folder}")
            return train, dev, vocab, meta
    train_files, dev_files = _split_files(args.data, args.dev_repos)
    table = PieceTable()
    t0 = time.monotonic()
    train = build_arrays(
        train_files, config, table, args.max_commits, args.max_examples, "train data", args.quiet
    )
    dev = build_arrays(dev_files, config, table, args.dev_max_commits, None, "dev data", args.quiet)
    vocab = vocab_from_arrays(train, table, args.vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pieces.json").write_text(json.dumps(table.pieces, ensure_ascii=False), encoding="utf-8")
    train.save(folder / "train.npz")
    dev.save(folder / "dev.npz")
    (args.out / "vocab.json").write_text(
        json.dumps(vocab.to_json(), ensure_ascii=False), encoding="utf-8"
    )
    meta = {
        "settings": settings,
        "train_repos": [repo_of_file(p) for p in train_files],
        "dev_repos": [repo_of_file(p) for p in dev_files],
        "train_examples": len(train),
        "train_edits": train.edits(),
        "dev_examples": len(dev),
        "dev_edits": dev.edits(),
        "distinct_pieces": len(table.pieces),
        "build_s": round(time.monotonic() - t0, 1),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    log(
        f"data: {len(train)} train examples ({train.edits()} edits), {len(dev)} dev "
        f"({dev.edits()} edits), {len(table.pieces)} distinct pieces, {meta['build_s']} s"
    )
    return train, dev, vocab, meta


def run_train(args: argparse.Namespace) -> int:
    """Entry point of ``ripple train edits`` (see the module docstring)."""
    settings = _check_train_args(args)
    from ripple.models.nets.zhao import ImplicitAttention, ZhaoConfig, build_zhao_model
    from ripple.training.synthetic import collate_edits
    from ripple.training.trainer import TrainConfig, Trainer, seed_everything

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device")

    def log(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "run.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    if args.threads:
        torch.set_num_threads(args.threads)
    train_raw, dev_raw, vocab, meta = _build_data(args, settings, log)
    table = PieceTable(json.loads((args.out / "data" / "pieces.json").read_text(encoding="utf-8")))
    lut = lookup_table(table, vocab)
    end_id = _end_id(vocab)
    train_data = RealEditDataset(remap(train_raw, lut), end_id)
    dev_data = RealEditDataset(remap(dev_raw, lut), end_id)

    seed_everything(args.seed)
    model_config = ZhaoConfig(
        vocab_size=len(vocab), hidden=args.hidden, layers=args.layers, dropout=args.dropout
    )
    model = build_zhao_model("ia", model_config)
    assert isinstance(model, ImplicitAttention)
    config = TrainConfig.from_args(args)
    trainer = Trainer(
        model,
        config,
        train_data,
        dev_data,
        collate_edits,
        model_config={
            "kind": "ia",
            **model_config.to_dict(),
            "features": _feature_config(settings).to_dict(),
            "settings": settings,
        },
    )
    result = trainer.run()
    if trainer.rank != 0:
        return 0
    train_s = round(time.monotonic() - started, 1)
    trainer.load_best()
    dev_eval = teacher_forced(model, dev_data, args.batch_size, args.quiet, end_id)
    report: dict[str, Any] = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": result.steps,
        "best_step": result.best_step,
        "stopped_early": result.stopped_early,
        "data": meta,
        "vocab_size": len(vocab),
        "dev": dev_eval.summary(),
        "wall_s_until_trained": train_s,
    }
    if args.export is not None:
        report["export"] = _export_with_threshold(args, settings, vocab, report, log)
    report["wall_s"] = round(time.monotonic() - started, 1)
    (args.out / "results.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(
        f"IA on real edits: dev sub-token accuracy {100 * report['dev']['subtoken_accuracy']:.1f}% "
        f"({report['dev']['edits']} edits; best step {result.best_step} of {result.steps}; "
        f"{report['parameters']:,} parameters; {report['wall_s']} s)"
    )
    if "export" in report:
        e = report["export"]
        print(f"exported to {args.export} ({e['onnx_mb']} MB); threshold {e['threshold']:.3f} ({e['how']})")
    return 0


def _export_with_threshold(
    args: argparse.Namespace,
    settings: dict[str, Any],
    vocab: SubtokenVocab,
    report: dict[str, Any],
    log: Any,
) -> dict[str, Any]:
    """Export the best model, choose the ``ia`` threshold on dev replay, export it for good."""
    from ripple.models.runtime import load_model
    from ripple.models.suggest.zhao_predictor import IAConfig, ZhaoPredictor
    from ripple.training.export import export_zhao

    features = _feature_config(settings).to_dict()
    metadata: dict[str, Any] = {
        "features": features,
        "training_data": {
            "train_repos": report["data"]["train_repos"],
            "dev_repos": report["data"]["dev_repos"],
            "train_examples": report["data"]["train_examples"],
        },
        "dev": report["dev"],
    }
    probe = args.out / "export-probe"
    export_zhao(args.out / "best", probe, vocab=vocab.to_json(), metadata=metadata)
    predictor = ZhaoPredictor.from_model(load_model(probe, device="cpu", threads=1), IAConfig())
    _, dev_files = _split_files(args.data, args.dev_repos)
    steps = score_replay_steps(predictor, dev_files, args.calibrate_commits, quiet=args.quiet)
    threshold, how = choose_threshold(steps, args.target_precision)
    sweep = threshold_sweep(steps)
    log(f"threshold {threshold:.3f} on {len(steps)} dev replay steps: {how}")
    metadata["threshold"] = threshold
    metadata["threshold_choice"] = {
        "how": how,
        "target_precision": args.target_precision,
        "dev_steps": len(steps),
        "dev_commits_per_repo": args.calibrate_commits,
        "sweep": sweep,
    }
    manifest = export_zhao(args.out / "best", args.export, vocab=vocab.to_json(), metadata=metadata)
    import shutil

    shutil.rmtree(probe, ignore_errors=True)
    return {
        "threshold": threshold,
        "how": how,
        "sweep": sweep,
        "dev_steps": len(steps),
        "onnx_mb": round((args.export / manifest.onnx).stat().st_size / 1e6, 2),
    }


# ---------------------------------------------------------------- ripple eval edits


def _load_run(run_dir: Path) -> tuple[ImplicitAttention, SubtokenVocab, FeatureConfig]:
    from ripple.models.nets.zhao import ImplicitAttention, ZhaoConfig
    from ripple.training.checkpoints import load_checkpoint

    folder = run_dir / "best" if (run_dir / "best" / "model.safetensors").exists() else run_dir
    if not (folder / "model.safetensors").exists():
        raise UsageError(f"{run_dir}: no trained model (best/model.safetensors)")
    vocab_file = run_dir / "vocab.json"
    if not vocab_file.exists():
        raise UsageError(f"{run_dir}: no vocab.json (not a `ripple train edits` run)")
    loaded = load_checkpoint(folder)
    stored = loaded.state.get("model_config", {})
    names = set(ZhaoConfig.__dataclass_fields__)
    model = ImplicitAttention(ZhaoConfig(**{k: v for k, v in stored.items() if k in names}))
    model.load_state_dict(loaded.model)
    vocab = SubtokenVocab.from_json(json.loads(vocab_file.read_text(encoding="utf-8")))
    return model, vocab, FeatureConfig.from_dict(stored.get("features", {}))


def run_eval(args: argparse.Namespace) -> int:
    """Entry point of ``ripple eval edits``: sub-token accuracy and the Fig. 4d curve."""
    paths: list[Path] = list(args.commits) if args.commits else []
    if not paths:
        from ripple.training.data import commit_files

        files = commit_files(args.data)
        paths = [files[r] for r in VALIDATION_REPOS if r in files]
        if len(paths) != len(VALIDATION_REPOS):
            raise UsageError(f"{args.data}: the validation repositories are not all there")
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such commit file")
    if args.max_commits is not None and args.max_commits < 1:
        raise UsageError("--max-commits must be at least 1")
    if args.replay_max_commits < 1:
        raise UsageError("--replay-max-commits must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, vocab, config = _load_run(args.run)
    t0 = time.monotonic()
    table = PieceTable(vocab.tokens)
    raw = build_arrays(paths, config, table, args.max_commits, None, "eval data", args.quiet)
    end_id = _end_id(vocab) if config.hunk_markers else None
    data = RealEditDataset(remap(raw, lookup_table(table, vocab)), end_id)
    outcome = teacher_forced(model, data, quiet=args.quiet, end_id=end_id)
    curve = confidence_curve(outcome.confidence, outcome.correct)
    per_repo = {}
    edit_repo = raw.repo[outcome.example]
    for index, path in enumerate(paths):
        chosen = edit_repo == index
        per_repo[repo_of_file(path)] = {
            "edits": int(chosen.sum()),
            "subtoken_accuracy": float(outcome.correct[chosen].mean()) if chosen.any() else 0.0,
        }
    report: dict[str, Any] = {
        "run": str(args.run),
        "commits": [str(p) for p in paths],
        "max_commits": args.max_commits,
        "examples": len(raw),
        **outcome.summary(),
        "per_repository": per_repo,
        "fig4d": curve,
    }
    if args.model is not None:
        report["replay"] = _replay_sweep(args, paths, config)
    report["wall_s"] = round(time.monotonic() - t0, 1)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.plot is not None:
        from ripple.training.plot import line_plot

        line_plot(
            args.plot,
            {"IA": (curve["percentile"], [100 * a for a in curve["accuracy"]])},
            title="Fig. 4d: sub-token accuracy when confident",
            x_label="confidence percentile",
            y_label="accuracy %",
            x_range=(0.0, 100.0),
            y_range=(0.0, 100.0),
        )
    print(
        f"sub-token accuracy {100 * report['subtoken_accuracy']:.1f}% on {report['edits']} edits "
        f"of {len(raw)} examples (position {100 * report['position_accuracy']:.1f}%, "
        f"<unk> gold {100 * report['unk_rate']:.1f}%)"
    )
    if report["first_edits"]:
        print(
            f"  first edit of a change: {100 * report['first_edit_accuracy']:.1f}% "
            f"(position {100 * report['first_edit_position_accuracy']:.1f}%, "
            f"{report['first_edits']} edits); end of a change predicted "
            f"{100 * report['end_accuracy']:.1f}% ({report['ends']})"
        )
    for x, a in zip(curve["percentile"], curve["accuracy"], strict=True):
        if x in (0, 25, 50, 75, 90, 95):
            print(f"  confidence percentile {x:>4.0f}: accuracy {100 * a:.1f}%")
    if "replay" in report:
        replay = report["replay"]
        print(
            f"ia on {replay['steps']} replay steps (first {replay['max_commits']} kept commits "
            "of each file), at each threshold:"
        )
        print(f"  {'threshold':>9}  {'exact@1':>8}  {'precision@1':>11}  {'coverage':>8}")
        for row in replay["sweep"]:
            print(
                f"  {row['threshold']:>9.2f}  {row['exact@1']:>8.4f}  {row['precision@1']:>11.4f}  "
                f"{row['coverage']:>8.4f}"
            )
    print(f"(JSON written to {args.json_out}{'; plot ' + str(args.plot) if args.plot else ''})")
    return 0


def _replay_sweep(
    args: argparse.Namespace, paths: Sequence[Path], config: FeatureConfig
) -> dict[str, Any]:
    """The exported model as the ``ia`` predictor on replay steps, at every threshold.

    This measures; it chooses nothing (the shipped threshold comes from the dev
    repositories, see ``choose_threshold``).
    """
    from ripple.models.runtime import ModelError, load_model
    from ripple.models.suggest.zhao_predictor import IAConfig, ZhaoPredictor

    try:
        predictor = ZhaoPredictor.from_model(
            load_model(args.model, device="cpu", threads=1), IAConfig(threshold=0.0)
        )
    except ModelError as exc:
        raise UsageError(str(exc)) from None
    if predictor.features != config:
        raise UsageError(f"{args.model} was not exported from {args.run} (featurizer differs)")
    steps = score_replay_steps(predictor, paths, args.replay_max_commits, quiet=args.quiet)
    latencies = sorted(s.latency_ms for s in steps)
    return {
        "model": str(args.model),
        "max_commits": args.replay_max_commits,
        "steps": len(steps),
        "sweep": threshold_sweep(steps),
        "latency_ms_p50": float(np.percentile(latencies, 50)) if latencies else 0.0,
        "latency_ms_p99": float(np.percentile(latencies, 99)) if latencies else 0.0,
    }
