"""Stream framing: SSE and NDJSON splitting, and the chunk that flows to clients.

Upstream bytes arrive in arbitrary TCP-sized pieces; the splitters hand out whole
events or lines as soon as they are complete, holding back only the unfinished tail.

Byte searches on this path use `find`: `needle in data` first tries the needle
as an integer and builds (and drops) a TypeError on every call.
"""

from __future__ import annotations

from itertools import chain
from typing import Iterator, Protocol

import orjson

SSE_DONE = b"data: [DONE]\n\n"


class Chunk:
    """One OpenAI `chat.completion.chunk`, held as the bytes or the object it came as.

    Passthrough chunks keep their upstream bytes (and, when the upstream framed
    them as chatd would, that whole SSE event) and are parsed only when asked
    for `data`; translated chunks start as objects or bytes and are framed once.
    """

    __slots__ = ("_payload", "_data", "_sse")

    def __init__(self, payload: bytes | None = None, data: dict | None = None, sse: bytes | None = None) -> None:
        """Give `payload` or `data`; `sse` may come with either, or alone when it is one `data: ` line."""
        self._payload = payload
        self._data = data
        self._sse = sse

    @property
    def data(self) -> dict:
        if self._data is None:
            self._data = orjson.loads(self.payload)
        return self._data

    @property
    def payload(self) -> bytes:
        if self._payload is None:
            self._payload = orjson.dumps(self._data) if self._sse is None else self._sse[6:-2]
        return self._payload

    @property
    def sse(self) -> bytes:
        """The chunk as one SSE event."""
        if self._sse is None:
            payload = self.payload
            if payload.find(b"\n") >= 0:  # an upstream event of several data lines stays several
                payload = payload.replace(b"\n", b"\ndata: ")
            self._sse = b"data: " + payload + b"\n\n"
        return self._sse


class Chunks:
    """The chunks decoded from one upstream read, in order.

    Events the upstream framed exactly as chatd frames them come as `payloads`
    with their bytes as `sse`: an OpenAI client is sent those bytes as they
    came, and their Chunk objects are made only if something reads them.
    """

    __slots__ = ("_payloads", "_chunks", "_sse")

    def __init__(self, chunks: list[Chunk] | None = None, sse: bytes | None = None,
                 payloads: list[bytes] | None = None) -> None:
        """`payloads` come before `chunks`; `sse`, when given, is all of them as SSE."""
        self._payloads = payloads
        self._chunks = [] if chunks is None else chunks
        self._sse = sse

    def __len__(self) -> int:
        return len(self._chunks) + (len(self._payloads) if self._payloads else 0)

    def __iter__(self) -> Iterator[Chunk]:
        """Each chunk, made from its payload as it is reached: a reader that stops early makes few."""
        if self._payloads:
            return chain(map(Chunk, self._payloads), self._chunks)
        return iter(self._chunks)

    @property
    def sse(self) -> bytes:
        """All of them as SSE events."""
        if self._sse is None:
            chunks = [*self] if self._payloads else self._chunks
            self._sse = chunks[0].sse if len(chunks) == 1 else b"".join([chunk.sse for chunk in chunks])
        return self._sse


class StreamDecoder(Protocol):
    """Turns an upstream body, piece by piece, into OpenAI chunks.

    An in-band error stops decoding and is kept in `failure`, so the chunks
    decoded before it in the same read still reach the client first; `close`
    raises UpstreamStreamError when the upstream ended without its terminal
    marker (a silent truncation). A decoder for same-kind passthrough hands
    out the upstream's own events as `Chunks(sse=…, payloads=…)`.
    """

    done: bool
    failure: Exception | None
    prompt_tokens: int
    completion_tokens: int
    started: bool
    """The upstream's answer has begun (text, reasoning, a tool call, or its end): the relay holds
    the response head until then, so a failure before it can still be retried or fall back."""

    def feed(self, data: bytes) -> Chunks: ...

    def close(self) -> Chunks: ...


class LineSplitter:
    """Splits a byte stream into lines (NDJSON), skipping blank ones."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Whole lines, each with or without its newline (JSON parsers ignore it)."""
        if not self._tail and data.find(b"\n") == len(data) - 1:  # one line: most reads
            return [] if data.isspace() else [data]
        if self._tail:
            data = self._tail + data
        *lines, self._tail = data.split(b"\n")
        return [line for line in lines if line.strip()]

    def close(self) -> list[bytes]:
        tail, self._tail = self._tail, b""
        return [tail] if tail.strip() else []


class SSESplitter:
    """Splits an SSE byte stream into the payloads of its `data:` fields.

    Comment lines (`: OPENROUTER PROCESSING`) and other fields are dropped; a
    multi-line event's data lines are joined with newlines, as the SSE spec says.
    """

    __slots__ = ("_tail", "_data")

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []

    def canonical(self, data: bytes) -> tuple[list[bytes], bytes] | None:
        """The payloads of the whole events `data` completes, and those events' bytes, when
        they are framed exactly as chatd frames them (`data: {…}\\n\\n`, once or more).

        That is what almost every read of a token stream holds, so the caller
        can forward the bytes as they came. An unfinished last event is kept
        for the next read. None, with nothing consumed, when the general path
        (`feed`) is needed: another field, a comment, CR line ends, a multi-line event.
        """
        if self._data:
            return None
        buffer = self._tail + data if self._tail else data
        end = buffer.rfind(b"\n\n") + 2
        if end < 2 or not buffer.startswith(b"data: "):
            return None
        whole = end == len(buffer)  # most reads end on an event's end
        events = buffer if whole else buffer[:end]
        if events.find(b"\r") >= 0:
            return None
        payloads = events[6:-2].split(b"\n\ndata: ")
        if b"".join(payloads).find(b"\n") >= 0:  # a multi-line event, or a comment or field between events
            return None
        self._tail = b"" if whole else buffer[end:]
        return payloads, events

    def feed(self, data: bytes) -> list[bytes]:
        if self._tail:
            data = self._tail + data
        *lines, self._tail = data.split(b"\n")
        payloads = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    payloads.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value[:1] == b" " else value)
        return payloads

    def close(self) -> list[bytes]:
        """Payloads of an event the upstream left unterminated at EOF."""
        return self.feed(b"\n\n") if self._tail or self._data else []
