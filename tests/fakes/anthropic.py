"""A fake Anthropic Messages API on loopback, per PROTOCOLS.md §9.1–§9.5, checked with the official SDK.

Run standalone for shell scripts:
`python -m tests.fakes.anthropic --port 0 --api-key K` prints the URL (the SDK's `base_url`).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from aiohttp import web

from .anthropic_checks import check_body, prompt_words, sign
from .script import FINAL, META, OUTPUT, FakeUpstream, Frame, Reply, count_words, json_response, pick, split_words
from .server import serve_until_signalled

DEFAULT_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")
# §9.4's table. The 401 and 529 messages are the API's own (claude-task-master#222, the streaming docs'
# example); the others are stand-ins, as a client must not match on them (`APIStatusError.api_message`).
ERRORS = {400: ("invalid_request_error", "Invalid request"),
          401: ("authentication_error", "invalid x-api-key"),
          402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
          403: ("permission_error", "Your API key does not have permission to use the specified resource."),
          404: ("not_found_error", "Not found"),
          413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
          429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
          500: ("api_error", "Internal server error"),
          504: ("timeout_error", "Request timed out"),
          529: ("overloaded_error", "Overloaded")}
STATUS_OF_TYPE = {kind: status for status, (kind, _) in ERRORS.items()}
# Reply.reason in the other fakes' words → Anthropic's stop_reason (§9.8); native values pass through.
STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use", "": None}
CREATED = datetime(2025, 9, 29, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Answer:
    """One response's facts, shared by its JSON body and its event stream."""

    id: str
    request_id: str
    model: str
    blocks: tuple[dict[str, Any], ...]  # the final `content`, in order
    stop_reason: str | None
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int

    def usage(self, output_tokens: int) -> dict[str, int]:
        """§9.2's usage; `input_tokens` excludes cached tokens, and the fake caches nothing."""
        return {"input_tokens": self.input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                "output_tokens": output_tokens}

    def message(self, *, streaming: bool = False) -> dict[str, Any]:
        """The Message object; message_start carries it empty, with output_tokens 1 (§9.3)."""
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [] if streaming else list(self.blocks),
                "stop_reason": None if streaming else self.stop_reason,
                "stop_sequence": None if streaming else self.stop_sequence,
                "usage": self.usage(1 if streaming else self.output_tokens)}


class FakeAnthropic(FakeUpstream):
    """`POST /v1/messages`, `POST /v1/messages/count_tokens`, `GET /v1/models`, `GET /v1/models/{id}`.

    Every request needs `x-api-key: <api_key>` or `Authorization: Bearer <api_key>` (SDK 2.x sends the
    latter; `api_key=None` accepts any) and an `anthropic-version` header.
    """

    def __init__(self, models: Iterable[str] = DEFAULT_MODELS, *, api_key: str | None = "sk-ant-test-fake-key",
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self._ids = itertools.count(1)
        super().__init__(models, api_key=api_key, host=host, port=port)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/messages", self.messages)
        router.add_post("/v1/messages/count_tokens", self.count_tokens)
        router.add_get("/v1/models", self.list_models)
        router.add_get("/v1/models/{model_id}", self.get_model)

    def authorized(self, request: web.BaseRequest) -> bool:
        # Claude Code and SDK 0.x send x-api-key; SDK 2.x `Authorization: Bearer` (_client.py `_api_key_auth`).
        return (self.api_key is None or request.headers.get("x-api-key") == self.api_key
                or request.headers.get("Authorization") == f"Bearer {self.api_key}")

    def error(self, status: int, message: str = "", kind: str = "",
              headers: dict[str, str] | None = None) -> web.Response:
        """§9.4's body, `request_id` in it and in the `request-id` header the SDK reads (`APIStatusError`)."""
        request_id = f"req_fake{next(self._ids)}"
        default_kind, default_message = ERRORS.get(status, ERRORS[500] if status >= 500 else ERRORS[400])
        body = {"type": "error", "error": {"type": kind or default_kind, "message": message or default_message},
                "request_id": request_id}
        return json_response(status, body, {"request-id": request_id} | (headers or {}))

    def refused(self, request: web.Request) -> web.Response | None:
        """401 or 400 for the headers every endpoint needs; the key is never echoed."""
        if not self.authorized(request):
            if "x-api-key" in request.headers or "Authorization" in request.headers:
                return self.error(401, "invalid x-api-key")  # eyaltoledano/claude-task-master#222
            return self.error(401, "x-api-key header is required")
        if "anthropic-version" not in request.headers:
            return self.error(400, "anthropic-version: header is required")
        return None

    # endpoints ------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        req, refusal = await self._checked(request, count_tokens=False)
        if refusal is not None:
            return refusal
        reply = self.reply_for(req["model"])
        if reply is None:
            return self.error(404, f"model: {req['model']}")
        if reply.status:
            await self.before_headers(request, reply)
            return self.error(reply.status, reply.error, reply.error_type, reply.error_headers())
        answer = self._answer(req, reply)
        frames, streamed = self._frames(answer), req.get("stream") is True
        await self.before_headers(request, reply)
        if not streamed:
            await self.generate_whole(reply, sum(f.kind != META for f in frames))
        headers = {"request-id": answer.request_id} | dict(reply.headers)
        kind = reply.error_type or "overloaded_error"  # what fail_after reports; the usual mid-stream one (§9.3)
        if not streamed:
            if reply.drop_after is not None:
                return self.drop(request)
            if reply.fail_after is not None:
                return self.error(STATUS_OF_TYPE.get(kind, 500), reply.error, kind)
            return json_response(200, answer.message(), headers)
        resp = web.StreamResponse(headers=headers | {"Cache-Control": "no-cache"})
        resp.content_type = "text/event-stream"
        error = {"type": "error", "error": {"type": kind, "message": reply.error or _message_of(kind)}}
        return await self.send_stream(request, resp, frames, reply, _event(error))

    async def count_tokens(self, request: web.Request) -> web.Response:
        """`{"input_tokens": N}`, N = the words of system, messages and tools (§9.5 allows an estimate)."""
        req, refusal = await self._checked(request, count_tokens=True)
        if refusal is not None:
            return refusal
        if req["model"] not in self.models and req["model"] not in self.replies:
            return self.error(404, f"model: {req['model']}")
        return json_response(200, {"input_tokens": len(prompt_words(req))})

    async def list_models(self, request: web.Request) -> web.Response:
        """One page, as pagination.py's SyncPage reads it: `after_id`/`before_id`, `limit` 1–1000 (default 20)."""
        refusal = self.refused(request)
        if refusal is not None:
            return refusal
        ids, query = list(self.models), request.query
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return self.error(400, "limit: Input should be greater than or equal to 1 and less than or equal to 1000")
        if "before_id" in query:
            end = ids.index(query["before_id"]) if query["before_id"] in ids else len(ids)
            page, more = ids[max(0, end - limit):end], end > limit
        else:
            start = ids.index(query["after_id"]) + 1 if query.get("after_id") in ids else 0
            page, more = ids[start:start + limit], start + limit < len(ids)
        return json_response(200, {"data": [self._model_entry(m) for m in page], "has_more": more,
                                   "first_id": page[0] if page else None, "last_id": page[-1] if page else None})

    async def get_model(self, request: web.Request) -> web.Response:
        refusal = self.refused(request)
        if refusal is not None:
            return refusal
        model = request.match_info["model_id"]
        if model not in self.models:
            return self.error(404, f"model: {model}")
        return json_response(200, self._model_entry(model))

    # building the answer ----------------------------------------------------

    async def _checked(self, request: web.Request, *, count_tokens: bool) -> tuple[Any, web.Response | None]:
        refusal = self.refused(request)
        if refusal is not None:
            return None, refusal
        try:
            req = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return None, self.error(400, "There was an error parsing the body of your request as JSON")  # unconfirmed
        problem = check_body(req, count_tokens=count_tokens)
        return req, None if problem is None else self.error(400, problem)

    def _answer(self, req: dict[str, Any], reply: Reply) -> Answer:
        number = next(self._ids)
        thinking = req.get("thinking") if isinstance(req.get("thinking"), dict) else {}
        blocks: list[dict[str, Any]] = []
        if reply.thinking and thinking.get("type") in ("enabled", "adaptive"):
            # display "omitted": the text is withheld, the signature still comes (ThinkingConfigAdaptiveParam)
            shown = "" if thinking.get("display") == "omitted" else reply.thinking
            blocks.append({"type": "thinking", "thinking": shown, "signature": sign(shown)})
        if reply.text or not reply.tool_calls:
            blocks.append({"type": "text", "text": reply.text})
        blocks += [{"type": "tool_use", "id": f"toolu_fake{number}_{i}", "name": c["name"],
                    "input": dict(c.get("arguments") or {})} for i, c in enumerate(reply.tool_calls)]
        stop = STOP_REASONS.get(reply.reason, reply.reason)
        if stop == "stop":
            stop = "tool_use" if reply.tool_calls else "end_turn"
        stops = req.get("stop_sequences") or [None]
        output = pick(reply.completion_tokens, count_words(reply.text) + count_words(reply.thinking) + sum(
            count_words(f"{c['name']} {orjson.dumps(c.get('arguments') or {}).decode()}") for c in reply.tool_calls))
        return Answer(f"msg_fake{number}", f"req_fake{number}", req["model"], tuple(blocks), stop,
                      stops[0] if stop == "stop_sequence" else None,
                      pick(reply.prompt_tokens, len(prompt_words(req))), output)

    @staticmethod
    def _frames(a: Answer) -> list[Frame]:
        """§9.3's sequence; deltas are OUTPUT (counted by fail_after/drop_after), the framing is META."""
        frames = [Frame(_event({"type": "message_start", "message": a.message(streaming=True)}), META)]
        for index, block in enumerate(a.blocks):
            start = {"thinking": {"type": "thinking", "thinking": "", "signature": ""},
                     "tool_use": {**block, "input": {}}}.get(block["type"], {"type": "text", "text": ""})
            frames.append(Frame(_event({"type": "content_block_start", "index": index, "content_block": start}), META))
            if index == 0:  # the API sends one ping after the first block start (§9.3)
                frames.append(Frame(_event({"type": "ping"}), META))
            frames += [Frame(_event({"type": "content_block_delta", "index": index, "delta": d}), OUTPUT)
                       for d in _deltas(block)]
            if block["type"] == "thinking":  # once, just before the thinking block's stop
                delta = {"type": "signature_delta", "signature": block["signature"]}
                frames.append(Frame(_event({"type": "content_block_delta", "index": index, "delta": delta}), META))
            frames.append(Frame(_event({"type": "content_block_stop", "index": index}), META))
        # usage on message_delta is cumulative; newer API versions repeat input and cache counts
        # (lib/streaming/_messages.py `accumulate_event` keeps message_start's when they are absent)
        delta = {"type": "message_delta", "delta": {"stop_reason": a.stop_reason, "stop_sequence": a.stop_sequence},
                 "usage": a.usage(a.output_tokens)}
        return frames + [Frame(_event(delta), FINAL), Frame(_event({"type": "message_stop"}), FINAL)]

    def _model_entry(self, model: str) -> dict[str, Any]:
        """A ModelInfo (types/model_info.py); listed newest first like the API, so later entries are older."""
        created = CREATED - timedelta(days=30 * self.models.index(model))
        return {"type": "model", "id": model, "display_name": _display_name(model),
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"), "lifecycle": "active"}


def _deltas(block: dict[str, Any]) -> list[dict[str, Any]]:
    if block["type"] == "thinking":
        return [{"type": "thinking_delta", "thinking": w} for w in split_words(block["thinking"])]
    if block["type"] == "tool_use":  # the first fragment is often "" (§9.3); concatenated, they parse at block stop
        args = orjson.dumps(block["input"]).decode()
        return [{"type": "input_json_delta", "partial_json": part}
                for part in ["", *(args[i:i + 8] for i in range(0, len(args), 8))]]
    return [{"type": "text_delta", "text": w} for w in split_words(block["text"])]


def _event(body: dict[str, Any]) -> bytes:
    """`event: <type>` then `data:`: the SDK drops events without a name (_streaming.py `if sse.event is None`)."""
    return b"event: " + body["type"].encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


def _message_of(kind: str) -> str:
    return ERRORS[STATUS_OF_TYPE.get(kind, 500)][1]


def _display_name(model: str) -> str:
    """`claude-sonnet-4-5` → `Claude Sonnet 4.5`."""
    words = model.split("-")
    names = [w.capitalize() for w in words if not w.isdigit()]
    version = ".".join(w for w in words if w.isdigit() and len(w) < 4)
    return " ".join(names + [version] if version else names)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.anthropic", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="required key, x-api-key or bearer (default: accept any)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model ids")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    serve_until_signalled(FakeAnthropic(models, api_key=args.api_key, port=args.port).server)


if __name__ == "__main__":
    main()
