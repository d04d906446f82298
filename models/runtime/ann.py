"""Loading annoy indexes (retrieval) without trusting the file.

annoy memory-maps an index and reads it as an array of fixed-size nodes; a truncated
file, or one built for another dimension, is read past its end or misread rather than
refused. So an index is loaded only after: its sha256 matches the one recorded next to
it, its size is a whole number of nodes for the recorded dimension and metric, and, once
mapped, it holds the recorded number of items with vectors of that dimension. A new
index is written to a new file and renamed into place, never over a mapped one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ripple.models.runtime.manifest import ModelError, file_sha256

# Bytes per node: n_descendants + children[2] (+ a float for euclidean) + the vector.
_NODE_WORDS = {"angular": 3, "euclidean": 4, "manhattan": 4}


def node_bytes(dim: int, metric: str) -> int:
    if metric not in _NODE_WORDS:
        raise ModelError(f"annoy metric {metric!r} is not one ripple loads ({', '.join(_NODE_WORDS)})")
    return 4 * (_NODE_WORDS[metric] + dim)


def load_annoy(path: Path, dim: int, metric: str, items: int, sha256: str) -> Any:
    """An ``AnnoyIndex`` for ``path``, after every check above; ``ModelError`` otherwise."""
    from annoy import AnnoyIndex

    if dim <= 0 or items < 0:
        raise ModelError(f"{path}: impossible index shape (dim {dim}, items {items})")
    if not path.is_file():
        raise ModelError(f"{path}: no such annoy index")
    size = path.stat().st_size
    node = node_bytes(dim, metric)
    if size == 0 or size % node:
        raise ModelError(
            f"{path}: {size} bytes is not a whole number of {metric} nodes of dimension {dim} "
            f"({node} bytes each): truncated, or built for another dimension"
        )
    if file_sha256(path) != sha256:
        raise ModelError(f"{path}: sha256 mismatch (the index changed after it was recorded)")
    index = AnnoyIndex(dim, metric)  # type: ignore[arg-type]  # checked by node_bytes
    try:
        index.load(str(path), prefault=False)
    except OSError as exc:
        raise ModelError(f"{path}: annoy could not load it ({exc})") from exc
    if index.get_n_items() != items:
        index.unload()
        raise ModelError(f"{path}: holds {index.get_n_items()} items, {items} recorded")
    if items and len(index.get_item_vector(0)) != dim:
        index.unload()
        raise ModelError(f"{path}: vectors are not of dimension {dim}")
    return index


def save_annoy(index: Any, path: Path) -> str:
    """Write ``index`` beside ``path`` and rename it into place; its sha256."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    index.save(str(tmp))
    # annoy maps the file it saved; unmap before the rename so the index is reloadable.
    index.unload()
    digest = file_sha256(tmp)
    tmp.replace(path)
    return digest
