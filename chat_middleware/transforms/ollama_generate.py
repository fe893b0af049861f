"""`ollama_generate`: OpenAI Chat Completions → Ollama `/api/generate` (one system + one prompt).

/api/generate has no message list, so the conversation is flattened: system and
developer messages become `system`, the turns become a labelled transcript in
`prompt`, and every image goes to the top-level `images`. Tools are dropped;
generate cannot call them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import orjson

from .ollama import (
    add_generation_fields,
    OllamaStreamDecoder,
    read_generate,
    to_completion,
    to_ollama_messages,
)

from ..shapes import encode_request
from .openai import bearer

if TYPE_CHECKING:
    from ..settings import ProviderConfig
    from .base import Passage

LABELS = {"user": "User", "assistant": "Assistant", "tool": "Tool"}


def flatten_messages(messages: object) -> tuple[str, str, list[str]]:
    """OpenAI messages → (system, prompt, images), turns separated by a blank line.

    An assistant turn that called tools shows each call as `name({json arguments})`;
    an image-only turn reads `User: [image]`; a turn with nothing at all adds no line.
    Ollama answers an empty prompt by only loading the model, so a conversation of
    system messages alone becomes the prompt itself.
    """
    system: list[str] = []
    turns: list[str] = []
    images: list[str] = []
    for message in to_ollama_messages(messages):
        images.extend(message.get("images", ()))
        text = message["content"]
        if message["role"] == "system":
            if text:
                system.append(text)
            continue
        calls = [
            f"{c['function']['name']}({orjson.dumps(c['function']['arguments']).decode()})"
            for c in message.get("tool_calls", ())
        ]
        if calls:
            text = "\n".join([text, *calls] if text else calls)
        elif not text and "images" in message:
            text = "[image]"
        if text:
            turns.append(f"{LABELS[message['role']]}: {text}")
    if not turns:
        return "", "\n\n".join(system), images
    return "\n\n".join(system), "\n\n".join(turns), images


class OllamaGenerate:
    name = "ollama_generate"
    path = "/api/generate"
    headers = staticmethod(bearer)  # Ollama Cloud's keys; a local Ollama needs none

    def build(self, body: dict, model: str, provider: ProviderConfig, stream: bool) -> bytes:
        system, prompt, images = flatten_messages(body.get("messages"))
        # `stream` is always explicit: Ollama streams when it is omitted.
        upstream: dict = {"model": model, "prompt": prompt, "stream": bool(stream)}
        if system:
            upstream["system"] = system
        if images:
            upstream["images"] = images
        return encode_request(add_generation_fields(upstream, body, provider))

    def completion(self, raw: bytes) -> dict:
        return to_completion(raw, read_generate)

    def passages(self, provider: ProviderConfig) -> Mapping[str, Passage]:
        return {}  # Ollama clients' requests are translated: their fields ride along (surfaces/ollama_request.py)

    def decoder(self, include_usage: bool) -> OllamaStreamDecoder:
        return OllamaStreamDecoder(include_usage, read_generate)
