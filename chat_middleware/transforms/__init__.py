"""Transforms: how chatd speaks to one kind of upstream API.

A transform is three pure functions, so it is tested without any HTTP:

- `build(body, model, provider, stream)`: an OpenAI Chat Completions body → upstream request bytes
- `completion(raw)`: an upstream non-streamed body → an OpenAI `chat.completion` object
- `decoder(include_usage)`: a StreamDecoder turning upstream stream bytes into OpenAI chunks
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .ollama_chat import OllamaChat
from .ollama_generate import OllamaGenerate
from .openai import OpenAIPassthrough

if TYPE_CHECKING:
    from ..config import ProviderConfig
    from ..streams import StreamDecoder


class Transform(Protocol):
    name: str
    path: str
    """Appended to the provider's base_url, e.g. "/chat/completions"."""
    passthrough: bool
    """True when upstream bytes already are what an OpenAI client expects."""

    def build(self, body: dict, model: str, provider: ProviderConfig, stream: bool) -> bytes: ...

    def completion(self, raw: bytes) -> dict: ...

    def decoder(self, include_usage: bool) -> StreamDecoder: ...


TRANSFORMS: dict[str, Transform] = {
    t.name: t for t in (OpenAIPassthrough(), OllamaChat(), OllamaGenerate())
}
