"""Retrieve-and-edit in the product: drafting a new function's body from the workspace.

The workspace index (``ripple.models.suggest.functions.FunctionIndex``) holds every
function as header (signature + docstring) -> body. When the user has written a header,
the learned retriever (``LearnedEmbedder``: the vMF encoder's ``mu`` of the header) finds
the most similar function of the workspace and the span-copying editor
(``EditorDrafter``) rewrites that function's body for the new header, reading
``header <edit> neighbour's header <to> neighbour's body`` (``editor_input``).

Both sides see functions in one canonical form (``function_tokens``): the header moved to
column 0 and the body re-indented to 4 spaces, as lossless tokens
(``copy_features.fragment_tokens``); ``ripple train drafts`` builds its pairs with the same
function, so training and serving read identical sequences. The draft is re-indented for
the new function on the way out.

The bundled models live in ``models/weights/drafts/{retriever,editor}``
(``load_function_models``); trained by ``ripple train drafts`` on the permissively licensed
training repositories.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from ripple.models.runtime.manifest import ModelError
from ripple.models.suggest.copy_features import EDIT, TO, fragment_tokens
from ripple.models.suggest.functions import (
    FunctionRecord,
    _header_indents,
    _leading_ws,
    reindent,
)

if TYPE_CHECKING:
    from ripple.models.suggest.copy_predictor import OnnxEditor
    from ripple.models.suggest.retrieval import OnnxRetriever

__all__ = [
    "BODY_INDENT",
    "DRAFTS_DIR",
    "EditorDrafter",
    "LearnedEmbedder",
    "canonical_body",
    "canonical_header",
    "editor_input",
    "function_tokens",
    "load_function_models",
]

DRAFTS_DIR: Final = "drafts"
BODY_INDENT: Final = "    "
MAX_HEADER: Final = 120  # header tokens read (the signature and the docstring's start)
MAX_BODY: Final = 200  # body tokens read and written


def editor_input(x: Sequence[str], x2: Sequence[str], y2: Sequence[str]) -> tuple[str, ...]:
    """What the editor reads: the new input, then the retrieved input and output."""
    return (*x, EDIT, *x2, TO, *y2)


def canonical_header(header: str) -> str:
    """``header`` moved to column 0 (its ``def`` line's indentation removed from each line)."""
    indent = _leading_ws(header.split("\n", 1)[0])
    if not indent:
        return header
    return "\n".join(
        line[len(indent) :] if line.startswith(indent) else line for line in header.split("\n")
    )


def canonical_body(record: FunctionRecord) -> str:
    """The body re-indented from the function's own indentation to ``BODY_INDENT``."""
    return reindent(record.body, record.indent, BODY_INDENT) if record.body.strip() else ""


def function_tokens(record: FunctionRecord) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(header tokens, body tokens) of a function in canonical form, cut to the model's
    limits (header: ``MAX_HEADER``; body: ``MAX_BODY``)."""
    header = fragment_tokens(canonical_header(record.header), "python")[:MAX_HEADER]
    body = fragment_tokens(canonical_body(record), "python")
    return tuple(header), tuple(body)


def header_input(header: str) -> tuple[str, ...]:
    return tuple(fragment_tokens(canonical_header(header), "python")[:MAX_HEADER])


class LearnedEmbedder:
    """Headers -> the vMF retriever's unit vectors (``functions.Embedder``)."""

    def __init__(self, retriever: OnnxRetriever) -> None:
        self.retriever = retriever

    def embed(self, headers: Sequence[str]) -> np.ndarray:
        if not headers:
            return np.zeros((0, self.retriever.dim), dtype=np.float32)
        return self.retriever.embed([header_input(h) for h in headers])


class EditorDrafter:
    """The editor rewrites the neighbour's body for the new header (``functions.Drafter``)."""

    def __init__(self, editor: OnnxEditor, beam: int = 5) -> None:
        self.editor = editor
        self.beam = beam

    def draft_canonical(self, header: str, neighbour: FunctionRecord) -> str | None:
        """The drafted body in canonical form (indented by ``BODY_INDENT``), or None."""
        x2, y2 = function_tokens(neighbour)
        if not y2:
            return None
        if len(y2) > MAX_BODY:  # longer than any body the editor learnt to rewrite
            return canonical_body(neighbour)
        source = editor_input(header_input(header), x2, y2)
        hyps = self.editor.beam(source, self.beam, MAX_BODY)
        for hyp in hyps:
            text = "".join(hyp.tokens)
            if text.strip():
                return text if text.endswith("\n") else text + "\n"
        return None

    def draft(self, header: str, neighbour: FunctionRecord) -> str | None:
        text = self.draft_canonical(header, neighbour)
        if text is None:
            return None
        def_indent, body_indent = _header_indents(header)
        if body_indent is None:
            body_indent = def_indent + BODY_INDENT
        return reindent(text, BODY_INDENT, body_indent)


def load_function_models(
    models_dir: Path | None = None, threads: int | None = 1
) -> tuple[LearnedEmbedder, EditorDrafter]:
    """The bundled (or ``models_dir``'s) retriever and editor for drafts; ``ModelError``
    when either is missing or damaged."""
    from ripple.models.runtime import default_models_dir, load_model
    from ripple.models.suggest.copy_predictor import OnnxEditor
    from ripple.models.suggest.retrieval import OnnxRetriever

    root = models_dir if models_dir is not None else default_models_dir() / DRAFTS_DIR
    retriever = OnnxRetriever(load_model(root / "retriever", device="cpu", threads=threads))
    try:
        editor = OnnxEditor(load_model(root / "editor", device="cpu", threads=threads))
    except ValueError as exc:
        raise ModelError(str(exc), root / "editor") from exc
    return LearnedEmbedder(retriever), EditorDrafter(editor)
