-- Defaults for Neovim 0.11's `vim.lsp.config('ripple')`, found on 'runtimepath' once the
-- folder `ripple nvim-path` prints is added to it. Anything given to
-- `vim.lsp.config('ripple', {...})` is merged over these; `vim.lsp.enable('ripple')` starts
-- the server for the buffers of these filetypes.
---@type vim.lsp.Config
return {
  -- `ripple` from the environment ripple is installed in; give the full path (or
  -- { '/path/to/venv/bin/python', '-m', 'ripple.server.cli', 'serve' }) when it is not on $PATH.
  cmd = { 'ripple', 'serve' },
  filetypes = { 'python' },
  root_markers = { 'pyproject.toml', 'setup.py', 'setup.cfg', '.git' },
  -- ripple reads and writes positions in UTF-16 (the LSP default). Neovim offers utf-8
  -- first, and the server's LSP library would take it; offer only UTF-16.
  capabilities = { general = { positionEncodings = { 'utf-16' } } },
}
