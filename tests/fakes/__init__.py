"""Faithful fake upstreams (Ollama, OpenAI-compatible, OpenAI Responses, Anthropic) on loopback for chatd's tests.

Names load lazily so `python -m tests.fakes.ollama` does not import the
module twice (runpy warns when the package already imported it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .anthropic import FakeAnthropic
    from .ollama import FakeOllama
    from .openai_compat import FakeOpenAI
    from .responses import FakeResponses
    from .script import FakeUpstream, Recorded, Reply
    from .server import BackgroundServer

__all__ = ["BackgroundServer", "FakeAnthropic", "FakeOllama", "FakeOpenAI", "FakeResponses", "FakeUpstream",
           "Recorded", "Reply"]
_HOMES = {"BackgroundServer": ".server", "FakeAnthropic": ".anthropic", "FakeOllama": ".ollama",
          "FakeOpenAI": ".openai_compat", "FakeResponses": ".responses", "FakeUpstream": ".script",
          "Recorded": ".script", "Reply": ".script"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name], __name__), name)
