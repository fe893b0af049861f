"""Logging for standalone chatd: diagnostics with time and level on stderr, the access log as bare JSON lines on stdout.

Only chatd's own loggers are set up, so the server's lines (hypercorn's
"Running on …") keep their own handler and are printed once. Mounted in a host
gateway, chatd configures nothing: its lines go to the `chatd` and
`chatd.access` loggers and the host decides where they end up.
"""

from __future__ import annotations

import logging
import sys

from .access import LINES

DIAGNOSTICS = logging.getLogger("chatd")


def configure(level: int = logging.INFO) -> None:
    if not DIAGNOSTICS.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        DIAGNOSTICS.addHandler(handler)
        DIAGNOSTICS.propagate = False
    DIAGNOSTICS.setLevel(level)
    LINES.to_stream(sys.stdout.buffer)
