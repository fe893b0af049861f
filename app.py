"""Standalone chatd for any ASGI server: `hypercorn app:app --bind 127.0.0.1:3220`.

Reads $LAKEHOUSE_CONFIG, else ./lakehouse.toml.
"""

from __future__ import annotations

from chat_middleware.standalone import worker_app

app = worker_app()
