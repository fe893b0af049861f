"""A fake OpenAI Responses API upstream on loopback, per PROTOCOLS.md §10.

`FakeResponses` is a `FakeOpenAI` (its `/chat/completions` and `/models` stay)
that also answers `POST {base_path}/responses`, as OpenAI and OpenRouter do:
the upstream chatd passes Responses requests through to byte for byte. This
module checks requests as OpenAI does and makes up the answer from a `Reply`;
`responses_wire` renders it. Each behaviour names its source beside it.

Standalone: `python -m tests.fakes.responses --port 0 --api-key K` prints the URL.
"""

from __future__ import annotations

import argparse
import base64
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from .openai_compat import CREATED, MESSAGES, SERVER_ERROR, FakeOpenAI, _prompt_text
from .responses_wire import INCOMPLETE, Turn, events_of, failure_event, settings_of, sse
from .script import META, Frame, Reply, count_words, json_document, json_response, pick
from .server import serve_until_signalled

# OpenAI's words for a failed response, with its request id (Wei-Shaw/sub2api#6714 shows a real response.failed).
FAILED = ("An error occurred while processing your request. You can retry your request, or contact us through "
          "our help center at help.openai.com if the error persists. Please include the request ID {} in your message.")
# Fernet tokens, as OpenAI's encrypted_content, start so (codex#8145 quotes "gAAA...DQ==").
SEALED = "gAAAAAB"
SEAL_TAG = b"fake-reasoning:"
JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
              bool: "a boolean", type(None): "null"}


class FakeResponses(FakeOpenAI):
    """`POST {base_path}/responses` beside FakeOpenAI's routes.

    Responses served with `store` (default true) are kept in `stored` by id,
    so a later `previous_response_id` naming one is accepted and any other is
    a 400, as on OpenAI. `flavor` is the parent's: it shapes the error bodies.
    """

    def __init__(self, api_key: str | None = "sk-test-fake-key", base_path: str = "/v1",
                 models: Iterable[str] | None = None, flavor: str = "openai", *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.stored: dict[str, tuple[dict[str, Any], frozenset[str]]] = {}  # id -> (body, call_ids seen)
        super().__init__(api_key, base_path, models, flavor, host=host, port=port)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        super().add_routes(router)
        router.add_post(f"{self.base_path}/responses", self.responses)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        if not self.authorized(request):
            return self.unauthorized()
        req, problem = self._check(await request.read())
        if problem:
            message, param, code = problem
            return self.error(400, message, param=param, code=code)
        model = req["model"]
        reply = self.reply_for(model)
        if reply is None:  # as the sibling /chat/completions (PROTOCOLS §3)
            return self.error(404, f"The model `{model}` does not exist or you do not have access to it.",
                              code="model_not_found")
        await self.before_headers(request, reply)
        if reply.status:  # §10 Errors: before the stream, Chat Completions' shape and statuses
            code = "rate_limit_exceeded" if reply.status == 429 else None
            return self.error(reply.status, reply.error or MESSAGES.get(reply.status, SERVER_ERROR),
                              headers=reply.error_headers(), code=code)
        turn = self._turn(req, reply)
        events = events_of(turn)
        request_id = f"req_{turn.id}"
        failure = reply.error or FAILED.format(request_id)
        headers = {"x-request-id": request_id} | dict(reply.headers)
        if req.get("stream") is not True:
            # As long as streaming would take: send_stream waits between the events that are not META.
            await self.generate_whole(reply, sum(kind != META for _, _, kind in events))
            if reply.drop_after is not None:
                return self.drop(request)
            if reply.fail_after is not None:
                return self.error(500, failure, headers=headers, code="server_error")
            return json_response(200, events[-1][1]["response"], headers)
        resp = web.StreamResponse(headers=headers | {"Cache-Control": "no-cache"})
        resp.content_type = "text/event-stream"
        frames = [Frame(sse(kind, n, payload), frame_kind) for n, (kind, payload, frame_kind) in enumerate(events)]
        return await self.send_stream(request, resp, frames, reply,
                                      lambda n: failure_event(turn, events, n, reply.fail_event, failure))

    # the request ------------------------------------------------------------

    def _check(self, body: bytes) -> tuple[dict[str, Any], tuple[str, str | None, str | None] | None]:
        """The request, or (message, param, code) as OpenAI words the 400."""
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            return {}, ("We could not parse the JSON body of your request.", None, None)
        if not isinstance(req, dict):
            return {}, ("The request body must be a JSON object.", None, None)
        if not isinstance(req.get("model"), str) or not req["model"]:
            return req, ("Missing required parameter: 'model'.", "model", "missing_required_parameter")
        given = req.get("input")
        if not isinstance(given, (str, list)):
            return req, (f"Invalid type for 'input': expected one of a string or array of input items, but got "
                         f"{JSON_TYPES.get(type(given), 'a value')} instead.", "input", "invalid_type")
        items = [] if isinstance(given, str) else given
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                return req, (f"Invalid type for 'input[{i}]': expected an input item, but got "
                             f"{JSON_TYPES.get(type(item), 'a value')} instead.", f"input[{i}]", "invalid_type")
        previous = req.get("previous_response_id")
        if previous is not None and previous not in self.stored:
            # OpenAI's 400 (maximhq/bifrost#2441 relays it verbatim)
            return req, (f"Previous response with id '{previous}' not found.", "previous_response_id",
                         "previous_response_not_found")
        seen = self._call_ids(req)
        answered = {i.get("call_id") for i in items if i.get("type") == "function_call_output"}
        for item in items:  # OpenAI pairs calls and outputs (its 400s quoted in continuedev/continue#10092)
            if item.get("type") == "function_call_output" and item.get("call_id") not in seen:
                return req, (f"No tool call found for function call output with call_id {item.get('call_id')}.",
                             "input", None)
            if item.get("type") == "function_call" and item.get("call_id") not in answered:
                return req, (f"No tool output found for function call {item.get('call_id')}.", "input", None)
            blob = item.get("encrypted_content") if item.get("type") == "reasoning" else None
            if isinstance(blob, str) and not _unseal(blob):  # OpenAI's words, openai/codex#8145
                return req, (f"The encrypted content {blob[:4]}...{blob[-4:]} could not be verified.", None,
                             "invalid_encrypted_content")
        return req, None

    # the answer -------------------------------------------------------------

    def _turn(self, req: dict[str, Any], reply: Reply) -> Turn:
        number = next(self._ids)
        settings = settings_of(req)
        fmt = settings["text"]["format"]
        content = reply.text
        if fmt.get("type") == "json_object":
            content = json_document(reply.text)
        elif fmt.get("type") == "json_schema":  # flat: {type, name, schema, strict} (§10 request fields)
            content = json_document(reply.text, fmt.get("schema"))
        items: list[dict[str, Any]] = []
        if reply.thinking:
            # A reasoning model always emits the item; the summary text only when reasoning.summary asks for
            # it (OpenAI's reasoning guide; Codex sends summary "auto", §10).
            wants_summary = bool(settings["reasoning"]["summary"])
            reasoning: dict[str, Any] = {"id": f"rs_fake{number}", "type": "reasoning",
                                         "summary": [{"type": "summary_text", "text": reply.thinking}]
                                         if wants_summary else []}
            if "reasoning.encrypted_content" in (req.get("include") or ()):
                reasoning["encrypted_content"] = _seal(reply.thinking)
            items.append(reasoning)
        if content or not reply.tool_calls:
            items.append({"id": f"msg_fake{number}", "type": "message", "status": "completed", "role": "assistant",
                          "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": content}]})
        for i, call in enumerate(reply.tool_calls):
            items.append({"id": f"fc_fake{number}_{i}", "type": "function_call", "status": "completed",
                          "arguments": orjson.dumps(call.get("arguments") or {}).decode(),
                          "call_id": f"call_fake{number}_{i}", "name": call["name"]})
        incomplete = INCOMPLETE.get(reply.reason)  # §10 mapping: length → max_output_tokens
        if incomplete:
            items[-1]["status"] = "incomplete"
        reasoning_tokens = count_words(reply.thinking)
        given = req["input"]
        prompt = pick(reply.prompt_tokens, count_words(" ".join(
            [req.get("instructions") or "", given if isinstance(given, str) else _input_text(given)])))
        completion = pick(reply.completion_tokens, count_words(content) + reasoning_tokens + sum(
            count_words(f"{i['name']} {i['arguments']}") for i in items if i["type"] == "function_call"))
        usage = {"input_tokens": prompt, "input_tokens_details": {"cache_write_tokens": 0, "cached_tokens": 0},
                 "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
                 "total_tokens": prompt + completion}  # types/responses/response_usage.py
        turn = Turn(f"resp_fake{number}", CREATED + number, req["model"], settings, tuple(items), incomplete, usage)
        if settings["store"] is not False:  # store defaults to true: OpenAI keeps what it served (§10 fields)
            calls = {i["call_id"] for i in items if i["type"] == "function_call"}
            self.stored[turn.id] = (turn.body(turn.status, list(items), usage), self._call_ids(req) | calls)
        return turn

    def _call_ids(self, req: dict[str, Any]) -> frozenset[str]:
        """Call ids a function_call_output may answer: this input's calls and the stored chain's."""
        previous = req.get("previous_response_id")
        given = req.get("input")
        items = given if isinstance(given, list) else []
        return (self.stored[previous][1] if previous else frozenset()) | {
            i.get("call_id") for i in items if isinstance(i, dict) and i.get("type") == "function_call"}


def _input_text(items: list[dict[str, Any]]) -> str:
    """The words the model reads: message contents, tool outputs and earlier call arguments."""
    extra = [i.get(k) for i in items for k in ("output", "arguments") if isinstance(i.get(k), str)]
    return " ".join([_prompt_text(items), *extra])


def _seal(thinking: str) -> str:
    return SEALED + base64.urlsafe_b64encode(SEAL_TAG + thinking.encode()).decode()


def _unseal(blob: str) -> bool:
    """True for a blob this fake sealed: OpenAI refuses reasoning another model wrote."""
    try:
        return blob.startswith(SEALED) and base64.urlsafe_b64decode(blob[len(SEALED):]).startswith(SEAL_TAG)
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.responses", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="required bearer key (default: accept any)")
    parser.add_argument("--base-path", default="/v1")
    parser.add_argument("--models", default=None, help="comma-separated model ids (default: gpt-4.1,gpt-4o-mini)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    serve_until_signalled(FakeResponses(args.api_key, args.base_path, models, port=args.port).server)


if __name__ == "__main__":
    main()
