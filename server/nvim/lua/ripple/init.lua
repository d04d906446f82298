--- ripple in Neovim (0.11+): next-edit suggestions from `ripple serve`, shown in the buffer.
---
--- The language server itself is started by Neovim's built-in client (`vim.lsp.config` /
--- `vim.lsp.enable('ripple')`; `lsp/ripple.lua` next to this folder holds the defaults).
--- This module adds what the built-in client does not know: after the text of a buffer
--- changes (debounced), it asks `ripple/nextEdits` for the buffer's current version and
--- shows the top edit where it would go (the new text as virtual text, the replaced text
--- highlighted, a sign), and lets you accept it, reject it or see the next one. It reports
--- `ripple/didShowEdit`, `ripple/didAcceptEdit` and `ripple/didRejectEdit` back.
---
---   require('ripple').setup({
---     debounce_ms = 250,                                         -- after the last change
---     keymaps = { accept = '<M-]>', reject = '<M-[>', next = '<M-n>' }, -- false: none
---   })
---
--- Commands: :RippleAccept, :RippleReject, :RippleNext, :RippleWhy, :RippleRequest,
--- :RippleStatus. Highlight groups (override them freely): RippleSuggestion (the new
--- text), RippleReplaced (the text it replaces), RippleSign, RippleHint.

local M = {}

local api = vim.api
local lsp = vim.lsp
local util = vim.lsp.util
local uv = vim.uv or vim.loop

local NEXT_EDITS = 'ripple/nextEdits'
local DID_SHOW = 'ripple/didShowEdit'
local DID_ACCEPT = 'ripple/didAcceptEdit'
local DID_REJECT = 'ripple/didRejectEdit'
local STATUS = 'ripple/status'
local REQUEST_CANCELLED = -32800

M.ns = api.nvim_create_namespace('ripple')

M.defaults = {
  -- The name the server has in vim.lsp.config (the client this module talks through).
  client_name = 'ripple',
  -- Ask for next edits by itself after the text changes; false: only :RippleRequest.
  auto = true,
  -- Milliseconds without a change before asking.
  debounce_ms = 250,
  -- Buffer-local keys (false for none, or per key).
  keymaps = { accept = '<M-]>', reject = '<M-[>', next = '<M-n>' },
  keymap_modes = { 'n', 'i' },
  -- The sign column text of a suggestion (1-2 cells).
  sign = '»',
  -- At most this many lines of a multi-line suggestion are drawn.
  max_preview_lines = 12,
}

M.config = vim.deepcopy(M.defaults)

--- Per buffer: the shown edits and the bookkeeping around them.
--- @class ripple.BufState
--- @field edits table[] the edits of the last fresh answer, ranked
--- @field index integer the one shown (1-based; 0 when none)
--- @field version integer? the buffer version the edits were computed for
--- @field request_id integer? the request in flight
--- @field reported table<string, true> ids reported as shown
--- @field timer uv.uv_timer_t?
--- @field gen integer attach generation (an old nvim_buf_attach detaches itself)
--- @field attached boolean
--- @field counts table<string, integer> answers by outcome (shown, empty, stale, ...)

--- @type table<integer, ripple.BufState>
local state = {}

--- @param bufnr integer
--- @return ripple.BufState
local function buf_state(bufnr)
  local st = state[bufnr]
  if not st then
    st = { edits = {}, index = 0, reported = {}, gen = 0, attached = false, counts = {} }
    state[bufnr] = st
  end
  return st
end

local function resolve(bufnr)
  if bufnr == nil or bufnr == 0 then
    return api.nvim_get_current_buf()
  end
  return bufnr
end

local function nil_if_null(value)
  if value == vim.NIL then
    return nil
  end
  return value
end

local function count(st, outcome)
  st.counts[outcome] = (st.counts[outcome] or 0) + 1
end

--- The ripple client attached to `bufnr`, if any.
--- @return vim.lsp.Client?
function M.client(bufnr)
  return lsp.get_clients({ bufnr = resolve(bufnr), name = M.config.client_name })[1]
end

local function define_highlights()
  local function link(name, target)
    api.nvim_set_hl(0, name, { link = target, default = true })
  end
  link('RippleSuggestion', 'Comment')
  link('RippleReplaced', 'DiffDelete')
  link('RippleSign', 'DiagnosticSignHint')
  link('RippleHint', 'NonText')
end

-- -- positions ---------------------------------------------------------------------------

local function line_text(bufnr, row)
  return api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
end

--- The byte column of an LSP `character` (in the client's encoding) on `text`.
local function byte_col(text, character, encoding)
  local ok, col = pcall(vim.str_byteindex, text, encoding, character, false)
  if not ok or type(col) ~= 'number' then
    return #text
  end
  return math.min(col, #text)
end

local function cursor_row(bufnr)
  local win = vim.fn.bufwinid(bufnr)
  if win == -1 then
    return nil
  end
  return api.nvim_win_get_cursor(win)[1] - 1
end

local function short_name(uri)
  return vim.fn.fnamemodify(vim.uri_to_fname(uri), ':~:.')
end

-- -- drawing -----------------------------------------------------------------------------

--- The edit shown in `bufnr`, or nil.
function M.current(bufnr)
  local st = state[resolve(bufnr)]
  if not st or st.index == 0 then
    return nil
  end
  return st.edits[st.index]
end

--- Forget and undraw the suggestions of `bufnr` (nothing is reported to the server).
function M.clear(bufnr)
  bufnr = resolve(bufnr)
  local st = state[bufnr]
  if st then
    st.edits, st.index, st.version = {}, 0, nil
  end
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

local function counter_text(st)
  if #st.edits > 1 then
    return string.format(' (%d/%d)', st.index, #st.edits)
  end
  return ''
end

--- Line `row` of the file at `uri`: from its buffer when loaded, else from disk.
local function file_line(uri, row)
  local fname = vim.uri_to_fname(uri)
  local other = vim.fn.bufnr(fname)
  if other ~= -1 and api.nvim_buf_is_loaded(other) then
    return api.nvim_buf_get_lines(other, row, row + 1, false)[1]
  end
  local ok, lines = pcall(vim.fn.readfile, fname, '', row + 1)
  return ok and lines[row + 1] or nil
end

--- Draw an edit of another file: a hint at the cursor (or first) line with the target
--- line as it would read (or the first line of the new text).
local function draw_elsewhere(bufnr, st, edit, encoding)
  local row = cursor_row(bufnr) or 0
  local s, e = edit.range.start, edit.range['end']
  local first = vim.split(edit.newText, '\n', { plain = true })[1]
  local text = s.line == e.line and not edit.newText:find('\n', 1, true) and file_line(edit.textDocument.uri, s.line)
  if text then
    local scol, ecol = byte_col(text, s.character, encoding), byte_col(text, e.character, encoding)
    first = vim.trim(text:sub(1, scol) .. edit.newText .. text:sub(math.max(ecol, scol) + 1))
  end
  local where = string.format('%s:%d', short_name(edit.textDocument.uri), edit.range.start.line + 1)
  api.nvim_buf_set_extmark(bufnr, M.ns, row, 0, {
    virt_text = {
      { ' ' .. M.config.sign .. ' ' .. where .. ': ', 'RippleHint' },
      { first ~= '' and first or '(delete)', 'RippleSuggestion' },
      { counter_text(st), 'RippleHint' },
    },
    virt_text_pos = 'eol',
    sign_text = M.config.sign,
    sign_hl_group = 'RippleSign',
  })
end

--- Draw an edit of this buffer at its target: replaced text, new text, sign.
local function draw_here(bufnr, st, edit, encoding)
  local last_row = api.nvim_buf_line_count(bufnr) - 1
  local s, e = edit.range.start, edit.range['end']
  local srow, erow = math.min(s.line, last_row), math.min(e.line, last_row)
  local stext, etext = line_text(bufnr, srow), line_text(bufnr, erow)
  local scol = s.line > last_row and #stext or byte_col(stext, s.character, encoding)
  local ecol = e.line > last_row and #etext or byte_col(etext, e.character, encoding)
  if srow == erow and ecol < scol then
    ecol = scol
  end
  local sign = M.config.sign
  if srow < erow or scol < ecol then
    api.nvim_buf_set_extmark(bufnr, M.ns, srow, scol, {
      end_row = erow,
      end_col = ecol,
      hl_group = 'RippleReplaced',
    })
  end
  local new_text = edit.newText
  local counter = counter_text(st)
  if srow == erow and not new_text:find('\n', 1, true) then
    -- One line: the new text inline where it goes (a deletion says so at the end).
    local opts = { sign_text = sign, sign_hl_group = 'RippleSign' }
    if new_text ~= '' then
      opts.virt_text = { { new_text, 'RippleSuggestion' } }
      opts.virt_text_pos = 'inline'
      api.nvim_buf_set_extmark(bufnr, M.ns, erow, ecol, opts)
      if counter ~= '' then
        api.nvim_buf_set_extmark(bufnr, M.ns, srow, 0, {
          virt_text = { { counter, 'RippleHint' } },
          virt_text_pos = 'eol',
        })
      end
    else
      opts.virt_text = { { ' ' .. sign .. ' delete' .. counter, 'RippleHint' } }
      opts.virt_text_pos = 'eol'
      api.nvim_buf_set_extmark(bufnr, M.ns, srow, 0, opts)
    end
  else
    -- Several lines: the lines as they would read, below the replaced text (above the
    -- line when whole lines are inserted before it).
    local prefix = stext:sub(1, scol)
    local suffix = etext:sub(ecol + 1)
    if s.line > last_row then
      prefix = ''
    end
    local lines = vim.split(prefix .. new_text .. suffix, '\n', { plain = true })
    if new_text:sub(-1) == '\n' and (ecol == 0 or e.line > last_row) then
      table.remove(lines) -- the line after the edit, unchanged (or none)
    end
    local virt_lines = {}
    for i, l in ipairs(lines) do
      if i > M.config.max_preview_lines then
        table.insert(virt_lines, { { string.format('… %d more lines', #lines - i + 1), 'RippleHint' } })
        break
      end
      table.insert(virt_lines, { { l, 'RippleSuggestion' } })
    end
    local above = s.line <= last_row and scol == 0 and ecol == 0 and srow == erow
    local anchor = erow
    if not above and ecol == 0 and erow > srow then
      anchor = erow - 1
    end
    if #virt_lines > 0 and counter ~= '' then
      table.insert(virt_lines[#virt_lines], { counter, 'RippleHint' })
    end
    api.nvim_buf_set_extmark(bufnr, M.ns, above and srow or anchor, 0, {
      virt_lines = virt_lines,
      virt_lines_above = above,
      sign_text = sign,
      sign_hl_group = 'RippleSign',
    })
  end
  local row = cursor_row(bufnr)
  if row ~= nil and row ~= srow and row <= last_row then
    api.nvim_buf_set_extmark(bufnr, M.ns, row, 0, {
      virt_text = { { string.format(' %s line %d%s', sign, srow + 1, counter), 'RippleHint' } },
      virt_text_pos = 'eol',
    })
  end
end

--- Draw the current edit of `bufnr` and report it shown (once per edit).
local function render(bufnr)
  api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  local st = state[bufnr]
  local edit = st and st.edits[st.index]
  if not edit then
    return
  end
  local client = M.client(bufnr)
  local encoding = client and client.offset_encoding or 'utf-16'
  if edit.textDocument.uri == vim.uri_from_bufnr(bufnr) then
    draw_here(bufnr, st, edit, encoding)
  else
    draw_elsewhere(bufnr, st, edit, encoding)
  end
  if client and not st.reported[edit.id] then
    st.reported[edit.id] = true
    client:notify(DID_SHOW, { id = edit.id })
  end
end

-- -- asking --------------------------------------------------------------------------------

--- Ask ripple for the next edits of `bufnr` at its cursor, and show the top one.
--- `on_done(outcome, edits?)` is called once with: 'shown', 'empty', 'stale' (the buffer
--- changed while the server computed), 'cancelled' (a newer request replaced it),
--- 'error' or 'no-client'.
--- @param bufnr integer?
--- @param on_done fun(outcome: string, edits: table[]?)?
function M.request(bufnr, on_done)
  bufnr = resolve(bufnr)
  on_done = on_done or function() end
  local client = M.client(bufnr)
  if not client then
    on_done('no-client')
    return
  end
  local st = buf_state(bufnr)
  if st.request_id then
    client:cancel_request(st.request_id)
    st.request_id = nil
  end
  local position = { line = 0, character = 0 }
  local win = vim.fn.bufwinid(bufnr)
  if win ~= -1 then
    position = util.make_position_params(win, client.offset_encoding).position
  end
  local version = util.buf_versions[bufnr]
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr), version = version },
    position = position,
  }
  local request_id
  local ok, id = client:request(NEXT_EDITS, params, function(err, result)
    if request_id ~= nil and st.request_id == request_id then
      st.request_id = nil
    end
    if err then
      local outcome = err.code == REQUEST_CANCELLED and 'cancelled' or 'error'
      count(st, outcome)
      on_done(outcome)
      return
    end
    if not api.nvim_buf_is_valid(bufnr) or util.buf_versions[bufnr] ~= version then
      count(st, 'stale') -- computed for a text the buffer no longer has
      on_done('stale')
      return
    end
    local uri = params.textDocument.uri
    local edits = {}
    for _, edit in ipairs((result and result.edits) or {}) do
      local doc = edit.textDocument or {}
      local edit_version = nil_if_null(doc.version)
      -- An edit of this buffer must be for the version asked about.
      if doc.uri ~= uri or edit_version == nil or edit_version == version then
        table.insert(edits, edit)
      end
    end
    M.clear(bufnr)
    if #edits == 0 then
      count(st, 'empty')
      on_done('empty', edits)
      return
    end
    st.edits, st.index, st.version = edits, 1, version
    render(bufnr)
    count(st, 'shown')
    on_done('shown', edits)
  end, bufnr)
  if ok and id then
    request_id = id
    st.request_id = id
  else
    count(st, 'error')
    on_done('error')
  end
end

-- -- acting --------------------------------------------------------------------------------

local function stale_elsewhere(edit)
  local version = nil_if_null(edit.textDocument.version)
  if version == nil then
    return false
  end
  local other = vim.fn.bufnr(vim.uri_to_fname(edit.textDocument.uri))
  return other ~= -1 and api.nvim_buf_is_loaded(other) and util.buf_versions[other] ~= version
end

--- `edit` as a TextEdit for `bufnr`. Lines inserted after the last line (a range at the
--- line count) become an insertion at the end of the last line: Neovim's buffer has no
--- line after the final newline, and apply_text_edits would add an empty one.
local function text_edit_for(bufnr, edit, encoding)
  local s, e = edit.range.start, edit.range['end']
  local line_count = api.nvim_buf_line_count(bufnr)
  local text = edit.newText
  if s.line >= line_count and e.line >= line_count and text:sub(-1) == '\n' and vim.bo[bufnr].eol then
    local last = line_text(bufnr, line_count - 1)
    local at = { line = line_count - 1, character = vim.str_utfindex(last, encoding) }
    return { range = { start = at, ['end'] = at }, newText = '\n' .. text:sub(1, -2) }
  end
  return { range = edit.range, newText = text }
end

--- Apply the shown edit (in this buffer, or as a workspace edit in another file), then
--- report it accepted. Returns true when something was applied.
function M.accept(bufnr)
  bufnr = resolve(bufnr)
  local st = state[bufnr]
  local edit = M.current(bufnr)
  local client = M.client(bufnr)
  if not st or not edit or not client then
    return false
  end
  local uri = edit.textDocument.uri
  if uri == vim.uri_from_bufnr(bufnr) then
    if st.version ~= util.buf_versions[bufnr] then
      M.clear(bufnr)
      return false
    end
    M.clear(bufnr)
    local text_edit = text_edit_for(bufnr, edit, client.offset_encoding)
    util.apply_text_edits({ text_edit }, bufnr, client.offset_encoding)
  else
    if stale_elsewhere(edit) then
      M.clear(bufnr)
      return false
    end
    M.clear(bufnr)
    local text_edit = { range = edit.range, newText = edit.newText }
    util.apply_workspace_edit({ changes = { [uri] = { text_edit } } }, client.offset_encoding)
  end
  client:notify(DID_ACCEPT, { id = edit.id })
  return true
end

--- Dismiss the shown suggestions and report the shown edit rejected (ripple then stops
--- suggesting it at that text).
function M.reject(bufnr)
  bufnr = resolve(bufnr)
  local edit = M.current(bufnr)
  local client = M.client(bufnr)
  M.clear(bufnr)
  if edit and client then
    client:notify(DID_REJECT, { id = edit.id })
    return true
  end
  return false
end

--- Show the next of the ranked edits (wrapping around).
function M.next(bufnr)
  bufnr = resolve(bufnr)
  local st = state[bufnr]
  if not st or #st.edits == 0 then
    return nil
  end
  st.index = st.index % #st.edits + 1
  render(bufnr)
  return st.edits[st.index]
end

--- Why the shown edit is suggested (its explanation and score), or nil.
function M.why(bufnr)
  bufnr = resolve(bufnr)
  local st = state[bufnr]
  local edit = M.current(bufnr)
  if not st or not edit then
    return nil
  end
  local where = string.format('%s:%d', short_name(edit.textDocument.uri), edit.range.start.line + 1)
  local explanation = nil_if_null(edit.explanation) or ''
  local score = nil_if_null(edit.score)
  local text = string.format('ripple %s (%d/%d): %s', where, st.index, #st.edits, explanation)
  if type(score) == 'number' then
    text = text .. string.format(' [score %.2f]', score)
  end
  return text
end

--- How many answers of each outcome `bufnr` had (shown, empty, stale, cancelled, error).
function M.stats(bufnr)
  local st = state[resolve(bufnr)]
  return st and vim.deepcopy(st.counts) or {}
end

-- -- wiring ----------------------------------------------------------------------------------

local function schedule_request(bufnr)
  local st = buf_state(bufnr)
  if not st.timer then
    st.timer = uv.new_timer()
  end
  st.timer:stop()
  st.timer:start(
    M.config.debounce_ms,
    0,
    vim.schedule_wrap(function()
      if api.nvim_buf_is_valid(bufnr) and st.attached then
        M.request(bufnr)
      end
    end)
  )
end

local function set_keymaps(bufnr)
  local keys = M.config.keymaps
  if not keys then
    return
  end
  local actions = {
    accept = { M.accept, 'ripple: accept the suggested edit' },
    reject = { M.reject, 'ripple: reject the suggested edit' },
    next = { M.next, 'ripple: show the next suggested edit' },
  }
  for name, action in pairs(actions) do
    local lhs = keys[name]
    if lhs then
      vim.keymap.set(M.config.keymap_modes, lhs, function()
        action[1](bufnr)
      end, { buffer = bufnr, desc = action[2] })
    end
  end
end

--- Start following `bufnr` (called on LspAttach of the ripple client).
function M.attach(bufnr)
  bufnr = resolve(bufnr)
  local st = buf_state(bufnr)
  if st.attached then
    return
  end
  st.attached = true
  st.gen = st.gen + 1
  local gen = st.gen
  api.nvim_buf_attach(bufnr, false, {
    on_lines = function(_, buf)
      if st.gen ~= gen or not st.attached then
        return true -- detach this (old) listener
      end
      if st.index ~= 0 then
        -- The shown edit was computed for the text before this change.
        vim.schedule(function()
          if st.version ~= nil and st.version ~= util.buf_versions[buf] then
            M.clear(buf)
          end
        end)
      end
      if M.config.auto then
        schedule_request(buf)
      end
    end,
    on_detach = function(_, buf)
      M.detach(buf)
    end,
  })
  set_keymaps(bufnr)
end

--- Stop following `bufnr`.
function M.detach(bufnr)
  bufnr = resolve(bufnr)
  local st = state[bufnr]
  if not st then
    return
  end
  st.attached = false
  if st.timer then
    st.timer:stop()
    st.timer:close()
    st.timer = nil
  end
  M.clear(bufnr)
  state[bufnr] = nil
end

local function echo(text, hl)
  api.nvim_echo({ { text, hl } }, true, {})
end

local function create_commands()
  local command = api.nvim_create_user_command
  command('RippleAccept', function()
    if not M.accept() then
      echo('ripple: no suggested edit to accept', 'WarningMsg')
    end
  end, { desc = 'ripple: apply the suggested edit' })
  command('RippleReject', function()
    M.reject()
  end, { desc = 'ripple: dismiss the suggested edit (not suggested again at that text)' })
  command('RippleNext', function()
    if not M.next() then
      echo('ripple: no suggested edits', 'WarningMsg')
    end
  end, { desc = 'ripple: show the next suggested edit' })
  command('RippleWhy', function()
    echo(M.why() or 'ripple: no suggested edit', 'Normal')
  end, { desc = 'ripple: why the shown edit is suggested' })
  command('RippleRequest', function()
    M.request(0, function(outcome)
      if outcome == 'no-client' then
        echo('ripple: the ripple language server is not attached to this buffer', 'WarningMsg')
      elseif outcome == 'empty' then
        echo('ripple: no suggestions here', 'Normal')
      end
    end)
  end, { desc = 'ripple: ask for the next edits now' })
  command('RippleStatus', function()
    local client = M.client(0)
    if not client then
      echo('ripple: the ripple language server is not attached to this buffer', 'WarningMsg')
      return
    end
    client:request(STATUS, {}, function(err, result)
      echo(err and ('ripple: ' .. tostring(err.message)) or vim.inspect(result), 'Normal')
    end, 0)
  end, { desc = 'ripple: what the server runs on (models, problems, index, feedback)' })
end

--- Set ripple up: options (see M.defaults), highlights, commands, and the buffers the
--- ripple client attaches to (now and later).
function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  if opts and opts.keymaps == false then
    M.config.keymaps = false
  end
  define_highlights()
  create_commands()
  local group = api.nvim_create_augroup('ripple', { clear = true })
  api.nvim_create_autocmd('ColorScheme', { group = group, callback = define_highlights })
  api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(ev)
      local client = lsp.get_client_by_id(ev.data.client_id)
      if client and client.name == M.config.client_name then
        M.attach(ev.buf)
      end
    end,
  })
  api.nvim_create_autocmd('LspDetach', {
    group = group,
    callback = function(ev)
      local client = lsp.get_client_by_id(ev.data.client_id)
      if client and client.name == M.config.client_name then
        M.detach(ev.buf)
      end
    end,
  })
  for _, client in ipairs(lsp.get_clients({ name = M.config.client_name })) do
    for bufnr in pairs(client.attached_buffers) do
      M.attach(bufnr)
    end
  end
end

return M
