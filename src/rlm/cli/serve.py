"""`rlm serve-local`: keep the bundled model's server up for other processes until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from rlm.cli.common import EXIT_OK, EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    from rlm.errors import RLMError
    from rlm.models.local_server import DEFAULT_PORT, LocalServer

    try:
        port = args.port or int(os.environ.get("RLM_LOCAL_PORT") or DEFAULT_PORT)
        if args.threads is not None and args.threads < 1:
            raise RLMError(f"--threads must be at least 1, got {args.threads}")
        server = LocalServer(port=port, context_tokens=args.context_tokens, threads=args.threads)
        already = server.record() is not None
        server.start()
    except (RLMError, ValueError) as exc:
        print(f"rlm: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if already or server.process is None:
        print(f"rlm: the local model's server already runs on {server.base_url}; kept up until Ctrl-C", flush=True)
    else:
        print(
            f"local model served at {server.base_url} (model name 'local', {server.threads} threads); "
            f"log {server.log_path}; Ctrl-C stops it",
            flush=True,
        )

    def stop(*_: Any) -> None:
        raise SystemExit(EXIT_OK)

    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, stop)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()  # the server ends once no other process uses it
    return EXIT_OK
