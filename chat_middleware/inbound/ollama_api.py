"""Ollama's API inbound: POST /api/chat and /api/generate, GET /api/tags and /api/version.

Ollama clients (`ollama.Client(host="http://host:3220/v1/chat")`) use chatd as
if it were Ollama. A request is translated into chatd's OpenAI body and goes
through the relay like any other, so routing, fallback, retries and error
statuses are the same; only the shapes differ (NDJSON when streamed, errors as
`{"error": "…"}`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timezone
from functools import lru_cache

import orjson

from .. import __version__
from ..access import Call
from ..asgi import JSON, read_body, send_body, send_json
from ..config import Config
from ..routing import Target
from ..runtime import Runtime
from ..shapes import parse_json_object
from ..types import Receive, Scope, Send
from .ollama_render import OllamaChatRenderer, OllamaGenerateRenderer, error_body
from .ollama_request import chat_request, generate_request

__all__ = ["chat", "error_body", "generate", "tags", "version"]

OLLAMA_TRANSFORMS = frozenset({"ollama_chat", "ollama_generate"})
_UNLOAD = (0, "0", "0s")


async def chat(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """POST /api/chat."""
    await _answer(runtime, call, receive, send, chat_request, OllamaChatRenderer)


async def generate(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """POST /api/generate."""
    await _answer(runtime, call, receive, send, generate_request, OllamaGenerateRenderer)


async def tags(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """GET /api/tags: the models of GET /v1/chat/models, in Ollama's shape."""
    await send_body(send, 200, tag_list(runtime.models), [JSON])


async def version(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """GET /api/version: chatd's own version."""
    await send_json(send, {"version": __version__})


async def _answer(
    runtime: Runtime, call: Call, receive: Receive, send: Send, translate: Callable[..., dict | None],
    renderer_class: type[OllamaChatRenderer],
) -> None:
    body = parse_json_object(await read_body(receive, runtime.config.max_body_bytes))
    resolution = runtime.route(body.get("model"), call, body)
    request = translate(body, native=speaks_ollama(runtime.config, resolution.chain))
    renderer = renderer_class(body["model"], thinking=body.get("think") is not False)
    if request is None:  # nothing to answer: Ollama would only load (or unload) the model
        await send_body(send, 200, renderer.loaded(body.get("keep_alive") in _UNLOAD), [JSON])
        return
    await runtime.relay.run(request, resolution.chain, renderer, False, receive, send, call)


def speaks_ollama(config: Config, chain: tuple[Target, ...]) -> bool:
    """Whether every provider that may serve the chain is an Ollama, so Ollama-only fields can ride along."""
    return all(config.providers[t.provider].transform in OLLAMA_TRANSFORMS for t in chain if t.registered)


@lru_cache(maxsize=4)  # one model list per config: built on the first request, not on every one
def tag_list(models: bytes) -> bytes:
    """The OpenAI model list → Ollama's /api/tags; sizes and details are unknown to chatd, so empty."""
    listed = []
    for entry in orjson.loads(models)["data"]:
        name = entry["id"]
        listed.append({
            "name": name,
            "model": name,
            "modified_at": datetime.fromtimestamp(entry["created"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "size": 0,
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": {"parent_model": "", "format": "", "family": "", "families": [], "parameter_size": "",
                        "quantization_level": ""},
        })
    return orjson.dumps({"models": listed})
