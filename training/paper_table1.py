"""Table 1 of Zhao et al. 2019: test accuracy (%) of E, IR and IA on the synthetic tasks.

These are the numbers ``ripple eval synthetic`` and the grid summary print beside ripple's
own. Rows are the paper's 14 tasks in its order, each with the non-meta figures under the
task's name and the meta figures under ``Meta`` + name (the names of
``ripple.training.synthetic.TASKS``), then ``MultiTask`` (reported with the meta columns
only). The POMP column (an oracle baseline, not a model) is left out.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MODELS", "PAPER_TABLE1", "paper_accuracy"]

MODELS: Final = ("ia", "e", "ir")

# (task, E, IR, IA, meta E, meta IR, meta IA), Table 1 row by row.
_ROWS: Final = (
    ("Append1", 100.0, 100.0, 99.9, 99.9, 13.9, 83.0),
    ("ContextAppend11", 100.0, 98.6, 99.9, 99.5, 2.5, 96.3),
    ("ContextAppend13", 100.0, 98.6, 100.0, 100.0, 73.5, 98.9),
    ("Delete2", 100.0, 99.9, 99.9, 100.0, 94.9, 99.8),
    ("Flip11", 99.7, 82.8, 98.8, 99.1, 10.0, 92.4),
    ("Replace2", 100.0, 99.7, 100.0, 99.8, 93.7, 98.5),
    ("Surround11", 100.0, 91.2, 99.8, 99.6, 12.1, 98.5),
    ("ContextAppend31", 99.5, 76.9, 98.5, 95.7, 18.0, 94.3),
    ("ContextReverse31", 99.4, 72.6, 98.1, 95.3, 14.4, 94.4),
    ("ContextAppend33", 99.6, 76.3, 98.9, 99.3, 73.3, 97.5),
    ("ContextAppend52", 99.2, 74.6, 99.3, 97.2, 63.0, 97.5),
    ("ContextReverse51", 99.0, 59.5, 95.2, 94.7, 22.6, 92.4),
    ("Flip33", 98.7, 76.8, 98.3, 97.5, 73.9, 96.3),
    ("Surround33", 99.6, 79.5, 99.6, 99.1, 74.9, 99.0),
)


def _table() -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for name, e, ir, ia, _, _, _ in _ROWS:
        table[name] = {"ia": ia, "e": e, "ir": ir}
    for name, _, _, _, meta_e, meta_ir, meta_ia in _ROWS:
        table["Meta" + name] = {"ia": meta_ia, "e": meta_e, "ir": meta_ir}
    table["MultiTask"] = {"ia": 53.7, "e": 50.0, "ir": 43.2}
    return table


# Task name -> {"ia": pct, "e": pct, "ir": pct}: non-meta tasks first, then meta, then MultiTask.
PAPER_TABLE1: Final[dict[str, dict[str, float]]] = _table()


def paper_accuracy(task: str, model: str) -> float | None:
    """The paper's test accuracy (%) of ``model`` on ``task``; None if it reports none."""
    return PAPER_TABLE1.get(task, {}).get(model)
