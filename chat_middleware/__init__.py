"""chatd: route chat requests to the right LLM provider from the model name alone."""

from __future__ import annotations

from .config import Config, ProviderConfig, Timeouts, load_config
from .errors import ChatdError, ConfigError
from .middleware import ChatMiddleware
from .routing import Resolution, Router, Target
from .version import __version__

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
    "__version__",
    "load_config",
]
