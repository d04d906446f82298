"""The structural editor's view of an example or a live request: context and sources.

One place for what ``training.treeedit_train`` builds from a ``CompletionExample`` and
what ``treeedit_predictor`` builds from the user's edits, so that training and serving
give the editor the same inputs:

* ``context_trees``: the context edits (literal-normalised fragment pairs, nearest first,
  from ``completion.context_pairs``) as edit trees;
* ``prepare_parts``: the sources a SUBTREE action may copy from (P, then the context
  edits' after-trees while the sources stay within ``MAX_SOURCE_NODES`` nodes) and the
  context edits' gold actions, described for the edit encoder.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from ripple.models.edits.grammar import Grammar
from ripple.models.edits.tree import Node
from ripple.models.edits.treeedit import TNode, from_node
from ripple.models.suggest.treeedit_features import ActionInfo, context_actions

__all__ = ["MAX_SOURCE_NODES", "context_trees", "prepare_parts"]

MAX_SOURCE_NODES: Final = 200  # P's nodes + the context after-trees' nodes, at most


def context_trees(
    pairs: Iterable[tuple[Node, Node, int]], grammar: Grammar
) -> list[tuple[TNode, TNode]]:
    """The context edits ``(before, after, line)`` as edit-tree pairs, in order; pairs the
    grammar does not accept are left out."""
    out = []
    for before, after, _line in pairs:
        try:
            out.append((from_node(before, grammar), from_node(after, grammar)))
        except ValueError:
            continue
    return out


def prepare_parts(
    before: TNode,
    context: Sequence[tuple[TNode, TNode]],
    grammar: Grammar,
    max_source_nodes: int = MAX_SOURCE_NODES,
) -> tuple[list[TNode], list[ActionInfo]]:
    """The source trees (P, then the context after-trees that fit within
    ``max_source_nodes`` nodes) and the context edits' described gold actions."""
    sources = [before]
    total = before.size
    for _, after in context:
        if total + after.size > max_source_nodes:
            continue
        sources.append(after)
        total += after.size
    return sources, context_actions(context, grammar)
