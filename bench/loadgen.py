"""Load generation: latency and time-to-first-token at c=1, throughput at c=N.

Latency is measured by a small aiohttp client over one keep-alive connection,
one request at a time, so it sees the server's cost per request and nothing
else. Throughput is measured by wrk (C, one thread on the load core, POST
bodies from bench/post.lua) because a Python client saturates its own core
below what the servers can do; without wrk an asyncio loop stands in, and
every figure it makes carries its name.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import aiohttp

LUA = Path(__file__).with_name("post.lua")
JSON_HEADERS = {"Content-Type": "application/json"}


class LoadError(RuntimeError):
    """A request under measurement did not get the answer it should have."""


@dataclass
class Latency:
    """Per-request times, in seconds."""

    total: list[float] = field(default_factory=list)
    first_byte: list[float] = field(default_factory=list)

    @staticmethod
    def percentile(samples: list[float], q: float) -> float:
        """Nearest-rank percentile; 0 for no samples."""
        if not samples:
            return 0.0
        ordered = sorted(samples)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Throughput:
    """Completed requests over a measured window, and who generated the load."""

    requests: int
    seconds: float
    errors: int
    tool: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ends_with(body: bytes, end: bytes) -> bool:
    """Whether the last line of `body` holds `end`: `data: [DONE]`, a `done` line, message_stop's or
    response.completed's data (post.lua checks the same in wrk)."""
    last = body.rstrip()
    return last.find(end, last.rfind(b"\n") + 1) >= 0


def checked(status: int, body: bytes, end: bytes | None) -> None:
    """A measured answer must be a 200, and a stream (`end` given) must end with its terminal event."""
    if status != 200:
        raise LoadError(f"HTTP {status}: {body[:300]!r}")
    if end is not None and not ends_with(body, end):
        raise LoadError(f"stream ended without {end.decode()!r}: …{body[-200:]!r}")


def client(connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))


def request_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """JSON_HEADERS and a row's own (a client key's Authorization)."""
    return {**JSON_HEADERS, **headers} if headers else JSON_HEADERS


async def latencies(url: str, body: bytes, count: int, end: bytes | None, seconds: float = 30.0,
                    headers: dict[str, str] | None = None) -> Latency:
    """`count` requests one after another (bounded by `seconds`); every answer is checked, and a stream's
    last line must hold `end` (None: not a stream)."""
    result = Latency()
    deadline = time.monotonic() + seconds
    sent = request_headers(headers)
    async with client(1) as session:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            async with session.post(url, data=body, headers=sent) as response:
                first = await response.content.readany()
                result.first_byte.append(time.perf_counter() - started)
                rest = await response.read()
                result.total.append(time.perf_counter() - started)
            checked(response.status, first + rest, end)
    return result


async def wait_ready(url: str, body: bytes, started_at: float, timeout: float = 20.0,
                     alive: Callable[[], bool] = lambda: True, headers: dict[str, str] | None = None) -> float:
    """Seconds from `started_at` (a perf_counter) to the first 200 answer to `body`."""
    deadline = time.monotonic() + timeout
    async with client(1) as session:
        while True:
            try:
                async with session.post(url, data=body, headers=request_headers(headers)) as response:
                    data = await response.read()
                    if response.status == 200:
                        return time.perf_counter() - started_at
                    error: str = f"HTTP {response.status}: {data[:300]!r}"
            except aiohttp.ClientError as exc:
                error = repr(exc)
            if not alive():
                raise LoadError(f"{url}: the server exited ({error})")
            if time.monotonic() > deadline:
                raise LoadError(f"{url}: no answer within {timeout:g}s ({error})")
            await asyncio.sleep(0.005)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


async def wrk(url: str, body_file: Path, connections: int, seconds: float, prefix: list[str],
              headers: dict[str, str] | None = None, end: bytes | None = None) -> Throughput:
    """wrk -t1 -cN -dS with post.lua; its own counts of requests and errors, and with `end` the streams
    whose last line lacked it."""
    argv = [*prefix, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
            "-s", str(LUA), url]
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_END": (end or b"").decode(),
           "BENCH_HEADERS": "\n".join(f"{name}: {value}" for name, value in (headers or {}).items())}
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out = (await asyncio.wait_for(process.communicate(), seconds + 30))[0].decode()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if process.returncode != 0 or done is None:
        raise LoadError(f"wrk failed: {out.strip()[-500:]}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[done.group(3)]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    bad_ends = re.search(r"bad endings: (\d+)", out)
    errors += int(bad_ends.group(1)) if bad_ends else 0
    return Throughput(int(done.group(1)), float(done.group(2)) * scale, errors, "wrk")


async def asyncio_load(url: str, body: bytes, connections: int, seconds: float,
                       headers: dict[str, str] | None = None, end: bytes | None = None) -> Throughput:
    """The fallback without wrk: `connections` workers posting back to back for `seconds`; with `end`,
    a stream whose last line lacks it is an error."""
    completed = errors = 0
    sent = request_headers(headers)

    async def worker(session: aiohttp.ClientSession, deadline: float) -> None:
        nonlocal completed, errors
        while time.monotonic() < deadline:
            try:
                async with session.post(url, data=body, headers=sent) as response:
                    data = await response.read()
                    if response.status == 200 and (end is None or ends_with(data, end)):
                        completed += 1
                    else:
                        errors += 1
            except (aiohttp.ClientError, asyncio.TimeoutError):
                errors += 1

    async with client(connections) as session:
        started = time.monotonic()
        await asyncio.gather(*(worker(session, started + seconds) for _ in range(connections)))
        elapsed = time.monotonic() - started
    return Throughput(completed, elapsed, errors, "asyncio")


async def throughput(url: str, body: bytes, body_file: Path, connections: int, seconds: float,
                     use_wrk: bool, prefix: list[str], headers: dict[str, str] | None = None,
                     end: bytes | None = None) -> Throughput:
    if use_wrk:
        return await wrk(url, body_file, connections, seconds, prefix, headers, end)
    return await asyncio_load(url, body, connections, seconds, headers, end)
