"""Drafting a function body by retrieve-and-edit from the workspace.

``models/suggest/functions.py`` (extraction, empty bodies, the lexical embedder, the
copying drafter, the index, the model fallback), ``server/functions_index.py`` (where a
draft goes, which text wins), and the "Draft body from ..." code action through the real
``ripple serve`` over stdio. Every test runs without the bundled drafting models: the
server is told ``draftModels: false``, and the fallback is tested on its own.
"""

from __future__ import annotations

import sys
import threading
import types as pytypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from ripple.models.runtime import ModelError
from ripple.models.suggest import functions as functions_module
from ripple.models.suggest.functions import (
    CopyBodyDrafter,
    Drafter,
    Embedder,
    FunctionIndex,
    FunctionRecord,
    HashedBagOfWords,
    default_drafter_and_embedder,
    extract_functions,
    header_tokens,
    is_empty_body,
    reindent,
)
from ripple.server.functions_index import WorkspaceFunctions, body_edit
from ripple.server.workspace import Workspace

pytestmark = pytest.mark.filterwarnings("error::pytest_lsp.checks.LspSpecificationWarning")

USERS = '''import json


def load_users(path):
    """Load users from a JSON file."""
    with open(path) as f:
        return json.load(f)
'''
ORDERS = '''import json


def load_orders(path):
    """Load orders from a JSON file."""
'''
DRAFTED = """    with open(path) as f:
        return json.load(f)
"""

SAMPLE = '''import functools


@functools.cache
def area(width: int, height: int) -> int:
    """The area of a rectangle.

    In square units.
    """
    # plain multiplication
    return width * height


class Store:
    """A key-value store."""

    def __init__(self) -> None:
        self.data: dict[str, int] = {}

    @property
    def size(self) -> int:
        return len(self.data)

    async def fetch(
        self,
        key: str,
    ) -> int:
        def missing(name):
            raise KeyError(name)

        if key not in self.data:
            missing(key)
        return self.data[key]

    def todo(self):
        """Not written yet."""

    def stub(self):
        pass

    def dots(self): ...
'''


def _by_name(records: Sequence[FunctionRecord]) -> dict[str, FunctionRecord]:
    return {r.name: r for r in records}


# -- extraction -----------------------------------------------------------------------------


def test_extracts_functions_methods_and_nested_ones_with_exact_text() -> None:
    records = extract_functions(SAMPLE, "pkg/store.py")
    assert [r.name for r in records] == [
        "area",
        "__init__",
        "size",
        "fetch",
        "missing",
        "todo",
        "stub",
        "dots",
    ]
    found = _by_name(records)
    lines = SAMPLE.split("\n")
    area = found["area"]
    # The decorator is not part of the function; the docstring is part of the header.
    assert lines[area.start_line] == "def area(width: int, height: int) -> int:"
    assert area.header == (
        'def area(width: int, height: int) -> int:\n    """The area of a rectangle.\n\n'
        '    In square units.\n    """'
    )
    assert area.body == "    # plain multiplication\n    return width * height\n"
    assert area.body == "".join(line + "\n" for line in lines[area.body_start_line : area.end_line])
    assert area.indent == "    " and area.path == "pkg/store.py"

    fetch = found["fetch"]  # a multi-line signature, async, with a nested function
    assert fetch.header == "    async def fetch(\n        self,\n        key: str,\n    ) -> int:"
    assert fetch.body.startswith("        def missing(name):\n")
    assert fetch.body.endswith("        return self.data[key]\n")
    assert fetch.indent == "        "
    missing = found["missing"]
    assert fetch.start_line < missing.start_line < missing.end_line < fetch.end_line
    assert missing.header == "        def missing(name):"
    assert missing.body == "            raise KeyError(name)\n"

    size = found["size"]
    assert (
        size.header == "    def size(self) -> int:"
        and size.body == "        return len(self.data)\n"
    )

    todo = found["todo"]  # only a docstring: the body is empty, its indent the docstring's
    assert todo.header == '    def todo(self):\n        """Not written yet."""'
    assert todo.body == "" and todo.body_start_line == todo.end_line == todo.start_line + 2
    assert todo.indent == "        "

    dots = found["dots"]  # a one-line function
    assert dots.one_line and dots.body == "...\n" and dots.body_start_line == dots.start_line
    assert not area.one_line


def test_a_def_with_nothing_below_it_yet() -> None:
    text = "class A:\n    def f(self, x):\n\n    def g(self):\n        return 1\n"
    found = _by_name(extract_functions(text, "a.py"))
    f = found["f"]
    assert f.header == "    def f(self, x):" and f.body == ""
    assert (f.start_line, f.body_start_line, f.end_line) == (1, 2, 2)
    assert f.indent == "        "  # one level below the def
    assert is_empty_body(f) and not is_empty_body(found["g"])
    # At the very end of a file without a line break.
    (h,) = extract_functions("def h(path):", "b.py")
    assert h.body == "" and (h.start_line, h.body_start_line, h.end_line) == (0, 1, 1)


def test_broken_code_and_other_languages_never_raise() -> None:
    assert extract_functions("def f(x:\n    return 1\n", "a.py") == []
    assert extract_functions(SAMPLE, "store.js") == []
    assert extract_functions(SAMPLE, "README") == []
    assert extract_functions("", "a.py") == []
    # A function before broken code is still found.
    broken = "def ok(a):\n    return a\n\n\nx = (1,\n"
    assert [r.name for r in extract_functions(broken, "a.py")] == ["ok"]
    # Lone surrogates (an editor buffer may hold them), NULs, odd line breaks, deep nesting.
    for text in (
        "def f():\n    return '\ud800'\n",
        "def f():\x00\n",
        "def f():\r\n    return 1\r\n",
        "x = " + "(" * 2000 + "\n",
        "if a:\n" + "".join("    " * i + "if a:\n" for i in range(1, 200)),
    ):
        extract_functions(text, "a.py")
    (crlf,) = extract_functions("def f():\r\n    return 1\r\n", "a.py")
    assert crlf.body == "    return 1\r\n"


def test_non_ascii_text_keeps_exact_slices() -> None:
    text = 'def grüße(名前):\n    """Sagt hallo 👋."""\n    return f"hallo {名前} 👋"\n'
    (record,) = extract_functions(text, "a.py")
    assert record.name == "grüße"
    assert record.header == 'def grüße(名前):\n    """Sagt hallo 👋."""'
    assert record.body == '    return f"hallo {名前} 👋"\n'


def test_empty_bodies() -> None:
    found = _by_name(extract_functions(SAMPLE, "a.py"))
    assert is_empty_body(found["todo"]) and is_empty_body(found["stub"])
    assert is_empty_body(found["dots"])
    assert not is_empty_body(found["area"]) and not is_empty_body(found["__init__"])

    def record(body: str) -> FunctionRecord:
        return FunctionRecord("a.py", "f", 0, 1, 2, "def f():", body, "    ")

    assert is_empty_body(record(""))
    assert is_empty_body(record("\n   \n"))
    assert is_empty_body(record("    pass\n"))
    assert is_empty_body(record("    ...\n\n    pass  # later\n"))
    assert not is_empty_body(record("    # TODO: write it\n"))
    assert not is_empty_body(record("    return None\n"))
    assert not is_empty_body(record("    passing = 1\n"))


# -- the lexical embedder -----------------------------------------------------------------


def test_header_tokens_split_snake_and_camel_case() -> None:
    tokens = header_tokens('def loadUserJSON(self, file_path):\n    """Read HTTPResponse."""')
    assert "def" not in tokens and "self" not in tokens
    for token in ("loaduserjson", "load", "user", "json", "file_path", "file", "path"):
        assert token in tokens
    assert {"http", "response", "httpresponse", "read"} <= set(tokens)


def test_hashed_bag_of_words_rows_are_unit_or_zero() -> None:
    embedder = HashedBagOfWords()
    assert isinstance(embedder, Embedder)
    vectors = embedder.embed(["def load_users(path):", "def load_orders(path):", "def (): ", ""])
    assert vectors.shape == (4, 1024) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0)
    assert not vectors[2].any() and not vectors[3].any()  # no words: a zero row stays zero
    assert embedder.embed([]).shape == (0, 1024)
    # Stable across calls (and processes: CRC-32, not Python's salted hash).
    assert np.array_equal(embedder.embed(["def load_users(path):"])[0], vectors[0])
    near = float(vectors[0] @ vectors[1])
    far = float(vectors[0] @ embedder.embed(["def render_chart(canvas, series):"])[0])
    # {load_users, load, users, path} . {load_orders, load, orders, path}: 2 of 4 shared
    assert near == pytest.approx(0.5) and far == 0.0
    assert HashedBagOfWords(dim=8).embed(["def a_b_c_d_e_f_g_h_i_j(k):"]).shape == (1, 8)
    with pytest.raises(ValueError):
        HashedBagOfWords(dim=0)


# -- the copying drafter ---------------------------------------------------------------------


def _users() -> FunctionRecord:
    return _by_name(extract_functions(USERS, "users.py"))["load_users"]


def test_copy_body_drafter_reindents_to_the_new_function() -> None:
    drafter = CopyBodyDrafter()
    assert isinstance(drafter, Drafter)
    users = _users()
    # Same depth: the body as it is.
    assert drafter.draft('def load_orders(path):\n    """Orders."""', users) == DRAFTED
    # A method: one level deeper, from the new docstring's indentation.
    assert drafter.draft('    def load(self, path):\n        """Orders."""', users) == (
        "        with open(path) as f:\n            return json.load(f)\n"
    )
    # Two-space indentation shown by the docstring wins over the neighbour's four.
    assert drafter.draft('def load(path):\n  """Orders."""', users) == (
        "  with open(path) as f:\n      return json.load(f)\n"
    )
    # No docstring: the def line's indentation plus the neighbour's own step.
    assert drafter.draft("  def load(self, path):", users) == (
        "      with open(path) as f:\n          return json.load(f)\n"
    )
    # A method copied into a top-level function comes out one level deep.
    method = _by_name(extract_functions(SAMPLE, "a.py"))["size"]
    assert drafter.draft("def size(items):", method) == "    return len(self.data)\n"
    # A one-line neighbour, and one with nothing to copy.
    dots_free = _by_name(extract_functions("def one(): return 1\n", "a.py"))["one"]
    assert drafter.draft("def two():", dots_free) == "    return 1\n"
    empty = FunctionRecord("a.py", "e", 0, 1, 1, "def e():", "", "    ")
    assert drafter.draft("def f():", empty) is None


def test_reindent() -> None:
    body = "    if x:\n\n        y = '''\ntext\n'''\n    return y"
    assert reindent(body, "    ", "\t") == "\tif x:\n\n\t    y = '''\ntext\n'''\n\treturn y\n"
    assert reindent("  a\r\n  b\r\n", "  ", "    ") == "    a\r\n    b\r\n"


# -- the index -------------------------------------------------------------------------------


def test_index_update_query_exclude_and_remove() -> None:
    index = FunctionIndex(HashedBagOfWords())
    assert len(index) == 0 and index.query("def load_orders(path):") == []
    assert index.update_file("users.py", USERS) == 1
    # Empty bodies are not neighbours: only __init__, size, fetch, missing and area count.
    assert index.update_file("store.py", SAMPLE) == 5
    assert len(index) == 6 and index.paths() == ["store.py", "users.py"]
    header = 'def load_orders(path):\n    """Load orders from a JSON file."""'
    (best, *rest) = index.query(header, k=3)
    assert best[1].name == "load_users" and best[0] > 0.5
    assert [score for score, _ in rest] == sorted((s for s, _ in rest), reverse=True)
    assert len(rest) == 2 and all(score <= best[0] for score, _ in rest)
    assert best[0] == pytest.approx(
        float(
            HashedBagOfWords().embed([header])[0] @ HashedBagOfWords().embed([best[1].header])[0]
        ),
        abs=2e-3,
    )
    # Excluding the function itself.
    assert index.query(best[1].header, k=1)[0][1].name == "load_users"
    excluded = index.query(best[1].header, k=1, exclude=("users.py", best[1].start_line))
    assert excluded and excluded[0][1].name != "load_users"
    assert len(index.query(header, k=100)) == 6 and index.query(header, k=0) == []
    # Replacing a file's text replaces its functions; the same text is not re-extracted.
    renamed = USERS.replace("load_users", "read_people")
    assert index.update_file("users.py", renamed) == 1
    assert index.query(header, k=1)[0][1].name != "load_users"
    assert index.update_file("users.py", renamed) == 1
    assert index.remove_file("users.py") and not index.remove_file("users.py")
    assert len(index) == 5 and index.paths() == ["store.py"]
    assert index.update_file("notes.txt", USERS) == 0 and len(index) == 5


def test_index_is_safe_across_threads() -> None:
    index = FunctionIndex(HashedBagOfWords())
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(30):
                index.update_file(f"f{n}.py", USERS.replace("load_users", f"load_{n}_{i}"))
                if i % 7 == 0:
                    index.remove_file(f"f{n}.py")
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(60):
                for score, record in index.query("def load_orders(path):", k=3):
                    assert -1.01 <= score <= 1.01 and record.body
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(index) == 4 and len(index.query("def load_orders(path):", k=10)) == 4


class _Embedder:
    """Fixed vectors by first word of the function name (for exact scores)."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def embed(self, headers: Sequence[str]) -> np.ndarray:
        rows = []
        for header in headers:
            name = header.split("def ", 1)[1].split("(", 1)[0].split("_")[0]
            row = np.asarray(self.table.get(name, [0.0, 0.0]), dtype=np.float32)
            rows.append(row / (np.linalg.norm(row) or 1.0))
        return np.asarray(rows, dtype=np.float32).reshape(len(headers), 2)


def test_index_with_another_embedder_ranks_by_cosine() -> None:
    index = FunctionIndex(_Embedder({"load": [1, 0], "save": [0, 1], "copy": [1, 1]}))
    text = "def load_a(x):\n    return 1\n\n\ndef save_b(x):\n    return 2\n\n\ndef copy_c(x):\n    return 3\n"
    index.update_file("m.py", text)
    found = index.query("def load_new(y):", k=3)
    assert [r.name for _, r in found] == ["load_a", "copy_c", "save_b"]
    assert [round(s, 3) for s, _ in found] == [1.0, 0.707, 0.0]


# -- the model fallback ----------------------------------------------------------------------


def _fake_models(monkeypatch: pytest.MonkeyPatch, load: Any) -> None:
    module = pytypes.ModuleType("ripple.models.suggest.retrieve_edit")
    module.load_function_models = load  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ripple.models.suggest.retrieve_edit", module)


def test_fallback_when_the_models_are_missing_or_bad(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # No module at all.
    monkeypatch.setitem(sys.modules, "ripple.models.suggest.retrieve_edit", None)
    drafter, embedder = default_drafter_and_embedder()
    assert isinstance(drafter, CopyBodyDrafter) and isinstance(embedder, HashedBagOfWords)

    # The module is there but its models are not.
    def broken() -> tuple[Embedder, Drafter]:
        raise ModelError("models/weights/functions: no such model folder")

    _fake_models(monkeypatch, broken)
    with caplog.at_level("INFO", logger=functions_module.__name__):
        drafter, embedder = default_drafter_and_embedder()
    assert isinstance(drafter, CopyBodyDrafter) and isinstance(embedder, HashedBagOfWords)
    assert "no such model folder" in caplog.text

    # Models that load are used, (embedder, drafter) -> (drafter, embedder).
    class _Drafter:
        def draft(self, header: str, neighbour: FunctionRecord) -> str | None:
            return neighbour.body

    fake_embedder, fake_drafter = _Embedder({}), _Drafter()
    _fake_models(monkeypatch, lambda: (fake_embedder, fake_drafter))
    assert default_drafter_and_embedder() == (fake_drafter, fake_embedder)
    functions = WorkspaceFunctions.load(True)
    assert functions.drafter is fake_drafter and functions.index.embedder is fake_embedder
    assert functions.kind == "_Embedder+_Drafter"
    # draftModels off never asks for the models.
    _fake_models(monkeypatch, broken)
    assert WorkspaceFunctions.load(False).kind == "lexical"


# -- the server's side -----------------------------------------------------------------------


def test_body_edit_places_the_draft() -> None:
    def apply(text: str, record: FunctionRecord, body: str) -> str:
        (sl, sc), (el, ec), new = body_edit(text, record, body)
        lines = text.split("\n")
        start = sum(len(line) + 1 for line in lines[:sl]) + sc
        end = sum(len(line) + 1 for line in lines[:el]) + ec
        return text[:start] + new + text[end:]

    def only(text: str) -> FunctionRecord:
        return next(r for r in extract_functions(text, "a.py") if is_empty_body(r))

    # The docstring stays; the body goes below it.
    assert apply(ORDERS, only(ORDERS), DRAFTED) == ORDERS + DRAFTED
    # pass and ... are replaced, what follows stays.
    text = 'def f(path):\n    """Doc."""\n    pass\n\n\ndef g():\n    return 1\n'
    assert apply(text, only(text), DRAFTED) == (
        'def f(path):\n    """Doc."""\n' + DRAFTED + "\n\ndef g():\n    return 1\n"
    )
    text = "def f(path):\n    ...\nx = 1"
    assert apply(text, only(text), DRAFTED) == "def f(path):\n" + DRAFTED + "x = 1"
    # Nothing below the def yet, at the end of a text without a line break.
    assert apply("def f(path):", only("def f(path):"), DRAFTED) == "def f(path):\n" + DRAFTED
    text = "def f(path):\n    pass"
    assert apply(text, only(text), DRAFTED) == "def f(path):\n" + DRAFTED
    # A one-line function gets its body below the def line.
    text = "def f(path): ...\n\nx = 1\n"
    assert apply(text, only(text), DRAFTED) == "def f(path):\n" + DRAFTED + "\nx = 1\n"
    # CRLF texts get CRLF lines.
    text = 'def f(path):\r\n    """Doc."""\r\n    pass\r\n'
    assert apply(
        text, only(text), DRAFTED
    ) == 'def f(path):\r\n    """Doc."""\r\n' + DRAFTED.replace("\n", "\r\n")


def test_draft_at_finds_the_function_and_asks_the_nearest_neighbour() -> None:
    functions = WorkspaceFunctions(CopyBodyDrafter(), HashedBagOfWords())
    functions.disk_text("users.py", USERS)
    functions.disk_text("notes.md", USERS)  # not Python: ignored
    assert functions.index.paths() == ["users.py"]
    for line in (3, 4, 5):  # the def line, the docstring, the blank line below
        draft = functions.draft_at("orders.py", ORDERS + "\n", line, line)
        assert draft is not None, line
        assert draft.title == "Draft body from `load_users` (users.py:4)"
        assert draft.new_text == DRAFTED and draft.start == draft.end == (5, 0)
        assert draft.neighbour.name == "load_users" and draft.function.name == "load_orders"
        assert 0 < draft.score <= 1
    assert functions.draft_at("orders.py", ORDERS, 0, 0) is None  # not in a function
    written = ORDERS + "    return []\n"
    assert functions.draft_at("orders.py", written, 3, 3) is None  # already has a body
    assert functions.draft_at("orders.js", ORDERS, 3, 3) is None
    # Nothing similar: no draft.
    assert functions.draft_at("x.py", "def zzz():\n    pass\n", 0, 0) is None

    class Declines:
        def draft(self, header: str, neighbour: FunctionRecord) -> str | None:
            return None

    assert WorkspaceFunctions(Declines(), HashedBagOfWords()).draft_at("o.py", ORDERS, 3, 3) is None
    # A neighbour that is the function itself (a stale copy) is excluded.
    same = WorkspaceFunctions(CopyBodyDrafter(), HashedBagOfWords())
    same.disk_text("orders.py", ORDERS + "    return []\n")
    assert same.draft_at("orders.py", ORDERS, 3, 3) is None


def test_open_documents_override_the_disk(tmp_path: Path) -> None:
    (tmp_path / "users.py").write_text(USERS)
    (tmp_path / "README.md").write_text("# notes\n")
    functions = WorkspaceFunctions(CopyBodyDrafter(), HashedBagOfWords())
    workspace = Workspace([tmp_path])
    workspace.on_text(functions.disk_text)
    workspace.scan()  # the scan fills the function index
    assert functions.index.paths() == ["users.py"]

    # Opened: the editor's text wins, even over a later change on disk.
    ticket = functions.opened("users.py")
    assert ticket is not None
    buffer = USERS.replace("load_users", "read_people")
    newer = functions.ticket("users.py")
    assert not functions.buffer_text("users.py", USERS, ticket)  # superseded
    assert functions.buffer_text("users.py", buffer, newer)
    (tmp_path / "users.py").write_text(USERS.replace("load_users", "from_disk"))
    workspace.apply_external_change(tmp_path / "users.py", "changed")
    assert functions.index.query("def read_people(path):")[0][1].name == "read_people"

    # Closed: the disk's text again.
    functions.closed("users.py", workspace.text("users.py"))
    assert functions.index.query("def from_disk(path):")[0][1].name == "from_disk"
    assert not functions.buffer_text("users.py", buffer, functions.ticket("users.py"))

    # Deleted on disk: gone from the index.
    (tmp_path / "users.py").unlink()
    workspace.apply_external_change(tmp_path / "users.py", "deleted")
    assert len(functions.index) == 0
    assert functions.opened("README.md") is None


def test_a_failing_embedder_leaves_the_file_out() -> None:
    class Failing:
        def embed(self, headers: Sequence[str]) -> np.ndarray:
            raise RuntimeError("boom")

    functions = WorkspaceFunctions(CopyBodyDrafter(), Failing())
    functions.disk_text("users.py", USERS)  # logged, not raised
    assert len(functions.index) == 0


# -- end to end: the real server over stdio ----------------------------------------------------


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[sys.executable, "-m", "ripple.server.cli", "serve"])
)
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    @lsp_client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register_capability(params: types.RegistrationParams) -> None:
        pass  # the server watches files through the client

    # lsprotocol reads any code action with a "command" as a bare Command; tell them apart
    # by that field's type, as VS Code does (see tests/test_lsp_e2e.py).
    converter = lsp_client.protocol._converter

    def code_action_or_command(obj: Any, _: type) -> types.Command | types.CodeAction:
        if isinstance(obj.get("command"), str):
            return converter.structure(obj, types.Command)
        return converter.structure(obj, types.CodeAction)

    converter.register_structure_hook(
        Union[types.Command, types.CodeAction],  # noqa: UP007
        code_action_or_command,
    )
    yield lsp_client
    await lsp_client.shutdown_session()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "users.py").write_text(USERS)
    return root


async def _start(client: LanguageClient, root: Path, options: dict[str, Any]) -> dict[str, Any]:
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options=options,
        )
    )
    status = await client.protocol.send_request_async("ripple/status", {"waitForIndex": True})
    return {"functions": status.functions, "drafts": status.drafts}


def _type(client: LanguageClient, uri: str, version: int, line: int, text: str) -> int:
    """Type ``text`` at the start of ``line``, one keystroke per change; the last version."""
    row, col = line, 0
    for ch in text:
        version += 1
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(types.Position(row, col), types.Position(row, col)),
                        text=ch,
                    )
                ],
            )
        )
        row, col = (row + 1, 0) if ch == "\n" else (row, col + 1)
    return version


async def _actions(client: LanguageClient, uri: str, line: int) -> list[types.CodeAction]:
    result = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(types.Position(line, 0), types.Position(line, 0)),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    return [a for a in result or [] if isinstance(a, types.CodeAction)]


async def test_draft_body_code_action_end_to_end(client: LanguageClient, project: Path) -> None:
    status = await _start(client, project, {"draftModels": False})
    assert status == {"functions": 1, "drafts": "lexical"}  # the scan filled the index
    uri = (project / "orders.py").as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text="import json\n\n\n"
            )
        )
    )
    version = _type(client, uri, 1, 3, ORDERS.split("\n\n\n", 1)[1])
    assert version > 1
    actions = await _actions(client, uri, 3)  # on the def line
    drafts = [a for a in actions if a.title.startswith("Draft body")]
    assert [a.title for a in drafts] == ["Draft body from `load_users` (users.py:4)"]
    (action,) = drafts
    assert action.kind == types.CodeActionKind.RefactorRewrite
    assert action.edit is not None and action.edit.changes is not None
    (edit,) = action.edit.changes[uri]
    assert edit.new_text == DRAFTED
    assert edit.range == types.Range(types.Position(5, 0), types.Position(5, 0))
    # Inside the function too; not outside it; not when only quick fixes are asked for.
    assert [a.title for a in await _actions(client, uri, 4) if a.title.startswith("Draft")]
    assert not [a for a in await _actions(client, uri, 0) if a.title.startswith("Draft")]
    only = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(types.Position(3, 0), types.Position(3, 0)),
            context=types.CodeActionContext(diagnostics=[], only=[types.CodeActionKind.QuickFix]),
        )
    )
    assert not [a for a in only or [] if a.title.startswith("Draft")]

    # Applied (as the client would), the function has a body: no more draft.
    version = _type(client, uri, version, 5, DRAFTED)
    assert not [a for a in await _actions(client, uri, 3) if a.title.startswith("Draft")]

    # Switched off by the setting.
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"ripple": {"draftBodies": False}})
    )
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version + 1),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=ORDERS)],
        )
    )
    assert not [a for a in await _actions(client, uri, 3) if a.title.startswith("Draft")]


async def test_functions_of_open_documents_and_disk_changes_are_indexed(
    client: LanguageClient, project: Path
) -> None:
    import asyncio

    await _start(client, project, {"draftModels": False})
    # A neighbour typed into an unsaved buffer is found once the buffer rests.
    helpers = (project / "helpers.py").as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(
                uri=helpers,
                language_id="python",
                version=1,
                text="def render_chart(canvas, series):\n    canvas.plot(series)\n",
            )
        )
    )
    uri = (project / "charts.py").as_uri()
    text = 'def render_graph(canvas, series):\n    """Render a chart."""\n'
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )
    titles: list[str] = []
    for _ in range(50):
        titles = [a.title for a in await _actions(client, uri, 0) if a.title.startswith("Draft")]
        if any("render_chart" in t for t in titles):
            break
        await asyncio.sleep(0.1)
    assert "Draft body from `render_chart` (helpers.py:1)" in titles

    # A file written on disk and reported by the client becomes a neighbour; a deleted
    # one stops being one.
    (project / "users.py").unlink()
    (project / "charts_old.py").write_text(
        'def render_graph(canvas, series):\n    """Render a chart."""\n    canvas.draw(series)\n'
    )
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            changes=[
                types.FileEvent(
                    uri=(project / "users.py").as_uri(), type=types.FileChangeType.Deleted
                ),
                types.FileEvent(
                    uri=(project / "charts_old.py").as_uri(), type=types.FileChangeType.Created
                ),
            ]
        )
    )
    for _ in range(50):
        titles = [a.title for a in await _actions(client, uri, 0) if a.title.startswith("Draft")]
        if any("charts_old.py" in t for t in titles):
            break
        await asyncio.sleep(0.1)
    assert titles == ["Draft body from `render_graph` (charts_old.py:1)"]
    status = await client.protocol.send_request_async("ripple/status", {})
    assert status.functions == 2  # render_chart (open) and charts_old's; users.py gone


async def test_switching_drafts_on_later_indexes_the_workspace(
    client: LanguageClient, project: Path
) -> None:
    import asyncio

    status = await _start(client, project, {"draftModels": False, "draftBodies": False})
    assert status == {"functions": None, "drafts": "off"}
    uri = (project / "orders.py").as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id="python", version=1, text=ORDERS)
        )
    )
    assert not [a for a in await _actions(client, uri, 3) if a.title.startswith("Draft")]
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"ripple": {"draftBodies": True}})
    )
    titles: list[str] = []
    for _ in range(50):
        titles = [a.title for a in await _actions(client, uri, 3) if a.title.startswith("Draft")]
        if titles:
            break
        await asyncio.sleep(0.1)
    assert titles == ["Draft body from `load_users` (users.py:4)"]
