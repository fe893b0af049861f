"""One client request, from arrival to its last byte: its id, where it went, what it cost.

The relay fills a `Call` in as the request goes; when it ends, `finished()`
writes the access-log line (JSON, on the `chatd.access` logger) and the
request's metrics. Keys never appear: the line holds names, numbers and the
request id, and the request body only when `[chatd] log_bodies` is on.

    {"request_id": "…", "method": "POST", "path": "/v1/chat/chat/completions", "client": "team-a",
     "model": "smart", "tier": "smart", "provider": "openrouter", "upstream_model": "moonshotai/kimi-k2",
     "stream": true, "status": 200, "attempts": 2, "ttft_ms": 412.5, "latency_ms": 2210.8, "tokens_in": 31,
     "tokens_out": 240}
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import os
import re
from time import perf_counter
from typing import BinaryIO

import orjson

from .metrics import NO_CLIENT, NO_PROVIDER, for_provider
from .types import Headers

ACCESS_LOG = logging.getLogger("chatd.access")
log = logging.getLogger("chatd")
REQUEST_ID = b"x-request-id"
CLIENT_LEFT = 499
_VALID_ID = re.compile(rb"[\x21-\x7e]{1,128}")


class _Ids:
    """New request ids: 16 random hex digits for the process, then a 16-digit counter.

    Unique without a system call per request; a forked child draws its own prefix.
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()

    def new(self) -> bytes:
        return f"{self.prefix}{next(self.counter):016x}".encode()


_IDS = _Ids()


def request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The client's `x-request-id` when it is sane (visible ASCII, at most 128 bytes), else a new one."""
    for name, value in headers:
        if name == REQUEST_ID:
            if _VALID_ID.fullmatch(value):
                return value
            break
    return _IDS.new()


class Call:
    """What the access log and the metrics say of one request; filled in along the way."""

    __slots__ = ("request_id", "method", "path", "headers", "started_at", "client", "model", "tier", "provider",
                 "upstream_model", "stream", "status", "attempts", "first_byte_s", "tokens_in", "tokens_out",
                 "error", "body", "forwarded")

    def __init__(self, request_id: bytes, method: str, path: str, headers: Headers = ()) -> None:
        self.request_id = request_id
        self.method = method
        self.path = path
        self.headers = headers
        """The client's request headers, as the server gave them (forward_headers picks from them)."""
        self.started_at = perf_counter()
        self.client: str | None = None
        """The [chatd.clients] name the request's key belongs to; None for an anonymous key, or none."""
        self.model: object = None
        self.tier: str | None = None
        self.provider: str | None = None
        self.upstream_model: str | None = None
        self.stream = False
        self.status = 0
        self.attempts = 0
        self.first_byte_s: float | None = None
        self.tokens_in = 0
        self.tokens_out = 0
        self.error: str | None = None
        self.body: dict | None = None
        self.forwarded: list[str] | None = None

    def first_byte(self) -> None:
        """The answer began: for a stream, its first content reached the client."""
        if self.first_byte_s is None:
            self.first_byte_s = perf_counter() - self.started_at

    def finished(self, logged: bool = True) -> None:
        """Count the request, and log it unless `logged` is False (health checks and scrapes)."""
        seconds = perf_counter() - self.started_at
        first_token = self.first_byte_s if self.stream else None
        metrics = for_provider(self.provider or NO_PROVIDER)
        metrics.answered(self.status, seconds, first_token, self.tokens_in, self.tokens_out,
                         self.client or NO_CLIENT)
        if logged and ACCESS_LOG.isEnabledFor(logging.INFO):
            LINES.write(self.entry(seconds))

    def entry(self, seconds: float) -> dict:
        entry = {
            "request_id": self.request_id.decode("ascii"),
            "method": self.method,
            "path": self.path,
            "client": self.client,
            "model": self.model if isinstance(self.model, str) else None,
            "tier": self.tier,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "stream": self.stream,
            "status": self.status,
            "attempts": self.attempts,
            "ttft_ms": None if self.first_byte_s is None else round(1000 * self.first_byte_s, 3),
            "latency_ms": round(1000 * seconds, 3),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
        }
        if self.error is not None:
            entry["error"] = self.error
        if self.forwarded:
            entry["forwarded"] = self.forwarded
        if self.body is not None:
            entry["body"] = self.body
        return entry


class AccessLines:
    """Where access-log lines go.

    Mounted in a host gateway, each is a record on the `chatd.access` logger and
    the host decides where it ends up. Standalone chatd owns its stdout
    (`to_stream`): lines are written there straight, and the lines of every
    request that ends in the same event-loop turn share one write — a logging
    record, a handler lock and a flush per request would cost more than
    chatd's routing.
    """

    def __init__(self) -> None:
        self._stream: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._failing = False

    def to_stream(self, stream: BinaryIO) -> None:
        if self._stream is None:  # the chatd CLI and a worker's app factory may both ask
            atexit.register(self.flush)
        self._stream = stream

    def write(self, entry: dict) -> None:
        if self._stream is None:
            ACCESS_LOG.info("%s", orjson.dumps(entry).decode())
            return
        if not self._pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no event loop: nothing would flush later
                self._pending.append(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
                self.flush()
                return
        self._pending.append(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))

    def flush(self) -> None:
        """Write the pending lines. A stdout that fails (a closed pipe) loses them, said once on stderr."""
        lines, self._pending = self._pending, []
        if not lines or self._stream is None:
            return
        try:
            self._stream.write(b"".join(lines))
            self._stream.flush()
        except (OSError, ValueError) as exc:
            if not self._failing:
                self._failing = True
                log.error("access-log lines are being lost: cannot write them (%s)", exc)
        else:
            self._failing = False


LINES = AccessLines()
