"""``ripple serve``: start the language server over stdio or TCP."""

from __future__ import annotations

import argparse
import logging
import sys

from ripple.models.errors import UsageError


def _parse_tcp(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--tcp expects HOST:PORT (for example 127.0.0.1:2087), got {value!r}")
    return host, int(port)


def run(args: argparse.Namespace) -> int:
    tcp = _parse_tcp(args.tcp) if args.tcp else None
    level = logging.DEBUG if args.verbose else logging.WARNING
    if args.log_file is not None:
        logging.basicConfig(filename=args.log_file, level=level)
    else:
        logging.basicConfig(stream=sys.stderr, level=level)

    from ripple.server.lsp import create_server

    models = args.models
    if models is not None and not models.is_dir():
        raise UsageError(f"--models {models}: no such folder")
    server = create_server(models)
    if tcp is not None:
        server.start_tcp(*tcp)
    else:
        server.start_io()
    return 0
