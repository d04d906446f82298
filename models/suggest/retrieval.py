"""Retrievers of retrieve-and-edit (Hashimoto et al. 2018): which stored example to edit.

* ``OnnxRetriever``: the learned vMF retriever (``ripple.models.nets.retriever``) exported
  as one ONNX graph ``(input, input_length) -> mu`` with its vocabulary; ``embed`` gives unit
  vectors, and nearest neighbours by cosine are the retrieval.
* ``VectorIndex``: those vectors in an annoy ``angular`` index, saved with a sidecar
  ``index.json`` (dimension, metric, items, trees, sha256, and one key per item) that is
  checked before annoy maps the file (``ripple.models.runtime.ann``); written to a new file
  and renamed into place, never over a mapped one. ``search_k`` trades speed for recall;
  small collections (below ``EXACT_BELOW`` items) are searched exactly.
* ``LexicalRetriever``: the paper's bag-of-words baseline, cosine between token count
  vectors, searched exactly through an inverted index.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ripple.models.runtime.manifest import ModelError
from ripple.models.suggest.copy_features import CopyVocab

if TYPE_CHECKING:
    from ripple.models.runtime import OnnxModel

__all__ = [
    "EXACT_BELOW",
    "RETRIEVER_KIND",
    "LexicalRetriever",
    "OnnxRetriever",
    "VectorIndex",
]

RETRIEVER_KIND: Final = "vmf-retriever"
VOCAB_FILE: Final = "vocab.json"
INDEX_FILE: Final = "index.ann"
SIDECAR_FILE: Final = "index.json"
EXACT_BELOW: Final = 20_000
DEFAULT_TREES: Final = 10  # Hashimoto et al.'s setting (IMPLEMENTATION-NOTES.md)


class OnnxRetriever:
    """The exported encoder ``x -> mu(x)``: token sequences in, unit vectors out."""

    def __init__(self, model: OnnxModel, max_input: int | None = None) -> None:
        if model.manifest.kind != RETRIEVER_KIND:
            raise ModelError(
                f"{model.directory}: a {model.manifest.kind} model, not a {RETRIEVER_KIND}"
            )
        self.name = model.manifest.name
        self.model = model
        self.vocab = CopyVocab(list(model.read_json(VOCAB_FILE)))
        config: dict[str, Any] = dict(model.manifest.config)
        self.dim = int(config["net"]["dim"])
        self.max_input = max_input if max_input is not None else int(config.get("max_input", 400))
        if len(self.vocab) != int(config["net"]["vocab_size"]):
            raise ModelError(f"{model.directory}: vocab.json does not match the model")

    def embed(self, sequences: Sequence[Sequence[str]], batch: int = 64) -> np.ndarray:
        """(n, dim) float32 unit rows, one per token sequence (cut to ``max_input``)."""
        out = np.zeros((len(sequences), self.dim), dtype=np.float32)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        for first in range(0, len(order), batch):
            rows = order[first : first + batch]
            seqs = [list(sequences[i])[: self.max_input] for i in rows]
            width = max(1, max(len(s) for s in seqs))
            ids = np.zeros((len(rows), width), dtype=np.int64)
            for r, seq in enumerate(seqs):
                ids[r, : len(seq)] = self.vocab.ids(seq)
            lengths = np.array([max(1, len(s)) for s in seqs], dtype=np.int64)
            mu = self.model.run({"input": ids, "input_length": lengths})["mu"]
            out[rows] = mu
        return out


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


class VectorIndex:
    """Cosine nearest neighbours over fixed unit vectors: annoy, or exact when small."""

    def __init__(self, vectors: np.ndarray, keys: Sequence[Any], trees: int = DEFAULT_TREES):
        if vectors.ndim != 2 or len(vectors) != len(keys):
            raise ValueError("one vector (row) per key")
        self.vectors = _unit_rows(vectors)
        self.keys = list(keys)
        self.dim = int(vectors.shape[1])
        self.trees = trees
        self._annoy: Any = None
        if len(self.keys) >= EXACT_BELOW:
            self._annoy = self._build()

    def _build(self) -> Any:
        from annoy import AnnoyIndex

        index = AnnoyIndex(self.dim, "angular")
        for i, vector in enumerate(self.vectors):
            index.add_item(i, vector)
        index.build(self.trees, n_jobs=1)
        return index

    def __len__(self) -> int:
        return len(self.keys)

    def search(self, query: np.ndarray, k: int, search_k: int = -1) -> list[tuple[float, Any]]:
        """The ``k`` nearest keys with their cosine similarity, best first."""
        if not self.keys or k <= 0:
            return []
        q = _unit_rows(np.asarray(query, dtype=np.float32)[None])[0]
        if self._annoy is None:
            sims = self.vectors @ q
            k = min(k, len(sims))
            top = np.argpartition(-sims, k - 1)[:k]
            top = top[np.argsort(-sims[top], kind="stable")]
            return [(float(sims[i]), self.keys[i]) for i in top]
        ids, dists = self._annoy.get_nns_by_vector(q, k, search_k=search_k, include_distances=True)
        # annoy's angular distance is sqrt(2 - 2 cos)
        return [(1.0 - d * d / 2.0, self.keys[i]) for i, d in zip(ids, dists, strict=True)]

    def save(self, folder: Path) -> None:
        """``folder/index.ann`` (annoy) + ``folder/index.json`` (sidecar with the keys)."""
        from ripple.models.runtime.ann import save_annoy

        folder.mkdir(parents=True, exist_ok=True)
        index = self._annoy if self._annoy is not None else self._build()
        digest = save_annoy(index, folder / INDEX_FILE)
        self._annoy = None  # save_annoy unmapped it; reload if needed
        sidecar = {
            "format": "ripple-annoy/1",
            "dim": self.dim,
            "metric": "angular",
            "items": len(self.keys),
            "trees": self.trees,
            "sha256": digest,
            "keys": self.keys,
        }
        tmp = folder / f".{SIDECAR_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(sidecar) + "\n", encoding="utf-8")
        tmp.replace(folder / SIDECAR_FILE)
        if len(self.keys) >= EXACT_BELOW:
            self._annoy = self._load_annoy(folder, sidecar)

    @staticmethod
    def _load_annoy(folder: Path, sidecar: dict[str, Any]) -> Any:
        from ripple.models.runtime.ann import load_annoy

        return load_annoy(
            folder / INDEX_FILE,
            int(sidecar["dim"]),
            str(sidecar["metric"]),
            int(sidecar["items"]),
            str(sidecar["sha256"]),
        )

    @classmethod
    def load(cls, folder: Path) -> VectorIndex:
        """An index saved by ``save``: the sidecar is checked, then annoy maps the file."""
        path = folder / SIDECAR_FILE
        try:
            sidecar = json.loads(path.read_text(encoding="utf-8"))
            keys = list(sidecar["keys"])
            if sidecar.get("metric") != "angular" or int(sidecar["items"]) != len(keys):
                raise ValueError("metric or item count does not match the keys")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path}: not a ripple annoy sidecar ({exc})") from exc
        annoy = cls._load_annoy(folder, sidecar)
        vectors = np.array(
            [annoy.get_item_vector(i) for i in range(len(keys))], dtype=np.float32
        ).reshape(len(keys), int(sidecar["dim"]))
        self = cls.__new__(cls)
        self.vectors = _unit_rows(vectors)
        self.keys = keys
        self.dim = int(sidecar["dim"])
        self.trees = int(sidecar.get("trees", DEFAULT_TREES))
        self._annoy = annoy if len(keys) >= EXACT_BELOW else None
        if self._annoy is None:
            annoy.unload()
        return self


class LexicalRetriever:
    """Bag-of-words cosine (the paper's LexicalRetriever), exact, via an inverted index."""

    def __init__(self, documents: Sequence[Sequence[str]]) -> None:
        self.postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.norms: list[float] = []
        for i, doc in enumerate(documents):
            counts = Counter(doc)
            self.norms.append(math.sqrt(sum(c * c for c in counts.values())))
            for token, count in counts.items():
                self.postings[token].append((i, float(count)))

    def __len__(self) -> int:
        return len(self.norms)

    def search(
        self, query: Sequence[str], k: int, exclude: int | None = None
    ) -> list[tuple[float, int]]:
        """The ``k`` most similar documents as (cosine, index), best first; ties by index."""
        counts = Counter(query)
        qnorm = math.sqrt(sum(c * c for c in counts.values()))
        if not qnorm:
            return []
        scores: dict[int, float] = defaultdict(float)
        for token, count in counts.items():
            for doc, weight in self.postings.get(token, ()):
                scores[doc] += count * weight
        ranked = sorted(
            (
                (score / (qnorm * self.norms[doc]), doc)
                for doc, score in scores.items()
                if doc != exclude and self.norms[doc]
            ),
            key=lambda pair: (-pair[0], pair[1]),
        )
        return ranked[:k]
