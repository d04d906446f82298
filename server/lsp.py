"""The LSP surface: lifecycle and text synchronisation.

Documents are kept as ``ParsedDocument``s, updated incrementally from
``textDocument/didChange``; positions are converted from the protocol's UTF-16 here,
once, at the edge.
"""

from __future__ import annotations

import logging

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from ripple.models.edits.document import ParsedDocument

log = logging.getLogger(__name__)

VERSION = "0.1.0"


class RippleServer(LanguageServer):
    """ripple's language server: the open documents, parsed and kept in step."""

    def __init__(self) -> None:
        super().__init__(
            "ripple",
            VERSION,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.documents: dict[str, ParsedDocument] = {}


def create_server() -> RippleServer:
    server = RippleServer()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: RippleServer, params: types.DidOpenTextDocumentParams) -> None:
        doc = params.text_document
        ls.documents[doc.uri] = ParsedDocument(doc.text, path=doc.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: RippleServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        parsed = ls.documents.get(uri)
        if parsed is None:
            log.warning("didChange for a document that is not open: %s", uri)
            return
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start, end = change.range.start, change.range.end
                parsed.apply_lsp_edit(
                    (start.line, start.character), (end.line, end.character), change.text
                )
            else:
                parsed.replace_text(change.text)

    @server.feature("ripple/debug/document")
    def debug_document(ls: RippleServer, params: object) -> dict[str, object] | None:
        """The server's view of a document (text and tree), for tests and bug reports."""
        uri = getattr(params, "uri", None)
        if uri is None and isinstance(params, dict):
            uri = params.get("uri")
        parsed = ls.documents.get(str(uri))
        if parsed is None:
            return None
        return {"text": parsed.text, "language": parsed.language, "sexp": parsed.sexp()}

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: RippleServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.documents.pop(params.text_document.uri, None)

    return server
