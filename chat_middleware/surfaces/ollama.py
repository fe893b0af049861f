"""Ollama's API inbound: /api/chat, /api/generate, /api/show, /api/tags, /api/ps, /api/version, and `/`.

Ollama clients (`ollama.Client(host="http://host:3220/v1/chat")`, Open WebUI,
VS Code Copilot's Ollama provider) use chatd as if it were Ollama. A chat or
generate request is translated into chatd's OpenAI body and goes through the
relay like any other, so routing, fallback, retries and error statuses are the
same; only the shapes differ (NDJSON when streamed, errors as `{"error": "…"}`).
The other endpoints are what those clients call at start-up: Copilot refuses a
server older than 0.6.4 and asks /api/show about every model; the CLI and health
checks send `HEAD /`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timezone
from functools import lru_cache

import orjson

from ..access import Call
from ..asgi import JSON, read_body, send_body, send_json
from ..canonical import ChatRequest
from ..settings import Config, ProviderConfig
from ..routing import Target
from ..runtime import Runtime
from ..shapes import parse_json_object
from ..types import Receive, Scope, Send
from .ollama_render import OllamaChatRenderer, OllamaGenerateRenderer, error_body
from .ollama_request import chat_request, generate_request

OLLAMA = "ollama"
OLLAMA_TRANSFORMS = frozenset({"ollama_chat", "ollama_generate"})
_UNLOAD = (0, "0", "0s")
_DETAILS = {"parent_model": "", "format": "", "family": "", "families": [], "parameter_size": "",
            "quantization_level": ""}
"""A model's `details` where chatd knows none of them: every field present, as clients expect."""
_RUNNING = b"Ollama is running"


async def chat(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """POST /api/chat."""
    await _answer(runtime, call, receive, send, chat_request, OllamaChatRenderer)


async def generate(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """POST /api/generate."""
    await _answer(runtime, call, receive, send, generate_request, OllamaGenerateRenderer)


async def tags(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """GET /api/tags: the models of GET /v1/chat/models, in Ollama's shape."""
    await send_body(send, 200, tag_list(runtime.listed(call)), [JSON])


async def version(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """GET /api/version: the Ollama API version chatd implements (clients refuse old ones)."""
    await send_json(send, {"version": runtime.config.ollama_api_version})


async def running(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """GET or HEAD /: Ollama's heartbeat, as its CLI and health checks expect it."""
    await send_body(send, 200, _RUNNING, [(b"content-type", b"text/plain; charset=utf-8")])


async def ps(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """GET /api/ps: models loaded in memory; chatd loads none itself and does not ask its upstreams."""
    await send_json(send, {"models": []})


async def show(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """POST /api/show: an Ollama provider's own answer; for any other, one made from its `capabilities`."""
    body = parse_json_object(await read_body(receive, runtime.config.max_body_bytes))
    model = body.get("model") or body.get("name")  # older clients send `name`
    target = runtime.route(model, call).served()
    provider = runtime.config.providers[target.provider]
    call.provider, call.upstream_model = provider.name, target.upstream_model
    if provider.transform not in OLLAMA_TRANSFORMS:
        await send_json(send, shown(provider, target.upstream_model))
        return
    call.status, raw = await runtime.ask(provider, "/api/show", {"model": target.upstream_model})
    await send_body(send, call.status, raw, [JSON])


def shown(provider: ProviderConfig, model: str) -> dict:
    """/api/show for a model of a provider that is not an Ollama: what chatd knows, in Ollama's shape."""
    return {"modelfile": "", "parameters": "", "template": "", "details": _DETAILS,
            "model_info": {"general.architecture": provider.transform, "general.basename": model},
            "capabilities": list(provider.capabilities), "modified_at": "1970-01-01T00:00:00Z"}


async def _answer(
    runtime: Runtime, call: Call, receive: Receive, send: Send, translate: Callable[..., dict | None],
    renderer_class: type[OllamaChatRenderer],
) -> None:
    raw = await read_body(receive, runtime.config.max_body_bytes)
    body = parse_json_object(raw)
    resolution = runtime.route(body.get("model"), call, body)
    canonical = translate(body, native=speaks_ollama(runtime.config, resolution.chain))
    renderer = renderer_class(body["model"], thinking=body.get("think") is not False)
    if canonical is None:  # nothing to answer: Ollama would only load (or unload) the model
        await send_body(send, 200, renderer.loaded(body.get("keep_alive") in _UNLOAD), [JSON])
        return
    request = ChatRequest(OLLAMA, raw, body, stream=canonical["stream"], canonical=canonical)
    await runtime.relay.run(request, resolution.chain, renderer, receive, send, call)


def speaks_ollama(config: Config, chain: tuple[Target, ...]) -> bool:
    """Whether every provider that may serve the chain is an Ollama, so Ollama-only fields can ride along."""
    return all(config.providers[t.provider].transform in OLLAMA_TRANSFORMS for t in chain if t.registered)


@lru_cache(maxsize=64)  # one model list per config and client: built on the first request, not on every one
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
            "details": _DETAILS,
        })
    return orjson.dumps({"models": listed})


ROUTES = {
    ("GET", ""): running,
    ("HEAD", ""): running,
    ("POST", "/api/chat"): chat,
    ("POST", "/api/generate"): generate,
    ("POST", "/api/show"): show,
    ("GET", "/api/tags"): tags,
    ("HEAD", "/api/tags"): tags,
    ("GET", "/api/ps"): ps,
    ("GET", "/api/version"): version,
    ("HEAD", "/api/version"): version,
}
