"""`ollama_chat`: OpenAI Chat Completions ⇄ Ollama `/api/chat`, NDJSON → OpenAI chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from .ollama import (
    add_generation_fields,
    OllamaStreamDecoder,
    read_chat,
    to_completion,
    to_ollama_messages,
    to_ollama_tools,
)

from ..shapes import encode_request
from .openai import bearer

if TYPE_CHECKING:
    from ..settings import ProviderConfig
    from .base import Passage


class OllamaChat:
    name = "ollama_chat"
    path = "/api/chat"
    headers = staticmethod(bearer)  # Ollama Cloud's keys; a local Ollama needs none

    def build(self, body: dict, model: str, provider: ProviderConfig, stream: bool) -> bytes:
        # `stream` is always explicit: Ollama streams when it is omitted.
        messages = to_ollama_messages(body.get("messages"))
        upstream = add_generation_fields({"model": model, "messages": messages, "stream": bool(stream)}, body,
                                         provider)
        tools = to_ollama_tools(body)
        if tools:
            upstream["tools"] = tools
        return encode_request(upstream)

    def completion(self, raw: bytes) -> dict:
        return to_completion(raw, read_chat)

    def passages(self, provider: ProviderConfig) -> Mapping[str, Passage]:
        return {}  # Ollama clients' requests are translated: their fields ride along (surfaces/ollama_request.py)

    def decoder(self, include_usage: bool) -> OllamaStreamDecoder:
        return OllamaStreamDecoder(include_usage, read_chat)
