"""How one provider serves the requests of one client API: passed through, or translated.

When the provider's transform speaks the client's own API (a Passage), the
client's bytes go upstream with only `model` rewritten and the answer's bytes
come back untouched; otherwise the canonical body is translated by the transform
and the answer translated back by the surface's renderer. The relay asks a Leg
and need not know which.
"""

from __future__ import annotations

from .canonical import ChatRequest
from .settings import ProviderConfig
from .shapes import count
from .streams import StreamDecoder
from .transforms import TRANSFORMS, Passage


class Leg:
    """One (provider, client API) pair, made once per config and reused by every request."""

    __slots__ = ("provider", "transform", "passage", "path", "passthrough", "forwarded")

    def __init__(self, provider: ProviderConfig, api: str) -> None:
        self.provider = provider
        self.transform = TRANSFORMS[provider.transform]
        self.passage: Passage | None = self.transform.passages(provider).get(api)
        self.passthrough = self.passage is not None
        """The upstream's bytes are the client's own API: the renderer forwards them."""
        self.path = self.passage.path if self.passage else self.transform.path
        own = self.passage.forward if self.passage else ()
        self.forwarded = frozenset(name.encode() for name in (*provider.forward_headers, *own))
        """Client headers sent upstream unchanged: the provider's forward_headers, and on passthrough
        the API's own (anthropic-version, anthropic-beta)."""

    def build(self, request: ChatRequest, model: str) -> bytes:
        if self.passage is not None:
            return self.passage.build(request, model)
        return self.transform.build(request.canonical, model, self.provider, request.stream)

    def decoder(self, include_usage: bool) -> StreamDecoder:
        return (self.passage or self.transform).decoder(include_usage)

    def answer(self, raw: bytes) -> tuple[dict, int, int]:
        """A non-streamed answer: the canonical completion (empty on passthrough, where the renderer
        forwards `raw`) and its prompt and completion tokens; raises for an in-band error."""
        if self.passage is not None:
            return {}, *self.passage.usage(raw)
        completion = self.transform.completion(raw)
        usage = completion.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return completion, count(usage.get("prompt_tokens")), count(usage.get("completion_tokens"))
