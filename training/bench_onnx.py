"""``ripple bench onnx``: what one IA prediction costs on CPU, onnxruntime against torch.

Builds Zhao's IA at its default size (``ZhaoConfig()``, about 1M parameters; seeded
random weights: speed does not depend on what the weights learned), exports it with
``training.export`` (the same path and parity check as ``ripple export zhao``), and times
one prediction, batch 1, at several state lengths and edit counts:

- ``onnx``: ``OnnxModel.run`` from ``ripple.models.runtime``, what the server pays,
  feed checks included;
- ``torch``: the eager module under ``torch.no_grad()``.

Each runs with 1 intra-op thread and with its library's default thread count. A case has
untimed warm-up calls, then ``--repeats`` rounds of one torch call and one onnxruntime
call, timed separately: taking turns keeps a shared machine's changing load from favouring
either. The table gives p50 / p99 in milliseconds and the p50 speedup of onnxruntime over
torch.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np

from ripple.models.errors import UsageError

__all__ = ["SIZES", "run"]

# (state slots, edits) of one request: a short and a long context, a few and many edits.
SIZES: Final = ((64, 8), (64, 32), (256, 8), (256, 32))


def _time_ms(
    calls: Sequence[Callable[[], object]], warmup: int, repeats: int, tick: Callable[[int], None]
) -> list[list[float]]:
    """Milliseconds per call of each of ``calls``, taken in turns (one of each per round), so
    a change in the machine's load hits every engine alike."""
    for _ in range(warmup):
        for call in calls:
            call()
    times: list[list[float]] = [[] for _ in calls]
    clock = time.perf_counter_ns
    for _ in range(repeats):
        for call, out in zip(calls, times, strict=True):
            t0 = clock()
            call()
            out.append((clock() - t0) / 1e6)
        tick(len(calls))
    return times


def _max_diff(want: np.ndarray, have: np.ndarray) -> float:
    finite = np.isfinite(want) & np.isfinite(have)
    return float(np.max(np.abs(want[finite] - have[finite]), initial=0.0))


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 3)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ripple bench onnx`` (see the module docstring)."""
    if args.repeats < 1 or args.warmup < 0:
        raise UsageError("--repeats must be at least 1 and --warmup at least 0")
    import onnxruntime
    import torch

    from ripple.models.nets.zhao import ImplicitAttention, ZhaoConfig, build_zhao_model
    from ripple.models.runtime import load_model
    from ripple.training.export import IA_OUTPUTS, export_ia_model, random_ia_feeds
    from ripple.training.progress import Progress

    load_before = os.getloadavg()[0]  # other work on the machine skews multi-thread timings
    default_threads = torch.get_num_threads()
    torch.manual_seed(args.seed)
    config = ZhaoConfig()
    model = build_zhao_model("ia", config).eval()
    assert isinstance(model, ImplicitAttention)
    parameters = sum(p.numel() for p in model.parameters())
    thread_settings: list[int | None] = [1, None]
    cases: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ripple-bench-onnx-") as tmp:
        model_dir = Path(tmp) / "zhao-ia"
        if not args.quiet:
            print(f"exporting IA ({parameters:,} parameters) to ONNX ...", flush=True)
        manifest = export_ia_model(model, model_dir)
        sessions = {}
        load_ms = {}
        for threads in thread_settings:
            t0 = time.perf_counter()
            sessions[threads] = load_model(model_dir, device="cpu", threads=threads)
            load_ms[str(threads or "default")] = round((time.perf_counter() - t0) * 1000, 1)
        total = len(SIZES) * len(thread_settings) * 2 * args.repeats
        rng = np.random.default_rng(args.seed)
        with Progress(total, "bench onnx", quiet=args.quiet) as bar:
            for state, edits in SIZES:
                feeds = random_ia_feeds(rng, 1, state, edits, config)
                batch = {name: torch.from_numpy(value) for name, value in feeds.items()}
                for threads in thread_settings:
                    onnx_model = sessions[threads]
                    torch.set_num_threads(threads or default_threads)
                    with torch.no_grad():
                        expected = model(batch)
                        got = onnx_model.run(feeds)
                        diff = max(
                            _max_diff(want.numpy(), got[name])
                            for name, want in zip(IA_OUTPUTS, expected, strict=True)
                        )
                        torch_ms, onnx_ms = _time_ms(
                            [partial(model, batch), partial(onnx_model.run, feeds)],
                            args.warmup,
                            args.repeats,
                            bar.advance,
                        )
                    cases.append(
                        {
                            "state": state,
                            "edits": edits,
                            "batch": 1,
                            "threads": threads or "default",
                            "torch_p50_ms": _pct(torch_ms, 50),
                            "torch_p99_ms": _pct(torch_ms, 99),
                            "onnx_p50_ms": _pct(onnx_ms, 50),
                            "onnx_p99_ms": _pct(onnx_ms, 99),
                            "speedup_p50": round(_pct(torch_ms, 50) / _pct(onnx_ms, 50), 2),
                            "max_abs_diff": diff,
                        }
                    )
        torch.set_num_threads(default_threads)
    result = {
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "torch_default_threads": default_threads,
        "onnxruntime_default_threads": "one per physical core (onnxruntime's default)",
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "model": "zhao-ia",
        "config": config.to_dict(),
        "parameters": parameters,
        "opset": manifest.metadata["export"]["opset"],
        "export_parity_max_abs_diff": manifest.metadata["parity"]["max_abs_diff"],
        "onnx_load_ms": load_ms,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "cases": cases,
    }
    print(f"Zhao IA, {parameters:,} parameters, batch 1, CPU; ms per prediction")
    print(
        f"{'state':>6} {'edits':>6} {'threads':>8} {'torch p50':>10} {'torch p99':>10}"
        f" {'onnx p50':>9} {'onnx p99':>9} {'speedup':>8}"
    )
    for c in cases:
        print(
            f"{c['state']:>6} {c['edits']:>6} {c['threads']!s:>8} {c['torch_p50_ms']:>10.3f}"
            f" {c['torch_p99_ms']:>10.3f} {c['onnx_p50_ms']:>9.3f} {c['onnx_p99_ms']:>9.3f}"
            f" {c['speedup_p50']:>7.2f}x"
        )
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0
