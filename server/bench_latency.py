"""``ripple bench latency``: how fast the real server answers while someone types.

The benchmark starts ``ripple serve`` as an editor would (a child process speaking LSP
over stdio), opens a generated Python module of ``--lines`` lines and types into it at
``--rate`` edits per second for ``--seconds``. The typing follows what people do when
ripple should help: rename a function at its definition and then at its call sites,
add a keyword argument to every call of a helper, insert a guard line after each fetch.
Every edit is one ``didChange`` followed by ``ripple/nextEdits`` for the new version;
the previous request is cancelled first if it has not been answered yet.

Measured on the client:

- the latency of every answered request (send -> answer), p50 and p99;
- answers, cancellations, and *stale* answers: an answer whose edits carry a document
  version other than the one the request was made for (must be 0); edits whose range
  does not fit the text of the requested version are counted as ``invalid_edits``;
- the server's resident memory (``VmRSS``) before and after the burst;
- the server's per-keystroke bookkeeping, measured in this process: the same edit
  sequence applied to an :class:`~ripple.server.history.EditHistory`, one
  ``change_lsp`` per edit (p50 and p99 microseconds);
- the engine alone, also in this process: ``Engine.suggest`` on the keystroke path (and
  the pause-time run with the models, on a quarter of the edits) with the shipped predictor
  after each edit of the same sequence (p50 and p99 ms), so that what the transport and
  scheduling add to the client's latency can be told apart from the computation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ripple.models.errors import UsageError
from ripple.models.metrics import percentile
from ripple.server.client import REQUEST_CANCELLED, LspClient, LspError
from ripple.server.history import EditHistory

NEXT_EDITS = "ripple/nextEdits"
TARGET_P50_MS = 10.0
TARGET_P99_MS = 50.0
FILE_NAME = "bench_module.py"

_NOUNS = (
    "user", "team", "project", "order", "invoice", "account", "report", "ticket",
    "device", "session", "payment", "shipment", "review", "message", "profile",
)
_PARTS = ("item", "line", "note", "tag", "event", "field", "member", "step")


# ---------------------------------------------------------------- the module typed into


def generate_module(lines: int, seed: int = 0) -> str:
    """A realistic Python module of exactly ``lines`` lines (at least 10).

    Loader functions fetch a payload, parse it, count its parts with helper functions
    and save the result; every loader and helper is called from several other places,
    so renames and signature changes have call sites to propagate to.
    """
    rng = random.Random(seed)
    out = [
        '"""Loaders for the records of the example service (generated for benchmarking)."""',
        "",
        "import logging",
        "",
        "from service.client import fetch, parse_record, store",
        "",
        "log = logging.getLogger(__name__)",
        "",
        "",
    ]
    loaders: list[str] = []
    helpers: list[str] = []
    n = 0
    while len(out) < lines:
        n += 1
        noun = rng.choice(_NOUNS)
        part = rng.choice(_PARTS)
        if n % 3 == 0 or not helpers:
            name = f"count_{part}s_{n}"
            helpers.append(name)
            out += [
                f"def {name}({part}, {noun}_id, limit={rng.randint(2, 99)}):",
                f'    """How many {part}s of {noun} {{{noun}_id}} count, up to ``limit``."""',
                f"    values = [v for v in {part}.get('values', []) if v is not None]",
                "    if len(values) > limit:",
                f'        log.warning("{noun} %s has too many {part}s", {noun}_id)',
                "    return min(len(values), limit)",
                "",
                "",
            ]
            continue
        name = f"load_{noun}_{n}"
        helper = rng.choice(helpers)
        other = rng.choice(loaders) if loaders else None
        out += [
            f"def {name}({noun}_id, cache=None):",
            f'    """Load {noun} {{{noun}_id}} with its {part}s ({n})."""',
            f"    if cache is not None and {noun}_id in cache:",
            f"        return cache[{noun}_id]",
            f'    payload = fetch(f"/{noun}s/{{{noun}_id}}/{n}", retries={rng.randint(1, 9)})',
            f'    record = parse_record(payload, kind="{noun}")',
            f"    for {part} in record.get('{part}s', []):",
            f"        record['{part}_count'] = {helper}({part}, {noun}_id)",
        ]
        if other is not None:
            out.append(f"    related = {other}(record['{noun}_id'], cache)")
            out.append("    record['related'] = related")
        out += [
            f'    log.debug("loaded {noun} %s", {noun}_id)',
            f"    return store(record, cache, {n})",
            "",
            "",
        ]
        loaders.append(name)
    text = "\n".join(out[:lines])
    return text.rstrip() + "\n" if lines else ""


# ---------------------------------------------------------------- the typing


@dataclass(frozen=True)
class Keystroke:
    """One change as the editor sends it: a single-line range (LSP positions) -> text."""

    line: int
    start: int
    end: int
    text: str


class _Buffer:
    """The client's copy of the document, as lines without their line breaks."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")

    def apply(self, k: Keystroke) -> tuple[int, int]:
        """Apply ``k``; the cursor just after the inserted text."""
        line = self.lines[k.line]
        new = line[: k.start] + k.text + line[k.end :]
        parts = new.split("\n")
        self.lines[k.line : k.line + 1] = parts
        typed = k.text.split("\n")
        if len(typed) == 1:
            return k.line, k.start + len(k.text)
        return k.line + len(typed) - 1, len(typed[-1])

    def text(self) -> str:
        return "\n".join(self.lines)


def _find_from(buffer: _Buffer, needle: str, row: int) -> list[tuple[int, int]]:
    """Every (line, column) of ``needle`` as a whole word, starting at ``row``, wrapping."""
    hits: list[tuple[int, int]] = []
    n = len(buffer.lines)
    for k in range(n):
        i = (row + k) % n
        line = buffer.lines[i]
        col = line.find(needle)
        while col >= 0:
            before = line[col - 1] if col > 0 else " "
            after = line[col + len(needle)] if col + len(needle) < len(line) else " "
            if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
                hits.append((i, col))
            col = line.find(needle, col + 1)
    return hits


def _type_at(line: int, col: int, text: str, replace: int = 0) -> list[Keystroke]:
    """Typing ``text`` at (line, col) one character per edit; the first character
    replaces ``replace`` selected characters (as typing over a selection does)."""
    keys = [Keystroke(line, col, col + replace, text[0])]
    keys += [Keystroke(line, col + i, col + i, ch) for i, ch in enumerate(text[1:], start=1)]
    return keys


def _close_paren(line: str, open_at: int) -> int | None:
    depth = 0
    quote: str | None = None
    for i in range(open_at, len(line)):
        ch = line[i]
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
    return None


class _Typist:
    """Plans typing sessions over the document, top to bottom, one after another."""

    def __init__(self, text: str, seed: int) -> None:
        self.buffer = _Buffer(text)
        self.rng = random.Random(seed)
        self.row = 0
        self.renamed: set[str] = set()
        self.extended: set[str] = set()

    def _play(self, keys: list[Keystroke], out: list[Keystroke]) -> None:
        for k in keys:
            self.buffer.apply(k)
            out.append(k)
            self.row = k.line

    def rename_function(self, out: list[Keystroke]) -> bool:
        """``load_X_n`` -> ``fetch_X_n``: the definition, then each call site, in order."""
        for i in range(self.row, len(self.buffer.lines)):
            line = self.buffer.lines[i]
            if line.startswith("def load_"):
                name = line[4 : line.index("(")]
                if name not in self.renamed:
                    break
        else:
            return False
        self.renamed.add(name)
        for row, col in [(i, 4), *[h for h in _find_from(self.buffer, name, 0) if h[0] != i]]:
            if self.buffer.lines[row][col : col + len(name)] == name:
                self._play(_type_at(row, col, "fetch", replace=len("load")), out)
        return True

    def add_argument(self, out: list[Keystroke]) -> bool:
        """Add ``, strict=True`` to every call of the next helper, in file order."""
        for i in range(self.row, len(self.buffer.lines)):
            line = self.buffer.lines[i]
            at = line.find("= count_")
            if at >= 0:
                name = line[at + 2 : line.index("(", at)]
                if name not in self.extended:
                    break
        else:
            return False
        self.extended.add(name)
        for row, col in _find_from(self.buffer, name, self.row):
            line = self.buffer.lines[row]
            if line.lstrip().startswith("def ") or line[col + len(name) : col + len(name) + 1] != "(":
                continue
            close = _close_paren(line, col + len(name))
            if close is not None:
                self._play(_type_at(row, close, ", strict=True"), out)
        return True

    def insert_guard(self, out: list[Keystroke]) -> bool:
        """After the next three ``payload = fetch(...)`` lines, type a new guard line."""
        done = 0
        i = self.row
        while i < len(self.buffer.lines) and done < 3:
            line = self.buffer.lines[i]
            if line.lstrip().startswith("payload = fetch("):
                end = len(line)
                keys = [Keystroke(i, end, end, "\n    ")]
                keys += _type_at(i + 1, 4, "payload.raise_for_status()")
                self._play(keys, out)
                done += 1
                i += 1
            i += 1
        return done > 0

    def backspace_burst(self, out: list[Keystroke]) -> bool:
        """Type a few characters at a line end and delete them again (never fails)."""
        row = self.rng.randrange(len(self.buffer.lines))
        col = len(self.buffer.lines[row])
        word = self.rng.choice(("  # TODO", " or None", "  # check"))
        keys = _type_at(row, col, word)
        keys += [Keystroke(row, col + i, col + i + 1, "") for i in reversed(range(len(word)))]
        self._play(keys, out)
        return True

    def plan(self, count: int) -> list[Keystroke]:
        """``count`` keystrokes of sessions in turn; the sequence is fixed by the seed."""
        out: list[Keystroke] = []
        sessions = (self.rename_function, self.add_argument, self.insert_guard)
        turn = 0
        failures = 0
        while len(out) < count:
            if sessions[turn % len(sessions)](out):
                failures = 0
            else:
                failures += 1
                if failures >= len(sessions):  # the file is used up from here on
                    if self.row == 0:
                        self.backspace_burst(out)
                    self.row = 0
                    failures = 0
            turn += 1
        return out[:count]


def plan_typing(text: str, count: int, seed: int = 0) -> list[Keystroke]:
    """The benchmark's keystrokes on ``text``: renames, added arguments, inserted lines."""
    return _Typist(text, seed).plan(count)


# ---------------------------------------------------------------- measuring


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (``VmRSS``), or ``None`` without /proc."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class _Request:
    msg_id: int
    version: int
    lines: list[str]  # the client's text at ``version``
    sent: float
    future: Future[Any]
    done_at: float | None = None


@dataclass
class BurstStats:
    """What the client saw during the burst."""

    requests: int = 0
    answers: int = 0
    cancelled: int = 0
    cancels_sent: int = 0
    errors: int = 0
    stale: int = 0
    invalid_edits: int = 0
    nonempty: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def _fits(lines: list[str], edit: dict[str, Any]) -> bool:
    """Whether an answered edit's range lies inside the text it was asked for."""
    try:
        start, end = edit["range"]["start"], edit["range"]["end"]
        positions = [(int(start["line"]), int(start["character"])), (int(end["line"]), int(end["character"]))]
    except (KeyError, TypeError, ValueError):
        return False
    if positions[1] < positions[0]:
        return False
    for row, char in positions:
        if row == len(lines) and char == 0:
            continue  # the very end of the text
        if not 0 <= row < len(lines) or not 0 <= char <= len(lines[row]):
            return False
    return True


def _score(request: _Request, uri: str, stats: BurstStats) -> None:
    try:
        result = request.future.result()
    except LspError as exc:
        if exc.code == REQUEST_CANCELLED:
            stats.cancelled += 1
        else:
            stats.errors += 1
        return
    except Exception:
        stats.errors += 1
        return
    stats.answers += 1
    assert request.done_at is not None
    stats.latencies_ms.append((request.done_at - request.sent) * 1000)
    edits = (result or {}).get("edits", [])
    if edits:
        stats.nonempty += 1
    stale = False
    for edit in edits:
        doc = edit.get("textDocument") or {}
        if doc.get("uri") != uri:
            continue
        if doc.get("version") != request.version:
            stale = True
        elif not _fits(request.lines, edit):
            stats.invalid_edits += 1
    stats.stale += stale


class _Ticker:
    """A one-line progress display on stderr (terminals only, a few redraws a second)."""

    def __init__(self, total_s: float, quiet: bool, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self.total_s = total_s
        self.start = time.monotonic()
        self.last = 0.0

    def update(self, requests: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.25:
            return
        self.last = now
        elapsed = now - self.start
        width = 30
        filled = int(width * min(elapsed / self.total_s, 1.0)) if self.total_s else width
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\rtyping [{bar}] {elapsed:4.1f}/{self.total_s:.0f} s  {requests} requests\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False


def _burst(
    client: LspClient, uri: str, text: str, keys: Sequence[Keystroke], rate: float, quiet: bool
) -> tuple[BurstStats, float, str]:
    """Type ``keys`` at ``rate`` per second.

    Returns the client's statistics, the burst's length in seconds and the text the
    client ends with.
    """
    buffer = _Buffer(text)
    requests: list[_Request] = []
    interval = 1.0 / rate
    ticker = _Ticker(len(keys) * interval, quiet)
    stats = BurstStats()
    previous: _Request | None = None
    t0 = time.perf_counter()
    try:
        for i, k in enumerate(keys):
            wait = t0 + i * interval - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            if previous is not None and not previous.future.done():
                client.cancel(previous.msg_id)
                stats.cancels_sent += 1
            version = i + 2  # the document was opened at version 1
            line, char = buffer.apply(k)
            client.change(uri, version, (k.line, k.start), (k.line, k.end), k.text)
            params = {"textDocument": {"uri": uri, "version": version}, "position": {"line": line, "character": char}}
            sent = time.perf_counter()
            msg_id, future = client.send(NEXT_EDITS, params)
            request = _Request(msg_id, version, list(buffer.lines), sent, future)

            def finished(_: Future[Any], request: _Request = request) -> None:
                request.done_at = time.perf_counter()

            future.add_done_callback(finished)
            requests.append(request)
            previous = request
            ticker.update(len(requests))
        for request in requests:
            try:
                request.future.result(timeout=60)
            except LspError:
                pass
        # A future's callbacks run just after its waiters wake: let the last ones finish.
        deadline = time.monotonic() + 5
        while any(r.done_at is None for r in requests) and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        ticker.close()
    elapsed = time.perf_counter() - t0
    stats.requests = len(requests)
    for request in requests:
        _score(request, uri, stats)
    return stats, elapsed, buffer.text()


def keystroke_times_us(text: str, keys: Sequence[Keystroke], uri: str) -> list[float]:
    """Microseconds of :meth:`EditHistory.change_lsp` for each of ``keys``, in this process."""
    history = EditHistory()
    history.open(uri, FILE_NAME, text, 1)
    clock = time.perf_counter_ns
    times: list[float] = []
    for i, k in enumerate(keys):
        t = clock()
        history.change_lsp(uri, i + 2, (k.line, k.start), (k.line, k.end), k.text)
        times.append((clock() - t) / 1000.0)
    return times


def engine_times_ms(
    text: str, keys: Sequence[Keystroke], uri: str, fast: bool = True
) -> list[float]:
    """Milliseconds of :meth:`Engine.suggest` after each of ``keys``, in this process.

    The same shipped predictor and default settings as the server, without the
    transport: what is left of the client's latency is the protocol and scheduling.
    ``fast`` is the keystroke path (the members cheap enough to answer every request);
    ``fast=False`` is the pause-time run with every member, models included, which the
    server does off its event loop.
    """
    from ripple.models.suggest.registry import make_shipped
    from ripple.server.config import RippleConfig
    from ripple.server.engine import Engine

    history = EditHistory()
    history.open(uri, FILE_NAME, text, 1)
    engine = Engine(history, make_shipped().ensemble, RippleConfig())
    buffer = _Buffer(text)
    times: list[float] = []
    for i, k in enumerate(keys):
        history.change_lsp(uri, i + 2, (k.line, k.start), (k.line, k.end), k.text)
        line, char = buffer.apply(k)  # ASCII text: UTF-16 columns are code points
        t = time.perf_counter()
        engine.suggest(uri, line, char, fast=fast)
        times.append((time.perf_counter() - t) * 1000)
    return times


def _device(models: list[str], requested: str) -> str:
    """Where the server's models ran: ``"cuda"`` only if a loaded model got the CUDA provider.

    The rules always run in the server's Python; ONNX models are loaded here once more
    with the same device setting to see which execution provider onnxruntime gives them.
    """
    if not models or requested == "cpu":
        return "cpu"
    try:
        from ripple.models.runtime import default_models_dir, load_models

        loaded, _errors = load_models(default_models_dir(), device=requested)
    except Exception:
        return "cpu"
    if any("CUDAExecutionProvider" in model.providers for model in loaded.values()):
        return "cuda"
    return "cpu"


def measure(
    lines: int,
    seconds: float,
    rate: float,
    seed: int = 0,
    device: str = "auto",
    quiet: bool = True,
    server: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run the whole benchmark; the JSON report."""
    text = generate_module(lines, seed)
    count = max(1, round(seconds * rate))
    keys = plan_typing(text, count, seed)
    with tempfile.TemporaryDirectory(prefix="ripple-bench-latency-") as tmp:
        root = Path(tmp)
        path = root / FILE_NAME
        path.write_text(text, encoding="utf-8")
        client = LspClient(server, cwd=root)
        try:
            client.initialize(root, {}, {"device": device})
            status = client.request("ripple/status", {"waitForIndex": True}, timeout=120)
            uri = client.open(path, text)
            warm = {"textDocument": {"uri": uri, "version": 1}, "position": {"line": 0, "character": 0}}
            client.request(NEXT_EDITS, warm, timeout=60)
            pid = client.process.pid
            rss_before = rss_mb(pid)
            stats, elapsed, typed = _burst(client, uri, text, keys, rate, quiet)
            rss_after = rss_mb(pid)
            seen = client.request("ripple/debug/document", {"uri": uri}, timeout=60)
            in_sync = isinstance(seen, dict) and seen.get("text") == typed
            duplicates = sum(1 for count in client.answers.values() if count > 1)
        finally:
            code = client.close()
    local_uri = Path(FILE_NAME).absolute().as_uri()
    keystrokes = keystroke_times_us(text, keys, local_uri)
    engine_ms = engine_times_ms(text, keys, local_uri)
    full_ms = engine_times_ms(text, keys[: max(1, len(keys) // 4)], local_uri, fast=False)
    lat = stats.latencies_ms
    models = list(status.get("models") or [])
    return {
        "p50_ms": round(percentile(lat, 50), 3),
        "p99_ms": round(percentile(lat, 99), 3),
        "answers": stats.answers,
        "stale": stats.stale,
        "rss_growth_mb": round((rss_after - rss_before), 2) if rss_before and rss_after else 0.0,
        "keystroke_p99_us": round(percentile(keystrokes, 99), 2),
        "keystroke_p50_us": round(percentile(keystrokes, 50), 2),
        "requests": stats.requests,
        "cancelled": stats.cancelled,
        "cancels_sent": stats.cancels_sent,
        "errors": stats.errors,
        "suggestions_nonempty": stats.nonempty,
        "invalid_edits": stats.invalid_edits,
        "duplicate_answers": duplicates,
        "text_in_sync": in_sync,
        "max_ms": round(max(lat), 3) if lat else 0.0,
        "engine_p50_ms": round(percentile(engine_ms, 50), 3),
        "models_run_p50_ms": round(percentile(full_ms, 50), 3),
        "models_run_p99_ms": round(percentile(full_ms, 99), 3),
        "engine_p99_ms": round(percentile(engine_ms, 99), 3),
        "rss_before_mb": round(rss_before, 2) if rss_before else None,
        "rss_after_mb": round(rss_after, 2) if rss_after else None,
        "lines": lines,
        "rate": rate,
        "seconds": seconds,
        "edits": len(keys),
        "burst_s": round(elapsed, 3),
        "seed": seed,
        "device": _device(models, device),
        "models": models,
        "server_exit_code": code,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a small table, with the targets next to the latencies."""
    rows = [
        ("latency p50 (ms)", f"{report['p50_ms']:.2f}", f"<= {TARGET_P50_MS:g}"),
        ("latency p99 (ms)", f"{report['p99_ms']:.2f}", f"<= {TARGET_P99_MS:g}"),
        ("latency max (ms)", f"{report['max_ms']:.2f}", ""),
        ("engine alone p50 (ms)", f"{report['engine_p50_ms']:.2f}", ""),
        ("engine alone p99 (ms)", f"{report['engine_p99_ms']:.2f}", ""),
        ("pause-time run, models too, p50 (ms)", f"{report['models_run_p50_ms']:.2f}", ""),
        ("pause-time run, models too, p99 (ms)", f"{report['models_run_p99_ms']:.2f}", ""),
        ("requests", str(report["requests"]), ""),
        ("answers", str(report["answers"]), ""),
        ("  with suggestions", str(report["suggestions_nonempty"]), ""),
        ("cancelled", str(report["cancelled"]), ""),
        ("stale answers", str(report["stale"]), "0"),
        ("invalid edits", str(report["invalid_edits"]), "0"),
        ("server text = client text", "yes" if report["text_in_sync"] else "NO", "yes"),
        ("server RSS growth (MiB)", f"{report['rss_growth_mb']:.2f}", ""),
        ("keystroke bookkeeping p50 (us)", f"{report['keystroke_p50_us']:.1f}", ""),
        ("keystroke bookkeeping p99 (us)", f"{report['keystroke_p99_us']:.1f}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    head = (
        f"{report['lines']:,}-line file, {report['edits']} edits at {report['rate']:g}/s "
        f"({report['burst_s']:.1f} s), device {report['device']}"
    )
    lines = [head, f"{'':<{width}}  {'measured':>10}  target", "-" * (width + 22)]
    lines += [f"{name:<{width}}  {value:>10}  {target}".rstrip() for name, value, target in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``ripple bench latency``: run, print the table, write the JSON."""
    if args.seconds <= 0 or args.rate <= 0:
        raise UsageError("--seconds and --rate must be positive")
    if args.lines < 50:
        raise UsageError("--lines must be at least 50")
    try:
        report = measure(args.lines, args.seconds, args.rate, args.seed, args.device, quiet=args.quiet)
    except (LspError, TimeoutError) as exc:
        print(f"ripple: error: the server under test failed: {exc}", file=sys.stderr)
        return 1
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(format_table(report))
    print(f"(JSON written to {args.json_out})")
    return 0
