"""The OpenAI Responses surface: `POST /responses`, for Codex CLI and the openai SDK's `client.responses`.

chatd is stateless: it stores no responses, so a request carries the whole
conversation (`previous_response_id` is a 400 unless the provider speaks
Responses itself and the request passes through), and `GET /responses/{id}` is
a 404 that says so.
"""

from __future__ import annotations

from ..access import Call
from ..asgi import read_body
from ..errors import NotFound
from ..runtime import Runtime
from ..shapes import parse_json_object
from ..types import Receive, Scope, Send
from .responses_render import ResponsesRenderer
from .responses_request import relay_request


async def create(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    raw = await read_body(receive, runtime.config.max_body_bytes)
    body = parse_json_object(raw)
    resolution = runtime.route(body.get("model"), call, body)
    request, context = relay_request(raw, body)
    renderer = ResponsesRenderer(body["model"], context)
    await runtime.relay.run(request, resolution.chain, renderer, receive, send, call)


async def stored(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """GET /responses/{id}: nothing is ever stored to be read back."""
    raise NotFound("chatd stores no responses (it is stateless): there is nothing to retrieve; "
                   "send the whole conversation with each request", code="response_not_stored")


ROUTES = {("POST", "/responses"): create}
PREFIXED = (("GET", "/responses/", stored),)
