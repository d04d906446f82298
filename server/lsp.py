"""The LSP surface of ripple: documents in, next edits out.

- Text sync is incremental; each open document is a ``ParsedDocument`` inside the
  :class:`~ripple.server.history.EditHistory`, which also keeps the live edits since the
  settled snapshot. pygls' own copy of every document is switched off (the
  ``RippleProtocol`` below), so a keystroke is applied once.
- ``ripple/nextEdits`` answers ``{edits: [{id, textDocument: {uri, version}, range,
  newText, explanation}]}``, ranked, for edits anywhere (the shape of Copilot's
  ``textDocument/copilotInlineEdit``); ``textDocument/inlineCompletion`` (LSP 3.18)
  offers the ones at the cursor as ghost text; ``textDocument/codeAction`` offers
  "Apply suggested edit" at a suggestion's range, and "Draft body from `f` (path:line)"
  in a function whose body is still empty (``functions_index.py``: the nearest function
  of the workspace by its header, its body adapted by the drafter).
- The client reports ``ripple/didShowEdit``, ``ripple/didAcceptEdit`` and
  ``ripple/didRejectEdit`` (``{id}``, accept may carry ``acceptedLength``); they feed
  the suppression of rejected edits and the adaptive debounce, and stay in this process.
- Requests are answered once each: a cancelled request gets the protocol's
  ``RequestCancelled`` error, and a request for a document version that has moved on
  gets an empty answer, never edits computed for an old text.
- The workspace folders are indexed in the background with ``$/progress``; changes on
  disk arrive through ``workspace/didChangeWatchedFiles`` when the client can register
  for it, through a watchdog watcher otherwise, and never count as the user's edits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from ripple.models.edits.positions import utf16_len
from ripple.server.config import RippleConfig, parse_config
from ripple.server.engine import Engine, NextEdit
from ripple.server.functions_index import BodyDraft, WorkspaceFunctions, is_python
from ripple.server.history import EditHistory
from ripple.server.transport import serve_stream

log = logging.getLogger(__name__)

VERSION = "0.1.0"

NEXT_EDITS = "ripple/nextEdits"
DID_SHOW = "ripple/didShowEdit"
DID_ACCEPT = "ripple/didAcceptEdit"
DID_REJECT = "ripple/didRejectEdit"
STATUS = "ripple/status"
DEBUG_DOCUMENT = "ripple/debug/document"
ACCEPT_COMMAND = "ripple.acceptEdit"
# How long an open document rests before its functions are indexed again.
FUNCTION_UPDATE_S = 0.3


class RippleProtocol(LanguageServerProtocol):
    """pygls' protocol without its own copy of each open document.

    The built-in handlers would keep a second text per document and apply every change
    twice; ripple's :class:`EditHistory` is the only copy.
    """

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(
        self, params: types.InitializeParams
    ) -> Generator[Any, Any, types.InitializeResult]:
        """Always speak UTF-16 positions (the LSP default), whatever the client offers first.

        ripple converts every position as UTF-16 at the edge; a client that prefers UTF-8
        (Neovim 0.11 does) is told so in the answer's ``positionEncoding``.
        """
        general = params.capabilities.general
        if general is not None and general.position_encodings:
            general.position_encodings = [types.PositionEncodingKind.Utf16]
        result: types.InitializeResult = yield from super().lsp_initialize(params)
        return result

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(
        self, params: types.DidOpenTextDocumentParams
    ) -> Generator[Any, Any, None]:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_OPEN)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(
        self, params: types.DidChangeTextDocumentParams
    ) -> Generator[Any, Any, None]:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(
        self, params: types.DidCloseTextDocumentParams
    ) -> Generator[Any, Any, None]:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            yield handler, (params,), None


def _get(params: object, key: str, default: Any = None) -> Any:
    """A field of a custom request's params (pygls gives objects; tests may give dicts)."""
    if isinstance(params, dict):
        return params.get(key, default)
    return getattr(params, key, default)


def uri_to_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


class RippleServer(LanguageServer):
    """ripple's language server: history, engine, workspace and the LSP features."""

    def __init__(self, models_dir: Path | None = None) -> None:
        super().__init__(
            "ripple",
            VERSION,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=RippleProtocol,
        )
        self.models_dir = models_dir
        self.config = RippleConfig()
        self.history = EditHistory(self.config.max_live_edits, self.config.settle_after_s)
        self.engine: Engine | None = None
        self.model_names: list[str] = []
        self.problems: list[str] = []
        self.workspace_view: Any = None  # server.workspace.Workspace once indexed
        self.watcher: Any = None
        self.watch_mode = "off"
        self.roots: list[Path] = []
        self.indexing: asyncio.Task[None] | None = None
        self.speculative: dict[str, asyncio.TimerHandle] = {}
        # The latest computed suggestions per document: (version, edits, from every member).
        self.latest: dict[str, tuple[int, list[NextEdit], bool]] = {}
        self.event_loop: asyncio.AbstractEventLoop | None = None
        self.failures_reported = 0
        self.unserved: set[str] = set()  # open documents too large or binary to serve
        self.pending_runs: set[asyncio.Future[Any]] = set()
        self.last_failure_notice: float | None = None
        # The function index behind "Draft body from ..." (None while off or not yet built).
        self.functions: WorkspaceFunctions | None = None
        self.functions_task: asyncio.Task[None] | None = None
        self.function_updates: dict[str, asyncio.TimerHandle] = {}
        self._detach_functions: Callable[[], None] | None = None

    # -- transport ------------------------------------------------------------------------

    def _start_io_async(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve stdio with ripple's frame reader (``server/transport.py``).

        stdin is read on the event loop, not line by line through a worker thread as
        pygls does: a buffered ``$/cancelRequest`` right behind its request is then seen
        while the request is still pending, and damaged frames are skipped or answered
        with a JSON-RPC error instead of stalling or ending the connection.
        """
        stdin = stdin or sys.stdin.buffer
        try:
            mode = Path(f"/proc/self/fd/{stdin.fileno()}").stat().st_mode
            piped = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)
        except (OSError, ValueError, AttributeError):
            piped = False
        if not piped:  # a regular file cannot be watched by the event loop
            super()._start_io_async(stdin, stdout)
            return
        stop = self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))

        async def main() -> None:
            loop = asyncio.get_running_loop()
            stream = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), stdin)
            await serve_stream(stream, self.protocol, stop)

        try:
            asyncio.run(main())
        except BrokenPipeError:
            log.error("the connection to the client is lost; shutting down")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    # -- set-up ---------------------------------------------------------------------------

    def setup(self, params: types.InitializeParams) -> None:
        self.config, problems = parse_config(params.initialization_options)
        self.problems += problems
        self.history.max_live_edits = self.config.max_live_edits
        self.history.settle_after_s = self.config.settle_after_s
        from ripple.models.suggest.registry import make_shipped

        try:
            shipped = make_shipped(self.models_dir, device=self.config.device)
        except Exception as exc:  # the rules alone still serve
            log.exception("loading models failed")
            from ripple.models.suggest.ensemble import Ensemble
            from ripple.models.suggest.rules import RuleEngine

            self.problems.append(f"ripple could not load its models ({exc}); serving the rules only")
            predictor = Ensemble([RuleEngine()])
        else:
            predictor = shipped.ensemble
            self.problems += shipped.problems
            self.model_names = sorted(shipped.models)
        rate = os.environ.get("RIPPLE_FAULT_RATE")
        if rate:  # chaos testing: a member that fails in this fraction of calls
            from ripple.server.robustness import FaultInjector

            getattr(predictor, "members", []).append(FaultInjector(float(rate)))
        for problem in self.problems:
            log.warning("%s", problem)
        self.engine = Engine(self.history, predictor, self.config, None)
        self.engine.allowed = self.edit_allowed
        roots: list[Path] = []
        for folder in params.workspace_folders or []:
            path = uri_to_path(folder.uri)
            if path is not None:
                roots.append(path)
        if not roots and params.root_uri:
            path = uri_to_path(params.root_uri)
            if path is not None:
                roots.append(path)
        if not roots and params.root_path:
            roots.append(Path(params.root_path))
        self.roots = [root for root in roots if root.is_dir()]

    def edit_allowed(self, uri: str, request_uri: str) -> bool:
        if uri in self.unserved:
            return False
        return self._inside_workspace(uri, request_uri)

    def _inside_workspace(self, uri: str, request_uri: str) -> bool:
        """Edits stay inside the workspace folders (symlinks resolved).

        With no workspace folder open, only the document the request is about may be
        edited. Other URI schemes, ``..`` (also percent-encoded) and symlinks that lead
        out of a folder are refused.
        """
        if not self.roots:
            return uri == request_uri
        path = uri_to_path(uri)
        if path is None:
            return False
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return False
        for root in self.roots:
            try:
                real.relative_to(root.resolve())
                return True
            except (ValueError, OSError, RuntimeError):
                continue
        return False

    def path_for(self, uri: str) -> str:
        """The path a document is known by: workspace-relative when inside a root."""
        path = uri_to_path(uri)
        if path is None:
            return uri
        if self.workspace_view is not None:
            rel = self.workspace_view.rel_of(path)
            if rel is not None:
                return str(rel)
        for root in self.roots:
            try:
                return path.relative_to(root).as_posix()
            except ValueError:
                continue
        return str(path)

    # -- workspace ----------------------------------------------------------------------

    async def index_workspace(self) -> None:
        """Scan the workspace folders in a thread, reporting ``$/progress``; then watch."""
        self.event_loop = asyncio.get_running_loop()
        await self.start_functions()
        if not self.roots or not self.config.index_workspace:
            return
        try:
            workspace = self._make_workspace()
        except Exception as exc:
            log.exception("cannot set up the workspace index")
            self.problems.append(f"ripple could not index the workspace ({exc})")
            return
        if self.functions is not None:  # the scan fills the function index as it reads
            self._attach_functions(workspace, self.functions)
        token: str | None = None
        caps = self.client_capabilities
        if caps.window is not None and caps.window.work_done_progress:
            token = f"ripple-index-{uuid.uuid4().hex[:8]}"
            try:
                await self.work_done_progress.create_async(token)
                self.work_done_progress.begin(
                    token,
                    types.WorkDoneProgressBegin(
                        title="ripple: indexing the workspace", percentage=0, cancellable=False
                    ),
                )
            except Exception:  # a client that refuses the token still gets an index
                log.warning("the client refused a progress token; indexing silently")
                token = None
        loop = asyncio.get_running_loop()
        last_report = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if token is None or (now - last_report[0] < 0.2 and done < total):
                return
            last_report[0] = now
            pct = int(100 * done / total) if total else 100
            loop.call_soon_threadsafe(
                self.work_done_progress.report,
                token,
                types.WorkDoneProgressReport(message=f"{done}/{total} files", percentage=pct),
            )

        try:
            await loop.run_in_executor(None, lambda: workspace.scan(progress))
        except Exception as exc:
            log.exception("indexing the workspace failed")
            self.problems.append(f"ripple could not index the workspace ({exc})")
            workspace = None
        if token is not None:
            self.work_done_progress.end(
                token,
                types.WorkDoneProgressEnd(
                    message=f"{len(workspace.files()) if workspace else 0} files indexed"
                ),
            )
        if workspace is None:
            return
        self.workspace_view = workspace
        if self.engine is not None:
            self.engine.workspace = workspace
        if self.functions is not None and self._detach_functions is None:
            await self._fill_functions(workspace, self.functions)  # built while it scanned
        # Answers computed before the index existed did not look at the other files.
        self.latest.clear()
        workspace.on_change(lambda changed: self._loop_call(self.latest.clear))
        await self._watch(workspace)

    def _make_workspace(self) -> Any:
        from ripple.server.workspace import Workspace, WorkspaceConfig

        ws_config = WorkspaceConfig(
            max_file_bytes=self.config.max_file_bytes,
            max_files=self.config.max_files,
            extra_excludes=self.config.exclude,
        )
        return Workspace(self.roots, ws_config)

    async def _watch(self, workspace: Any) -> None:
        from ripple.server.workspace import Watcher, glob_patterns

        caps = self.client_capabilities
        watched = caps.workspace.did_change_watched_files if caps.workspace else None
        if watched is not None and watched.dynamic_registration:
            options = types.DidChangeWatchedFilesRegistrationOptions(
                watchers=[
                    types.FileSystemWatcher(glob_pattern=pattern)
                    for pattern in glob_patterns(workspace.config)
                ]
            )
            try:
                await self.client_register_capability_async(
                    types.RegistrationParams(
                        registrations=[
                            types.Registration(
                                id=f"ripple-watch-{uuid.uuid4().hex[:8]}",
                                method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                                register_options=options,
                            )
                        ]
                    )
                )
                self.watch_mode = "client"
                return
            except Exception:
                log.warning("the client refused file watching; watching the disk ourselves")
        self.watcher = Watcher(workspace)
        await asyncio.get_running_loop().run_in_executor(None, self.watcher.start)
        self.watch_mode = self.watcher.mode

    # -- functions ----------------------------------------------------------------------

    async def start_functions(self) -> None:
        """Build the function index (its models load off the event loop) and feed it the
        open documents and, when the workspace is already indexed, the workspace files."""
        if self.functions is not None or not self.config.draft_bodies:
            return
        loop = asyncio.get_running_loop()
        use_models = self.config.draft_models
        try:
            functions = await loop.run_in_executor(None, WorkspaceFunctions.load, use_models)
        except Exception as exc:
            log.exception("cannot set up the function index")
            self.problems.append(f"ripple cannot draft function bodies ({exc})")
            return
        if self.functions is not None or not self.config.draft_bodies:
            return  # switched off, or built by another call, meanwhile
        self.functions = functions
        log.info("function drafts: %s", functions.kind)
        for uri in list(self.history.docs):
            self.schedule_function_update(uri, 0.0, opened=True)
        if self.workspace_view is not None:
            await self._fill_functions(self.workspace_view, functions)

    async def _fill_functions(self, workspace: Any, functions: WorkspaceFunctions) -> None:
        """Feed an index built after the scan every file the workspace view holds."""
        self._attach_functions(workspace, functions)

        def fill() -> None:
            for rel in workspace.files():
                if is_python(rel) and self.functions is functions:
                    functions.disk_text(rel, workspace.text(rel))

        await asyncio.get_running_loop().run_in_executor(None, fill)

    def _attach_functions(self, workspace: Any, functions: WorkspaceFunctions) -> None:
        if self._detach_functions is not None:
            self._detach_functions()
        self._detach_functions = workspace.on_text(functions.disk_text)

    def stop_functions(self) -> None:
        """Drop the function index (drafts switched off, or rebuilt with other models)."""
        if self._detach_functions is not None:
            self._detach_functions()
            self._detach_functions = None
        for handle in self.function_updates.values():
            handle.cancel()
        self.function_updates.clear()
        self.functions = None

    def schedule_function_update(self, uri: str, delay: float, opened: bool = False) -> None:
        """Index the functions of an open document once it rests for ``delay`` seconds
        (off the event loop; only the newest text of a document is applied)."""
        functions = self.functions
        path = self.history.path(uri)
        if functions is None or path is None or uri in self.unserved or not is_python(path):
            return
        handle = self.function_updates.pop(uri, None)
        if handle is not None:
            handle.cancel()
        ticket = functions.opened(path) if opened else functions.ticket(path)
        if ticket is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def run() -> None:
            self.function_updates.pop(uri, None)
            doc = self.history.get(uri)
            if doc is None or self.functions is not functions:
                return
            loop.run_in_executor(None, functions.buffer_text, path, doc.text, ticket)

        self.function_updates[uri] = loop.call_later(delay, run)

    def close_functions(self, uri: str, path: str | None) -> None:
        """An open document closed: its functions are the disk's again (or gone)."""
        handle = self.function_updates.pop(uri, None)
        if handle is not None:
            handle.cancel()
        functions, workspace = self.functions, self.workspace_view
        if functions is None or path is None or not is_python(path):
            return

        def apply() -> None:
            disk = workspace.text(path) if workspace is not None and path in workspace else None
            functions.closed(path, disk)

        try:
            asyncio.get_running_loop().run_in_executor(None, apply)
        except RuntimeError:
            apply()

    async def draft_action(
        self, uri: str, params: types.CodeActionParams
    ) -> types.CodeAction | None:
        """The "Draft body from ..." action for the function at the requested range."""
        functions = self.functions
        only = params.context.only if params.context is not None else None
        kind = types.CodeActionKind.RefactorRewrite.value
        if only and not any(k == "" or kind == k or kind.startswith(f"{k}.") for k in only):
            return None
        doc, path = self.history.get(uri), self.history.path(uri)
        version = self.history.version(uri)
        if (
            functions is None
            or not self.config.draft_bodies
            or doc is None
            or path is None
            or not is_python(path)
            or uri in self.unserved
            or not self.edit_allowed(uri, uri)
        ):
            return None
        first, last = params.range.start.line, params.range.end.line
        loop = asyncio.get_running_loop()
        try:
            draft: BodyDraft | None = await loop.run_in_executor(
                None, functions.draft_at, path, doc.text, first, last
            )
        except Exception:  # the other code actions still answer
            log.exception("drafting a function body failed")
            return None
        doc = self.history.get(uri)
        if draft is None or doc is None or self.history.version(uri) != version:
            return None  # nothing to draft, or the text moved on while it was drafted
        lines = doc.lines

        def position(at: tuple[int, int]) -> types.Position:
            row, col = at
            return types.Position(row, utf16_len(lines.line_text(row)[:col]))

        return types.CodeAction(
            title=draft.title,
            kind=types.CodeActionKind.RefactorRewrite,
            edit=types.WorkspaceEdit(
                changes={
                    uri: [
                        types.TextEdit(
                            types.Range(position(draft.start), position(draft.end)),
                            draft.new_text,
                        )
                    ]
                }
            ),
        )

    def _loop_call(self, callback: Any) -> None:
        """Run ``callback`` on the server's event loop (watcher threads call this)."""
        loop = self.event_loop
        if loop is None:
            callback()
            return
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed: the server is going away
            pass

    def external_change(self, path: Path, kind: str) -> None:
        """A file changed on disk (not through the editor): update the on-disk view."""
        if self.workspace_view is None:
            return
        # Open documents too: the view is the disk (the editor's buffer overrides it while
        # open), and after a close the saved text must be what the index knows.
        self.workspace_view.apply_external_change(path, kind)

    # -- suggestions --------------------------------------------------------------------

    def compute(self, uri: str, line: int, col: int) -> list[NextEdit]:
        """Suggestions for a request, now: from the pause-time run if it is current, else
        from the members fast enough to answer a keystroke (the models join at the pause)."""
        assert self.engine is not None
        version = self.history.version(uri)
        cached = self.latest.get(uri)
        if cached is not None and cached[0] == version:
            return cached[1]
        fast = self.engine.has_slow_members
        edits = self.engine.suggest(uri, line, col, fast=fast)
        if version is not None:
            self.latest[uri] = (version, edits, not fast)
        self._report_failures()
        return edits

    def _report_failures(self) -> None:
        """Tell the user when predictors fail, at most once a minute (the log has each one)."""
        failures = getattr(self.engine.predictor if self.engine else None, "failures", None)
        if not failures:
            return
        total = sum(failures.values())
        if total <= self.failures_reported:
            return
        now = time.monotonic()
        if self.last_failure_notice is not None and now - self.last_failure_notice < 60.0:
            return
        self.failures_reported, self.last_failure_notice = total, now
        names = ", ".join(sorted(failures))
        self.window_show_message(
            types.ShowMessageParams(
                types.MessageType.Warning,
                f"ripple: a predictor failed ({names}; {total} time(s) so far). ripple keeps "
                "suggesting with the others; the server log has the details.",
            )
        )

    def schedule_speculative(self, uri: str) -> None:
        """After ``debounce`` ms without edits, compute suggestions ahead of a request."""
        if self.engine is None:
            return
        handle = self.speculative.pop(uri, None)
        if handle is not None:
            handle.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        version = self.history.version(uri)
        engine = self.engine

        def run() -> None:
            self.speculative.pop(uri, None)
            if self.history.version(uri) != version or not engine.servable(uri):
                return
            cached = self.latest.get(uri)
            if cached is not None and cached[0] == version and cached[2]:
                return
            last = self.history.edits[-1] if self.history.edits else None
            line = last.start + max(len(last.new_lines) - 1, 0) if last else 0
            ctx = engine.context(uri, line, 0)  # a snapshot: plain immutable data
            task = loop.run_in_executor(None, engine.predict, ctx, False)
            self.pending_runs.add(task)

            def done(future: asyncio.Future[list[Any]]) -> None:
                self.pending_runs.discard(future)
                if future.cancelled():
                    return
                if future.exception() is not None:
                    log.error("speculative suggestion run failed", exc_info=future.exception())
                    return
                if version is None or self.history.version(uri) != version:
                    return  # the text moved on while the models ran: never show stale edits
                self.latest[uri] = (version, engine.present(ctx, future.result(), uri), True)
                self._report_failures()

            task.add_done_callback(done)

        # The models run only when typing pauses; a keystroke before that reschedules.
        self.speculative[uri] = loop.call_later(engine.debounce.ms / 1000, run)

    def position_to_col(self, uri: str, line: int, character: int) -> tuple[int, int] | None:
        doc = self.history.get(uri)
        if doc is None:
            return None
        index = doc.lines
        line = min(max(line, 0), index.line_count - 1)
        offset = index.lsp_to_offset((line, character))
        return line, offset - index.line_start(line)


def _range(edit: NextEdit) -> types.Range:
    (sl, sc), (el, ec) = edit.edit.start, edit.edit.end
    return types.Range(types.Position(sl, sc), types.Position(el, ec))


def create_server(models_dir: Path | None = None) -> RippleServer:
    server = RippleServer(models_dir)

    @server.feature(types.INITIALIZE)
    def initialize(ls: RippleServer, params: types.InitializeParams) -> None:
        ls.setup(params)

    @server.feature(types.INITIALIZED)
    def initialized(ls: RippleServer, params: types.InitializedParams) -> None:
        for problem in ls.problems:
            ls.window_show_message(
                types.ShowMessageParams(types.MessageType.Warning, f"ripple: {problem}")
            )
        ls.indexing = asyncio.ensure_future(ls.index_workspace())

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: RippleServer, params: object) -> None:
        if ls.watcher is not None:
            ls.watcher.stop()
            ls.watcher = None
        for handle in ls.speculative.values():
            handle.cancel()
        ls.speculative.clear()
        for handle in ls.function_updates.values():
            handle.cancel()
        ls.function_updates.clear()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: RippleServer, params: types.DidOpenTextDocumentParams) -> None:
        doc = params.text_document
        # A huge or binary buffer is tracked (so sync stays exact) but never parsed,
        # indexed or shown to a predictor.
        oversized = len(doc.text) > ls.config.max_file_bytes or "\x00" in doc.text
        ls.history.open(doc.uri, ls.path_for(doc.uri), doc.text, doc.version, parse=not oversized)
        if oversized:
            ls.unserved.add(doc.uri)
            log.warning("%s is too large or binary: ripple does not suggest edits in it", doc.uri)
        else:
            ls.unserved.discard(doc.uri)
            ls.schedule_function_update(doc.uri, 0.0, opened=True)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: RippleServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        if uri not in ls.history.docs:
            log.warning("didChange for a document that is not open: %s", uri)
            return
        version = params.text_document.version
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start, end = change.range.start, change.range.end
                ls.history.change_lsp(
                    uri, version, (start.line, start.character), (end.line, end.character), change.text
                )
            else:
                ls.history.replace(uri, version, change.text)
        ls.latest.pop(uri, None)
        ls.schedule_speculative(uri)
        ls.schedule_function_update(uri, FUNCTION_UPDATE_S)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: RippleServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.close_functions(uri, ls.history.path(uri))
        ls.history.close(uri)
        ls.unserved.discard(uri)
        ls.latest.pop(uri, None)
        handle = ls.speculative.pop(uri, None)
        if handle is not None:
            handle.cancel()

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(
        ls: RippleServer, params: types.DidChangeWatchedFilesParams
    ) -> None:
        kinds = {
            types.FileChangeType.Created: "created",
            types.FileChangeType.Changed: "changed",
            types.FileChangeType.Deleted: "deleted",
        }
        changes = [
            (path, kinds.get(change.type, "changed"))
            for change in params.changes
            if (path := uri_to_path(change.uri)) is not None
        ]

        def apply() -> None:
            for path, kind in changes:
                ls.external_change(path, kind)

        # Re-reading and tokenizing files must not hold up keystrokes: a worker thread
        # does it (the workspace view is thread-safe).
        try:
            asyncio.get_running_loop().run_in_executor(None, apply)
        except RuntimeError:
            apply()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(
        ls: RippleServer, params: types.DidChangeConfigurationParams
    ) -> None:
        config, problems = parse_config(params.settings, ls.config)
        previous, ls.config = ls.config, config
        if ls.functions is not None and (
            not config.draft_bodies or config.draft_models != previous.draft_models
        ):
            ls.stop_functions()
        if config.draft_bodies and ls.functions is None and ls.event_loop is not None:
            ls.functions_task = asyncio.ensure_future(ls.start_functions())
        ls.history.max_live_edits = config.max_live_edits
        ls.history.settle_after_s = config.settle_after_s
        if ls.engine is not None:
            ls.engine.reconfigure(config)
        for problem in problems:
            ls.window_show_message(
                types.ShowMessageParams(types.MessageType.Warning, f"ripple: {problem}")
            )

    @server.feature(NEXT_EDITS)
    async def next_edits(ls: RippleServer, params: object) -> dict[str, object]:
        text_document = _get(params, "textDocument") or _get(params, "text_document")
        position = _get(params, "position")
        uri = _get(text_document, "uri")
        version = _get(text_document, "version")
        if not isinstance(uri, str) or position is None:
            raise ValueError("ripple/nextEdits needs {textDocument: {uri, version}, position}")
        await asyncio.sleep(0)  # let a cancellation or a newer change arrive first
        current = ls.history.version(uri)
        if current is None or (version is not None and version != current):
            return {"edits": []}  # stale: the document has moved on (or is not open)
        at = ls.position_to_col(uri, int(_get(position, "line", 0)), int(_get(position, "character", 0)))
        if at is None:
            return {"edits": []}
        edits = ls.compute(uri, *at)
        return {"edits": [edit.to_json() for edit in edits]}

    @server.feature(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions()
    )
    async def inline_completion(
        ls: RippleServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        uri = params.text_document.uri
        await asyncio.sleep(0)
        version = ls.history.version(uri)
        doc = ls.history.get(uri)
        if version is None or doc is None:
            return None
        at = ls.position_to_col(uri, params.position.line, params.position.character)
        if at is None:
            return None
        line, col = at
        edits = ls.compute(uri, line, col)
        cursor = (params.position.line, params.position.character)
        items: list[types.InlineCompletionItem] = []
        for edit in edits:
            if edit.uri != uri:
                continue
            item = _inline_item(doc.lines, edit, cursor)
            if item is not None:
                items.append(item)
        return types.InlineCompletionList(items=items)

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(
            code_action_kinds=[types.CodeActionKind.QuickFix, types.CodeActionKind.RefactorRewrite]
        ),
    )
    async def code_action(
        ls: RippleServer, params: types.CodeActionParams
    ) -> list[types.CodeAction] | None:
        uri = params.text_document.uri
        version = ls.history.version(uri)
        caps = ls.client_capabilities.text_document
        literal = caps is not None and caps.code_action is not None and (
            caps.code_action.code_action_literal_support is not None
        )
        if version is None or not literal:
            return None
        at = ls.position_to_col(uri, params.range.start.line, params.range.start.character)
        edits = ls.compute(uri, *at) if at is not None else []
        first, last = params.range.start.line, params.range.end.line
        actions = []
        for edit in edits:
            if edit.uri != uri or edit.edit.end[0] < first or edit.edit.start[0] > last:
                continue
            title = "Apply suggested edit"
            if edit.explanation:
                title += f" ({edit.explanation})"
            actions.append(
                types.CodeAction(
                    title=title,
                    kind=types.CodeActionKind.QuickFix,
                    edit=types.WorkspaceEdit(
                        changes={uri: [types.TextEdit(_range(edit), edit.edit.new_text)]}
                    ),
                    command=types.Command(title="ripple: accept edit", command=ACCEPT_COMMAND, arguments=[edit.id]),
                )
            )
        draft = await ls.draft_action(uri, params)
        if draft is not None:
            actions.append(draft)
        return actions

    @server.command(ACCEPT_COMMAND)
    def accept_command(ls: RippleServer, *ids: Any) -> None:
        for edit_id in ids:
            if ls.engine is not None and isinstance(edit_id, str):
                ls.engine.did_accept(edit_id)

    @server.feature(DID_SHOW)
    def did_show(ls: RippleServer, params: object) -> None:
        edit_id = _get(params, "id")
        if ls.engine is not None and isinstance(edit_id, str):
            ls.engine.did_show(edit_id)

    @server.feature(DID_ACCEPT)
    def did_accept(ls: RippleServer, params: object) -> None:
        edit_id = _get(params, "id")
        length = _get(params, "acceptedLength")
        if ls.engine is not None and isinstance(edit_id, str):
            ls.engine.did_accept(edit_id, length if isinstance(length, int) else None)

    @server.feature(DID_REJECT)
    def did_reject(ls: RippleServer, params: object) -> None:
        edit_id = _get(params, "id")
        if ls.engine is not None and isinstance(edit_id, str):
            ls.engine.did_reject(edit_id)
            ls.latest.clear()  # cached answers may hold the rejected edit

    @server.feature(STATUS)
    async def status(ls: RippleServer, params: object) -> dict[str, object]:
        """What the server runs on: models, problems, index, watcher, feedback counts."""
        if bool(_get(params, "waitForIndex", False)) and ls.indexing is not None:
            try:
                await asyncio.shield(ls.indexing)
            except Exception:  # reported in "problems"
                pass
        engine = ls.engine
        return {
            "version": VERSION,
            "models": ls.model_names,
            "problems": list(ls.problems),
            "indexedFiles": len(ls.workspace_view.files()) if ls.workspace_view else 0,
            "watch": ls.watcher.mode if ls.watcher is not None else ls.watch_mode,
            "debounceMs": engine.debounce.ms if engine else None,
            "feedback": dict(engine.stats) if engine else {},
            "liveEdits": len(ls.history.edits),
            "functions": len(ls.functions.index) if ls.functions is not None else None,
            "drafts": ls.functions.kind if ls.functions is not None else "off",
            "config": ls.config.__dict__,
        }

    @server.feature(DEBUG_DOCUMENT)
    def debug_document(ls: RippleServer, params: object) -> dict[str, object] | None:
        """The server's view of a document (text, tree, live edits), for tests and bug reports."""
        uri = str(_get(params, "uri"))
        parsed = ls.history.get(uri)
        path = ls.history.path(uri)
        if parsed is None or path is None:
            return None
        from ripple.models.edits.diff_cli import format_action

        ctx = ls.history.context(uri, 0, 0)
        script = ctx.ast_script(path)
        return {
            "text": parsed.text,
            "language": parsed.language,
            "sexp": parsed.sexp(),
            "path": path,
            "version": ls.history.version(uri),
            "edits": [
                {"start": e.start, "end": e.end, "old": list(e.old_lines), "new": list(e.new_lines)}
                for e in ls.history.edits
                if e.path == path
            ],
            "ast_script": [format_action(a) for a in script] if script is not None else [],
        }

    return server


def _inline_item(
    index: Any, edit: NextEdit, cursor: tuple[int, int]
) -> types.InlineCompletionItem | None:
    """``edit`` as ghost text at ``cursor``, when a client can show it there.

    The replaced range must start on the cursor's line at or before it, and the text
    between the range start and the cursor must be where the new text begins (ghost
    text only ever extends what is typed).
    """
    (sl, sc), (el, ec) = edit.edit.start, edit.edit.end
    line, char = cursor
    if sl != line:
        return None
    line_text = index.line_text(line)
    from ripple.models.edits.positions import utf16_to_code_points

    start_cp = utf16_to_code_points(line_text, sc)
    cursor_cp = utf16_to_code_points(line_text, char)
    new_text = edit.edit.new_text
    if cursor_cp < start_cp:
        new_text = line_text[cursor_cp:start_cp] + new_text
        sc = char
    elif not new_text.startswith(line_text[start_cp:cursor_cp]):
        return None
    return types.InlineCompletionItem(
        insert_text=new_text,
        range=types.Range(types.Position(sl, sc), types.Position(el, ec)),
        command=types.Command(title="ripple: accept edit", command=ACCEPT_COMMAND, arguments=[edit.id]),
    )
