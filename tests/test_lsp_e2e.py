"""The real ``ripple serve`` over stdio, driven like VS Code drives it.

pytest-lsp plays the client with VS Code's capability profile and fails on any message
the server sends beyond what that client declared (``-W error::LspSpecificationWarning``
is set for this module). The cancellation and exactly-once checks use ripple's own raw
client, which sees every frame the server writes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any, Union

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from ripple.server.client import REQUEST_CANCELLED, LspClient, LspError

pytestmark = pytest.mark.filterwarnings("error::pytest_lsp.checks.LspSpecificationWarning")

CLIENT = '''import requests


def fetch(url, timeout=None):
    return requests.get(url, timeout=timeout).json()


def load_user(user_id):
    return fetch(f"/users/{user_id}")


def load_team(team_id):
    return fetch(f"/teams/{team_id}")


def load_project(project_id):
    return fetch(f"/projects/{project_id}")
'''
OTHER = '''from client import fetch


def load_org(org_id):
    return fetch(f"/orgs/{org_id}")
'''
USER_LINE = 8  # return fetch(f"/users/{user_id}")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "client.py").write_text(CLIENT)
    (root / "other.py").write_text(OTHER)
    return root


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[sys.executable, "-m", "ripple.server.cli", "serve"])
)
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    @lsp_client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register_capability(params: types.RegistrationParams) -> None:
        registrations.extend(params.registrations)

    registrations: list[types.Registration] = []
    lsp_client.registrations = registrations  # type: ignore[attr-defined]
    # lsprotocol reads any code action that has a "command" as a bare Command; VS Code
    # tells them apart by the type of that field, and so does this test client.
    converter = lsp_client.protocol._converter

    def code_action_or_command(obj: Any, _: type) -> types.Command | types.CodeAction:
        if isinstance(obj.get("command"), str):
            return converter.structure(obj, types.Command)
        return converter.structure(obj, types.CodeAction)

    converter.register_structure_hook(
        Union[types.Command, types.CodeAction], code_action_or_command  # noqa: UP007
    )
    yield lsp_client
    await lsp_client.shutdown_session()


async def _start(client: LanguageClient, root: Path, profile: str = "visual-studio-code") -> None:
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities(profile),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
        )
    )


async def _request(client: LanguageClient, method: str, params: dict[str, Any]) -> Any:
    return await client.protocol.send_request_async(method, params)


def _plain(value: Any) -> Any:
    """pygls hands custom results back as attribute objects; make them plain data."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return {k: _plain(v) for k, v in vars(value).items()}
    return value


def _type_argument(client: LanguageClient, uri: str, version: int) -> int:
    """Type ``, timeout=5`` into the first call, one keystroke per change."""
    col = CLIENT.splitlines()[USER_LINE].index('")') + 1
    for i, ch in enumerate(", timeout=5"):
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(
                            types.Position(USER_LINE, col + i), types.Position(USER_LINE, col + i)
                        ),
                        text=ch,
                    )
                ],
            )
        )
        version += 1
    return version - 1


async def _open_and_edit(client: LanguageClient, root: Path) -> tuple[str, int]:
    uri = (root / "client.py").as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id="python", version=1, text=CLIENT)
        )
    )
    version = _type_argument(client, uri, 2)
    return uri, version


async def _next_edits(client: LanguageClient, uri: str, version: int, line: int = USER_LINE) -> list[dict[str, Any]]:
    result = _plain(
        await _request(
            client,
            "ripple/nextEdits",
            {"textDocument": {"uri": uri, "version": version}, "position": {"line": line, "character": 0}},
        )
    )
    edits: list[dict[str, Any]] = result["edits"]
    return edits


def _apply(text: str, edit: dict[str, Any]) -> str:
    lines = text.split("\n")
    r = edit["range"]
    (sl, sc), (el, ec) = (r["start"]["line"], r["start"]["character"]), (
        r["end"]["line"],
        r["end"]["character"],
    )
    start = sum(len(line) + 1 for line in lines[:sl]) + sc
    end = sum(len(line) + 1 for line in lines[:el]) + ec
    return text[:start] + edit["newText"] + text[end:]


async def _status(client: LanguageClient) -> dict[str, Any]:
    status: dict[str, Any] = _plain(await _request(client, "ripple/status", {"waitForIndex": True}))
    return status


async def test_next_edits_repeat_the_argument_at_the_other_calls(
    client: LanguageClient, project: Path
) -> None:
    await _start(client, project)
    await _status(client)  # the workspace is indexed
    uri, version = await _open_and_edit(client, project)
    edits = await _next_edits(client, uri, version)
    assert edits, "ripple suggested nothing after a clear pattern"
    first = edits[0]
    assert first["textDocument"] == {"uri": uri, "version": version}
    assert first["newText"] == ", timeout=5"
    assert first["range"]["start"]["line"] == 12  # load_team, the next call below
    assert "client.py:9" in first["explanation"]
    text = CLIENT.replace('user_id}")', 'user_id}", timeout=5)')
    assert 'fetch(f"/teams/{team_id}", timeout=5)' in _apply(text, first)
    # The call in the workspace file that is not open is found through the index.
    other = [e for e in edits if e["textDocument"]["uri"].endswith("other.py")]
    assert other and other[0]["textDocument"]["version"] is None
    assert 'fetch(f"/orgs/{org_id}", timeout=5)' in _apply(OTHER, other[0])
    status = await _status(client)
    assert status["indexedFiles"] == 2 and status["watch"] == "client"
    registered = client.registrations  # type: ignore[attr-defined]
    assert [r.method for r in registered] == ["workspace/didChangeWatchedFiles"]
    # Indexing was reported as $/progress: begin ... end.
    (reports,) = client.progress_reports.values()
    assert isinstance(reports[0], types.WorkDoneProgressBegin)
    assert isinstance(reports[-1], types.WorkDoneProgressEnd) and "2 files" in (reports[-1].message or "")


async def test_accept_through_code_action_and_reject_suppresses(
    client: LanguageClient, project: Path
) -> None:
    await _start(client, project)
    await _status(client)
    uri, version = await _open_and_edit(client, project)
    edits = await _next_edits(client, uri, version)
    target = next(e for e in edits if e["range"]["start"]["line"] == 12)
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(types.Position(12, 0), types.Position(12, 0)),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    assert actions
    action = actions[0]
    assert isinstance(action, types.CodeAction) and action.title.startswith("Apply suggested edit")
    assert action.edit is not None and action.edit.changes is not None
    (text_edit,) = action.edit.changes[uri]
    assert text_edit.new_text == ", timeout=5" and text_edit.range.start.line == 12
    assert action.command is not None and list(action.command.arguments or []) == [target["id"]]
    await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command=action.command.command, arguments=action.command.arguments
        )
    )
    status = await _status(client)
    assert status["feedback"].get("accepted") == 1

    # Reject the suggestion for load_project: it must not come back.
    project_edit = next(e for e in edits if e["range"]["start"]["line"] == 16)
    debounce = status["debounceMs"]
    client.protocol.notify("ripple/didRejectEdit", {"id": project_edit["id"]})
    again = await _next_edits(client, uri, version)
    assert all(e["range"]["start"]["line"] != 16 for e in again)
    assert any(e["range"]["start"]["line"] == 12 for e in again)
    status = await _status(client)
    assert status["feedback"].get("rejected") == 1
    assert status["debounceMs"] > debounce  # rejections slow the speculative runs down


async def test_stale_version_gets_an_empty_answer(client: LanguageClient, project: Path) -> None:
    await _start(client, project)
    uri, version = await _open_and_edit(client, project)
    assert await _next_edits(client, uri, version - 3) == []
    assert await _next_edits(client, uri, version)
    assert await _next_edits(client, "file:///nowhere/x.py", 1) == []


async def test_inline_completion_at_the_cursor(client: LanguageClient, project: Path) -> None:
    await _start(client, project)
    uri, _ = await _open_and_edit(client, project)
    # The cursor sits on load_team's call, right before the closing parenthesis.
    col = CLIENT.splitlines()[12].index('")') + 1
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(12, col),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
    )
    assert isinstance(result, types.InlineCompletionList) and result.items
    item = result.items[0]
    assert item.insert_text == ", timeout=5"
    assert item.range is not None and item.range.start == types.Position(12, col)


async def test_external_change_reported_by_the_client_updates_the_index(
    client: LanguageClient, project: Path
) -> None:
    await _start(client, project)
    await _status(client)  # indexed
    (project / "more.py").write_text('from client import fetch\n\nx = fetch(f"/more/{1}")\n')
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            changes=[
                types.FileEvent(uri=(project / "more.py").as_uri(), type=types.FileChangeType.Created)
            ]
        )
    )
    uri, version = await _open_and_edit(client, project)
    # The change is applied off the event loop: ask until it shows (bounded).
    for _ in range(50):
        edits = await _next_edits(client, uri, version)
        if any(e["textDocument"]["uri"].endswith("more.py") for e in edits):
            break
        await asyncio.sleep(0.1)
    assert any(e["textDocument"]["uri"].endswith("more.py") for e in edits)
    # The disk change was not taken for an edit of the user's.
    status = await _status(client)
    assert status["liveEdits"] == 1


async def test_configuration_problems_are_reported_not_fatal(
    client: LanguageClient, project: Path
) -> None:
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=project.as_uri(),
            initialization_options={"maxSuggestions": "many", "noSuchSetting": 1, "minScore": 0.2},
        )
    )
    status = await _status(client)
    assert status["config"]["max_suggestions"] == 5 and status["config"]["min_score"] == 0.2
    assert any("maxSuggestions" in p for p in status["problems"])
    assert any("noSuchSetting" in p for p in status["problems"])
    await asyncio.sleep(0)
    messages = [m.message for m in client.messages]
    assert any("maxSuggestions" in m for m in messages)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"ripple": {"enabled": False}})
    )
    uri, version = await _open_and_edit(client, project)
    assert await _next_edits(client, uri, version) == []


# -- raw frames: cancellation, answers, the watchdog path ------------------------------------


def _raw_session(root: Path) -> tuple[LspClient, str, int]:
    c = LspClient()
    c.initialize(root, {})
    c.request("ripple/status", {"waitForIndex": True})
    uri = c.open(root / "client.py", CLIENT)
    col = CLIENT.splitlines()[USER_LINE].index('")') + 1
    version = 1
    for i, ch in enumerate(", timeout=5"):
        version += 1
        c.change(uri, version, (USER_LINE, col + i), (USER_LINE, col + i), ch)
    return c, uri, version


def test_cancelled_requests_are_answered_once_with_request_cancelled(project: Path) -> None:
    c, uri, version = _raw_session(project)
    try:
        params = {"textDocument": {"uri": uri, "version": version}, "position": {"line": 8, "character": 0}}
        ids = []
        for _ in range(5):
            msg_id, future = c.send("ripple/nextEdits", params)
            c.cancel(msg_id)
            ids.append((msg_id, future))
        last = c.request("ripple/nextEdits", params)
        assert last["edits"]
        for _, future in ids:
            with pytest.raises(LspError) as info:
                future.result(timeout=10)
            assert info.value.code == REQUEST_CANCELLED
        time.sleep(0.2)
        assert all(count == 1 for count in c.answers.values())
        assert len(c.answers) == len(ids) + 3  # initialize, status, the five, the last one
    finally:
        assert c.close() == 0


def test_watchdog_sees_a_file_written_outside_the_editor(project: Path) -> None:
    # A client without didChangeWatchedFiles: the server watches the disk itself.
    c, uri, version = _raw_session(project)
    try:
        status = c.request("ripple/status", {})
        assert status["watch"] in ("inotify", "polling")
        (project / "late.py").write_text('from client import fetch\n\ny = fetch(f"/late/{2}")\n')
        deadline = time.monotonic() + 10
        found = False
        while time.monotonic() < deadline and not found:
            version += 1
            c.change(uri, version, (0, 0), (0, 0), "")  # a no-op keeps the version moving
            result = c.request(
                "ripple/nextEdits",
                {"textDocument": {"uri": uri, "version": version}, "position": {"line": 8, "character": 0}},
            )
            found = any(e["textDocument"]["uri"].endswith("late.py") for e in result["edits"])
            if not found:
                time.sleep(0.2)
        assert found, "the watcher never reported late.py"
        assert c.request("ripple/status", {})["liveEdits"] == 1
    finally:
        assert c.close() == 0


def test_positions_are_utf16_even_when_the_client_prefers_utf8(project: Path) -> None:
    c = LspClient()
    try:
        result = c.initialize(project, {"general": {"positionEncodings": ["utf-8", "utf-16"]}})
        assert result["capabilities"]["positionEncoding"] == "utf-16"
        text = 'x = "😀é"; fetch(url)\ny = "😀é"; fetch(url)\n'
        uri = c.open(project / "enc.py", text)
        col = len('x = "😀é"; fetch(url') + 1  # UTF-16: the emoji counts two
        for i, ch in enumerate(", timeout=5"):
            c.change(uri, 2 + i, (0, col + i), (0, col + i), ch)
        state = c.request("ripple/debug/document", {"uri": uri})
        assert state["text"].splitlines()[0] == 'x = "😀é"; fetch(url, timeout=5)'
        edits = c.request(
            "ripple/nextEdits",
            {"textDocument": {"uri": uri, "version": 12}, "position": {"line": 0, "character": 0}},
        )["edits"]
        assert edits[0]["range"]["start"] == {"line": 1, "character": col}
    finally:
        assert c.close() == 0
