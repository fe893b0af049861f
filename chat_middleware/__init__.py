"""chatd: route chat requests to the right LLM provider from the model name alone."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config, ProviderConfig, Timeouts, load_config  # noqa: E402
from .errors import ChatdError, ConfigError  # noqa: E402
from .middleware import ChatMiddleware  # noqa: E402
from .routing import Resolution, Router, Target  # noqa: E402

__all__ = [
    "ChatMiddleware",
    "ChatdError",
    "Config",
    "ConfigError",
    "ProviderConfig",
    "Resolution",
    "Router",
    "Target",
    "Timeouts",
    "load_config",
]
