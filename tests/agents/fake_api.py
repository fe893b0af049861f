"""A logging fake of the two client APIs chatd does not serve yet: Anthropic Messages and OpenAI Responses.

It answers Claude Code (`POST {base}/v1/messages`) and Codex (`POST {base}/responses`)
with the smallest streams each accepts (PROTOCOLS.md §9.3, §10), so the agent
harness can be proved before chatd's own surfaces exist. It records every
request, to any path, like the fakes in tests/fakes (it is one of them:
`replies`, `requests`, `wait_requests`), and answers unknown paths 404.

    with FakeAgentAPI() as fake:
        fake.replies["m"] = [Reply(tool_calls=[{"name": "Bash", "arguments": {"command": "ls"}}]), Reply("done")]
        run_claude(fake.url + "/v1/chat", "hi", model="m", api_key="k", cwd=tmp_path)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.script import FakeUpstream, Reply, json_response

ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}


class FakeAgentAPI(FakeUpstream):
    """Anthropic Messages and OpenAI Responses under `base_path` (default `/v1/chat`, as chatd mounts them)."""

    def __init__(self, base_path: str = "/v1/chat", *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.base_path = "/" + base_path.strip("/")
        self._ids = itertools.count(1)
        super().__init__((), host=host, port=port)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(f"{self.base_path}/v1/messages", self.messages)
        router.add_post(f"{self.base_path}/responses", self.responses)
        router.add_route("*", "/{tail:.*}", self.not_found)

    async def not_found(self, request: web.Request) -> web.Response:
        return json_response(404, {"error": {"message": f"no route {request.method} {request.path}"}})

    async def _reply(self, request: web.Request) -> tuple[dict[str, Any], Reply]:
        body = orjson.loads(await request.read())
        reply = self.reply_for(body.get("model", "")) or self.default_reply
        await self.before_headers(request, reply)
        return body, reply

    # Anthropic Messages ------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body, reply = await self._reply(request)
        if reply.status:
            error = {"type": ANTHROPIC_ERRORS.get(reply.status, "api_error"), "message": reply.error or "failure"}
            return json_response(reply.status, {"type": "error", "error": error}, reply.error_headers())
        number = next(self._ids)
        blocks = ([{"type": "text", "text": reply.text}] if reply.text else []) + [
            {"type": "tool_use", "id": f"toolu_fake{number}_{i}", "name": call["name"],
             "input": dict(call.get("arguments") or {})} for i, call in enumerate(reply.tool_calls)]
        stop = "tool_use" if reply.tool_calls else "end_turn"
        message = {"id": f"msg_fake{number}", "type": "message", "role": "assistant", "model": body["model"]}
        if not body.get("stream"):
            return json_response(200, message | {"content": blocks, "stop_reason": stop, "stop_sequence": None,
                                                 "usage": {"input_tokens": 10, "output_tokens": 5}})
        events = [("message_start", {"message": message | {"content": [], "stop_reason": None,
                                                           "usage": {"input_tokens": 10, "output_tokens": 1}}})]
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                start, delta = dict(block, text=""), {"type": "text_delta", "text": block["text"]}
            else:
                start = dict(block, input={})
                delta = {"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()}
            events += [("content_block_start", {"index": index, "content_block": start}),
                       ("content_block_delta", {"index": index, "delta": delta}),
                       ("content_block_stop", {"index": index})]
        events += [("message_delta", {"delta": {"stop_reason": stop}, "usage": {"output_tokens": 5}}),
                   ("message_stop", {})]
        return await self._stream(request, events)

    # OpenAI Responses --------------------------------------------------------

    async def responses(self, request: web.Request) -> web.StreamResponse:
        _, reply = await self._reply(request)
        if reply.status:
            error = {"message": reply.error or "failure", "type": "server_error" if reply.status >= 500
                     else "invalid_request_error", "param": None, "code": None}
            return json_response(reply.status, {"error": error}, reply.error_headers())
        number = next(self._ids)
        items: list[dict[str, Any]] = []
        if reply.text:
            items.append({"type": "message", "id": f"msg_fake{number}", "role": "assistant", "status": "completed",
                          "content": [{"type": "output_text", "text": reply.text, "annotations": []}]})
        items += [{"type": "function_call", "id": f"fc_fake{number}_{i}", "call_id": f"call_fake{number}_{i}",
                   "name": call["name"], "arguments": orjson.dumps(dict(call.get("arguments") or {})).decode(),
                   "status": "completed"} for i, call in enumerate(reply.tool_calls)]
        response = {"id": f"resp_fake{number}", "object": "response", "status": "in_progress", "output": []}
        events = [("response.created", {"response": response})]
        for index, item in enumerate(items):
            events += [("response.output_item.added", {"output_index": index, "item": _opened(item)}),
                       ("response.output_item.done", {"output_index": index, "item": item})]
        usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        events.append(("response.completed",
                       {"response": response | {"status": "completed", "output": items, "usage": usage}}))
        return await self._stream(request, events, numbered=True)

    # ---------------------------------------------------------------------------

    async def _stream(self, request: web.Request, events: Iterable[tuple[str, dict[str, Any]]],
                      numbered: bool = False) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        with self.streaming():
            await resp.prepare(request)
            for sequence, (name, data) in enumerate(events):
                payload = {"type": name, **({"sequence_number": sequence} if numbered else {}), **data}
                await resp.write(b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n")
        return resp


def _opened(item: dict[str, Any]) -> dict[str, Any]:
    """How an output item looks in `response.output_item.added`: in progress, without its content yet."""
    if item["type"] == "message":
        return item | {"status": "in_progress", "content": []}
    return item | {"status": "in_progress", "arguments": ""}
