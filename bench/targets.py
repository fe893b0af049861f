"""What the benchmark runs: settings, server command lines, request bodies, chatd's config.

Kept apart from the measuring code so that run.py and scaling.py start the
same servers with the same requests.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

import orjson

from .mock_upstream import ANTHROPIC, OLLAMA, OPENAI, RESPONSES

NATIVE = "native"
"""chatd's own POST /v1/chat: a surface only, no upstream speaks it."""

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def publish_as(filename: str) -> Callable[[str], None]:
    """A command's way to publish its report: to bench/results/`filename`, and to stdout."""
    def publish(report: str) -> None:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / filename).write_text(report)
        print(report, end="")
    return publish
DIRECT, FLOOR, CHATD = "direct", "floor", "chatd"
SERVERS = ("hypercorn", "uvicorn", "granian")
APPS = {FLOOR: "bench.floor:app", CHATD: "app:app"}
MESSAGES = [{"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Summarise the plot of Hamlet in one sentence, please."}]


@dataclass(frozen=True)
class Route:
    """A row's way through chatd: the surface the client calls, the model it asks for (whose prefix picks
    the provider), and the mock's API the provider calls (APIs by the mock's names: openai, ollama…)."""

    surface: str
    model: str
    upstream: str
    about: str


ROUTES: dict[str, Route] = {
    "openai": Route(OPENAI, "mock/bench-model", OPENAI,
                    "Chat Completions → a custom `openai` provider: passthrough, the path every other route is "
                    "a ratio of"),
    "ollama": Route(OPENAI, "ollama/bench-model", OLLAMA,
                    "Chat Completions → `ollama_chat`: translated both ways, NDJSON → SSE"),
    "anthropic-ollama": Route(ANTHROPIC, "ollama/bench-model", OLLAMA,
                              "Anthropic Messages → `ollama_chat`: Anthropic → canonical → Ollama, and NDJSON "
                              "back to Anthropic's named events"),
    "anthropic-openai": Route(ANTHROPIC, "mock/bench-model", OPENAI,
                              "Anthropic Messages → `openai`: translated to Chat Completions, its SSE chunks back "
                              "to Anthropic's events"),
    "anthropic-passthrough": Route(ANTHROPIC, "mock-anthropic/bench-model", ANTHROPIC,
                                   "Anthropic Messages → an `anthropic` provider: the client's bytes up, the "
                                   "upstream's events back, read only for usage and errors"),
    "responses-ollama": Route(RESPONSES, "ollama/bench-model", OLLAMA,
                              "OpenAI Responses → `ollama_chat`: Responses → canonical → Ollama, and NDJSON back "
                              "to numbered Responses events"),
    "responses-openai": Route(RESPONSES, "mock/bench-model", OPENAI,
                              "OpenAI Responses → `openai` (no `responses`): translated to Chat Completions, its "
                              "chunks back to Responses events"),
    "responses-passthrough": Route(RESPONSES, "mock-responses/bench-model", RESPONSES,
                                   "OpenAI Responses → an `openai` provider with `responses = true`: passed "
                                   "through both ways"),
    "openai-anthropic": Route(OPENAI, "mock-anthropic/bench-model", ANTHROPIC,
                              "Chat Completions → an `anthropic` provider: the `anthropic` transform, "
                              "Anthropic's events back to Chat Completions chunks"),
    "ollama-api": Route(OLLAMA, "ollama/bench-model", OLLAMA,
                        "Ollama's API → `ollama_chat`: Ollama → canonical → Ollama, NDJSON both ways"),
    "native": Route(NATIVE, "mock/bench-model", OPENAI,
                    "chatd's native `POST /v1/chat` → `openai`: its `{\"delta\"}` events from the chunks"),
}
BASE_ROUTE = "openai"
"""Chat Completions passthrough: the row of the same server each route of SURFACE_ROUTES is divided by."""
SURFACE_ROUTES = tuple(name for name in ROUTES if name not in ("openai", "ollama"))
"""The routes each measured as a ratio of BASE_ROUTE: every surface and transform beyond the first two."""
SURFACE_PATHS = {OPENAI: "/v1/chat/chat/completions", ANTHROPIC: "/v1/chat/v1/messages",
                 OLLAMA: "/v1/chat/api/chat", NATIVE: "/v1/chat",
                 RESPONSES: "/v1/chat/responses"}
UPSTREAM_PATHS = {OPENAI: "/v1/chat/completions", OLLAMA: "/api/chat", ANTHROPIC: "/v1/messages",
                  RESPONSES: "/v1/responses"}
ENDS = {OPENAI: b"data: [DONE]", OLLAMA: b'"done":true', ANTHROPIC: b'"type":"message_stop"',
        RESPONSES: b'"type":"response.completed"', NATIVE: b'"latency_ms"'}
"""What the last line of a whole stream holds, by API."""
HEADERS: dict[str, dict[str, str]] = {OPENAI: {}, OLLAMA: {}, RESPONSES: {}, NATIVE: {},
                                      ANTHROPIC: {"anthropic-version": "2023-06-01"}}
"""The headers a client of each API sends besides Content-Type (Anthropic's SDKs and Claude Code send a version)."""


def upstream_of(route: str) -> str:
    """The mock's API a route ends at; a direct row's route is that API already."""
    return ROUTES[route].upstream if route in ROUTES else route


@dataclass(frozen=True)
class Settings:
    """How hard and how long; the measured windows are split into `rounds` taken in turn.

    Rows of one server are measured round-robin (floor, chatd, floor, chatd…)
    so that a machine whose speed drifts during the run (a shared VM) skews
    them alike, and their ratios stay honest.
    """

    ns_conns: int = 64
    stream_conns: int = 32
    seconds: float = 2.0  # per window; wrk counts whole seconds
    rounds: int = 5
    warm_seconds: float = 1.0
    latency_n: int = 1200
    ttft_n: int = 600
    chunks: int = 20


FULL = Settings()
QUICK = Settings(ns_conns=8, stream_conns=4, seconds=0.25, rounds=1, warm_seconds=0.1, latency_n=40, ttft_n=20)


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def server_argv(server: str, app: str, port: int) -> list[str]:
    """Each server's own CLI, one worker, quiet logs."""
    py = sys.executable
    if server == "hypercorn":
        return [py, "-m", "hypercorn", app, "--bind", f"127.0.0.1:{port}"]
    if server == "uvicorn":
        return [py, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
                "--no-access-log", "--log-level", "warning"]
    return [py, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--no-ws", "--no-access-log", "--log-level", "warning", app]


def loop_of(server: str) -> str:
    """The event loop and HTTP parser each server's CLI picks here."""
    uvloop = "uvloop" if installed("uvloop") else "asyncio"
    if server == "hypercorn":
        return "asyncio + h11"
    if server == "uvicorn":
        return uvloop + (" + httptools" if installed("httptools") else " + h11")
    return uvloop + " (Rust HTTP)"


def versions(servers: list[str]) -> str:
    found = []
    for name in ["chatd", "aiohttp", *servers]:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found) + "; " + ", ".join(f"{s}: {loop_of(s)}" for s in servers)


def body(model: str, stream: bool, api: str = OPENAI) -> bytes:
    """The same small chat (a system and a user message, 256 tokens at most, temperature 0.7) in `api`'s shape."""
    if api == OLLAMA:
        return orjson.dumps({"model": model, "messages": MESSAGES, "stream": stream,
                             "options": {"temperature": 0.7, "num_predict": 256}})
    if api == ANTHROPIC:
        return orjson.dumps({"model": model, "system": MESSAGES[0]["content"], "messages": MESSAGES[1:],
                             "max_tokens": 256, "temperature": 0.7, "stream": stream})
    if api == RESPONSES:
        return orjson.dumps({"model": model, "input": MESSAGES, "max_output_tokens": 256, "temperature": 0.7,
                             "stream": stream})
    if api == NATIVE:
        return orjson.dumps({"model": model, "messages": MESSAGES, "max_tokens": 256, "temperature": 0.7,
                             "stream": stream})
    return orjson.dumps({"model": model, "messages": MESSAGES, "stream": stream, "max_tokens": 256,
                         "temperature": 0.7})


@dataclass(frozen=True)
class Target:
    """Where a row sends its requests, with what headers, and how its streams end."""

    path: str
    plain: bytes
    stream: bytes
    end: bytes = ENDS[OPENAI]
    """What the last line of a whole stream holds."""
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every request besides Content-Type (Anthropic's version, a client key)."""


def target(app: str, route: str) -> Target:
    """A direct row calls the mock's API `route` names; the floor and chatd a route of ROUTES."""
    if app == DIRECT:
        api, path, model = route, UPSTREAM_PATHS[route], "bench-model"
    else:
        api, path, model = ROUTES[route].surface, SURFACE_PATHS[ROUTES[route].surface], ROUTES[route].model
    return Target(path, body(model, False, api), body(model, True, api), ENDS[api], HEADERS[api])


def chatd_config(mock_url: str, max_connections: int | None = None) -> str:
    """The mock behind every route: a custom openai-transform provider, local Ollama, and (appended)
    an `anthropic` provider and an `openai` one with `responses = true`, each by a prefix of its own."""
    pool = f"max_connections = {max_connections}\n" if max_connections else ""
    return (
        '[chatd]\n'
        f'ollama_url = "{mock_url}"\n'
        f'default_provider = "ollama"\n{pool}\n'
        '[chatd.providers.mock]\n'
        'transform = "openai"\n'
        f'base_url = "{mock_url}/v1"\n\n'
        '[[chatd.routes]]\n'
        'prefix = "mock/"\n'
        'provider = "mock"\n'
    ) + surface_providers(mock_url)


def surface_providers(mock_url: str) -> str:
    """The providers only Anthropic and Responses clients pass through to; no key, as the mock wants none."""
    return (
        '\n[chatd.providers.mock_anthropic]\n'
        'transform = "anthropic"\n'
        f'base_url = "{mock_url}"\n\n'
        '[chatd.providers.mock_responses]\n'
        'transform = "openai"\n'
        f'base_url = "{mock_url}/v1"\n'
        'responses = true\n\n'
        '[[chatd.routes]]\n'
        'prefix = "mock-anthropic/"\n'
        'provider = "mock_anthropic"\n\n'
        '[[chatd.routes]]\n'
        'prefix = "mock-responses/"\n'
        'provider = "mock_responses"\n'
    )
