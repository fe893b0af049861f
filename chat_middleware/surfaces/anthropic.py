"""The Anthropic Messages surface: `POST /v1/messages`, `POST /v1/messages/count_tokens`, `GET /v1/models`.

With `ANTHROPIC_BASE_URL=http://host:3220/v1/chat` (Claude Code) or
`anthropic.Anthropic(base_url=…/v1/chat)`, these answer under /v1/chat/v1/;
the query string (`?beta=true`) is ignored. A request to an `anthropic` provider
passes through as it came, only `model` rewritten; to any other it is translated,
and only then (anthropic_request), so what no other API can carry is refused
only where it would be lost.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache

import orjson

from ..access import Call
from ..asgi import JSON, read_body, send_body, send_json
from ..canonical import ChatRequest
from ..errors import BadRequest
from ..runtime import Runtime
from ..shapes import parse_json_object
from ..types import Receive, Scope, Send
from ..transforms.anthropic import API
from .anthropic_render import AnthropicRenderer
from .anthropic_request import count_tokens_estimate, messages_request

_ESTIMATE = (b"x-chatd-estimate", b"true")


async def messages(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    raw = await read_body(receive, runtime.config.max_body_bytes)
    body = parse_json_object(raw)
    resolution = runtime.route(body.get("model"), call, body)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("stream: expected a boolean")
    request = ChatRequest(API, raw, body, stream=stream is True, translate=messages_request)
    await runtime.relay.run(request, resolution.chain, AnthropicRenderer(body["model"]), receive, send, call)


async def count_tokens(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """The upstream's own count for an `anthropic` provider; else chatd's estimate, which says so."""
    body = parse_json_object(await read_body(receive, runtime.config.max_body_bytes))
    target = runtime.route(body.get("model"), call, body).served()
    provider = runtime.config.providers[target.provider]
    call.provider, call.upstream_model = provider.name, target.upstream_model
    if provider.transform != API:
        await send_json(send, {"input_tokens": count_tokens_estimate(body)}, headers=[_ESTIMATE])
        return
    call.status, answer = await runtime.ask(provider, "/v1/messages/count_tokens",
                                            {**body, "model": target.upstream_model})
    await send_body(send, call.status, answer, [JSON])


async def models(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """The models of /v1/chat/models (those the caller may name) in Anthropic's list shape, all on one page."""
    await send_body(send, 200, model_list(runtime.listed(call)), [JSON])


@lru_cache(maxsize=64)  # one list per config and client, built on its first request
def model_list(models: bytes) -> bytes:
    entries = [{"type": "model", "id": entry["id"], "display_name": entry["id"],
                "created_at": datetime.fromtimestamp(entry["created"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
               for entry in orjson.loads(models)["data"]]
    first, last = (entries[0]["id"], entries[-1]["id"]) if entries else (None, None)
    return orjson.dumps({"data": entries, "has_more": False, "first_id": first, "last_id": last})


ROUTES = {
    ("POST", "/v1/messages"): messages,
    ("POST", "/v1/messages/count_tokens"): count_tokens,
    ("GET", "/v1/models"): models,
}
