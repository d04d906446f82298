"""``ripple nvim-path``: the Neovim runtime folder shipped inside the package.

The folder (``server/nvim``, installed as package data of ``ripple.server``) holds
``lua/ripple/init.lua`` (the ``require('ripple')`` module: suggestions shown in the buffer,
accept / reject / next) and ``lsp/ripple.lua`` (the defaults of
``vim.lsp.config('ripple')`` in Neovim 0.11+). Adding it to ``runtimepath`` makes both
visible to Neovim.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RUNTIME_FILES = ("lua/ripple/init.lua", "lsp/ripple.lua")


def runtime_dir() -> Path:
    """The folder to add to Neovim's ``runtimepath``."""
    return Path(__file__).resolve().parent / "nvim"


def run(args: argparse.Namespace) -> int:
    folder = runtime_dir()
    missing = [name for name in RUNTIME_FILES if not (folder / name).is_file()]
    if missing:
        print(
            f"ripple: error: the Neovim runtime files are missing from {folder}: "
            f"{', '.join(missing)} (a broken install? reinstall ripple-edits)",
            file=sys.stderr,
        )
        return 1
    print(folder)
    return 0
