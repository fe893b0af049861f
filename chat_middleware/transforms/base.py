"""What a transform and a same-kind passage are (transforms/__init__.py says what each part does)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Protocol

if TYPE_CHECKING:
    from ..canonical import ChatRequest
    from ..settings import ProviderConfig
    from ..streams import StreamDecoder


class Passage(Protocol):
    api: str
    """The surface whose clients this upstream serves as they are."""
    path: str
    """Appended to the provider's base_url, e.g. "/v1/messages"."""
    forward: tuple[str, ...]
    """Client headers that belong to the API and go upstream with the bytes (anthropic-version)."""

    def build(self, request: ChatRequest, model: str) -> bytes: ...

    def usage(self, raw: bytes) -> tuple[int, int]:
        """Prompt and completion tokens of a non-streamed answer; raises for an in-band error."""
        ...

    def decoder(self, include_usage: bool) -> StreamDecoder: ...


class Transform(Protocol):
    name: str
    path: str
    """Appended to the provider's base_url, e.g. "/chat/completions"."""

    def headers(self, api_key: str | None) -> dict[str, str]: ...

    def build(self, body: dict, model: str, provider: ProviderConfig, stream: bool) -> bytes: ...

    def completion(self, raw: bytes) -> dict: ...

    def decoder(self, include_usage: bool) -> StreamDecoder: ...

    def passages(self, provider: ProviderConfig) -> Mapping[str, Passage]: ...
