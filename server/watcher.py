"""Watching the workspace folders for changes made outside the editor (watchdog).

The server uses a :class:`Watcher` when the client cannot watch files for it (no dynamic
registration of ``workspace/didChangeWatchedFiles``). watchdog reports file events on its
own threads; the watcher collects them, waits until they have been quiet for
``debounce_s`` (but never more than ``max_delay_s`` after the first one, so a long
``git checkout`` is applied in slices), and applies each batch with
:meth:`Workspace.apply_external_changes <ripple.server.workspace.Workspace.apply_external_changes>`
on its own thread. The workspace guards its state with a lock, so the server's event loop
keeps reading it meanwhile; the workspace's ``on_change`` listeners run on this thread.

``Watcher.mode`` says how the disk is watched:

- ``"inotify"`` (Linux): one recursive inotify watch group per workspace folder, which
  adds a watch for every directory of the view and none for excluded ones (``.git``,
  virtual environments, ``node_modules`` ... cost none of the user's inotify watches);
  symbolic links are never followed.
- ``"polling"``: watchdog's polling observer over the same directories, every
  ``poll_interval_s`` seconds. Used off Linux, and when inotify fails: the watch limit
  (``ENOSPC``, ``fs.inotify.max_user_watches``) or the instance limit (``EMFILE``,
  ``fs.inotify.max_user_instances``) reached at start or later, when a new directory is
  watched. One warning is logged and the view is rescanned to catch up.
- ``"off"``: nothing is watched (not started, no folder exists, or polling failed too).

After an inotify queue overflow (events were lost) the view is rescanned.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

if TYPE_CHECKING:
    from ripple.server.workspace import ChangeKind, Workspace

__all__ = ["WatchMode", "Watcher"]

log = logging.getLogger(__name__)

WatchMode = Literal["inotify", "polling", "off"]

# The events that can change the view; opens, reads and attribute changes are not asked
# for (the kernel then does not even send most of them).
_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]

_LIMITS = {
    errno.ENOSPC: "the inotify watch limit is reached (raise fs.inotify.max_user_watches)",
    errno.EMFILE: "too many inotify instances (raise fs.inotify.max_user_instances)",
    errno.ENFILE: "the system's open-file limit is reached",
}

IncludeDir = Callable[[str, bool], bool]


def _include_every_dir(path: str, parent_checked: bool) -> bool:
    return True


def _ignore_limit(error: OSError) -> None:
    return None


def _ignore_overflow() -> None:
    return None


if sys.platform.startswith("linux"):
    from watchdog.observers.api import DEFAULT_EMITTER_TIMEOUT, EventQueue, ObservedWatch
    from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup
    from watchdog.observers.inotify_c import InotifyFD

    @dataclass(eq=False)
    class _WatchGroup(InotifyWatchGroup):
        """watchdog's recursive inotify watch group, limited to the directories of the view.

        watchdog 7.1.0 would watch every directory below the folder and silently skip
        any it cannot watch; this one walks only the view's directories and reports a
        limit error (``ENOSPC``/``EMFILE``) on a subdirectory through ``on_limit``.
        """

        include_dir: IncludeDir = _include_every_dir
        on_limit: Callable[[OSError], None] = _ignore_limit
        on_overflow: Callable[[], None] = _ignore_overflow

        def _add_all_callbacks(self, path: bytes) -> None:
            if path != self.path and not self.include_dir(os.fsdecode(path), False):
                return
            if not self._add_watch(path) or not self.is_recursive:
                return
            stack = [path]
            while stack:
                directory = stack.pop()
                try:
                    with os.scandir(directory) as listing:
                        subdirs = [e.path for e in listing if e.is_dir(follow_symlinks=False)]
                except OSError:
                    continue
                for subdir in subdirs:
                    if self.include_dir(os.fsdecode(subdir), True):
                        if not self._add_watch(subdir):
                            return
                        stack.append(subdir)

        def _add_callback(self, path: bytes) -> None:
            self._add_watch(path)

        def _add_watch(self, path: bytes) -> bool:
            """Watch one directory; False once a limit is hit (the folder's own error raises)."""
            try:
                wd = self._inotify_fd.add_callback(path, self.event_mask, self._callback, self._id)
            except OSError as error:
                if path == self.path:
                    raise
                if error.errno in _LIMITS:
                    self.on_limit(error)
                    return False
                return True  # vanished or unreadable: carry on with the others
            self._active_callbacks_by_path[path] = wd
            self._active_callbacks_by_watch[wd] = path
            return True

        def on_queue_overflow(self) -> None:
            super().on_queue_overflow()
            self.on_overflow()

        def watched(self) -> list[str]:
            """The directories watched now."""
            with self._lock:
                return sorted(os.fsdecode(path) for path in self._active_callbacks_by_path)

    class _Emitter(InotifyEmitter):
        """An inotify emitter whose watch group is a :class:`_WatchGroup`."""

        def __init__(
            self,
            event_queue: EventQueue,
            watch: ObservedWatch,
            *,
            timeout: float = DEFAULT_EMITTER_TIMEOUT,
            event_filter: list[type[FileSystemEvent]] | None = None,
            inotify_fd: InotifyFD | None = None,
            include_dir: IncludeDir = _include_every_dir,
            on_limit: Callable[[OSError], None] = _ignore_limit,
            on_overflow: Callable[[], None] = _ignore_overflow,
        ) -> None:
            super().__init__(
                event_queue,
                watch,
                timeout=timeout,
                event_filter=event_filter,
                inotify_fd=inotify_fd,
            )
            self._include_dir = include_dir
            self._on_limit = on_limit
            self._on_overflow = on_overflow

        def on_thread_start(self) -> None:
            self._inotify = _WatchGroup(
                self._inotify_fd,
                os.fsencode(self.watch.path),
                event_mask=self.get_event_mask_from_filter(),
                is_recursive=self.watch.is_recursive,
                follow_symlink=False,
                include_dir=self._include_dir,
                on_limit=self._on_limit,
                on_overflow=self._on_overflow,
            )

        def watched(self) -> list[str]:
            group = self._inotify
            return group.watched() if isinstance(group, _WatchGroup) else []

    class WorkspaceInotifyObserver(InotifyObserver):
        """watchdog's inotify observer with the view's directory filter and limit hooks."""

        def __init__(
            self,
            include_dir: IncludeDir,
            on_limit: Callable[[OSError], None],
            on_overflow: Callable[[], None],
        ) -> None:
            super().__init__()
            self._emitter_class = _Emitter
            self._emitter_kwargs.update(
                include_dir=include_dir, on_limit=on_limit, on_overflow=on_overflow
            )

        def watched(self) -> list[str]:
            """The directories watched now, across folders."""
            return sorted(
                path
                for emitter in list(self.emitters)
                if isinstance(emitter, _Emitter)
                for path in emitter.watched()
            )


class _Handler(FileSystemEventHandler):
    """Hands every watchdog event to one function."""

    def __init__(self, sink: Callable[[FileSystemEvent], None]) -> None:
        super().__init__()
        self._sink = sink

    def dispatch(self, event: FileSystemEvent) -> None:
        self._sink(event)


def _stop_observer(observer: BaseObserver) -> None:
    """Stop an observer, started or not, and wait for its threads."""
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(timeout=5)
    except Exception:
        log.debug("stopping a file observer failed", exc_info=True)


class Watcher:
    """Keeps a :class:`Workspace` in step with the disk (see the module docstring)."""

    def __init__(
        self,
        workspace: Workspace,
        debounce_s: float = 0.2,
        *,
        poll_interval_s: float = 30.0,
        max_delay_s: float = 2.0,
    ) -> None:
        self.workspace = workspace
        self.debounce_s = debounce_s
        self.poll_interval_s = poll_interval_s
        self.max_delay_s = max(max_delay_s, debounce_s)
        self.mode: WatchMode = "off"
        self._observer: BaseObserver | None = None
        self._handler = _Handler(self._on_event)
        self._cond = threading.Condition()
        self._pending: dict[str, ChangeKind] = {}
        self._first = self._last = 0.0
        self._limit: OSError | None = None
        self._rescan = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._switch = threading.RLock()  # starting, falling back and stopping observers

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observers -------------------------------------------------------------------------

    def start(self) -> WatchMode:
        """Start watching (adds the watches before it returns); returns ``mode``."""
        with self._switch:
            if self._thread is not None:
                return self.mode
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="ripple-watcher", daemon=True)
            self._thread.start()
            roots = self.workspace.watch_paths()
            if not roots:
                self.mode = "off"
            elif sys.platform.startswith("linux"):
                try:
                    self._observer = self._start_inotify(roots)
                    self.mode = "inotify"
                except OSError as error:
                    self._fall_back(error)
                else:
                    with self._cond:
                        limit, self._limit = self._limit, None
                    if limit is not None:  # a subdirectory could not be watched
                        self._fall_back(limit)
            else:
                self._start_polling(roots)
            return self.mode

    def stop(self) -> None:
        """Stop watching; events not yet applied are dropped."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        with self._switch:
            if self._observer is not None:
                _stop_observer(self._observer)
                self._observer = None
            thread, self._thread = self._thread, None
            self.mode = "off"
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def watched_directories(self) -> list[str]:
        """The directories inotify watches now (empty in the other modes)."""
        observer = self._observer
        if sys.platform.startswith("linux") and isinstance(observer, WorkspaceInotifyObserver):
            return observer.watched()
        return []

    def _include_dir(self, path: str, parent_checked: bool) -> bool:
        return self.workspace.includes_dir(path, parent_checked=parent_checked)

    def _start_inotify(self, roots: list[str]) -> BaseObserver:
        observer = WorkspaceInotifyObserver(self._include_dir, self._on_limit, self._on_overflow)
        try:
            for root in roots:
                observer.schedule(self._handler, root, recursive=True, event_filter=list(_EVENTS))
            observer.start()
        except BaseException:
            _stop_observer(observer)
            raise
        return observer

    def _start_polling(self, roots: list[str]) -> None:
        observer = PollingObserverVFS(
            stat=os.lstat, listdir=self._listdir, polling_interval=self.poll_interval_s
        )
        try:
            for root in roots:
                observer.schedule(self._handler, root, recursive=True, event_filter=list(_EVENTS))
            observer.start()
        except (OSError, RuntimeError) as error:
            _stop_observer(observer)
            self.mode = "off"
            log.warning(
                "ripple cannot watch the workspace (%s); changes made outside the editor "
                "are seen only at the next scan",
                error,
            )
            return
        self._observer = observer
        self.mode = "polling"

    def _fall_back(self, error: OSError) -> None:
        """inotify failed: log once, poll instead, and rescan to catch up."""
        with self._switch:
            if self._observer is not None:
                _stop_observer(self._observer)
                self._observer = None
            reason = _LIMITS.get(error.errno or 0, f"inotify failed: {error}")
            log.warning(
                "ripple cannot watch the workspace with inotify: %s. Polling every %g s "
                "instead, so changes made outside the editor show up late.",
                reason,
                self.poll_interval_s,
            )
            roots = self.workspace.watch_paths()
            if roots:
                self._start_polling(roots)
            else:
                self.mode = "off"
        with self._cond:
            self._rescan = True
            self._cond.notify()

    def _listdir(self, path: str | None) -> Iterator[os.DirEntry[str]]:
        """A directory's entries the polling observer needs: view directories and sources."""
        if path is None:
            return iter(())
        try:
            with os.scandir(path) as listing:
                entries = list(listing)
        except OSError:
            return iter(())
        kept: list[os.DirEntry[str]] = []
        for entry in entries:
            try:
                if entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if self.workspace.includes_dir(entry.path, parent_checked=True):
                        kept.append(entry)
                elif self.workspace.indexes_name(entry.name):
                    kept.append(entry)
            except OSError:
                continue
        return iter(kept)

    # -- events ----------------------------------------------------------------------------

    def _on_limit(self, error: OSError) -> None:
        with self._cond:
            if self._limit is None:
                self._limit = error
                self._cond.notify()

    def _on_overflow(self) -> None:
        with self._cond:
            self._rescan = True
            self._cond.notify()

    def _on_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileSystemMovedEvent):
            self._queue(event.src_path, "deleted")
            if event.dest_path:
                self._queue(event.dest_path, "created")
        elif isinstance(event, FileDeletedEvent | DirDeletedEvent):
            self._queue(event.src_path, "deleted")
        elif isinstance(event, FileCreatedEvent | DirCreatedEvent):
            self._queue(event.src_path, "created")
        elif isinstance(event, FileModifiedEvent | FileClosedEvent):
            self._queue(event.src_path, "changed")

    def _queue(self, raw: bytes | str, kind: ChangeKind) -> None:
        path = os.fsdecode(raw)
        now = time.monotonic()
        with self._cond:
            if not self._pending:
                self._first = now
            self._last = now
            if not (kind == "changed" and self._pending.get(path) == "created"):
                self._pending[path] = kind
            self._cond.notify()

    def _run(self) -> None:
        """The watcher thread: debounce, apply batches, fall back, rescan."""
        while True:
            with self._cond:
                while not (self._pending or self._limit or self._rescan or self._stopping):
                    self._cond.wait()
                while self._pending and not (self._stopping or self._limit):
                    now = time.monotonic()
                    due = min(self._last + self.debounce_s, self._first + self.max_delay_s)
                    if now >= due:
                        break
                    self._cond.wait(due - now)
                if self._stopping:
                    return
                batch, self._pending = self._pending, {}
                limit, self._limit = self._limit, None
                rescan, self._rescan = self._rescan, False
            self._work(batch, limit, rescan)

    def _work(self, batch: dict[str, Any], limit: OSError | None, rescan: bool) -> None:
        if limit is not None:
            with self._switch:
                if self.mode == "inotify" and not self._stopping:
                    self._fall_back(limit)
        try:
            if batch:
                self.workspace.apply_external_changes(list(batch.items()))
            if rescan:
                self.workspace.scan()
        except Exception:
            log.exception("applying changes made outside the editor failed")
