"""The real server over stdio keeps its documents in step with incremental changes."""

from __future__ import annotations

import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from ripple.models.edits.document import ParsedDocument


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[sys.executable, "-m", "ripple.server.cli", "serve"])
)
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=types.ClientCapabilities())
    )
    yield
    await lsp_client.shutdown_session()


EDITS = [
    # (start line, start UTF-16 char, end line, end char, text)
    (0, 13, 0, 13, ", timeout=5"),
    (1, 9, 1, 10, "😀"),
    (2, 0, 2, 0, "# 日本語 e\u0301\n"),
    (1, 11, 1, 11, "x"),  # after the emoji: UTF-16 counts it as two characters
    (0, 0, 1, 0, "def g():\n    pass\n"),
]
FINAL = "def g():\n    pass\nname = 'a😀x'\n# 日本語 e\u0301\nprint(r)\n"


@pytest.mark.asyncio
async def test_incremental_sync_with_unicode(client: LanguageClient) -> None:
    uri = "file:///tmp/ripple-sync/a.py"
    text = "r = fetch(url)\nname = 'ab'\nprint(r)\n"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )
    local = ParsedDocument(text, path="a.py")
    for version, (l0, c0, l1, c1, new) in enumerate(EDITS, start=2):
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(
                            start=types.Position(line=l0, character=c0),
                            end=types.Position(line=l1, character=c1),
                        ),
                        text=new,
                    )
                ],
            )
        )
        local.apply_lsp_edit((l0, c0), (l1, c1), new)
    state = await client.protocol.send_request_async("ripple/debug/document", {"uri": uri})
    # pygls hands untyped JSON results back as named tuples.
    assert state.text == FINAL == local.text
    assert state.sexp == ParsedDocument(local.text, path="a.py").sexp()
    assert state.language == "python"
    # The history since the settled snapshot, line-level and as an AST edit script.
    assert state.edits and all(e.old != e.new for e in state.edits)
    assert state.ast_script and any(a.startswith(("INS", "UPD", "DEL", "MOV")) for a in state.ast_script)
