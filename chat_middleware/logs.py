"""Logging for standalone chatd: diagnostics with time and level on stderr, the access log as bare JSON lines on stdout.

Only chatd's own loggers are set up, so the server's lines (hypercorn's
"Running on …") keep their own handler and are printed once. Mounted in a host
gateway, chatd configures nothing: its lines go to the `chatd` and
`chatd.access` loggers and the host decides where they end up.
"""

from __future__ import annotations

import logging
import sys

from .access import ACCESS_LOG

DIAGNOSTICS = logging.getLogger("chatd")


def configure(level: int = logging.INFO) -> None:
    # Standalone, chatd owns the process: skip the search for each line's caller
    # (file, line, function), which no line here shows, as the logging HOWTO's
    # "Optimization" section suggests; a third of an access-log line's cost.
    logging._srcfile = None  # type: ignore[attr-defined]
    _own_handler(DIAGNOSTICS, sys.stderr, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    DIAGNOSTICS.setLevel(level)
    _own_handler(ACCESS_LOG, sys.stdout, "%(message)s")


def _own_handler(logger: logging.Logger, stream: object, fmt: str) -> None:
    if not logger.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(fmt))
        logger.addHandler(handler)
        logger.propagate = False
