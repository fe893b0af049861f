"""The OpenAI Chat Completions surface: `POST /chat/completions` (and `/completions`), `GET /models`.

chatd's OpenAI base URL is `…/v1/chat`, so the openai SDK's calls stay inside
chatd's prefix even when it is mounted in a gateway.
"""

from __future__ import annotations

from ..access import Call
from ..asgi import JSON, read_body, send_body
from ..runtime import Runtime
from ..shapes import parse_json_object
from ..types import Receive, Scope, Send
from .chat_render import OpenAIRenderer
from .chat_request import chat_request

_RENDERER = OpenAIRenderer()  # stateless: one for every request


async def chat_completions(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """OpenAI Chat Completions, stream and non-stream, for every provider."""
    raw = await read_body(receive, runtime.config.max_body_bytes)
    body = parse_json_object(raw)
    resolution = runtime.route(body.get("model"), call, body)
    await runtime.relay.run(chat_request(raw, body), resolution.chain, _RENDERER, receive, send, call)


async def models(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """The tiers, then the models they name, in OpenAI's list shape."""
    await send_body(send, 200, runtime.listed(call), [JSON])


ROUTES = {
    ("POST", "/chat/completions"): chat_completions,
    ("POST", "/completions"): chat_completions,
    ("GET", "/models"): models,
}
