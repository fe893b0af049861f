"""Standalone chatd for any ASGI server: `hypercorn app:app --bind 127.0.0.1:3220`.

Reads $LAKEHOUSE_CONFIG, else ./lakehouse.toml.
"""

from __future__ import annotations

import logging

from chat_middleware.standalone import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

app = create_app()
