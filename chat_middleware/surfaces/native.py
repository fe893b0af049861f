"""chatd's native surface: `POST /v1/chat` with `{model, messages, …}` (DESIGN §3)."""

from __future__ import annotations

from ..access import Call
from ..asgi import read_body
from ..runtime import Runtime
from ..shapes import parse_json_object
from ..types import Receive, Scope, Send
from .native_render import NativeRenderer
from .native_request import native_request


async def native_chat(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    raw = await read_body(receive, runtime.config.max_body_bytes)
    body = parse_json_object(raw)
    resolution = runtime.route(body.get("model"), call, body)
    request = native_request(raw, body)
    await runtime.relay.run(request, resolution.chain, NativeRenderer(), receive, send, call)


ROUTES = {("POST", ""): native_chat}
