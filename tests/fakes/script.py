"""What a fake upstream says and remembers, shared by FakeOllama, FakeOpenAI and FakeAnthropic.

A test scripts one model with a `Reply`; each fake turns it into its own
protocol's bytes. `FakeUpstream` holds what both fakes share, so delays,
in-band failures, dropped connections, the request log and the open-stream
count behave the same whichever protocol is under test.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple

import orjson
from aiohttp import web

from .server import BackgroundServer


@dataclass(frozen=True)
class Reply:
    """How a fake answers one model (`fake.replies["m"] = Reply(...)`).

    `fail_after`/`drop_after` count generated-output chunks (thinking,
    content and tool-call pieces); framing such as OpenAI's role chunk or
    OpenRouter's comment lines is not counted. When the output runs out first,
    the failure happens where the final chunk would have been.
    `done_reason`, when set, overrides `finish_reason` (they are one setting:
    Ollama calls it done_reason, OpenAI finish_reason); "" omits it.
    `error_type` names the error class where the protocol has one (Anthropic's
    `error.type`, e.g. "api_error" for an in-band failure); "" keeps the fake's default.
    `fail_event` picks the in-band failure where a protocol has two
    (Responses: "" sends `response.failed`, "error" the bare `error` event).
    """

    text: str = "Hello! How can I help you today?"
    status: int = 0
    error: str = ""
    error_type: str = ""
    retry_after: float | str | None = None
    delay_headers: float = 0.0
    delay_chunks: float = 0.0
    hang: bool = False
    fail_after: int | None = None
    drop_after: int | None = None
    tool_calls: Sequence[Mapping[str, Any]] = ()
    thinking: str = ""
    finish_reason: str = "stop"
    done_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    zero_choices: bool = False
    cost: str = "0.00042"
    fail_event: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        if self.status and not 400 <= self.status <= 599:
            raise ValueError(f"Reply.status must be 0 or an HTTP error status, got {self.status}")
        if self.fail_event not in ("", "error"):
            raise ValueError(f'Reply.fail_event must be "" or "error", got {self.fail_event!r}')
        for call in self.tool_calls:
            if not isinstance(call.get("name"), str) or not isinstance(call.get("arguments", {}), Mapping):
                raise ValueError(f"a tool call needs a name and an arguments dict: {call!r}")

    @property
    def reason(self) -> str:
        """The effective done_reason / finish_reason."""
        return self.finish_reason if self.done_reason is None else self.done_reason

    def error_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it; header names are lowercased."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    json: Any


class Frame(NamedTuple):
    """One piece of a streamed body. `kind` is META, OUTPUT or FINAL."""

    data: bytes
    kind: str


META, OUTPUT, FINAL = "meta", "output", "final"
_WORDS = re.compile(r"\s*\S+|\s+$")


def split_words(text: str) -> list[str]:
    """Split like a tokenizer streams: word by word, leading space kept; joins back to `text`."""
    return _WORDS.findall(text)


def count_words(text: str) -> int:
    return len(text.split())


def pick(scripted: int | None, derived: int) -> int:
    """A scripted token count wins over the one derived from word counts."""
    return derived if scripted is None else scripted


def json_document(text: str, schema: Any = None) -> str:
    """What a model constrained by a JSON format would return: `{"answer": text}` or the schema's properties."""
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(props, Mapping) or not props:
        return orjson.dumps({"answer": text}).decode()
    samples = {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}, "null": None}
    doc = {name: samples.get(spec.get("type") if isinstance(spec, Mapping) else None, text)
           for name, spec in props.items()}
    return orjson.dumps(doc).decode()


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers=headers)


class FakeUpstream:
    """Reply table, request log, stream counting and life cycle shared by the fakes."""

    def __init__(self, models: Iterable[str], *, api_key: str | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.models = list(models)
        self.api_key = api_key
        self.replies: dict[str, Reply] = {}
        self.default_reply = Reply()
        self.requests: list[Recorded] = []
        self.open_streams = 0
        self.open_requests = 0
        self._cond = threading.Condition()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.app = web.Application(middlewares=[self._record], client_max_size=64 * 1024 * 1024)
        self.app.on_shutdown.append(self._cancel_handlers)
        self.add_routes(self.app.router)
        self.server = BackgroundServer(self.app, host=host, port=port)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    # life cycle -----------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> FakeUpstream:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # scripting ------------------------------------------------------------

    def canonical(self, model: str) -> str:
        """The name two spellings of one model share (Ollama adds `:latest`)."""
        return model

    def reply_for(self, model: str) -> Reply | None:
        """The scripted reply for `model`, the default for a known model, else None (unknown).

        A list of replies answers successive requests in turn, its last one for good.
        """
        if model in self.replies:
            return self._next(self.replies[model])
        name = self.canonical(model)
        for key, reply in self.replies.items():
            if self.canonical(key) == name:
                return self._next(reply)
        if any(self.canonical(m) == name for m in self.models):
            return self.default_reply
        return None

    @staticmethod
    def _next(reply: Reply | list[Reply]) -> Reply:
        if isinstance(reply, list):
            return reply.pop(0) if len(reply) > 1 else reply[0]
        return reply

    def authorized(self, request: web.BaseRequest) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}"

    # observation ----------------------------------------------------------

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until `predicate()` holds (re-checked whenever the fake's state changes)."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_open_streams(self, n: int, timeout: float = 5.0) -> bool:
        """True once exactly `n` streamed responses are being written."""
        return self.wait_for(lambda: self.open_streams == n, timeout)

    def wait_open_requests(self, n: int, timeout: float = 5.0) -> bool:
        """True once exactly `n` handlers run (counts hung and delayed requests too)."""
        return self.wait_for(lambda: self.open_requests == n, timeout)

    def wait_requests(self, n: int, timeout: float = 5.0) -> bool:
        """True once at least `n` requests have been recorded."""
        return self.wait_for(lambda: len(self.requests) >= n, timeout)

    def _bump(self, counter: str, delta: int) -> None:
        with self._cond:
            setattr(self, counter, getattr(self, counter) + delta)
            self._cond.notify_all()

    @web.middleware
    async def _record(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        record = Recorded(request.method, request.path, dict(request.query),
                          {k.lower(): v for k, v in request.headers.items()}, body, parsed)
        with self._cond:
            self.requests.append(record)
        self._bump("open_requests", 1)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            return await handler(request)
        finally:
            self._tasks.discard(task)
            self._bump("open_requests", -1)

    async def _cancel_handlers(self, app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()

    # behaviour ------------------------------------------------------------

    async def before_headers(self, request: web.Request, reply: Reply) -> None:
        """Apply `delay_headers` and `hang` (a hung handler ends when its client leaves)."""
        if reply.delay_headers:
            await asyncio.sleep(reply.delay_headers)
        if reply.hang:
            await asyncio.get_running_loop().create_future()

    @staticmethod
    async def generate_whole(reply: Reply, pieces: int) -> None:
        """The time a non-streamed answer of `pieces` output chunks takes before anything is sent:
        real servers (Ollama's `writeChatResponse`, OpenAI-compatible ones, Anthropic's) write the
        head only once the whole answer exists, so a client sees nothing — not even the status
        line — for load plus generation: as long as the same answer would take to stream."""
        if reply.delay_chunks and pieces > 1:
            await asyncio.sleep(reply.delay_chunks * (pieces - 1))

    @staticmethod
    def drop(request: web.BaseRequest) -> web.Response:
        """Close the TCP connection abruptly; the returned response is never written."""
        if request.transport is not None:
            request.transport.close()
        return web.Response()

    @contextmanager
    def streaming(self) -> Iterator[None]:
        self._bump("open_streams", 1)
        try:
            yield
        finally:
            self._bump("open_streams", -1)

    async def send_stream(self, request: web.Request, resp: web.StreamResponse, frames: Iterable[Frame],
                          reply: Reply, error: bytes | Callable[[int], bytes]) -> web.StreamResponse:
        """Write `frames`, honouring delay_chunks, fail_after (writes `error`) and drop_after.

        `error` may be a function of how many frames were written before it,
        for protocols whose events are numbered (Responses' sequence_number).
        """
        with self.streaming():
            try:
                await resp.prepare(request)
                outputs, written, wrote_any, ended = 0, 0, False, False
                for frame in frames:
                    if frame.kind == META:
                        await resp.write(frame.data)
                        written += 1
                        continue
                    if frame.kind == OUTPUT or not ended:
                        if _due(reply.fail_after, outputs, frame):
                            await resp.write(error(written) if callable(error) else error)
                            return resp
                        if _due(reply.drop_after, outputs, frame):
                            self.drop(request)
                            return resp
                        if wrote_any and reply.delay_chunks:
                            await asyncio.sleep(reply.delay_chunks)
                    if frame.kind == OUTPUT:
                        outputs += 1
                    else:
                        ended = True
                    await resp.write(frame.data)
                    written += 1
                    wrote_any = True
                return resp
            except ConnectionResetError:  # the client left while we were writing
                return resp


def _due(limit: int | None, outputs: int, frame: Frame) -> bool:
    """A scripted failure is due after `limit` outputs, or at the end if the output ran out first."""
    return limit is not None and (frame.kind != OUTPUT or outputs >= limit)
