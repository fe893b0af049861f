"""The canonical request: what every surface makes of its client's request, and the relay serves.

Every client API (a surface) becomes one OpenAI Chat Completions body, the lingua
franca every transform reads. A request also keeps the client's own bytes and the
name of its API, so that an upstream speaking that same API gets those bytes with
only `model` rewritten (same-kind passthrough) — and the translation to the
canonical body is made only if a provider of the chain needs it.

    request = ChatRequest("anthropic", raw, body, stream=True, translate=messages_request)
    request.canonical   # the OpenAI body, translated on first use (a BadRequest if it cannot be)
"""

from __future__ import annotations

from collections.abc import Callable

CHAT = "chat"
"""The canonical API itself: OpenAI Chat Completions."""


class ChatRequest:
    """One chat request as the relay sees it."""

    __slots__ = ("api", "raw", "body", "stream", "include_usage", "_translate", "_canonical")

    def __init__(
        self, api: str, raw: bytes, body: dict, *, stream: bool, include_usage: bool = False,
        canonical: dict | None = None, translate: Callable[[dict], dict] | None = None,
    ) -> None:
        """`body` is the client's, parsed; the canonical body is `canonical` when the surface made it
        already, else `translate(body)` made on first use, else `body` itself (Chat Completions)."""
        self.api = api
        self.raw = raw
        self.body = body
        self.stream = stream
        self.include_usage = include_usage
        """Whether the client asked for a usage chunk at the end of a Chat Completions stream."""
        self._translate = translate
        self._canonical = body if canonical is None and translate is None else canonical

    @property
    def canonical(self) -> dict:
        if self._canonical is None:
            self._canonical = self._translate(self.body)
        return self._canonical
