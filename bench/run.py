"""One command for the whole benchmark: the direct upstream, the floor and chatd, in one run.

    python -m bench.run                                   # every installed server, every route
    python -m bench.run --quick                           # seconds: the CI smoke, no thresholds
    python -m bench.run --servers uvicorn --routes ollama

Server processes are pinned to core 0 (`taskset -c 0`); the mock upstream, wrk
and this process share core 1. For each server, the floor and chatd (one
process per route) are started with the server's own CLI, then measured in
turns, window by window, and stopped. The routes beyond `openai` and `ollama`
(the other surfaces and transforms) run on the first server only (hypercorn by default; `--every-server` for all), in
the same rounds as its Chat Completions routes. The table goes to stdout and to
bench/results/latest.md (raw figures in latest.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import aio, proc
from .loadgen import Latency, LoadError, Throughput, latencies, throughput, wait_ready, wrk_available
from .proc import LOAD_CORE, SERVER_CORE, CoreLoad, Process
from .report import Row, errors, noise, summary, surfaces, table
from .targets import (APPS, BASE_ROUTE, CHATD, DIRECT, FLOOR, FULL, OPENAI, QUICK, RESULTS, ROOT, ROUTES, SERVERS,
                      SURFACE_ROUTES, Settings, Target, chatd_config, installed, server_argv, target, upstream_of,
                      versions)


QUICK_ROUTES = ("openai", "anthropic-passthrough", "responses-passthrough")
"""CI's smoke: the Chat Completions, Anthropic and Responses surfaces, and three of the mock's four APIs."""


@dataclass
class Member:
    """One row being measured: its process, where to send requests, and what it has gathered."""

    server: str
    app: str
    route: str
    process: Process
    url: str
    target: Target
    startup: float
    latency: Latency = field(default_factory=Latency)
    ttft: Latency = field(default_factory=Latency)
    windows: dict[str, list[Throughput]] = field(default_factory=lambda: {"plain": [], "stream": []})
    cpu: dict[str, float] = field(default_factory=lambda: {"plain": 0.0, "stream": 0.0})
    busy: dict[str, dict[int, float]] = field(default_factory=dict)
    foreign: float = 0.0

    def total(self, kind: str) -> Throughput:
        windows = self.windows[kind]
        return Throughput(sum(w.requests for w in windows), sum(w.seconds for w in windows),
                          sum(w.errors for w in windows), windows[0].tool if windows else "")

    def row(self) -> Row:
        plain, stream = self.total("plain"), self.total("stream")
        return Row(self.server, self.app, self.route, self.startup, self.latency, self.ttft, plain, stream,
                   self.cpu["plain"] / max(plain.requests, 1) * 1e6,
                   self.cpu["stream"] / max(stream.requests, 1) * 1e6,
                   self.process.peak_rss_kib() / 1024, self.busy, self.foreign,
                   {kind: [w.rps for w in windows] for kind, windows in self.windows.items()})


class Bench:
    """Runs the rows of one invocation against one mock upstream."""

    def __init__(self, settings: Settings, workdir: Path, use_wrk: bool) -> None:
        self.settings = settings
        self.workdir = workdir
        self.use_wrk = use_wrk
        self.wrk_prefix = proc.pinned([], LOAD_CORE)
        self.mock_url = ""
        self.files: dict[bytes, Path] = {}

    def env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path, "LAKEHOUSE_CONFIG": str(self.workdir / "lakehouse.toml"),
                "FLOOR_UPSTREAM": self.mock_url + "/v1/chat/completions", "PYTHONUNBUFFERED": "1"}

    async def start_mock(self, stack: contextlib.ExitStack, apis: list[str]) -> list[Member]:
        """The mock upstream, and a direct row per API of it the routes end at, called with no proxy."""
        argv = proc.pinned([sys.executable, "-m", "bench.mock_upstream", "--port", "0",
                            "--chunks", str(self.settings.chunks)], LOAD_CORE)
        mock = stack.enter_context(Process(argv, cwd=str(ROOT), env=self.env(), capture=True))
        self.mock_url = mock.read_line(20)
        (self.workdir / "lakehouse.toml").write_text(chatd_config(self.mock_url))
        startup = await wait_ready(self.mock_url + "/v1/chat/completions", target(DIRECT, "openai").plain,
                                   mock.started_at, alive=mock.alive)
        return [Member("mock", DIRECT, api, mock, self.mock_url, target(DIRECT, api), startup) for api in apis]

    async def start(self, stack: contextlib.ExitStack, server: str, app: str, route: str) -> Member:
        """A fresh server process for one row; its start-up time is spawn → first 200 answer."""
        port = proc.free_port()
        argv = proc.pinned(server_argv(server, APPS[app], port), SERVER_CORE)
        log = self.workdir / f"{server}-{app}-{route}.log"
        process = stack.enter_context(Process(argv, cwd=str(ROOT), env=self.env(), log=log))
        url, where = f"http://127.0.0.1:{port}", target(app, route)
        return await self.ready(server, app, route, process, url, where, log)

    @staticmethod
    async def ready(server: str, app: str, route: str, process: Process, url: str, where: Target,
                    log: Path) -> Member:
        """The row, once its server answers its first request (its start-up time: spawn → that 200)."""
        try:
            startup = await wait_ready(url + where.path, where.plain, process.started_at, alive=process.alive,
                                       headers=where.headers)
        except LoadError as exc:
            raise LoadError(f"{server} {app} {route}: {exc}\n--- {log.name}\n{process.log_tail()}") from None
        return Member(server, app, route, process, url, where, startup)

    async def measure(self, members: list[Member]) -> None:
        """Warm up, then in each round: latency of every member, then each throughput window in turn."""
        s = self.settings
        for m in members:
            await throughput(m.url + m.target.path, m.target.plain, self.file(m.target.plain), s.ns_conns,
                             s.warm_seconds, False, [], m.target.headers)
        for _ in range(s.rounds):
            for m in members:
                await self.latency_batch(m, s.latency_n // s.rounds, s.ttft_n // s.rounds)
            for kind, conns in (("plain", s.ns_conns), ("stream", s.stream_conns)):
                for m in members:
                    await self.window(m, kind, conns)
        for m in members:
            print(f"  {m.server:9} {m.app:6} {m.route:21} {m.total('plain').rps:9,.0f} req/s  "
                  f"{m.total('stream').rps:9,.0f} stream/s", file=sys.stderr, flush=True)

    async def latency_batch(self, m: Member, plain: int, streams: int) -> None:
        """`plain` non-streamed requests, then `streams` streams, one at a time: latency and TTFT."""
        url = m.url + m.target.path
        latency = await latencies(url, m.target.plain, plain, None, headers=m.target.headers)
        ttft = await latencies(url, m.target.stream, streams, m.target.end, headers=m.target.headers)
        m.latency.total += latency.total
        m.ttft.first_byte += ttft.first_byte

    async def window(self, m: Member, kind: str, conns: int) -> None:
        """One throughput window, with the server's CPU and both cores' load over it."""
        data = getattr(m.target, kind)
        end = m.target.end if kind == "stream" else None
        cpu, load, began = m.process.cpu(), CoreLoad(), time.perf_counter()
        result = await throughput(m.url + m.target.path, data, self.file(data), conns, self.settings.seconds,
                                  self.use_wrk, self.wrk_prefix, m.target.headers, end)
        used, wall = m.process.cpu() - cpu, time.perf_counter() - began
        m.windows[kind].append(result)
        m.cpu[kind] += used
        m.busy[f"{kind}-{len(m.windows[kind])}"] = load.busy()
        if m.app != DIRECT:  # time other processes ran on the server's core
            m.foreign = max(m.foreign, load.tasks().get(SERVER_CORE, 0.0) - used / wall)

    def file(self, data: bytes) -> Path:
        """The request body as a file, for wrk's post.lua."""
        if data not in self.files:
            self.files[data] = self.workdir / f"body-{len(self.files)}.json"
            self.files[data].write_bytes(data)
        return self.files[data]


async def run(args: argparse.Namespace, settings: Settings, workdir: Path) -> str:
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and not args.quick and wrk_available())
    if use_wrk and not wrk_available():
        raise LoadError("--loadgen wrk, but wrk is not installed (apt-get install wrk)")
    bench = Bench(settings, workdir, use_wrk)
    started, load_before = time.monotonic(), os.getloadavg()
    rows: list[Row] = []
    with contextlib.ExitStack() as mock_stack:
        apis = dict.fromkeys([OPENAI, *(upstream_of(route) for route in args.routes)])
        direct = await bench.start_mock(mock_stack, list(apis))
        await bench.measure(direct)
        rows += [m.row() for m in direct]
        for server in args.servers:
            with contextlib.ExitStack() as stack:
                members = [await bench.start(stack, server, FLOOR, "openai")]
                members += [await bench.start(stack, server, CHATD, route) for route in routes_of(args, server)]
                await bench.measure(members)
                rows += [m.row() for m in members]
    tool = "wrk (1 thread)" if use_wrk else "asyncio loop (aiohttp client), not wrk: figures are lower"
    lines = [
        f"# chatd benchmark{' (quick)' if args.quick else ''}",
        "",
        table(rows, settings.ns_conns, settings.stream_conns, settings.chunks),
        "",
        summary(rows),
        "",
        *surfaces(rows),
        f"- throughput: **{tool}**, {settings.rounds} × {settings.seconds:g} s windows per row, taken in turns "
        f"with the other rows of the same server; latency and TTFT: aiohttp client at c=1, "
        f"{settings.latency_n} / {settings.ttft_n} requests per row",
        f"- pinning: {'server on core 0; mock upstream + load generator on core 1' if proc.can_pin() else 'none'}"
        f" ({os.cpu_count()} cores); mock upstream loop: {aio.loop_name()}",
        f"- {versions(args.servers)}; Python {platform.python_version()}",
        "- route `openai`: a custom `transform = \"openai\"` provider by `[[chatd.routes]]` prefix `mock/`; "
        "route `ollama`: `ollama/` to `ollama_url` (`ollama_chat` transform); the floor is OpenAI passthrough "
        "only, so ×floor for `ollama` includes the translation",
        *(f"- route `{name}`: {ROUTES[name].about}" for name in dict.fromkeys(args.routes) if name in SURFACE_ROUTES),
        "- † the load core was saturated and the server's was not: the figure is a floor of the server's capacity",
        *errors(rows),
        *noise(rows),
        f"- load average at the start: {' '.join(f'{x:.2f}' for x in load_before)}",
        f"- {time.strftime('%Y-%m-%d %H:%M:%S')}, {time.monotonic() - started:.0f} s",
    ]
    report = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(report)
    (RESULTS / "latest.json").write_text(json.dumps(
        {"settings": vars(settings), "tool": tool, "rows": [r.as_dict() for r in rows]}, indent=1))
    return report


def routes_of(args: argparse.Namespace, server: str) -> list[str]:
    """The routes measured on `server`: those beyond `openai` and `ollama` on the first server only, unless
    --every-server."""
    first = server == args.servers[0]
    return [route for route in args.routes if first or args.every_server or route not in SURFACE_ROUTES]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"a few seconds: hypercorn, {', '.join(QUICK_ROUTES)}, small c")
    parser.add_argument("--servers", help=f"comma-separated, from {','.join(SERVERS)} (default: every installed)")
    parser.add_argument("--routes", help=f"comma-separated, from {','.join(ROUTES)} (default: all; --quick: "
                        f"{','.join(QUICK_ROUTES)}); with any Anthropic or Responses route, {BASE_ROUTE} too")
    parser.add_argument("--every-server", action="store_true",
                        help="measure the other surfaces' and transforms' routes on every server, not only the first")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "asyncio"), default="auto",
                        help="throughput load generator (default: wrk when installed; asyncio with --quick, "
                        "whose windows are shorter than wrk's 1 s minimum)")
    args = parser.parse_args(argv)
    default_servers = ["hypercorn"] if args.quick else [s for s in SERVERS if installed(s)]
    args.servers = args.servers.split(",") if args.servers else default_servers
    args.routes = args.routes.split(",") if args.routes else list(QUICK_ROUTES if args.quick else ROUTES)
    for name in args.servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")
        if not installed(name):
            parser.error(f"{name} is not installed (pip install {name})")
    for name in args.routes:
        if name not in ROUTES:
            parser.error(f"unknown route {name!r}; choose from {', '.join(ROUTES)}")
    if BASE_ROUTE not in args.routes and set(args.routes) & set(SURFACE_ROUTES):
        args.routes.insert(0, BASE_ROUTE)  # what their ratios are taken against
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    return proc.run_command("bench", lambda workdir: run(args, settings, workdir),
                            lambda report: print(report, end=""))


if __name__ == "__main__":
    sys.exit(main())
