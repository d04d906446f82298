"""The server's settings: one typed, fully defaulted dataclass.

Clients pass them as ``initializationOptions`` and later as the ``ripple`` section of
``workspace/didChangeConfiguration``; both go through :func:`parse_config`, which
accepts camelCase or snake_case keys, keeps the current value of every key it is not
given, and reports (rather than raises on) unknown keys and wrong types, so a typo in a
user's settings never stops the server.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, get_type_hints


@dataclass(frozen=True)
class RippleConfig:
    """Everything a user can tune; the defaults are what ships."""

    # Suggestions
    enabled: bool = True
    max_suggestions: int = 5
    # Extra confidence floor on top of the calibrated gate (0 = the gate alone).
    min_score: float = 0.0
    # How many other workspace files (found by the identifiers an edit touched) a
    # request may look at, besides the open documents.
    max_context_files: int = 30
    # Edit history
    max_live_edits: int = 32  # older edits fold into the settled snapshot
    settle_after_s: float = 300.0  # a pause this long settles every document
    # Debounce of the speculative computation after an edit (adaptive between the bounds)
    debounce_ms: float = 75.0
    min_debounce_ms: float = 25.0
    max_debounce_ms: float = 1000.0
    # Models
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    # Workspace
    index_workspace: bool = True
    max_file_bytes: int = 1 << 20
    max_files: int = 20_000
    exclude: tuple[str, ...] = ()
    # "Draft body from ..." code actions for functions with an empty body
    draft_bodies: bool = True
    # Draft with the bundled retrieve-and-edit models (false: the lexical retriever and a
    # copy of the neighbour's body); read when the function index is built
    draft_models: bool = True


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(key: str) -> str:
    return _CAMEL.sub("_", key).lower()


def parse_config(
    options: object, base: RippleConfig | None = None
) -> tuple[RippleConfig, list[str]]:
    """Apply ``options`` (a JSON object) over ``base``; the new config and any complaints.

    A ``{"ripple": {...}}`` wrapper is unwrapped (the shape of a settings section).
    """
    previous = config = base or RippleConfig()
    problems: list[str] = []
    if options is None:
        return config, problems
    if not isinstance(options, Mapping):
        return config, [f"ripple settings must be an object, got {type(options).__name__}"]
    if "ripple" in options and isinstance(options["ripple"], Mapping):
        options = options["ripple"]
    assert isinstance(options, Mapping)
    hints = get_type_hints(RippleConfig)
    known = {f.name for f in fields(RippleConfig)}
    changes: dict[str, Any] = {}
    for raw_key, value in options.items():
        key = _snake(str(raw_key))
        if key not in known:
            problems.append(f"unknown ripple setting {raw_key!r} (ignored)")
            continue
        converted = _convert(value, hints[key])
        if converted is None:
            problems.append(
                f"ripple setting {raw_key!r} must be {_describe(hints[key])}, got {value!r} "
                f"(kept {getattr(config, key)!r})"
            )
            continue
        changes[key] = converted
    if changes:
        config = dataclasses.replace(config, **changes)
    problems += _check_ranges(config)
    bad = _bad_keys(config)
    if bad:  # out-of-range values keep their previous setting
        config = dataclasses.replace(config, **{key: getattr(previous, key) for key in bad})
    return config, problems


def _convert(value: object, hint: object) -> object | None:
    if hint is bool:
        return value if isinstance(value, bool) else None
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None
    if hint is str:
        return value if isinstance(value, str) else None
    if hint == tuple[str, ...]:
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        return None
    return None


def _describe(hint: object) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint,  # type: ignore[call-overload]
        "a list of strings",
    )


_RANGES: dict[str, tuple[float, float]] = {
    "max_suggestions": (1, 50),
    "min_score": (0.0, 1.0),
    "max_context_files": (0, 10_000),
    "max_live_edits": (1, 10_000),
    "settle_after_s": (0.0, 86_400.0),
    "debounce_ms": (0.0, 10_000.0),
    "min_debounce_ms": (0.0, 10_000.0),
    "max_debounce_ms": (0.0, 60_000.0),
    "max_file_bytes": (1, 1 << 30),
    "max_files": (0, 10_000_000),
}


def _bad_keys(config: RippleConfig) -> list[str]:
    bad = [
        key
        for key, (lo, hi) in _RANGES.items()
        if not lo <= getattr(config, key) <= hi
    ]
    if config.device not in ("auto", "cpu", "cuda"):
        bad.append("device")
    return bad


def _check_ranges(config: RippleConfig) -> list[str]:
    problems = []
    for key in _bad_keys(config):
        if key == "device":
            problems.append(f"ripple setting 'device' must be auto, cpu or cuda, got {config.device!r}")
        else:
            lo, hi = _RANGES[key]
            problems.append(f"ripple setting {key!r} must be in [{lo}, {hi}], got {getattr(config, key)!r}")
    return problems
