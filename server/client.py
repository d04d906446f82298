"""A small LSP client over stdio, for ``ripple demo``, ``ripple bench latency`` and tests.

It starts a server process, frames JSON-RPC messages with ``Content-Length`` headers,
and reads the server's output on a background thread: responses complete the futures
of their requests, requests from the server (progress tokens, capability
registrations, configuration) are answered at once, and notifications are kept in
order. Every response is counted per id, so a caller can check that each request was
answered exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any


class LspError(Exception):
    """The server answered a request with an error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message


REQUEST_CANCELLED = -32800


def server_command(*extra: str) -> list[str]:
    """How to start ``ripple serve`` with the running interpreter."""
    return [sys.executable, "-m", "ripple.server.cli", "serve", *extra]


class LspClient:
    """Speak LSP to a server subprocess over its stdin/stdout."""

    def __init__(
        self,
        command: Sequence[str] | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stderr: IO[bytes] | int | None = subprocess.DEVNULL,
    ) -> None:
        self.process = subprocess.Popen(
            list(command or server_command()),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
        self._next_id = 0
        self._lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {}
        self.answers: Counter[Any] = Counter()
        self.errors: list[tuple[Any, int]] = []  # (id, code) of every error answer
        self.notifications: list[tuple[str, Any]] = []
        self.server_requests: list[tuple[str, Any]] = []
        self._notified = threading.Condition()
        self.on_notification: Callable[[str, Any], None] | None = None
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    # -- wire -----------------------------------------------------------------------------

    def _write(self, message: dict[str, Any]) -> None:
        body = json.dumps(message, separators=(",", ":")).encode("utf-8")
        header = f"Content-Length: {len(body)}\r\n\r\n".encode("ascii")
        stdin = self.process.stdin
        assert stdin is not None
        with self._lock:
            stdin.write(header + body)
            stdin.flush()

    def write_raw(self, data: bytes) -> None:
        """Send bytes as they are (for tests of malformed input)."""
        stdin = self.process.stdin
        assert stdin is not None
        with self._lock:
            stdin.write(data)
            stdin.flush()

    def _read_message(self, stream: IO[bytes]) -> dict[str, Any] | None:
        length = None
        while True:
            line = stream.readline()
            if not line:
                return None
            line = line.strip()
            if not line:
                break
            name, _, value = line.decode("ascii", "replace").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
        if length is None:
            return None
        body = stream.read(length)
        message: dict[str, Any] = json.loads(body)
        return message

    def _read_loop(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            try:
                message = self._read_message(stream)
            except (ValueError, OSError):
                message = None
            if message is None:
                break
            if "id" in message and "method" in message:
                self._answer_server_request(message)
            elif "id" in message:
                msg_id = message["id"]
                self.answers[msg_id if not isinstance(msg_id, list | dict) else repr(msg_id)] += 1
                if message.get("error") is not None:
                    self.errors.append((msg_id, int(message["error"].get("code", 0))))
                future = self._pending.pop(msg_id, None) if isinstance(msg_id, int) else None
                if future is not None and not future.done():
                    if "error" in message and message["error"] is not None:
                        error = message["error"]
                        future.set_exception(LspError(error.get("code", 0), error.get("message", "")))
                    else:
                        future.set_result(message.get("result"))
            else:
                method, params = message.get("method", ""), message.get("params")
                with self._notified:
                    self.notifications.append((method, params))
                    self._notified.notify_all()
                if self.on_notification is not None:
                    self.on_notification(method, params)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LspError(-32099, "the server closed its output"))

    def _answer_server_request(self, message: dict[str, Any]) -> None:
        method = message["method"]
        self.server_requests.append((method, message.get("params")))
        result: Any = None
        if method == "workspace/configuration":
            items = (message.get("params") or {}).get("items", [])
            result = [None for _ in items]
        self._write({"jsonrpc": "2.0", "id": message["id"], "result": result})

    # -- API ------------------------------------------------------------------------------

    def send(self, method: str, params: Any = None) -> tuple[int, Future[Any]]:
        """Send a request; its id and a future of its result."""
        with self._lock:
            self._next_id += 1
            msg_id = self._next_id
        future: Future[Any] = Future()
        self._pending[msg_id] = future
        self._write({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return msg_id, future

    def request(self, method: str, params: Any = None, timeout: float = 30.0) -> Any:
        """Send a request and wait for its result (``LspError`` for an error answer)."""
        _, future = self.send(method, params)
        return future.result(timeout=timeout)

    def notify(self, method: str, params: Any = None) -> None:
        self._write({"jsonrpc": "2.0", "method": method, "params": params})

    def cancel(self, msg_id: int) -> None:
        self.notify("$/cancelRequest", {"id": msg_id})

    def wait_for_notification(
        self, method: str, predicate: Callable[[Any], bool] | None = None, timeout: float = 10.0
    ) -> Any:
        """The first notification ``method`` (matching ``predicate``) received so far or soon."""
        deadline = time.monotonic() + timeout
        with self._notified:
            while True:
                for name, params in self.notifications:
                    if name == method and (predicate is None or predicate(params)):
                        return params
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {method} notification within {timeout} s")
                self._notified.wait(left)

    # -- conveniences ---------------------------------------------------------------------

    def initialize(
        self,
        root: Path | None = None,
        capabilities: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        timeout: float = 60.0,
    ) -> Any:
        params: dict[str, Any] = {
            "processId": os.getpid(),
            "capabilities": capabilities or {},
            "initializationOptions": options,
            "rootUri": root.absolute().as_uri() if root is not None else None,
            "workspaceFolders": (
                [{"uri": root.absolute().as_uri(), "name": root.name}] if root is not None else None
            ),
        }
        result = self.request("initialize", params, timeout=timeout)
        self.notify("initialized", {})
        return result

    def open(self, path: Path, text: str, version: int = 1, language: str = "python") -> str:
        uri = path.absolute().as_uri()
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": language, "version": version, "text": text}},
        )
        return uri

    def change(
        self,
        uri: str,
        version: int,
        start: tuple[int, int],
        end: tuple[int, int],
        text: str,
    ) -> None:
        self.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [
                    {
                        "range": {
                            "start": {"line": start[0], "character": start[1]},
                            "end": {"line": end[0], "character": end[1]},
                        },
                        "text": text,
                    }
                ],
            },
        )

    def close(self, timeout: float = 10.0) -> int:
        """Shut the server down politely; its exit code (killed after ``timeout``)."""
        try:
            if self.process.poll() is None:
                self.request("shutdown", None, timeout=timeout)
                self.notify("exit", None)
        except (LspError, OSError, TimeoutError, ValueError):
            pass
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass

    def __enter__(self) -> LspClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
