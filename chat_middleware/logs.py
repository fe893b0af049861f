"""Logging for standalone chatd: diagnostics with time and level on stderr, the access log as bare JSON lines on stdout.

Mounted in a host gateway, chatd configures nothing: its lines go to the
`chatd` and `chatd.access` loggers and the host decides where they end up.
"""

from __future__ import annotations

import logging
import sys

from .access import ACCESS_LOG


def configure(level: int = logging.INFO) -> None:
    # Standalone, chatd owns the process: skip what no chatd line shows (caller
    # file and line, thread, process), as the logging HOWTO's "Optimization"
    # section suggests; it halves the cost of an access-log line.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not ACCESS_LOG.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        ACCESS_LOG.addHandler(handler)
        ACCESS_LOG.propagate = False
