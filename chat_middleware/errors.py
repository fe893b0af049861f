"""Every failure chatd reports, each knowing its HTTP status and OpenAI error shape.

    ChatdError
    ├── ConfigError                 a lakehouse.toml that cannot be used (start-up only)
    └── RequestError                anything sent back to a client
        ├── BadRequest              400: the client's request is malformed
        ├── PayloadTooLarge         413: body over max_body_bytes
        ├── Unauthorized            401: client auth is on and the key is missing or wrong
        ├── ModelNotAllowed         403: the client's key does not allow the model it named
        ├── NotFound                404: path or model route chatd does not serve
        ├── ProviderNotRegistered   404: route names a provider that has no key
        ├── MethodNotAllowed        405
        ├── LimitReached            429: a client's or provider's rpm, tpm, max_in_flight, or a cooldown
        ├── StateUnavailable        503: shared state unreachable, on_error = "closed" (state.py)
        └── UpstreamError           502: the provider failed us
            ├── UpstreamRejected    400/413/422: the provider says the request is invalid
            ├── UpstreamForbidden   403: the provider refuses this request or client (not chatd's key)
            ├── UpstreamRateLimited 429: passed on with Retry-After
            │   └── UpstreamOverloaded 529: Anthropic's "overloaded", answered 529 so its clients retry
            ├── UpstreamAuth        502: the provider refused chatd's credentials
            ├── UpstreamTimeout     504: connect, first byte, idle or total deadline
            └── UpstreamStreamError 502: failure inside a stream the provider began

Every error answer says `x-should-retry` (the openai and anthropic SDKs obey it):
`true` only where the same request may succeed soon and a Retry-After says when;
`false` where chatd has already retried and fallen back, or the failure is deterministic.
"""

from __future__ import annotations

import orjson


class ChatdError(Exception):
    """Base of every chatd error."""


class ConfigError(ChatdError):
    """The configuration file cannot be used; the message names the file and the key."""


class RequestError(ChatdError):
    """An error that becomes an HTTP response in the OpenAI error shape."""

    status = 500
    type = "server_error"
    code: str | None = None
    kind = "request"
    """What telemetry, metrics and the access log call it; upstream failures name their own."""
    fixed_headers: tuple[tuple[bytes, bytes], ...] = ((b"x-should-retry", b"false"),)
    """Response headers every error of the class carries."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Extra response headers: the class's own, or per error (Retry-After for rate limits)."""
        return list(self.fixed_headers)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}

    def json(self) -> bytes:
        return orjson.dumps(self.body())


class BadRequest(RequestError):
    """The client's request is malformed."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class PayloadTooLarge(RequestError):
    """The request body is larger than max_body_bytes."""

    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"
    fixed_headers = (*RequestError.fixed_headers, (b"connection", b"close"))  # the rest is never read: no reuse


class Unauthorized(RequestError):
    """Client auth is on ([chatd] api_keys_env, [chatd.clients]) and no valid key came."""

    status = 401
    type = "authentication_error"
    code = "invalid_api_key"
    fixed_headers = (*RequestError.fixed_headers, (b"www-authenticate", b'Bearer realm="chatd"'))


class ModelNotAllowed(RequestError):
    """The client's key belongs to a [chatd.clients.NAME] whose `models` do not include the model named."""

    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class LimitReached(RequestError):
    """chatd's own limit has no room: a client's or provider's rpm, tpm or max_in_flight, or a provider
    cooling down. Never an unbounded queue: 429 with Retry-After, worth repeating then."""

    status = 429
    type = "rate_limited"

    def __init__(self, message: str, *, scope: str, code: str, retry_after: str) -> None:
        super().__init__(message, code=code)
        self.scope = scope
        """"client": holds for every provider; "provider": the next entry of a chain may serve."""
        self.kind = code
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-should-retry", b"true"), (b"retry-after", self.retry_after.encode())]


class NotFound(RequestError):
    """No such path under /v1/chat."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ProviderNotRegistered(NotFound):
    """The route names a configured provider that has no key, so it is not registered."""

    code = "provider_not_registered"


class MethodNotAllowed(RequestError):
    """The path exists but not for this method."""

    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class UpstreamError(RequestError):
    """The provider failed: 5xx, bad body, zero choices, refused connection, model unknown."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    kind = "upstream"
    retriable = False
    """Worth asking the same provider again: connection errors, 429, 502/503/504."""
    fallback = True
    """Worth asking the next entry of a fallback chain."""
    provider_fault = True
    """Counts toward the provider's cooldown: 5xx, timeouts, connection errors, in-band errors, 429 —
    never a request the provider refuses (400, 403, 404 model unknown, 413, 422) or chatd's key (401)."""


class UpstreamRejected(UpstreamError):
    """The provider says the request itself is invalid (its 400/422, message kept)."""

    status = 400
    type = "invalid_request_error"
    code = "upstream_rejected"
    kind = "rejected"
    fallback = False  # the request itself is wrong; another provider would say so too
    provider_fault = False


class UpstreamForbidden(UpstreamError):
    """The provider refuses this request or this client — moderation, a client it does not admit, a
    region block — not chatd's key. Its message is kept; another provider of a chain may serve it."""

    status = 403
    type = "permission_error"
    code = "upstream_forbidden"
    kind = "forbidden"
    provider_fault = False


class UpstreamRateLimited(UpstreamError):
    """The provider rate-limited us; its Retry-After is passed on."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limited"
    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    soon = False
    """Worth repeating soon even without a Retry-After: the provider says it is only overloaded."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        """A Retry-After is passed on, and only then (or when `soon`) is the request worth repeating."""
        retry = [(b"retry-after", self.retry_after.encode("latin-1", "replace"))] if self.retry_after else []
        return [(b"x-should-retry", b"true" if retry or self.soon else b"false"), *retry]


class UpstreamOverloaded(UpstreamRateLimited):
    """The provider is overloaded (Anthropic's 529): answered 529, which Anthropic's clients retry."""

    status = 529
    type = "overloaded_error"
    code = "upstream_overloaded"
    kind = "overloaded"
    soon = True


class UpstreamAuth(UpstreamError):
    """The provider refused chatd's credentials: an operator problem, never the client's."""

    code = "upstream_auth"
    kind = "auth"
    provider_fault = False  # every request fails alike until an operator fixes the key


class UpstreamTimeout(UpstreamError):
    """A connect, first-byte, idle or total deadline passed."""

    status = 504
    type = "timeout_error"
    code = "upstream_timeout"
    kind = "timeout"


class UpstreamStreamError(UpstreamError):
    """The provider reported or caused a failure after its stream began."""

    code = "upstream_stream_error"
    kind = "stream"


def upstream_error_message(raw: bytes, limit: int = 500) -> str:
    """The human message inside any provider's error body (Ollama, OpenAI, OpenRouter, Zen)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:limit].decode("utf-8", "replace").strip() or "no error message"
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        error = error.get("message") or error.get("type") or error
    if not isinstance(error, str):
        error = orjson.dumps(error).decode()
    return error[:limit]


def from_upstream_status(
    provider: str, status: int, raw: bytes, retry_after: str | None = None
) -> UpstreamError:
    """Map a provider's error status and body onto the error the client sees (DESIGN §4)."""
    message = upstream_error_message(raw)
    error: UpstreamError
    if status == 429:
        error = UpstreamRateLimited(f"{provider}: {message}", retry_after=retry_after)
    elif status == 529:
        error = UpstreamOverloaded(f"{provider}: {message}", retry_after=retry_after)
    elif status in (400, 413, 422):
        error = UpstreamRejected(f"{provider}: {message}", status=status)
    elif status == 401:
        error = UpstreamAuth(f"{provider} refused chatd's credentials (HTTP 401)")
    elif status == 403:
        error = UpstreamForbidden(f"{provider} refused the request: {message}")
    elif status == 408:
        error = UpstreamTimeout(f"{provider} timed out (HTTP 408)")
    else:
        error = UpstreamError(f"{provider} answered HTTP {status}: {message}")
        error.provider_fault = status != 404  # a model the provider does not have is not its fault
    error.retriable = status in (429, 502, 503, 504, 529)
    return error


def redact(error: RequestError, secrets: list[str]) -> RequestError:
    """Blank out any secret an upstream echoed into a message, before a client or log sees it."""
    for secret in secrets:
        if secret and secret in error.message:
            error.message = error.message.replace(secret, "[redacted]")
    return error
