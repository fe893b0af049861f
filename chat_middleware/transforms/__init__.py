"""Transforms: how chatd speaks to one kind of upstream API, one module each.

A transform is a few pure functions over chatd's canonical body (an OpenAI Chat
Completions request, canonical.py), so it is tested without any HTTP:

- `headers(api_key)`: how the API takes a key (`Authorization: Bearer`, `x-api-key`…)
- `build(body, model, provider, stream)`: the canonical body → upstream request bytes
- `completion(raw)`: an upstream non-streamed body → an OpenAI `chat.completion` object
- `decoder(include_usage)`: a StreamDecoder turning upstream stream bytes into OpenAI chunks
- `passages(provider)`: the client APIs this upstream speaks itself, by surface name: a client
  of one of those is passed through (same-kind passthrough) instead of translated

A `Passage` is that passthrough for one client API: the client's bytes go upstream
with only `model` rewritten, and the answer's bytes come back untouched while
chatd still reads their usage and in-band errors.
"""

from __future__ import annotations

from .anthropic import AnthropicMessages
from .base import Passage, Transform
from .ollama_chat import OllamaChat
from .ollama_generate import OllamaGenerate
from .openai import OpenAIChat

__all__ = ["TRANSFORMS", "Passage", "Transform"]

TRANSFORMS: dict[str, Transform] = {
    t.name: t for t in (OpenAIChat(), AnthropicMessages(), OllamaChat(), OllamaGenerate())
}
