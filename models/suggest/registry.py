"""Every next-edit system by name, so the benchmark and the server pick them the same way.

Factories, not instances: a system may load a model, and only the systems asked for
should pay for that. A learned predictor registers itself here under its name, and a
*model kind* builder that turns a loaded ONNX model of that kind into a predictor; the
shipped system ``ripple`` is the :class:`~ripple.models.suggest.ensemble.Ensemble` of
the rules and every bundled model that loads, behind the calibrated confidence gate.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ripple.models.suggest.api import Predictor
from ripple.models.suggest.baselines import RepeatLastEdit, Silent
from ripple.models.suggest.ensemble import GATE_FILE, Ensemble, Gate
from ripple.models.suggest.rules import RuleEngine

if TYPE_CHECKING:
    from ripple.models.runtime import OnnxModel

PredictorFactory = Callable[[], Predictor]
ModelBuilder = Callable[["OnnxModel"], Predictor]

SHIPPED = "ripple"

# Modules that register model kinds and predictors when imported; imported on first use
# so that naming a system never costs more than the systems asked for.
_PLUGIN_MODULES: list[str] = [
    "ripple.models.suggest.zhao_predictor",  # "ia" and model kind "zhao-ia" (Zhao et al. IA)
    "ripple.models.suggest.copy_predictor",  # "copy-span", "copy-token" (= "seq2seq-copy")
    "ripple.models.suggest.edit_index",  # "retrieve-edit" (retrieve-and-edit over past edits)
    "ripple.models.suggest.c3po_predictor",  # "c3po" and model kind "c3po" (edit completion)
    "ripple.models.suggest.treeedit_predictor",  # "treeedit" and model kind "treeedit" (Yao)
]


def _shipped() -> Predictor:
    return make_shipped().ensemble


_FACTORIES: dict[str, PredictorFactory] = {
    SHIPPED: _shipped,
    RuleEngine.name: RuleEngine,
    Silent.name: Silent,
    RepeatLastEdit.name: RepeatLastEdit,
}
_KINDS: dict[str, ModelBuilder] = {}
_plugins_loaded = False


def _load_plugins() -> None:
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for module in _PLUGIN_MODULES:
            importlib.import_module(module)


def register(name: str, factory: PredictorFactory) -> None:
    """Make ``factory`` available as system ``name`` (replacing one of the same name)."""
    _FACTORIES[name] = factory


def register_model_kind(kind: str, builder: ModelBuilder) -> None:
    """Say how to serve a loaded ONNX model whose manifest has ``kind``."""
    _KINDS[kind] = builder


def model_kinds() -> list[str]:
    _load_plugins()
    return list(_KINDS)


def system_names() -> list[str]:
    """Every registered system, the shipped one first."""
    _load_plugins()
    return list(_FACTORIES)


def make_predictor(name: str) -> Predictor:
    """A fresh instance of system ``name``; ``KeyError`` when there is none."""
    _load_plugins()
    return _FACTORIES[name]()


@dataclass
class Shipped:
    """The shipped ensemble, and what went wrong assembling it (one line per problem)."""

    ensemble: Ensemble
    models: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def make_shipped(models_dir: Path | None = None, device: str = "auto") -> Shipped:
    """The ``ripple`` system: rules + every model in ``models_dir`` that loads.

    ``models_dir`` defaults to the bundled models. A model that fails to load (bad
    manifest, sha256 mismatch, unknown kind) is reported in ``problems`` and left out;
    the rest still serve. The confidence gate comes from ``gate.json`` in the same
    folder (absent: each member's own filter only).
    """
    _load_plugins()
    members: list[Predictor] = [RuleEngine()]
    problems: list[str] = []
    loaded: dict[str, Any] = {}
    from ripple.models.runtime import default_models_dir, load_models

    root = models_dir if models_dir is not None else default_models_dir()
    gate = Gate()
    if root.is_dir():
        models, errors = load_models(root, device=device)
        problems += [str(error) for error in errors]
        for name, model in sorted(models.items()):
            builder = _KINDS.get(model.manifest.kind)
            if builder is None:
                problems.append(
                    f"{model.directory}: model kind {model.manifest.kind!r} is not one this "
                    f"ripple can serve (known: {', '.join(sorted(_KINDS)) or 'none'})"
                )
                continue
            try:
                members.append(builder(model))
                loaded[name] = model
            except Exception as exc:  # a model that cannot be served is left out, loudly
                problems.append(f"{model.directory}: cannot serve this model ({exc})")
        try:
            gate = Gate.load(root / GATE_FILE)
        except Exception as exc:
            problems.append(str(exc))
    elif models_dir is not None:
        problems.append(f"{models_dir}: no such models folder; serving the rules only")
    slow = [m.name for m in members[1:]]  # every model member; the rules are fast
    return Shipped(Ensemble(members, gate, slow=slow), loaded, problems)
