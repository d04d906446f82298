"""Every next-edit system by name, so the benchmark and the server pick them the same way.

Factories, not instances: a system may load a model, and only the systems asked for
should pay for that. A learned predictor registers itself here under its name; ``ripple``
is always the system as shipped.
"""

from __future__ import annotations

from collections.abc import Callable

from ripple.models.suggest.api import Predictor
from ripple.models.suggest.baselines import RepeatLastEdit, Silent
from ripple.models.suggest.rules import RuleEngine

PredictorFactory = Callable[[], Predictor]

SHIPPED = "ripple"

_FACTORIES: dict[str, PredictorFactory] = {
    SHIPPED: RuleEngine,
    Silent.name: Silent,
    RepeatLastEdit.name: RepeatLastEdit,
}


def register(name: str, factory: PredictorFactory) -> None:
    """Make ``factory`` available as system ``name`` (replacing one of the same name)."""
    _FACTORIES[name] = factory


def system_names() -> list[str]:
    """Every registered system, the shipped one first."""
    return list(_FACTORIES)


def make_predictor(name: str) -> Predictor:
    """A fresh instance of system ``name``; ``KeyError`` when there is none."""
    return _FACTORIES[name]()
