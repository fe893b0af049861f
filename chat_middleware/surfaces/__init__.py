"""Surfaces: the client APIs chatd speaks, each a small module trio under /v1/chat.

- `<api>_request`: parse the client's request into the canonical body (pure functions)
- `<api>_render`: render canonical answers, chunks and errors into the client's bytes
- `<api>`: its endpoints, which read, route and hand the request to the relay

    native      POST /v1/chat                                   chatd's own shape
    chat        POST /chat/completions, /completions; GET /models   OpenAI Chat Completions
    responses   POST /responses                                 OpenAI Responses
    anthropic   POST /v1/messages, /v1/messages/count_tokens; GET /v1/models   Anthropic Messages
    ollama      /api/chat, /api/generate, /api/tags, /api/show…  Ollama's API

An error answered before the relay starts takes the shape of the surface its
path belongs to.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from ..access import Call
from ..errors import RequestError
from ..runtime import Runtime
from ..types import Receive, Scope, Send
from . import anthropic, chat, native, ollama, responses
from .anthropic_render import error_object as anthropic_error_body
from .ollama_render import error_body as ollama_error_body

Handler = Callable[[Runtime, Call, Scope, Receive, Send], Awaitable[None]]

ROUTES: dict[tuple[str, str], Handler] = {
    **native.ROUTES, **chat.ROUTES, **responses.ROUTES, **anthropic.ROUTES, **ollama.ROUTES}
"""(method, path under /v1/chat) → the endpoint serving it."""
PREFIXED: tuple[tuple[str, str, Handler], ...] = responses.PREFIXED
"""(method, path prefix, endpoint) for paths with an id in them."""

_ERROR_SHAPES: tuple[tuple[str, Callable[[RequestError], bytes]], ...] = (
    ("/api/", ollama_error_body), ("/v1/", anthropic_error_body))


def error_body(path: str, error: RequestError) -> bytes | None:
    """The error body a client of `path` (under /v1/chat) reads; None: OpenAI's shape."""
    for prefix, render in _ERROR_SHAPES:
        if path.startswith(prefix):
            return render(error)
    return None
