"""The on-disk workspace view and its watcher, on real files, real git and real watchdog."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from watchdog.observers.inotify_c import InotifyFD
from watchdog.observers.polling import PollingObserverVFS

from ripple.server.watcher import WorkspaceInotifyObserver
from ripple.server.workspace import Watcher, Workspace, WorkspaceConfig, glob_patterns


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class Recorder:
    """A change listener that keeps every batch it is given."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self._lock = threading.Lock()

    def __call__(self, paths: list[str]) -> None:
        with self._lock:
            self.batches.append(paths)

    def paths(self) -> set[str]:
        with self._lock:
            return {p for batch in self.batches for p in batch}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A workspace folder with sources, excluded folders, non-text files and links."""
    root = tmp_path / "proj"
    write(root / "src" / "app.py", "import os\n\ndef fetch(url):\n    return os.get(url)\n")
    write(root / "src" / "web.ts", "export function fetch(u: string) { return u; }\n")
    write(root / "README.md", "# fetch\n")  # not a source extension
    write(root / ".git" / "hooks" / "hook.py", "fetch = 1\n")
    write(root / "node_modules" / "pkg" / "index.js", "function fetch() {}\n")
    write(root / "myenv" / "pyvenv.cfg", "home = /usr/bin\n")  # a venv by its marker only
    write(root / "myenv" / "lib" / "site.py", "fetch = 1\n")
    write(root / "src" / "__pycache__" / "cached.py", "fetch = 1\n")
    write(root / "ripple.egg-info" / "setup.py", "fetch = 1\n")
    write(root / "bin.py", b"fetch = 1\n\x00\x01\x02")  # NUL byte: binary
    write(root / "latin.py", b"name = '\xe9t\xe9'\n")  # not UTF-8
    write(root / "big.py", "fetch = 1\n" * 200)  # 2,000 bytes, over the test cap
    outside = write(tmp_path / "outside" / "secret.py", "fetch = 'secret'\n")
    (root / "linked_out.py").symlink_to(outside)
    (root / "linked_dir").symlink_to(outside.parent, target_is_directory=True)
    (root / "linked_in.py").symlink_to(root / "src" / "app.py")
    return root


CONFIG = WorkspaceConfig(max_file_bytes=1000)


def test_scan_keeps_sources_and_skips_excluded_binary_oversize_and_links(tree: Path) -> None:
    ws = Workspace([tree], CONFIG)
    calls: list[tuple[int, int]] = []
    changed = ws.scan(lambda done, total: calls.append((done, total)))

    assert ws.files() == ["src/app.py", "src/web.ts"]
    assert sorted(changed) == ws.files()
    # bin.py and latin.py are candidates until read: four files to read, two kept.
    assert calls[0] == (0, 4) and calls[-1] == (4, 4)
    assert ws.occurrences("fetch") == [("src/app.py", 2), ("src/web.ts", 0)]
    assert ws.rel_of(tree / "src" / "app.py") == "src/app.py"
    assert ws.path_of("src/app.py") == tree / "src" / "app.py"
    for excluded in (
        tree / ".git" / "hooks" / "hook.py",
        tree / "myenv" / "lib" / "site.py",
        tree / "node_modules" / "pkg" / "index.js",
        tree / "linked_dir" / "secret.py",
        tree / "linked_in.py",
        tree.parent / "outside" / "secret.py",
    ):
        assert ws.rel_of(excluded) is None, excluded


def test_links_into_the_folder_are_followed_only_when_asked_and_never_out(tree: Path) -> None:
    (tree / "src" / "loop").symlink_to(tree / "src", target_is_directory=True)
    ws = Workspace([tree], WorkspaceConfig(max_file_bytes=1000, follow_symlinks=True))
    ws.scan()
    files = ws.files()
    assert "linked_in.py" in files
    assert "src/loop/app.py" not in files  # the loop is entered once: it is src itself
    assert not any("secret" in f or f.startswith("linked_dir") for f in files)
    assert "linked_out.py" not in files


def test_identifier_index_follows_external_changes(tmp_path: Path) -> None:
    a = write(tmp_path / "a.py", "from b import fetch\n\nresult = fetch(1)\n")
    b = write(tmp_path / "pkg" / "b.py", "def fetch(x):\n    return x\n")
    ws = Workspace([tmp_path])
    seen = Recorder()
    ws.on_change(seen)
    ws.scan()
    assert ws.occurrences("fetch") == [("a.py", 0), ("a.py", 2), ("pkg/b.py", 0)]
    assert ws.calls("fetch") == [("a.py", 2)]
    assert ws.occurrences("fetch", limit=2) == [("a.py", 0), ("a.py", 2)]
    assert ws.occurrences("x") == [("pkg/b.py", 0), ("pkg/b.py", 1)]

    write(b, "def get(x):\n    return x\n")
    assert ws.apply_external_change(b, "changed") is True
    assert ws.occurrences("fetch") == [("a.py", 0), ("a.py", 2)]
    assert ws.occurrences("get") == [("pkg/b.py", 0)]
    assert ws.text("pkg/b.py") == "def get(x):\n    return x\n"
    assert seen.batches[-1] == ["pkg/b.py"]
    # Nothing new on disk: no change, no listener call.
    assert ws.apply_external_change(b, "changed") is False
    os.utime(b)  # touched, same text
    assert ws.apply_external_change(b, "changed") is False
    assert len(seen.batches) == 2

    a.unlink()
    assert ws.apply_external_change(a, "deleted") is True
    assert ws.occurrences("fetch") == []
    assert ws.occurrences("result") == []
    assert ws.files() == ["pkg/b.py"]
    assert ws.text("a.py") is None and ws.lines("a.py") == ()

    # A move is a delete and a create; a deleted directory takes its files along.
    b.rename(tmp_path / "pkg" / "c.py")
    changed = ws.apply_external_changes([(b, "deleted"), (tmp_path / "pkg" / "c.py", "created")])
    assert changed == ["pkg/b.py", "pkg/c.py"]
    assert ws.occurrences("get") == [("pkg/c.py", 0)]
    (tmp_path / "pkg" / "c.py").unlink()
    (tmp_path / "pkg").rmdir()
    assert ws.apply_external_change(tmp_path / "pkg", "deleted") is True
    assert ws.files() == [] and ws.occurrences("get") == []

    # A created directory is walked; a file becoming binary or excluded leaves the view.
    write(tmp_path / "new" / "deep" / "d.py", "get = 1\n")
    assert ws.apply_external_change(tmp_path / "new", "created") is True
    assert ws.occurrences("get") == [("new/deep/d.py", 0)]
    write(tmp_path / "new" / "deep" / "d.py", b"get = 1\x00")
    assert ws.apply_external_change(tmp_path / "new" / "deep" / "d.py", "changed") is True
    assert ws.files() == []
    write(tmp_path / "node_modules" / "e.py", "get = 1\n")
    assert ws.apply_external_change(tmp_path / "node_modules" / "e.py", "created") is False


def test_a_directory_becomes_a_virtual_environment_and_back(tmp_path: Path) -> None:
    write(tmp_path / "tools" / "t.py", "tau = 1\n")
    ws = Workspace([tmp_path])
    ws.scan()
    marker = write(tmp_path / "tools" / "pyvenv.cfg", "home = /usr/bin\n")
    assert ws.apply_external_change(marker, "created") is True
    assert ws.files() == [] and ws.rel_of(tmp_path / "tools" / "t.py") is None
    marker.unlink()
    assert ws.apply_external_change(marker, "deleted") is True
    assert ws.files() == ["tools/t.py"]


def test_lines_are_splitlines_and_the_index_agrees_with_them(tmp_path: Path) -> None:
    text = "a = 1\x0cb = 2\nc = b\r\nd = 'x'\re = b\n"
    write(tmp_path / "m.py", text)
    ws = Workspace([tmp_path])
    ws.scan()
    lines = ws.lines("m.py")
    assert lines == tuple(text.splitlines(keepends=True))
    hits = ws.occurrences("b")
    assert [line for _, line in hits] == [1, 2, 4]
    assert all("b" in lines[line] for _, line in hits)
    # text() is the disk now, and the cache notices a rewrite.
    assert ws.lines("m.py") is lines
    write(tmp_path / "m.py", "z = 1\n")
    assert ws.text("m.py") == "z = 1\n"


def test_word_identifiers_also_find_names_in_comments(tmp_path: Path) -> None:
    write(tmp_path / "m.py", "# fetch it\nif x:\n    fetch (1)\ndef fetch(y): pass\n")
    syntax = Workspace([tmp_path])
    syntax.scan()
    words = Workspace([tmp_path], WorkspaceConfig(identifiers="words"))
    words.scan()
    assert syntax.occurrences("fetch") == [("m.py", 2), ("m.py", 3)]
    assert words.occurrences("fetch") == [("m.py", 0), ("m.py", 2), ("m.py", 3)]
    assert words.calls("fetch") == syntax.calls("fetch") == [("m.py", 2)]
    assert words.occurrences("if") == syntax.occurrences("if") == []


def test_several_folders_get_unique_prefixes_and_a_nested_one_is_covered(tmp_path: Path) -> None:
    one = write(tmp_path / "a" / "proj" / "x.py", "alpha = 1\n").parent
    two = write(tmp_path / "b" / "proj" / "x.py", "alpha = 2\n").parent
    nested = write(one / "sub" / "y.py", "alpha = 3\n").parent
    ws = Workspace([one, two, nested])
    ws.scan()
    assert ws.files() == ["proj-2/x.py", "proj/sub/y.py", "proj/x.py"]
    assert ws.path_of("proj-2/x.py") == two / "x.py"
    assert ws.rel_of(nested / "y.py") == "proj/sub/y.py"
    assert [f for f, _ in ws.occurrences("alpha")] == ws.files()


def test_max_files_truncates_and_glob_patterns_cover_the_extensions(tmp_path: Path) -> None:
    for name in "abc":
        write(tmp_path / f"{name}.py", f"{name} = 1\n")
    write(tmp_path / "gen" / "g.py", "g = 1\n")
    write(tmp_path / "x.min.js", "var g;\n")
    ws = Workspace([tmp_path], WorkspaceConfig(max_files=2, extra_excludes=("gen/*", "*.min.js")))
    ws.scan()
    assert len(ws.files()) == 2 and ws.truncated
    assert ws.rel_of(tmp_path / "gen" / "g.py") is None
    assert ws.rel_of(tmp_path / "x.min.js") is None
    patterns = glob_patterns(WorkspaceConfig())
    assert "**/*.py" in patterns and "**/*.ts" in patterns and patterns == sorted(patterns)


def test_a_failing_listener_does_not_stop_the_others(tmp_path: Path) -> None:
    ws = Workspace([tmp_path])
    seen = Recorder()

    def broken(paths: list[str]) -> None:
        raise RuntimeError("listener bug")

    ws.on_change(broken)
    ws.on_change(seen)
    write(tmp_path / "a.py", "a = 1\n")
    assert ws.apply_external_change(tmp_path / "a.py", "created")
    assert seen.batches == [["a.py"]]


# -- the watcher ----------------------------------------------------------------------------


def test_watcher_sees_a_file_written_by_another_process(tree: Path) -> None:
    ws = Workspace([tree], CONFIG)
    ws.scan()
    seen = Recorder()
    ws.on_change(seen)
    with Watcher(ws, debounce_s=0.05) as watcher:
        assert watcher.mode == "inotify"
        watched = watcher.watched_directories()
        assert str(tree / "src") in watched
        for skipped in (".git", "node_modules", "myenv", "linked_dir", "ripple.egg-info"):
            assert not any(d.startswith(str(tree / skipped)) for d in watched), skipped
        new = tree / "src" / "later" / "made.py"
        script = f"import os; os.makedirs({str(new.parent)!r}); open({str(new)!r}, 'w').write('def zeta(): pass\\n')"
        subprocess.run([sys.executable, "-c", script], check=True)
        assert wait_for(lambda: ws.occurrences("zeta") == [("src/later/made.py", 0)])
        assert "src/later/made.py" in seen.paths()
        (tree / "src" / "app.py").unlink()
        assert wait_for(lambda: "src/app.py" not in ws.files())
        write(tree / "node_modules" / "pkg" / "more.js", "function zeta() {}\n")
        time.sleep(0.2)
        assert ws.occurrences("zeta") == [("src/later/made.py", 0)]
    assert watcher.mode == "off"


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def test_watcher_follows_a_git_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write(repo / "a.py", "def alpha():\n    return 1\n")
    write(repo / "b.py", "from a import alpha\nalpha()\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "main")
    git(repo, "checkout", "-q", "-b", "feature")
    write(repo / "a.py", "def beta():\n    return 1\n")
    (repo / "b.py").unlink()
    write(repo / "pkg" / "c.py", "from a import beta\nbeta()\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feature")
    git(repo, "checkout", "-q", "main")

    ws = Workspace([repo])
    ws.scan()
    assert ws.files() == ["a.py", "b.py"]
    seen = Recorder()
    ws.on_change(seen)
    with Watcher(ws, debounce_s=0.05):
        git(repo, "checkout", "-q", "feature")
        assert wait_for(lambda: ws.files() == ["a.py", "pkg/c.py"])
        assert wait_for(lambda: ws.occurrences("alpha") == [])
        assert ws.occurrences("beta") == [("a.py", 0), ("pkg/c.py", 0), ("pkg/c.py", 1)]
        assert seen.paths() == {"a.py", "b.py", "pkg/c.py"}


def test_watch_limit_at_start_falls_back_to_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full(self: object) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(WorkspaceInotifyObserver, "start", full)
    write(tmp_path / "a.py", "a = 1\n")
    ws = Workspace([tmp_path])
    ws.scan()
    with caplog.at_level(logging.WARNING, logger="ripple.server.watcher"):
        with Watcher(ws, debounce_s=0.05, poll_interval_s=0.1) as watcher:
            assert watcher.mode == "polling"
            write(tmp_path / "sub" / "b.py", "omega = 1\n")
            assert wait_for(lambda: ws.occurrences("omega") == [("sub/b.py", 0)])
            # The catch-up rescan has run; this one can only come from polling.
            write(tmp_path / "sub" / "b.py", "psi = 1\n")
            assert wait_for(lambda: ws.occurrences("psi") == [("sub/b.py", 0)])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "max_user_watches" in warnings[0].getMessage()


def test_watch_limit_on_a_new_directory_falls_back_to_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "a.py", "a = 1\n")
    ws = Workspace([tmp_path])
    ws.scan()
    real_add = InotifyFD.add_callback

    def add(self: InotifyFD, path: bytes, *args: object) -> object:
        if path.endswith(b"crowded"):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return real_add(self, path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(InotifyFD, "add_callback", add)
    with Watcher(ws, debounce_s=0.05, poll_interval_s=0.1) as watcher:
        assert watcher.mode == "inotify"
        write(tmp_path / "crowded" / "c.py", "kappa = 1\n")
        assert wait_for(lambda: watcher.mode == "polling")
        assert wait_for(lambda: ws.occurrences("kappa") == [("crowded/c.py", 0)])
        write(tmp_path / "crowded" / "d.py", "lam = 1\n")
        assert wait_for(lambda: ws.occurrences("lam") == [("crowded/d.py", 0)])


def test_no_inotify_instance_and_no_polling_turn_watching_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_instance(cls: type) -> int:
        raise OSError(errno.EMFILE, "inotify instance limit reached")

    def no_polling(self: object) -> None:
        raise OSError(errno.EACCES, "permission denied")

    monkeypatch.setattr(InotifyFD, "_create_inotify_fd", classmethod(no_instance))
    ws = Workspace([tmp_path])
    with Watcher(ws, poll_interval_s=0.1) as watcher:
        assert watcher.mode == "polling"
    monkeypatch.setattr(PollingObserverVFS, "start", no_polling)
    with Watcher(ws) as watcher:
        assert watcher.mode == "off"
