"""ripple serve survives hostile input: damaged frames, absurd params, racing edits.

Counts are bounded for the normal run; ``ripple bench robustness`` runs the same code
longer and prints the figures.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ripple.server.bench_latency import rss_mb
from ripple.server.client import LspClient, LspError, server_command
from ripple.server.robustness import CALLS, FRAME_KINDS, fuzz_frames, well_framed


def _frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_damaged_frames_never_stop_the_server_and_requests_are_answered_once(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    c = LspClient()
    try:
        c.initialize(tmp_path, {})
        frames = [fuzz_frames(rng, i) for i in range(2000)]
        sent_kinds = {kind for kind, _, _ in frames}
        assert sent_kinds == set(FRAME_KINDS)
        expected_ids: set[int] = set()
        for _, data, msg_id in frames:
            c.write_raw(data)
            if msg_id is not None:
                expected_ids.add(msg_id)
            # A damaged frame may swallow what follows it: close it off with a frame
            # the reader resynchronises on before the next one.
            c.write_raw(well_framed({"jsonrpc": "2.0", "method": "$/ping"}))
        # The server still answers, quickly.
        t0 = time.monotonic()
        status = c.request("ripple/status", {}, timeout=5)
        assert time.monotonic() - t0 < 1.0 and status["version"]
        assert c.process.poll() is None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not expected_ids <= set(c.answers):
            time.sleep(0.05)
        missing = expected_ids - set(c.answers)
        assert not missing, f"well-framed requests never answered: {sorted(missing)[:10]}"
        assert all(c.answers[i] == 1 for i in expected_ids)
    finally:
        assert c.close() == 0


def test_a_lying_content_length_does_not_stall_the_connection(tmp_path: Path) -> None:
    c = LspClient()
    try:
        c.initialize(tmp_path, {})
        # Claims 10 GB, sends 20 bytes, then a normal request: the request is answered.
        c.write_raw(b"Content-Length: 10000000000\r\n\r\n" + b'{"jsonrpc": "2.0", "id"')
        assert c.request("ripple/status", {}, timeout=5)["version"]
        # A truncated body followed by a request: the request is found again.
        c.write_raw(b"Content-Length: 500\r\n\r\n" + b'{"jsonrpc": "2.0", "method": "x"')
        assert c.request("ripple/status", {}, timeout=5)["version"]
        # Not JSON, not an object, bad id type, bad params: errors, never silence.
        cases = [
            (b"\xff\xfe garbage", None, -32700),
            (b"[1, 2, 3]", None, -32600),
            (json.dumps({"jsonrpc": "2.0", "id": 97, "method": "textDocument/codeAction", "params": {"x": 1}}).encode(), 97, -32602),
            (json.dumps({"jsonrpc": "1.0", "id": 98, "method": "ripple/status"}).encode(), 98, -32600),
            (json.dumps({"jsonrpc": "2.0", "id": 99, "method": "no/such/method"}).encode(), 99, -32601),
        ]
        for body, _, _ in cases:
            c.write_raw(_frame(body))
        assert c.request("ripple/status", {}, timeout=5)
        assert [(i, code) for i, code in c.errors] == [(i, code) for _, i, code in cases]
    finally:
        assert c.close() == 0


# -- incremental sync: the server's document equals a fresh replay ------------------------

ALPHABET = "ab (\n\t:é😀\u0301𝔘"


def _utf16_to_index(text: str, line: int, character: int) -> int:
    """An independent reference: LSP (line, UTF-16 character) -> str index, clamped."""
    lines = text.split("\n")
    if line >= len(lines):
        return len(text)
    start = sum(len(x) + 1 for x in lines[:line])
    units = 0
    for i, ch in enumerate(lines[line]):
        width = 2 if ord(ch) > 0xFFFF else 1
        if units + width > character:  # inside a surrogate pair: the character's start
            return start + i
        units += width
    return start + len(lines[line])


def test_incremental_sync_matches_a_fresh_replay_for_1000_seeded_sequences() -> None:
    from ripple.models.edits.document import ParsedDocument
    from ripple.server.history import EditHistory

    for seed in range(1000):
        rng = random.Random(seed)
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 60)))
        history = EditHistory(max_live_edits=rng.randint(1, 8))
        uri = "file:///w/seq.py"
        history.open(uri, "seq.py", text, 0)
        for version in range(1, rng.randint(2, 25)):
            lines = text.split("\n")
            l0 = rng.randint(0, len(lines))  # may point past the end: clamped
            c0 = rng.randint(0, 12)
            l1, c1 = (l0, c0) if rng.random() < 0.3 else (rng.randint(0, len(lines)), rng.randint(0, 12))
            new = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 6)))
            a, b = _utf16_to_index(text, l0, c0), _utf16_to_index(text, l1, c1)
            # Splitting a surrogate pair is impossible in Python strings; both sides agree.
            a, b = min(a, b), max(a, b)
            text = text[:a] + new + text[b:]
            start, end = sorted([(l0, c0), (l1, c1)])
            history.change_lsp(uri, version, start, end, new)
        doc = history.get(uri)
        assert doc is not None
        assert doc.text == text, f"seed {seed}: text differs"
        assert doc.sexp() == ParsedDocument(text, path="seq.py").sexp(), f"seed {seed}: tree differs"
        ctx = history.context(uri, 0, 0)
        assert ctx.snapshots("seq.py")[-1] == ctx.files["seq.py"], f"seed {seed}: history differs"


# -- typed fuzz: well-formed messages with hostile values -----------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_INT = st.one_of(st.integers(-5, 50), st.integers(-(2**31), 2**31 - 1))
_POS = st.fixed_dictionaries({"line": _INT, "character": _INT})
_RANGE = st.fixed_dictionaries({"start": _POS, "end": _POS})
_TEXT = st.text(st.sampled_from(list("ab\n(): é😀𝔘\u0301\r\t\x00")), max_size=30)
_URIS = st.sampled_from(
    ["file:///fuzz/a.py", "file:///fuzz/b.txt", "untitled:1", "file:///nowhere/x.py", "http://x/y.py", "file:///fuzz/%2e%2e/c.py"]
)


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[LspClient]:
    c = LspClient()
    c.initialize(None, {})
    yield c
    assert c.close() == 0


_MESSAGE = st.one_of(
    st.builds(lambda uri, v, t: ("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": v, "text": t}}), _URIS, _INT, _TEXT),
    st.builds(lambda uri, v, r, t: ("textDocument/didChange", {"textDocument": {"uri": uri, "version": v}, "contentChanges": [{"range": r, "text": t}]}), _URIS, _INT, _RANGE, _TEXT),
    st.builds(lambda uri, v, t: ("textDocument/didChange", {"textDocument": {"uri": uri, "version": v}, "contentChanges": [{"text": t}]}), _URIS, _INT, _TEXT),
    st.builds(lambda uri, v, p: ("ripple/nextEdits", {"textDocument": {"uri": uri, "version": v}, "position": p}), _URIS, st.one_of(st.none(), _INT), _POS),
    st.builds(lambda uri, r: ("textDocument/codeAction", {"textDocument": {"uri": uri}, "range": r, "context": {"diagnostics": []}}), _URIS, _RANGE),
    st.builds(lambda uri, p: ("textDocument/inlineCompletion", {"textDocument": {"uri": uri}, "position": p, "context": {"triggerKind": 1}}), _URIS, _POS),
    st.builds(lambda i: ("ripple/didRejectEdit", {"id": i}), st.one_of(st.text(max_size=5), _INT)),
    st.builds(lambda uri: ("textDocument/didClose", {"textDocument": {"uri": uri}}), _URIS),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(_MESSAGE, min_size=1, max_size=8))
def test_hostile_values_in_well_formed_messages(fuzz_server: LspClient, messages: list[tuple[str, dict[str, object]]]) -> None:
    c = fuzz_server
    for method, params in messages:
        if method in ("ripple/nextEdits", "textDocument/codeAction", "textDocument/inlineCompletion"):
            try:
                c.request(method, params, timeout=10)
            except LspError as exc:
                assert exc.code == -32602, exc  # bad params are refused; nothing crashes
        else:
            c.notify(method, params)
    assert c.request("ripple/status", {}, timeout=10)["version"]
    assert c.process.poll() is None


# -- edit confinement ------------------------------------------------------------------------



def test_edits_never_target_anything_outside_the_workspace(tmp_path: Path) -> None:
    ws, out = tmp_path / "ws", tmp_path / "out"
    ws.mkdir()
    out.mkdir()
    (ws / "main.py").write_text(CALLS)
    (ws / "inside.py").write_text(CALLS)
    (out / "outside.py").write_text(CALLS)
    (ws / "link.py").symlink_to(out / "outside.py")
    c = LspClient()
    try:
        c.initialize(ws, {})
        c.request("ripple/status", {"waitForIndex": True})
        # Open documents that lie outside, one way or another, with the same calls.
        sneaky = [
            (out / "outside.py").as_uri(),
            ws.as_uri() + "/%2e%2e/out/outside.py",
            (ws / "link.py").as_uri(),
            "untitled:Untitled-1",
        ]
        for uri in sneaky:
            c.notify(
                "textDocument/didOpen",
                {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": CALLS}},
            )
        uri = c.open(ws / "main.py", CALLS)
        col = len("    return fetch(url")
        for i, ch in enumerate(", timeout=5"):
            c.change(uri, 2 + i, (1, col + i), (1, col + i), ch)
        edits = c.request(
            "ripple/nextEdits",
            {"textDocument": {"uri": uri, "version": 12}, "position": {"line": 1, "character": 0}},
        )["edits"]
        targets = {e["textDocument"]["uri"] for e in edits}
        assert uri in targets and (ws / "inside.py").as_uri() in targets
        assert not targets & set(sneaky), targets
        assert len(targets) == 2
    finally:
        assert c.close() == 0


# -- tampered model folders ---------------------------------------------------------------------


def _onnx_add_model(path: Path, external: str | None = None) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((2, 2), 7, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if external is not None:
        onnx.save_model(model, path, save_as_external_data=True, location="data.bin", size_threshold=0)
        (path.parent / "data.bin").rename(path.parent.parent / "secret.bin")
        model = onnx.load(path, load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = external
        model.ir_version = 8
    onnx.save_model(model, path)


def _manifest(folder: Path, name: str) -> None:
    from ripple.models.runtime import Manifest, TensorSpec, file_sha256, write_manifest

    write_manifest(
        folder,
        Manifest(
            format="ripple-onnx/1", name=name, kind="zhao-ia", onnx="model.onnx",
            sha256=file_sha256(folder / "model.onnx"),
            inputs=(TensorSpec("x", "float32", (2, 2)),),
            outputs=(TensorSpec("y", "float32", (2, 2)),),
            files={}, config={}, metadata={},
        ),
    )


class _Canary:
    """Unpickling this creates a file: the proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (open, (str(self.path), "w"))


def test_tampered_model_folders_are_refused_and_the_server_runs_on(tmp_path: Path) -> None:
    import pickle

    models = tmp_path / "models"
    canary = tmp_path / "CANARY"
    # 1. A pickle posing as the model, with a matching sha256.
    evil = models / "pickled"
    evil.mkdir(parents=True)
    (evil / "model.onnx").write_bytes(pickle.dumps(_Canary(canary)))
    (evil / "weights.pkl").write_bytes(pickle.dumps(_Canary(canary)))
    _manifest(evil, "pickled")
    # 2. An ONNX graph whose weights live outside its folder.
    outside = models / "external"
    outside.mkdir()
    _onnx_add_model(outside / "model.onnx", external="../secret.bin")
    _manifest(outside, "external")
    # 3. A real graph changed after its manifest was written.
    changed = models / "changed"
    changed.mkdir()
    _onnx_add_model(changed / "model.onnx")
    _manifest(changed, "changed")
    with (changed / "model.onnx").open("ab") as f:
        f.write(b"\0")
    ws = tmp_path / "ws"
    ws.mkdir()
    c = LspClient(server_command("--models", str(models)))
    try:
        c.initialize(ws, {})
        status = c.request("ripple/status", {})
        problems = " | ".join(status["problems"])
        assert status["models"] == []
        for name in ("pickled", "external", "changed"):
            assert name in problems, problems
        assert "sha256" in problems
        uri = c.open(ws / "a.py", CALLS)
        col = len("    return fetch(url")
        for i, ch in enumerate(", timeout=5"):
            c.change(uri, 2 + i, (1, col + i), (1, col + i), ch)
        edits = c.request(
            "ripple/nextEdits",
            {"textDocument": {"uri": uri, "version": 12}, "position": {"line": 1, "character": 0}},
        )["edits"]
        assert edits  # the rules still serve
    finally:
        assert c.close() == 0
    assert not canary.exists()


# -- fault injection ---------------------------------------------------------------------------


def test_a_failing_predictor_never_stops_suggestions_and_is_reported_once(tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    ws = tmp_path / "ws"
    ws.mkdir()
    c = LspClient(server_command("--log-file", str(log_file)), env={"RIPPLE_FAULT_RATE": "0.01"})
    try:
        c.initialize(ws, {})
        uri = c.open(ws / "a.py", CALLS)
        col = len("    return fetch(url")
        for i, ch in enumerate(", timeout=5"):
            c.change(uri, 2 + i, (1, col + i), (1, col + i), ch)
        answers = []
        for version in range(13, 2013):
            c.change(uri, version, (0, 0), (0, 0), "")  # a new version: no cached answer
            params = {"textDocument": {"uri": uri, "version": version}, "position": {"line": 1, "character": 0}}
            answers.append(c.request("ripple/nextEdits", params, timeout=30))
        assert all(a["edits"] for a in answers)  # the rules kept suggesting throughout
        assert c.process.poll() is None
        notices = [
            p for m, p in c.notifications if m == "window/showMessage" and "predictor failed" in p["message"]
        ]
        assert len(notices) == 1  # at most once a minute, and this ran well under one
    finally:
        assert c.close() == 0
    logged = log_file.read_text().count("RuntimeError: injected fault")
    assert 5 <= logged <= 60  # ~1% of 2,000 calls, each with its traceback in the log


# -- hostile workspace ------------------------------------------------------------------------


def test_a_hostile_workspace_starts_fast_and_is_not_parsed(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "good.py").write_text(CALLS)
    with (ws / "huge.py").open("wb") as f:  # 100 MB, sparse: costs no disk
        f.truncate(100 << 20)
    (ws / "nul.py").write_bytes(b"x = 1\n\0\0\0 binary\n")
    (ws / "one_line.py").write_text("x = [" + "1, " * ((10 << 20) // 3) + "]\n")
    (ws / "loop_a").symlink_to(ws / "loop_b")
    (ws / "loop_b").symlink_to(ws / "loop_a")
    (ws / "self").symlink_to(ws)
    deep = ws / "many"
    for i in range(20_000):  # ripple bench robustness uses 100,000
        (deep / f"d{i // 200}" / f"e{i}").mkdir(parents=True)
    c = LspClient()
    try:
        t0 = time.monotonic()
        c.initialize(ws, {})
        c.request("ripple/status", {})
        assert time.monotonic() - t0 < 5.0
        status = c.request("ripple/status", {"waitForIndex": True}, timeout=120)
        assert status["indexedFiles"] == 1  # only good.py
        # An oversized buffer opened in the editor is tracked, not parsed, never served.
        big = (ws / "one_line.py").read_text()
        uri = c.open(ws / "one_line.py", big)
        state = c.request("ripple/debug/document", {"uri": uri})
        assert state["language"] is None and len(state["text"]) == len(big)
        c.change(uri, 2, (0, 5), (0, 5), "fetch(url), ")
        assert c.request(
            "ripple/nextEdits",
            {"textDocument": {"uri": uri, "version": 2}, "position": {"line": 0, "character": 0}},
        ) == {"edits": []}
        assert c.process.poll() is None
        assert (rss_mb(c.process.pid) or 0) < 400
    finally:
        assert c.close() == 0


# -- retrieval indexes ----------------------------------------------------------------------------


def test_annoy_indexes_are_checked_before_annoy_reads_them(tmp_path: Path) -> None:
    from annoy import AnnoyIndex

    from ripple.models.runtime import ModelError
    from ripple.models.runtime.ann import load_annoy, save_annoy

    index = AnnoyIndex(8, "angular")
    for i in range(100):
        index.add_item(i, [float((i * j) % 7) for j in range(8)])
    index.build(5)
    path = tmp_path / "code.ann"
    digest = save_annoy(index, path)
    good = load_annoy(path, 8, "angular", 100, digest)
    assert good.get_nns_by_item(3, 5)[0] == 3
    good.unload()
    # Built for another dimension, truncated, tampered, wrong item count: refused.
    for dim, items, sha in [(16, 100, digest), (8, 100, "0" * 64), (8, 99, digest)]:
        with pytest.raises(ModelError):
            load_annoy(path, dim, "angular", items, sha)
    data = path.read_bytes()
    cut = tmp_path / "cut.ann"
    cut.write_bytes(data[: len(data) - 10])
    with pytest.raises(ModelError, match="truncated"):
        load_annoy(cut, 8, "angular", 100, digest)
    with pytest.raises(ModelError):
        load_annoy(tmp_path / "missing.ann", 8, "angular", 100, digest)
