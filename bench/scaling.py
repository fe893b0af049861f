"""Open streams through chatd at 1, 100 and 1,000 at once: memory per stream, and no collapse.

    python -m bench.scaling [--quick] [--server hypercorn] [--delay-ms 200]

The mock upstream spaces its frames (20 content chunks, 200 ms apart: a 4.4 s
stream, as a model generating tokens would) so that streams stay open; chatd
relays them (pinned to core 0); N clients each run stream after stream for a
bounded window. A level is healthy when the upstream really holds N streams
open, the SSE events delivered per second grow with N (efficiency: measured
over N times the 1-stream rate), server CPU per event does not grow (cost
follows work, not concurrency) and time-to-first-token stays low. Memory per
open stream is the server's resident memory at the level's peak, less its
resident memory before the first level, divided by N.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import resource
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from . import proc
from .loadgen import JSON_HEADERS, Latency, LoadError, wait_ready
from .proc import LOAD_CORE, SERVER_CORE, CoreLoad, Process
from .targets import ROOT, body, chatd_config, installed, publish_as, server_argv


BACKLOG = 2048


@dataclasses.dataclass(frozen=True)
class Plan:
    levels: tuple[int, ...] = (1, 100, 1000)
    chunks: int = 20
    delay_ms: float = 200.0
    window_s: float = 10.0


FULL = Plan()
QUICK = Plan(levels=(1, 10, 50), chunks=5, delay_ms=50.0, window_s=1.0)


@dataclasses.dataclass
class Level:
    """What N concurrent streams did over one window."""

    streams: int
    window_s: float
    completed: int = 0
    failed: int = 0
    events: int = 0  # SSE events received inside the window
    load_core_busy: float = 0.0
    ttft: list[float] = dataclasses.field(default_factory=list)
    duration: list[float] = dataclasses.field(default_factory=list)
    rss_kib: int = 0
    upstream_open: int = 0
    cpu_s: float = 0.0


def raise_fd_limit(wanted: int) -> None:
    """Every stream is three sockets (client, chatd in and out, mock): lift the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def one_level(url: str, mock_url: str, n: int, plan: Plan, server: Process) -> Level:
    """N workers open streams back to back; only streams that end inside the window count."""
    level = Level(n, plan.window_s)
    request = body("mock/bench-model", True)
    ramp = min(1.0, n * 0.002)  # staggered connects
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=plan.window_s + 60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic() + ramp + plan.chunks * plan.delay_ms / 1000  # all N open by now
        end = start + plan.window_s

        async def worker(index: int) -> None:
            await asyncio.sleep(ramp * index / n)
            while time.monotonic() < end:
                began = time.monotonic()
                ttft, last = 0.0, b""
                try:
                    async with session.post(url, data=request, headers=JSON_HEADERS) as response:
                        async for data in response.content.iter_any():
                            now = time.monotonic()
                            if not ttft:
                                ttft = now - began
                            if start <= now <= end:
                                level.events += data.count(b"\n\n")
                            last = data
                    ok = response.status == 200 and last.endswith(b"data: [DONE]\n\n")
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                finished = time.monotonic()
                if start <= finished <= end:
                    level.completed += ok
                    level.failed += not ok
                if ok and began >= start and finished <= end:  # steady state: no connection set-up
                    level.ttft.append(ttft)
                    level.duration.append(finished - began)

        async def sample() -> None:
            await asyncio.sleep(max(0.0, start - time.monotonic()))
            cpu, load = server.cpu(), CoreLoad()
            while time.monotonic() < end:
                level.rss_kib = max(level.rss_kib, server.rss_kib())
                async with session.get(mock_url + "/stats") as response:
                    level.upstream_open = max(level.upstream_open, orjson.loads(await response.read())["open_streams"])
                await asyncio.sleep(0.25)
            level.cpu_s = server.cpu() - cpu
            level.load_core_busy = load.busy().get(LOAD_CORE, 0.0)

        await asyncio.wait_for(asyncio.gather(sample(), *(worker(i) for i in range(n))),
                               timeout=(end - time.monotonic()) + plan.chunks * plan.delay_ms / 1000 + 30)
    return level


def render(levels: list[Level], baseline_kib: int, plan: Plan, server: str) -> str:
    per_stream_rate = levels[0].events / levels[0].window_s / levels[0].streams
    p = Latency.percentile
    head = ["open streams", "held at upstream", "events/s", "linear", "efficiency", "TTFT p50 / p99 ms",
            "stream s p50 / p99", "streams done", "server CPU %", "load core %", "server CPU µs / event",
            "server RSS MiB",
            "RSS per open stream KiB", "failed"]
    lines = [f"# chatd scaling: concurrent streams under {server}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for level in levels:
        rate = level.events / level.window_s
        linear = level.streams * per_stream_rate
        per_stream = (level.rss_kib - baseline_kib) / level.streams
        lines.append("| " + " | ".join([
            f"{level.streams:,}", f"{level.upstream_open:,}", f"{rate:,.0f}", f"{linear:,.0f}",
            f"{rate / linear:.0%}" if linear else "—",
            f"{p(level.ttft, 0.5) * 1000:.2f} / {p(level.ttft, 0.99) * 1000:.2f}",
            f"{p(level.duration, 0.5):.3f} / {p(level.duration, 0.99):.3f}", f"{level.completed:,}",
            f"{100 * level.cpu_s / level.window_s:.0f}", f"{100 * level.load_core_busy:.0f}",
            f"{1e6 * level.cpu_s / level.events:,.0f}" if level.events else "—",
            f"{level.rss_kib / 1024:.1f}",
            f"{per_stream:,.1f}" if level.streams > 1 else "—", str(level.failed),
        ]) + " |")
    backlog = f"; hypercorn `--backlog {BACKLOG}`" if server == "hypercorn" else ""
    lines += ["", f"- mock upstream: {plan.chunks} content chunks, frames {plan.delay_ms:g} ms apart; "
              f"{plan.window_s:g} s window per level; server resident memory before the first level: "
              f"{baseline_kib / 1024:.1f} MiB; chatd `max_connections = {max(plan.levels) + 100}` so the "
              f"upstream pool does not cap the level{backlog}",
              "- TTFT and stream duration: streams that began and ended inside the window (connections "
              "already open); events/s: every event received inside the window",
              "- server pinned to core 0, mock upstream and clients to core 1"
              if proc.can_pin() else "- no core pinning (fewer than 2 cores or no taskset)",
              f"- {time.strftime('%Y-%m-%d %H:%M:%S')}"]
    return "\n".join(lines) + "\n"


async def scale(plan: Plan, server: str, workdir: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "LAKEHOUSE_CONFIG": str(workdir / "lakehouse.toml")}
    mock_argv = [sys.executable, "-m", "bench.mock_upstream", "--port", "0", "--chunks", str(plan.chunks),
                 "--delay-ms", str(plan.delay_ms)]
    with Process(proc.pinned(mock_argv, LOAD_CORE), cwd=str(ROOT), env=env, capture=True) as mock:
        mock_url = mock.read_line(20)
        (workdir / "lakehouse.toml").write_text(chatd_config(mock_url, max(plan.levels) + 100))
        port = proc.free_port()
        argv = server_argv(server, "app:app", port)
        if server == "hypercorn":  # its default listen backlog (100) drops SYNs when 1,000 clients connect
            argv += ["--backlog", str(BACKLOG)]
        argv = proc.pinned(argv, SERVER_CORE)
        with Process(argv, cwd=str(ROOT), env=env, log=workdir / "server.log") as chatd:
            url = f"http://127.0.0.1:{port}/v1/chat/chat/completions"
            try:
                await wait_ready(url, body("mock/bench-model", False), chatd.started_at, alive=chatd.alive)
            except LoadError as exc:
                raise LoadError(f"{exc}\n{chatd.log_tail()}") from None
            baseline = chatd.rss_kib()
            levels = []
            for n in plan.levels:
                levels.append(await one_level(url, mock_url, n, plan, chatd))
                print(f"  {n:5} streams: {levels[-1].completed} completed, {levels[-1].failed} failed",
                      file=sys.stderr, flush=True)
    return render(levels, baseline, plan, server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1, 10 and 50 streams, short windows")
    parser.add_argument("--server", default="hypercorn", choices=("hypercorn", "uvicorn", "granian"))
    parser.add_argument("--delay-ms", type=float, help=f"pause between stream frames (default {FULL.delay_ms:g})")
    args = parser.parse_args(argv)
    if not installed(args.server):
        parser.error(f"{args.server} is not installed")
    plan = QUICK if args.quick else FULL
    if args.delay_ms is not None:
        plan = dataclasses.replace(plan, delay_ms=args.delay_ms)
    raise_fd_limit(4 * max(plan.levels) + 1024)
    return proc.run_command("bench.scaling", lambda workdir: scale(plan, args.server, workdir),
                            publish_as("scaling.md"))


if __name__ == "__main__":
    sys.exit(main())
