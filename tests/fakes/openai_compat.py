"""A fake OpenAI-compatible upstream on loopback, per PROTOCOLS.md §3–§6 and §8.

One class, four flavors, differing where the real services differ:
`openai` (reference behaviour), `openrouter` (`: OPENROUTER PROCESSING`
comments, error chunk with `finish_reason:"error"`, `reasoning`), `opencode`
(forced usage, `cost` chunk after `[DONE]`, `{"type":"error",...}` bodies) and
`kimi` (`reasoning_content`, stream usage in `choices[0].usage`).

Standalone: `python -m tests.fakes.openai_compat --port 0 --api-key K` prints the URL.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from .script import (FINAL, META, OUTPUT, FakeUpstream, Frame, Reply, count_words, json_document, json_response,
                     pick, split_words)
from .server import serve_until_signalled

FLAVORS = ("openai", "openrouter", "opencode", "kimi")
DEFAULT_MODELS = {
    "openai": ("gpt-4.1", "gpt-4o-mini"),
    "openrouter": ("openai/gpt-4o-mini", "moonshotai/kimi-k2", "meta-llama/llama-3.3-70b-instruct:free"),
    "opencode": ("kimi-k2.5", "glm-5.1", "big-pickle"),
    "kimi": ("kimi-for-coding",),
}
REASONING_FIELD = {"openai": None, "openrouter": "reasoning", "opencode": "reasoning_content",
                   "kimi": "reasoning_content"}
OPENAI_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "requests"}
ZEN_TYPES = {400: "BadRequestError", 401: "AuthError", 403: "RegionError", 429: "RateLimitError"}
MESSAGES = {400: "Invalid request", 401: "Incorrect API key provided", 402: "Insufficient credits",
            403: "Forbidden", 404: "Not found", 408: "Request timed out", 429: "Rate limit reached",
            502: "Bad gateway", 503: "The engine is currently overloaded, please try again later"}
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
CREATED = 1_753_357_673
KIMI_GATE = ("Kimi For Coding is currently only available for Coding Agents such as Kimi CLI, Claude Code, "
             "Roo Code, Kilo Code, etc.")
"""Kimi's 403 `access_terminated_error` to clients it does not admit (MoonshotAI/kimi-code#636)."""
CODING_AGENTS = ("KimiCLI/", "claude-cli/", "claude-code/", "RooCode/", "Kilo-Code/", "opencode/", "codex_")
"""User-Agent prefixes the Kimi fake admits: the agents Kimi names, and the ones chatd's tests run."""


@dataclass(frozen=True)
class Answer:
    """One response's facts, shared by its JSON and SSE renderings."""

    id: str
    created: int
    model: str
    content: str
    thinking: str
    calls: tuple[tuple[str, str, str], ...]  # (id, name, arguments as a JSON string)
    finish: str | None
    usage: dict[str, Any]
    include_usage: bool


class FakeOpenAI(FakeUpstream):
    """`POST {base_path}/chat/completions` and `GET {base_path}/models`.

    `api_key=None` accepts any request; `base_url` is `url + base_path`.
    """

    def __init__(self, api_key: str | None = "sk-test-fake-key", base_path: str = "/v1",
                 models: Iterable[str] | None = None, flavor: str = "openai", *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}, got {flavor!r}")
        self.flavor = flavor
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self._ids = itertools.count(1)
        super().__init__(DEFAULT_MODELS[flavor] if models is None else models, api_key=api_key,
                         host=host, port=port)

    @property
    def base_url(self) -> str:
        return self.url + self.base_path

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(f"{self.base_path}/chat/completions", self.completions)
        router.add_get(f"{self.base_path}/models", self.list_models)

    # errors ---------------------------------------------------------------

    def error_body(self, status: int, message: str, *, code: str | None = None,
                   kind: str | None = None, param: str | None = None) -> dict[str, Any]:
        """The flavor's error shape; `kind` is the OpenAI `type` or the Zen error class."""
        if self.flavor == "openrouter":
            return {"error": {"code": status, "message": message}}
        if self.flavor == "opencode":
            return {"type": "error", "error": {"type": kind or ZEN_TYPES.get(status, "Error"), "message": message}}
        default = "server_error" if status >= 500 else "invalid_request_error"
        return {"error": {"message": message, "type": kind or OPENAI_TYPES.get(status, default),
                          "param": param, "code": code}}

    def error(self, status: int, message: str, *, headers: dict[str, str] | None = None,
              **fields: Any) -> web.Response:
        return json_response(status, self.error_body(status, message, **fields), headers)

    def unauthorized(self) -> web.Response:
        # Never echo the key: not the one configured, not the one received.
        return self.error(401, "Incorrect API key provided", code="invalid_api_key")

    # endpoints ------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.Response:
        if self.flavor in ("openai", "kimi") and not self.authorized(request):
            return self.unauthorized()
        data = [self._model_entry(m) for m in self.models]
        return json_response(200, {"object": "list", "data": data})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        if not self.authorized(request):
            return self.unauthorized()
        if self.flavor == "kimi" and not request.headers.get("User-Agent", "").startswith(CODING_AGENTS):
            return self.error(403, KIMI_GATE, kind="access_terminated_error")
        req, problem = self._parse(await request.read())
        if problem:
            return self.error(400, problem[0], param=problem[1])
        if self.flavor == "kimi":
            problem = _kimi_reasoning_problem(req)
            if problem:
                return self.error(400, problem)
        model = req["model"]
        reply = self.reply_for(model)
        if reply is None:
            if self.flavor == "opencode":
                return self.error(401, f"Model {model} not supported", kind="ModelError")
            return self.error(404, f"The model `{model}` does not exist or you do not have access to it.",
                              code="model_not_found")
        await self.before_headers(request, reply)
        if reply.status:
            code = "rate_limit_exceeded" if reply.status == 429 else None
            message = reply.error or MESSAGES.get(reply.status, SERVER_ERROR)
            if self.flavor == "openrouter" and reply.status == 403:  # moderation, openrouter.ai/docs errors
                return json_response(403, {"error": {"code": 403, "message": message, "metadata": {
                    "reasons": ["harassment"], "flagged_input": "…", "provider_name": "FakeProvider",
                    "model_slug": model}}}, reply.error_headers())
            return self.error(reply.status, message, headers=reply.error_headers(), code=code)
        answer = self._answer(req, reply)
        headers = {"x-request-id": f"req_{answer.id}"} | dict(reply.headers)
        if self.flavor == "openrouter":
            headers["X-Generation-Id"] = answer.id
        frames = self._frames(answer, reply)
        if req.get("stream") is not True:
            await self.generate_whole(reply, sum(f.kind != META for f in frames))
            if reply.drop_after is not None:
                return self.drop(request)
            if reply.fail_after is not None:
                if self.flavor == "openrouter":  # OpenRouter reports late failures with HTTP 200
                    return json_response(200, self.error_body(502, reply.error or "Provider returned error"))
                return self.error(500, reply.error or SERVER_ERROR)
            return json_response(200, self._completion(answer, reply), headers)
        resp = web.StreamResponse(headers=headers | {"Cache-Control": "no-cache"})
        resp.content_type = "text/event-stream"
        return await self.send_stream(request, resp, frames, reply,
                                      _sse(self._stream_error(answer, reply)))

    # building the answer ----------------------------------------------------

    @staticmethod
    def _parse(body: bytes) -> tuple[dict[str, Any], tuple[str, str | None] | None]:
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            return {}, ("We could not parse the JSON body of your request.", None)
        if not isinstance(req, dict):
            return {}, ("The request body must be a JSON object.", None)
        if not isinstance(req.get("model"), str) or not req["model"]:
            return req, ("you must provide a model parameter", "model")
        if not isinstance(req.get("messages"), list):
            return req, ("Missing required parameter: 'messages'.", "messages")
        return req, None

    def _answer(self, req: dict[str, Any], reply: Reply) -> Answer:
        number = next(self._ids)
        fmt = req.get("response_format") if isinstance(req.get("response_format"), dict) else {}
        content = reply.text
        if fmt.get("type") == "json_object":
            content = json_document(reply.text)
        elif fmt.get("type") == "json_schema":
            content = json_document(reply.text, (fmt.get("json_schema") or {}).get("schema"))
        thinking = reply.thinking if REASONING_FIELD[self.flavor] else ""
        calls = tuple((f"call_{number}_{i}", c["name"], orjson.dumps(c.get("arguments") or {}).decode())
                      for i, c in enumerate(reply.tool_calls))
        finish = "tool_calls" if calls and reply.reason == "stop" else (reply.reason or None)
        prompt = pick(reply.prompt_tokens, count_words(_prompt_text(req.get("messages") or [])))
        completion = pick(reply.completion_tokens, count_words(content) + count_words(thinking)
                          + sum(count_words(f"{name} {args}") for _, name, args in calls))
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion,
                                 "prompt_tokens_details": {"cached_tokens": 0},
                                 "completion_tokens_details": {"reasoning_tokens": count_words(thinking)}}
        if self.flavor == "kimi":
            usage["cached_tokens"] = 0
        if self.flavor == "openrouter":
            usage["cost"] = float(reply.cost)
        options = req.get("stream_options") if isinstance(req.get("stream_options"), dict) else {}
        include = self.flavor == "opencode" or options.get("include_usage") is True
        prefix = "gen" if self.flavor == "openrouter" else "chatcmpl"
        return Answer(f"{prefix}-fake{number}", CREATED + number, req["model"], content, thinking, calls,
                      finish, usage, include)

    def _completion(self, a: Answer, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": a.content or (None if a.calls else ""),
                                   "refusal": None}
        field = REASONING_FIELD[self.flavor]
        if field and a.thinking:
            message[field] = a.thinking
        if a.calls:
            message["tool_calls"] = [{"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                                     for cid, name, args in a.calls]
        choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": a.finish}
        if self.flavor == "openrouter":
            choice["native_finish_reason"] = a.finish
        body: dict[str, Any] = {"id": a.id, "object": "chat.completion", "created": a.created, "model": a.model}
        if self.flavor == "openrouter":
            body["provider"] = "FakeProvider"
        body |= {"choices": [] if reply.zero_choices else [choice], "usage": a.usage,
                 "system_fingerprint": "fp_fake"}
        if self.flavor == "opencode":
            body["cost"] = reply.cost
        return body

    def _chunk(self, a: Answer, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"id": a.id, "object": "chat.completion.chunk", "created": a.created,
                                "model": a.model}
        if self.flavor == "openrouter":
            body["provider"] = "FakeProvider"
        body |= extra
        body["choices"] = choices
        if a.include_usage and self.flavor != "kimi":
            body["usage"] = None
        return body

    def _choice(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        if self.flavor == "openrouter":
            choice["native_finish_reason"] = finish
        return choice

    def _frames(self, a: Answer, reply: Reply) -> list[Frame]:
        comment = Frame(b": OPENROUTER PROCESSING\n\n", META)
        frames = [comment] if self.flavor == "openrouter" else []

        def emit(delta: dict[str, Any]) -> None:
            frames.append(Frame(_sse(self._chunk(a, [self._choice(delta)])), OUTPUT))
            if self.flavor == "openrouter":
                frames.append(comment)

        if not reply.zero_choices:
            frames.append(Frame(_sse(self._chunk(a, [self._choice({"role": "assistant", "content": ""})])), META))
            field = REASONING_FIELD[self.flavor]
            for piece in split_words(a.thinking) if field else ():
                emit({field: piece})
            for piece in split_words(a.content):
                emit({"content": piece})
            for i, (cid, name, args) in enumerate(a.calls):
                emit({"tool_calls": [{"index": i, "id": cid, "type": "function",
                                      "function": {"name": name, "arguments": ""}}]})
                for start in range(0, len(args), 8):
                    emit({"tool_calls": [{"index": i, "function": {"arguments": args[start:start + 8]}}]})
            last = self._choice({}, a.finish)
            if self.flavor == "kimi":
                last["usage"] = a.usage
            frames.append(Frame(_sse(self._chunk(a, [last])), FINAL))
        if a.include_usage and self.flavor != "kimi":
            usage_chunk = self._chunk(a, []) | {"usage": a.usage}
            frames.append(Frame(_sse(usage_chunk), FINAL))
        frames.append(Frame(b"data: [DONE]\n\n", FINAL))
        if self.flavor == "opencode":
            cost = {"id": "", "object": "chat.completion.chunk", "created": 0, "model": "", "choices": [],
                    "cost": reply.cost}
            frames.append(Frame(_sse(cost), FINAL))
        return frames

    def _stream_error(self, a: Answer, reply: Reply) -> dict[str, Any]:
        if self.flavor == "openrouter":
            error = {"code": "server_error", "message": reply.error or "Provider disconnected unexpectedly"}
            return self._chunk(a, [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}], error=error)
        if self.flavor == "opencode":
            return self.error_body(500, reply.error or SERVER_ERROR, kind="ProviderError")
        return {"error": {"message": reply.error or SERVER_ERROR, "type": "server_error", "param": None,
                          "code": None}}

    def _model_entry(self, model: str) -> dict[str, Any]:
        owner = {"openai": "openai", "opencode": "opencode", "kimi": "moonshot"}.get(self.flavor)
        entry: dict[str, Any] = {"id": model, "object": "model", "created": CREATED,
                                 "owned_by": owner or model.split("/")[0]}
        if self.flavor == "kimi":
            entry |= {"context_length": 262_144, "supports_reasoning": True, "supports_image_in": True,
                      "supports_video_in": False, "display_name": model}
        return entry


def _kimi_reasoning_problem(req: dict[str, Any]) -> str:
    """Kimi with thinking on (its default) refuses an assistant tool-call turn without its
    `reasoning_content` (anomalyco/opencode#10996, continuedev/continue#11527)."""
    thinking = req.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "disabled":
        return ""
    for index, message in enumerate(req.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "assistant" and message.get("tool_calls") \
                and not message.get("reasoning_content"):
            return ("thinking is enabled but reasoning_content is missing in assistant tool call message "
                    f"at index {index}")
    return ""


def _sse(body: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _prompt_text(messages: list[Any]) -> str:
    """The words of every message, whether content is a string or a list of parts."""
    words = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            words.append(content)
        elif isinstance(content, list):
            words += [p.get("text") or "" for p in content if isinstance(p, dict)]
    return " ".join(words)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.openai_compat", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="required bearer key (default: accept any)")
    parser.add_argument("--flavor", choices=FLAVORS, default="openai")
    parser.add_argument("--base-path", default="/v1")
    parser.add_argument("--models", default=None, help="comma-separated model ids (default: per flavor)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    fake = FakeOpenAI(args.api_key, args.base_path, models, args.flavor, port=args.port)
    serve_until_signalled(fake.server)


if __name__ == "__main__":
    main()
