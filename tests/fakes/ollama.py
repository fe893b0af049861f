"""A fake Ollama (local, or Cloud with `api_key`) on loopback, per PROTOCOLS.md §1, §2 and §8.

Run standalone for shell scripts:
`python -m tests.fakes.ollama --port 0 --models qwen3:8b,llama3.2` prints the URL.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import orjson
from aiohttp import web

from .script import (FINAL, OUTPUT, FakeUpstream, Frame, Reply, count_words, json_document, json_response,
                     pick, split_words)
from .server import serve_until_signalled

DEFAULT_MODELS = ("qwen3:8b", "llama3.2", "gpt-oss:120b")
THINK_LEVELS = ("low", "medium", "high", "max")
RUN_ERROR = "an error was encountered while running the model"
BUSY = "server busy, please try again.  maximum pending requests exceeded"  # server/sched.go ErrMaxQueue
THINKING_FAMILIES = ("qwen3", "gpt-oss", "deepseek-r1", "kimi-k2", "glm")
"""Families whose models report the `thinking` capability (the others 400 a truthy `think`)."""
HARMONY_FAMILIES = ("gpt-oss",)
"""Models whose output goes through the harmony parser, which defers tool calls to the done line
(harmony/harmonyparser.go)."""


def now() -> str:
    """RFC3339 UTC timestamp, as Ollama's `created_at`."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def metrics(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """Deterministic timings (nanoseconds) derived from the token counts; a zero is left out, as
    api/types.go's `Metrics` fields are `omitempty`."""
    load, prompt_eval, eval_ = 1_000_000, prompt_tokens * 1_000_000, completion_tokens * 10_000_000
    values = {"total_duration": load + prompt_eval + eval_ + 500_000, "load_duration": load,
              "prompt_eval_count": prompt_tokens, "prompt_eval_duration": prompt_eval,
              "eval_count": completion_tokens, "eval_duration": eval_}
    return {name: value for name, value in values.items() if value}


def prompt_text(req: dict[str, Any]) -> str:
    if "messages" in req:
        messages = req["messages"] if isinstance(req["messages"], list) else []
        return " ".join(m["content"] for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str))
    return f"{req.get('system') or ''} {req.get('prompt') or ''}"


class FakeOllama(FakeUpstream):
    """Ollama's `/api/chat`, `/api/generate`, `/api/show`, `/api/tags`, `/api/version`.

    `models` are the installed names (`llama3.2` means `llama3.2:latest`);
    with `api_key` every request needs `Authorization: Bearer <key>`, as on
    Ollama Cloud. A model's capabilities come from its family (THINKING_FAMILIES);
    `capabilities` overrides them per model.
    """

    def __init__(self, models: Iterable[str] = DEFAULT_MODELS, *, api_key: str | None = None,
                 version: str = "0.13.0", capabilities: dict[str, list[str]] | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.version = version
        self.capability_overrides = {self.canonical(m): c for m, c in (capabilities or {}).items()}
        super().__init__(models, api_key=api_key, host=host, port=port)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/chat", self.chat)
        router.add_post("/api/generate", self.generate)
        router.add_post("/api/show", self.show)
        router.add_get("/api/tags", self.tags)  # aiohttp answers HEAD on GET routes too, as Ollama does
        router.add_get("/api/version", self.version_info)

    def capabilities(self, model: str) -> list[str]:
        name = self.canonical(model)
        if name in self.capability_overrides:
            return list(self.capability_overrides[name])
        family = name.rpartition("/")[2]
        thinking = ["thinking"] if family.startswith(THINKING_FAMILIES) else []
        return ["completion", "tools", *thinking]

    def canonical(self, model: str) -> str:
        return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"

    @staticmethod
    def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return json_response(status, {"error": message}, headers)

    # endpoints ------------------------------------------------------------

    async def tags(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return self.error(401, "unauthorized")
        return json_response(200, {"models": [self._tag(i, m) for i, m in enumerate(self.models)]})

    async def version_info(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return self.error(401, "unauthorized")
        return json_response(200, {"version": self.version})

    async def show(self, request: web.Request) -> web.Response:
        """POST /api/show, as server/routes.go `ShowHandler` (older clients send `name`)."""
        if not self.authorized(request):
            return self.error(401, "unauthorized")
        req, problem = self._parse(await request.read(), require_model=False)
        model = req.get("model") or req.get("name")
        if problem or not isinstance(model, str) or not model:
            return self.error(400, problem or "model is required")
        if not any(self.canonical(m) == self.canonical(model) for m in self.models):
            return self.error(404, f"model '{model}' not found")
        tag = self._tag(0, model)
        family = tag["details"]["family"].split(":")[0]
        return json_response(200, {
            "modelfile": f"FROM {self.canonical(model)}\n", "parameters": "", "template": "{{ .Prompt }}",
            "details": tag["details"], "model_info": {
                "general.architecture": family, "general.parameter_count": 8_000_000_000,
                f"{family}.context_length": 40960},
            "capabilities": self.capabilities(model), "modified_at": tag["modified_at"]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, generate=False)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, generate=True)

    # the reply ------------------------------------------------------------

    async def _answer(self, request: web.Request, *, generate: bool) -> web.StreamResponse:
        if not self.authorized(request):
            return self.error(401, "unauthorized")
        req, problem = self._parse(await request.read())
        if problem:
            return self.error(400, problem)
        model = req["model"]
        reply = self.reply_for(model)
        if reply is None:
            return self.error(404, f"model '{model}' not found")
        if generate and not req.get("prompt"):
            reason = "unload" if req.get("keep_alive") in (0, "0", "0s") else "load"
            return json_response(200, {"model": model, "created_at": now(), "response": "", "done": True,
                                       "done_reason": reason})
        missing = self._missing_capability(req, model, generate)
        if missing:  # checked before the model is scheduled (routes.go `Capabilities` checks)
            return self.error(400, f'"{model}" does not support {missing}')
        await self.before_headers(request, reply)
        if reply.status:
            return self.error(reply.status, reply.error or _default_error(reply.status, model),
                              reply.error_headers())
        content, thinking, calls = self._output(req, reply, generate)
        harmony = self.canonical(model).rpartition("/")[2].startswith(HARMONY_FAMILIES)
        completion = count_words(content) + count_words(thinking) + sum(
            count_words(f"{c['name']} {orjson.dumps(c['arguments']).decode()}") for c in calls)
        final: dict[str, Any] = {"done": True}
        if reply.reason:
            final["done_reason"] = reply.reason
        if generate:
            final["context"] = list(range(1, 9))
        final |= metrics(pick(reply.prompt_tokens, count_words(prompt_text(req))),
                         pick(reply.completion_tokens, completion))
        frames = self._frames(model, generate, content, thinking, calls, final, harmony)
        if req.get("stream", True) is False:
            await self.generate_whole(reply, len(frames))
            if reply.drop_after is not None:
                return self.drop(request)
            if reply.fail_after is not None:
                return self.error(500, reply.error or RUN_ERROR)
            return json_response(200, self._piece(model, generate, content, thinking, calls) | final,
                                 reply.headers)
        resp = web.StreamResponse(headers=reply.headers)
        resp.content_type = "application/x-ndjson"
        error = orjson.dumps({"error": reply.error or RUN_ERROR}) + b"\n"
        return await self.send_stream(request, resp, frames, reply, error)

    @staticmethod
    def _parse(body: bytes, require_model: bool = True) -> tuple[dict[str, Any], str]:
        """The request object, or an error message as Ollama words it."""
        if not body:
            return {}, "missing request body"
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return {}, f"invalid JSON: {exc}"
        if not isinstance(req, dict):
            return {}, "request body must be a JSON object"
        if require_model and (not isinstance(req.get("model"), str) or not req["model"]):
            return req, "model is required"
        if not isinstance(req.get("stream", True), (bool, type(None))):
            return req, "json: cannot unmarshal into Go struct field .stream of type bool"
        think = req.get("think")
        if think is not None and not isinstance(think, bool) and think not in THINK_LEVELS:
            return req, f'invalid think value: "{think}" (must be "low", "medium", "high", "max", true, or false)'
        top = req.get("top_logprobs")
        if top is not None and not (isinstance(top, int) and 0 <= top <= 20):
            return req, "top_logprobs must be between 0 and 20"
        return req, ""

    def _missing_capability(self, req: dict[str, Any], model: str, generate: bool) -> str:
        """The capability a request needs and the model lacks: truthy `think` needs thinking (an
        absent or false one does not), `tools` needs tools."""
        capabilities = self.capabilities(model)
        if req.get("think") and "thinking" not in capabilities:
            return "thinking"
        if not generate and req.get("tools") and "tools" not in capabilities:
            return "tools"
        return ""

    @staticmethod
    def _output(req: dict[str, Any], reply: Reply, generate: bool) -> tuple[str, str, list[dict[str, Any]]]:
        """What the model "generates": format turns the text into JSON; think=false hides thinking."""
        fmt = req.get("format")
        content = json_document(reply.text, fmt) if fmt else reply.text
        thinking = "" if req.get("think") is False else reply.thinking
        calls = [] if generate else [dict(c) | {"arguments": dict(c.get("arguments") or {})}
                                     for c in reply.tool_calls]
        return content, thinking, calls

    @staticmethod
    def _piece(model: str, generate: bool, content: str, thinking: str = "",
               calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "created_at": now()}
        if generate:
            body["response"] = content
            if thinking:
                body["thinking"] = thinking
            return body
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        if calls:  # ids as the server makes them (tools.go: "call_" + 8 random characters)
            message["tool_calls"] = [
                {"id": c.get("id") or f"call_{hashlib.sha256(c['name'].encode()).hexdigest()[:8]}{i}",
                 "function": {"index": i, "name": c["name"], "arguments": c["arguments"]}}
                for i, c in enumerate(calls)]
        body["message"] = message
        return body

    def _frames(self, model: str, generate: bool, content: str, thinking: str,
                calls: list[dict[str, Any]], final: dict[str, Any], harmony: bool = False) -> list[Frame]:
        """One line per word of thinking and of text; tool calls whole in one line — or, from a
        harmony model, in the done line itself; then the done line."""
        def line(body: dict[str, Any], kind: str) -> Frame:
            return Frame(orjson.dumps(body) + b"\n", kind)

        frames = [line(self._piece(model, generate, "", t) | {"done": False}, OUTPUT)
                  for t in split_words(thinking)]
        frames += [line(self._piece(model, generate, c) | {"done": False}, OUTPUT)
                   for c in split_words(content)]
        if calls and not harmony:
            frames.append(line(self._piece(model, generate, "", "", calls) | {"done": False}, OUTPUT))
        last_calls = calls if harmony else None
        frames.append(line(self._piece(model, generate, "", "", last_calls) | final, FINAL))
        return frames

    def _tag(self, index: int, model: str) -> dict[str, Any]:
        name = self.canonical(model)
        family, _, tag = name.rpartition("/")[2].partition(":")
        size = tag.upper() if tag[:-1].replace(".", "").isdigit() and tag[-1:].lower() == "b" else "7B"
        return {"name": name, "model": name, "modified_at": "2025-07-01T12:00:00.000000Z",
                "size": 4_000_000_000 + index, "digest": hashlib.sha256(name.encode()).hexdigest(),
                "details": {"parent_model": "", "format": "gguf", "family": family, "families": [family],
                            "parameter_size": size, "quantization_level": "Q4_K_M"}}


def _default_error(status: int, model: str) -> str:
    return {401: "unauthorized", 404: f"model '{model}' not found", 429: "too many requests",
            502: f"cloud model '{model}' is unreachable", 503: BUSY}.get(status, "internal server error")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.ollama", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
    parser.add_argument("--api-key", default=None, help="require this bearer key (Ollama Cloud)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    serve_until_signalled(FakeOllama(models, api_key=args.api_key, port=args.port).server)


if __name__ == "__main__":
    main()
