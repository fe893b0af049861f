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
ROUTES = ("openai", "ollama")
APPS = {FLOOR: "bench.floor:app", CHATD: "app:app"}
MESSAGES = [{"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Summarise the plot of Hamlet in one sentence, please."}]


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
QUICK = Settings(ns_conns=8, stream_conns=4, seconds=0.5, rounds=1, warm_seconds=0.1, latency_n=40, ttft_n=20)


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


def body(model: str, stream: bool, ollama_shape: bool = False) -> bytes:
    """A chat request: OpenAI-shaped to chatd and the floor, Ollama-shaped to the mock's /api/chat."""
    if ollama_shape:
        return orjson.dumps({"model": model, "messages": MESSAGES, "stream": stream,
                             "options": {"temperature": 0.7, "num_predict": 256}})
    return orjson.dumps({"model": model, "messages": MESSAGES, "stream": stream, "max_tokens": 256,
                         "temperature": 0.7})


@dataclass(frozen=True)
class Target:
    """Where a row sends its requests."""

    path: str
    plain: bytes
    stream: bytes
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every request besides Content-Type (a client key)."""


def target(app: str, route: str) -> Target:
    if app == DIRECT and route == "ollama":
        return Target("/api/chat", body("bench-model", False, True), body("bench-model", True, True))
    if app == DIRECT:
        return Target("/v1/chat/completions", body("bench-model", False), body("bench-model", True))
    model = "ollama/bench-model" if route == "ollama" else "mock/bench-model"
    return Target("/v1/chat/chat/completions", body(model, False), body(model, True))


def chatd_config(mock_url: str, max_connections: int | None = None) -> str:
    """The mock behind both routes: a custom openai-transform provider and local Ollama."""
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
    )
