"""``ripple bench robustness``: hostile input against a real ``ripple serve``, with figures.

The test suite runs the same generators with small counts (``tests/test_robustness.py``);
this command runs them longer and prints what happened:

- **transport fuzz**: damaged frames of every kind in :data:`FRAME_KINDS` after
  ``initialize``; the server must stay up, answer every well-framed request exactly
  once, and answer a follow-up request within a second;
- **fault injection**: a member predictor failing in 1% of calls; every request still
  answered, each fault logged, the user told at most once a minute;
- **hostile workspace**: 100,000 directories, a 100 MB file, NUL bytes, a 10 MB line,
  symlink loops; the server answers within 5 s and indexes only what it should;
- **typing burst**: ``ripple bench latency``'s burst; no stale answers, every request
  answered or cancelled, RSS growth.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

from ripple.server.bench_latency import measure, rss_mb
from ripple.server.client import LspClient

FRAME_KINDS = (
    "valid_request",
    "unknown_method",
    "bad_params",
    "huge_params",
    "notification",
    "no_length",
    "bad_length",
    "negative_length",
    "huge_length",
    "truncated_body",
    "invalid_utf8",
    "not_an_object",
    "odd_id",
    "wrong_version",
)


def well_framed(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def fuzz_frames(rng: random.Random, index: int) -> tuple[str, bytes, int | None]:
    """One frame of kind ``FRAME_KINDS[index % len]``: (kind, bytes, id of a request owed an answer).

    Request ids are ``1_000_000 + index`` so they never collide with a client's own.
    """
    kind = FRAME_KINDS[index % len(FRAME_KINDS)]
    msg_id = 1_000_000 + index
    if kind == "valid_request":
        return kind, well_framed({"jsonrpc": "2.0", "id": msg_id, "method": "ripple/status", "params": {}}), msg_id
    if kind == "unknown_method":
        method = "".join(rng.choice("abcxyz/$_") for _ in range(rng.randint(1, 30)))
        return kind, well_framed({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": None}), msg_id
    if kind == "bad_params":
        method = rng.choice(
            ["textDocument/codeAction", "textDocument/inlineCompletion", "ripple/nextEdits"]
        )
        params: Any = rng.choice([{"x": 1}, [1, 2], "str", 5, {"textDocument": 3, "position": "x"}])
        return kind, well_framed({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}), msg_id
    if kind == "huge_params":
        blob = "x" * rng.randint(100_000, 1_000_000)
        return kind, well_framed({"jsonrpc": "2.0", "id": msg_id, "method": "ripple/status", "params": {"pad": blob}}), msg_id
    if kind == "notification":
        uri = f"file:///nowhere/{index}.py"
        params = {"textDocument": {"uri": uri, "version": rng.randint(-5, 5)}, "contentChanges": [{"text": "x"}]}
        return kind, well_framed({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": params}), None
    body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "ripple/status"}).encode()
    if kind == "no_length":
        return kind, b"Content-Type: application/json\r\n\r\n" + body, None
    if kind == "bad_length":
        return kind, b"Content-Length: " + rng.choice([b"abc", b"1e3", b"", b"0x10"]) + b"\r\n\r\n" + body, None
    if kind == "negative_length":
        return kind, b"Content-Length: -%d\r\n\r\n" % rng.randint(1, 10**6) + body, None
    if kind == "huge_length":
        return kind, b"Content-Length: %d\r\n\r\n" % rng.randint(10**9, 10**12) + body[: rng.randint(0, len(body))], None
    if kind == "truncated_body":
        cut = rng.randint(1, len(body) - 1)
        # Claims a few bytes more than it sends: the missing bytes come from the next frame.
        return kind, b"Content-Length: %d\r\n\r\n" % (cut + rng.randint(1, 40)) + body[:cut], None
    if kind == "invalid_utf8":
        return kind, b"Content-Length: 6\r\n\r\n" + bytes(rng.randint(128, 255) for _ in range(6)), None
    if kind == "not_an_object":
        payload = rng.choice([b"[]", b"42", b'"s"', b"null", b"true"])
        return kind, b"Content-Length: %d\r\n\r\n" % len(payload) + payload, None
    if kind == "odd_id":
        odd = rng.choice([1.5, {"a": 1}, [1], True])
        return kind, well_framed({"jsonrpc": "2.0", "id": odd, "method": "ripple/status"}), None
    # wrong_version: a request that is not JSON-RPC 2.0 still gets an answer (an error).
    return kind, well_framed({"jsonrpc": "1.0", "id": msg_id, "method": "ripple/status"}), msg_id


class FaultInjector:
    """A predictor that raises in a fraction of its calls (``RIPPLE_FAULT_RATE``).

    ``ripple serve`` adds it to the shipped ensemble when that environment variable is
    set, so the fault-tolerance path (the member is skipped and logged, the user is told
    at most once a minute) can be exercised on the real server.
    """

    name = "fault-injection"

    def __init__(self, rate: float, seed: int = 0) -> None:
        self.rate = rate
        self.rng = random.Random(seed)
        self.calls = 0

    def suggest(self, ctx: object) -> list[Any]:
        self.calls += 1
        if self.rng.random() < self.rate:
            raise RuntimeError(f"injected fault (call {self.calls})")
        return []


PING = well_framed({"jsonrpc": "2.0", "method": "$/ping"})


def transport_fuzz(frames: int, seed: int, root: Path) -> dict[str, Any]:
    """Send ``frames`` damaged frames; what the server did."""
    rng = random.Random(seed)
    client = LspClient()
    started = time.monotonic()
    try:
        client.initialize(root, {})
        owed: set[int] = set()
        for i in range(frames):
            _, data, msg_id = fuzz_frames(rng, i)
            client.write_raw(data + PING)
            if msg_id is not None:
                owed.add(msg_id)
        t0 = time.monotonic()
        client.request("ripple/status", {}, timeout=10)
        follow_up_ms = (time.monotonic() - t0) * 1000
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not owed <= set(client.answers):
            time.sleep(0.05)
        alive = client.process.poll() is None
        unanswered = len(owed - set(client.answers))
        duplicates = sum(1 for i in owed if client.answers[i] > 1)
    finally:
        code = client.close()
    return {
        "frames": frames,
        "seed": seed,
        "requests_owed": len(owed),
        "unanswered": unanswered,
        "answered_twice": duplicates,
        "follow_up_ms": round(follow_up_ms, 2),
        "alive": alive,
        "exit_code": code,
        "wall_s": round(time.monotonic() - started, 1),
    }


CALLS = "def a():\n    return fetch(url)\n\n\ndef b():\n    return fetch(url)\n"


def fault_injection(requests: int, rate: float, root: Path) -> dict[str, Any]:
    """``requests`` next-edit requests with a member failing at ``rate``."""
    import os

    log_file = root / "fault.log"
    client = LspClient(
        [*_serve(), "--log-file", str(log_file)], env={**os.environ, "RIPPLE_FAULT_RATE": str(rate)}
    )
    answered_with_edits = 0
    try:
        client.initialize(root, {})
        uri = client.open(root / "a.py", CALLS)
        col = len("    return fetch(url")
        for i, ch in enumerate(", timeout=5"):
            client.change(uri, 2 + i, (1, col + i), (1, col + i), ch)
        for version in range(13, 13 + requests):
            client.change(uri, version, (0, 0), (0, 0), "")
            answer = client.request(
                "ripple/nextEdits",
                {"textDocument": {"uri": uri, "version": version}, "position": {"line": 1, "character": 0}},
                timeout=30,
            )
            answered_with_edits += bool(answer["edits"])
        alive = client.process.poll() is None
        notices = sum(
            1
            for method, params in client.notifications
            if method == "window/showMessage" and "predictor failed" in params["message"]
        )
    finally:
        client.close()
    logged = log_file.read_text(errors="replace").count("injected fault") if log_file.exists() else 0
    return {
        "requests": requests,
        "rate": rate,
        "answered_with_edits": answered_with_edits,
        "faults_logged": logged,
        "user_notices": notices,
        "alive": alive,
    }


def hostile_workspace(directories: int, root: Path) -> dict[str, Any]:
    """Startup and indexing time on a workspace built to hurt."""
    ws = root / "hostile"
    ws.mkdir()
    (ws / "good.py").write_text(CALLS)
    with (ws / "huge.py").open("wb") as f:
        f.truncate(100 << 20)
    (ws / "nul.py").write_bytes(b"x = 1\n\0\0 binary\n")
    (ws / "one_line.py").write_text("x = [" + "1, " * ((10 << 20) // 3) + "]\n")
    (ws / "loop_a").symlink_to(ws / "loop_b")
    (ws / "loop_b").symlink_to(ws / "loop_a")
    for i in range(directories):
        (ws / "many" / f"d{i // 500}" / f"e{i}").mkdir(parents=True)
    client = LspClient()
    try:
        t0 = time.monotonic()
        client.initialize(ws, {})
        client.request("ripple/status", {})
        startup_s = time.monotonic() - t0
        status = client.request("ripple/status", {"waitForIndex": True}, timeout=600)
        indexed_s = time.monotonic() - t0
        rss = rss_mb(client.process.pid) or 0.0
        alive = client.process.poll() is None
    finally:
        client.close()
    return {
        "directories": directories,
        "startup_s": round(startup_s, 3),
        "indexed_s": round(indexed_s, 2),
        "indexed_files": status["indexedFiles"],
        "rss_mb": round(rss, 1),
        "alive": alive,
    }


def _serve() -> list[str]:
    from ripple.server.client import server_command

    return server_command()


def run(args: argparse.Namespace) -> int:
    import tempfile


    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ripple-robust-") as tmp:
        root = Path(tmp)
        (root / "fuzz").mkdir()
        (root / "fault").mkdir()
        print("transport fuzz ...", flush=True)
        result["transport_fuzz"] = transport_fuzz(args.frames, args.seed, root / "fuzz")
        print("fault injection ...", flush=True)
        result["fault_injection"] = fault_injection(args.requests, 0.01, root / "fault")
        print("hostile workspace ...", flush=True)
        result["hostile_workspace"] = hostile_workspace(args.directories, root)
    print("typing burst ...", flush=True)
    burst = measure(2000, args.burst_seconds, 20.0, seed=args.seed)
    result["typing_burst"] = {
        k: burst.get(k)
        for k in ("requests", "answers", "cancelled", "stale", "rss_growth_mb", "p50_ms", "p99_ms")
    }
    fuzz, fault, hostile, typing = (
        result["transport_fuzz"],
        result["fault_injection"],
        result["hostile_workspace"],
        result["typing_burst"],
    )
    print()
    print(f"transport fuzz: {fuzz['frames']} damaged frames (seed {fuzz['seed']}): alive {fuzz['alive']}, "
          f"{fuzz['requests_owed']} well-framed requests, {fuzz['unanswered']} unanswered, "
          f"{fuzz['answered_twice']} answered twice, follow-up in {fuzz['follow_up_ms']:.1f} ms")
    print(f"fault injection: {fault['requests']} requests, 1% failing member: alive {fault['alive']}, "
          f"{fault['answered_with_edits']} answered with edits, {fault['faults_logged']} faults logged, "
          f"{fault['user_notices']} notice(s) to the user")
    print(f"hostile workspace: {hostile['directories']:,} directories + 100 MB / NUL / 10 MB-line "
          f"files + symlink loops: ready in {hostile['startup_s']:.2f} s, indexed in "
          f"{hostile['indexed_s']:.1f} s ({hostile['indexed_files']} file), RSS {hostile['rss_mb']} MB")
    print(f"typing burst: {typing['requests']} requests at 20/s, {typing['answers']} answered, "
          f"{typing['cancelled']} cancelled, {typing['stale']} stale, RSS growth "
          f"{typing['rss_growth_mb']} MB")
    Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    ok = (
        fuzz["alive"] and fuzz["unanswered"] == 0 and fuzz["answered_twice"] == 0
        and fault["alive"] and fault["answered_with_edits"] == fault["requests"]
        and fault["user_notices"] <= 1 + int(hostile["indexed_s"] // 60)
        and hostile["alive"] and hostile["startup_s"] < 5
        and typing["stale"] == 0
        and (typing["answers"] or 0) + (typing["cancelled"] or 0) == typing["requests"]
    )
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1
