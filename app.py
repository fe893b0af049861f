"""Standalone chatd for any ASGI server: `hypercorn app:app --bind 127.0.0.1:3220`.

Reads $LAKEHOUSE_CONFIG, else ./lakehouse.toml.
"""

from __future__ import annotations

from chat_middleware.logs import configure as configure_logging
from chat_middleware.standalone import create_app

configure_logging()

app = create_app()
