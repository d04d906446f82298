"""Reading LSP frames from a byte stream, defensively.

Editors send well-formed ``Content-Length`` frames, but the server runs inside people's
editors for hours and must survive whatever arrives: a header without a length, a
negative or absurd length, a body cut short (its missing bytes then swallow the next
frame's header), invalid UTF-8, JSON that is not an object, ids of the wrong type,
params that do not fit the method. The rules here:

- A frame is headers, a blank line, then exactly ``Content-Length`` bytes. A header
  block without a valid length is dropped. A length above ``max_bytes`` is refused:
  its bytes are skipped as they arrive, and skipping stops early at the next
  ``Content-Length:`` header, so a lying length cannot stall the connection.
- A body that is not JSON but contains the start of another frame is a truncated
  body: reading resumes at that frame.
- Every request that can be identified gets exactly one answer: a parse error or an
  invalid request is answered with the JSON-RPC error for it (id ``null`` when the id
  is unusable); bad params get ``InvalidParams`` with the request's id. Everything else
  goes to pygls' protocol as usual.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from typing import Any

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 << 20
MAX_HEADER_BYTES = 8 << 10
_HEADER_END = b"\r\n\r\n"
_LENGTH = re.compile(rb"^content-length:\s*(-?\d+)\s*$", re.IGNORECASE | re.MULTILINE)
_FRAME_START = b"Content-Length:"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


class FrameReader:
    """Split a byte stream into message bodies, resynchronising after damage."""

    def __init__(self, stream: asyncio.StreamReader, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.stream = stream
        self.max_bytes = max_bytes
        self.buffer = bytearray()
        self.eof = False
        self.dropped = 0  # frames refused or lost to damage, for logs and tests

    async def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = await self.stream.read(1 << 16)
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def _resync(self, start: int = 1) -> bool:
        """Drop bytes up to the next frame start at or after ``start``; False if none yet."""
        at = self.buffer.find(_FRAME_START, start)
        if at < 0:
            # Keep a tail that may hold the beginning of a split "Content-Length:".
            keep = len(_FRAME_START) - 1
            del self.buffer[: max(0, len(self.buffer) - keep)]
            return False
        del self.buffer[:at]
        return True

    async def next_body(self) -> bytes | None:
        """The next frame's body, or ``None`` at the end of the stream."""
        while True:
            end = self.buffer.find(_HEADER_END)
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    self.dropped += 1
                    log.warning("dropping %d bytes without a frame header", len(self.buffer))
                    self._resync()
                if not await self._fill():
                    return None
                continue
            header = bytes(self.buffer[:end])
            match = _LENGTH.search(header)
            length = int(match.group(1)) if match else -1
            if match is None or length < 0:
                self.dropped += 1
                log.warning("dropping a frame header without a valid Content-Length: %r", header[:200])
                # Stray bytes (a headerless body) may run straight into the next frame.
                inner = header.find(_FRAME_START, 1)
                del self.buffer[: inner if inner > 0 else end + len(_HEADER_END)]
                continue
            if length > self.max_bytes:
                self.dropped += 1
                log.warning("refusing a %d-byte message (the limit is %d)", length, self.max_bytes)
                del self.buffer[: end + len(_HEADER_END)]
                await self._skip(length)
                continue
            body_start = end + len(_HEADER_END)
            body_end = body_start + length
            scan = body_start
            damaged = -1
            while True:
                # Raw CR LF never occurs inside JSON strings, so a complete frame header
                # inside this body means the body was cut short: resume at that frame.
                damaged = self._frame_header_at(scan, body_end)
                if damaged >= 0 or len(self.buffer) >= body_end:
                    break
                scan = max(body_start, len(self.buffer) - MAX_HEADER_BYTES)
                if not await self._fill():
                    return None
            if damaged >= 0:
                self.dropped += 1
                log.warning("a truncated message body; resynchronised at the next frame")
                del self.buffer[:damaged]
                continue
            body = bytes(self.buffer[body_start:body_end])
            del self.buffer[:body_end]
            return body

    def _frame_header_at(self, start: int, stop: int) -> int:
        """Where a complete ``Content-Length`` header block starts in [start, stop), or -1."""
        at = self.buffer.find(_FRAME_START, start, stop)
        while at >= 0:
            end = self.buffer.find(_HEADER_END, at, at + MAX_HEADER_BYTES)
            if end >= 0 and _LENGTH.search(bytes(self.buffer[at:end])):
                return at
            if end < 0 and len(self.buffer) - at < MAX_HEADER_BYTES:
                return -1  # maybe a header still arriving: look again after the next read
            at = self.buffer.find(_FRAME_START, at + 1, stop)
        return -1

    async def _skip(self, length: int) -> None:
        """Discard ``length`` bytes, or stop at the next frame header if one shows up."""
        left = length
        while left > 0:
            at = self.buffer.find(_FRAME_START)
            if 0 <= at < left:
                del self.buffer[:at]
                return
            if len(self.buffer) >= left:
                del self.buffer[:left]
                return
            # Keep a tail that may be the beginning of a split "Content-Length:".
            take = max(0, len(self.buffer) - (len(_FRAME_START) - 1))
            del self.buffer[:take]
            left -= take
            if not await self._fill():
                return


def _valid_id(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def dispatch(protocol: Any, body: bytes) -> None:
    """Hand one body to pygls' protocol, answering the requests it would drop."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("a message that is not JSON: %s", exc)
        _error(protocol, None, PARSE_ERROR, f"Parse error: {exc}")
        return
    if not isinstance(raw, dict):
        _error(protocol, None, INVALID_REQUEST, "Invalid Request: a message must be a JSON object")
        return
    has_id = "id" in raw
    msg_id = raw.get("id")
    is_request = has_id and "method" in raw
    if has_id and not _valid_id(msg_id) and msg_id is not None:
        if "method" in raw:
            _error(protocol, None, INVALID_REQUEST, "Invalid Request: id must be a string or a number")
        return
    if raw.get("jsonrpc") != "2.0" or ("method" in raw and not isinstance(raw["method"], str)):
        if is_request:
            _error(protocol, msg_id, INVALID_REQUEST, "Invalid Request: not JSON-RPC 2.0")
        return
    method = raw.get("method")
    if isinstance(method, str) and not _known(protocol, method):
        if is_request:
            _error(protocol, msg_id, METHOD_NOT_FOUND, f"Method not found: {method[:200]}")
        return  # an unknown notification is ignored, as the protocol says
    try:
        message = protocol.structure_message(raw)
    except Exception as exc:
        log.warning("cannot read the params of %r: %s", raw.get("method"), exc)
        if is_request:
            _error(protocol, msg_id, INVALID_PARAMS, f"Invalid params for {raw.get('method')}")
        return
    if isinstance(message, dict):  # not a JSON-RPC message pygls knows
        if is_request:
            _error(protocol, msg_id, INVALID_REQUEST, "Invalid Request")
        return
    try:
        protocol.handle_message(message)
    except Exception:
        log.exception("handling %r failed", raw.get("method"))
        if is_request:
            _error(protocol, msg_id, -32603, "Internal error")


def _known(protocol: Any, method: str) -> bool:
    fm = protocol.fm
    return method in fm.builtin_features or method in fm.features or method == "$/cancelRequest"


def _error(protocol: Any, msg_id: object, code: int, message: str) -> None:
    protocol._send_data(
        {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
    )


async def serve_stream(
    stream: asyncio.StreamReader,
    protocol: Any,
    stop_event: threading.Event,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> None:
    """Read frames from ``stream`` and dispatch them until EOF or ``stop_event``."""
    reader = FrameReader(stream, max_bytes)
    while not stop_event.is_set():
        body = await reader.next_body()
        if body is None:
            return
        dispatch(protocol, body)
