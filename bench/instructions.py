"""Instructions per request, floor against chatd, counted by valgrind: a ratio a busy machine cannot move.

    python -m bench.instructions [--requests 50,250] [--concurrency 16]     # ~4 min
    python -m bench.instructions --routes openai,anthropic-passthrough      # + ~2 min a route

Wall-clock ratios from a shared virtual machine move by 0.1 between runs; the
number of instructions a request costs moves by about 1%. Each app is served
by hypercorn in one process run under valgrind (callgrind, no cache
simulation), and a client outside it sends N1 requests to one such process and
N2 to another: (I(N2) - I(N1)) / (N2 - N1) is one request, start-up and
shutdown cancelling out. The mock upstream sends each answer in one write, so
how the reads happen to split a stream cannot change the count.

Instructions are not time (a byte scan retires many per nanosecond, a cache
miss none), so this is a steady signal for comparing two versions of chatd;
`python -m bench.run` gives the real figures. Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import re
import shutil
import sys
from pathlib import Path

from . import proc
from .loadgen import LoadError, client, request_headers, wait_ready
from .proc import Process
from .targets import APPS, BASE_ROUTE, CHATD, FLOOR, ROOT, ROUTES, chatd_config, publish_as, target

CHAT = "/v1/chat/"
_COLLECTED = re.compile(rb"Collected : (\d+)")


async def serve(app_spec: str, port: int, requests: int) -> None:
    """Inside valgrind: serve `app_spec` under hypercorn until `requests` chat requests were answered."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    module, _, name = app_spec.partition(":")
    inner = getattr(importlib.import_module(module), name)
    enough = asyncio.Event()
    answered = 0

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        nonlocal answered
        await inner(scope, receive, send)
        if scope["type"] == "http" and scope["path"].startswith(CHAT):
            answered += 1
            if answered >= requests:
                enough.set()

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    await hypercorn_serve(app, config, shutdown_trigger=enough.wait)  # type: ignore[arg-type]


async def count(app: str, route: str, stream: bool, requests: int, concurrency: int, env: dict[str, str],
                workdir: Path) -> int:
    """Instructions one valgrind'd server spent on `requests` requests of `route` (the readiness probe is the
    first)."""
    port = proc.free_port()
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, "-m", "bench.instructions", "--serve", APPS[app], str(port), str(requests)]
    log = workdir / f"{app}-{route}-{'stream' if stream else 'plain'}-{requests}.log"
    where = target(app, route)
    body = where.stream if stream else where.plain
    url = f"http://127.0.0.1:{port}{where.path}"
    with Process(argv, cwd=str(ROOT), env=env, log=log) as server:
        await wait_ready(url, body, server.started_at, timeout=120, alive=server.alive, headers=where.headers)
        left = requests - 1
        async with client(concurrency) as session:
            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    async with session.post(url, data=body, headers=request_headers(where.headers)) as response:
                        await response.read()
                        if response.status != 200:
                            raise LoadError(f"{app}: HTTP {response.status} under valgrind")

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        await asyncio.to_thread(server.popen.wait, 120)
    found = _COLLECTED.findall(log.read_bytes())
    if not found:
        raise LoadError(f"{app}: valgrind reported no instruction count\n{server.log_tail()}")
    return int(found[-1])


async def per_request(app: str, route: str, stream: bool, args: argparse.Namespace, env: dict[str, str],
                      workdir: Path) -> float:
    """(I(N2) - I(N1)) / (N2 - N1): one request's instructions, start-up and shutdown cancelled out."""
    n1, n2 = args.requests
    low = await count(app, route, stream, n1, args.concurrency, env, workdir)
    high = await count(app, route, stream, n2, args.concurrency, env, workdir)
    return (high - low) / (n2 - n1)


async def measure(args: argparse.Namespace, workdir: Path) -> str:
    if shutil.which("valgrind") is None:
        raise LoadError("valgrind is not installed (apt-get install valgrind)")
    mock_argv = [sys.executable, "-m", "bench.mock_upstream", "--port", "0", "--chunks", "20", "--one-write"]
    with Process(mock_argv, cwd=str(ROOT), capture=True) as mock:
        mock_url = mock.read_line(20)
        config = workdir / "lakehouse.toml"
        config.write_text(chatd_config(mock_url))
        env = {**os.environ, "LAKEHOUSE_CONFIG": str(config), "FLOOR_UPSTREAM": mock_url + "/v1/chat/completions"}
        n1, n2 = args.requests
        lines = [f"# chatd instructions per request (valgrind, hypercorn, {', '.join(args.routes)})", "",
                 f"| request | floor | chatd | ×floor | ×{BASE_ROUTE} |", "|---|---|---|---|---|"]
        for stream in (False, True):
            floor = await per_request(FLOOR, BASE_ROUTE, stream, args, env, workdir)
            chatd = {route: await per_request(CHATD, route, stream, args, env, workdir) for route in args.routes}
            for route, used in chatd.items():
                kind = "stream (20 chunks)" if stream else "non-stream"
                kind += f", {route}" if route != BASE_ROUTE else ""
                base = f"{chatd[BASE_ROUTE] / used:.2f}" if BASE_ROUTE in chatd and route != BASE_ROUTE else "—"
                lines.append(f"| {kind} | {floor:,.0f} | {used:,.0f} | {floor / used:.2f} | {base} |")
        lines += ["", f"- (I(N2) - I(N1)) / (N2 - N1) with N = {n1} and {n2}, {args.concurrency} at a time; "
                  "the mock upstream writes each answer at once"]
        return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", default="50,250", help="N1,N2: requests per counted run (default 50,250)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests at a time (default 16)")
    parser.add_argument("--routes", default=BASE_ROUTE,
                        help=f"comma-separated chatd routes, from {','.join(ROUTES)} (default {BASE_ROUTE})")
    parser.add_argument("--serve", nargs=3, metavar=("APP", "PORT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        n1, n2 = (int(n) for n in args.requests.split(","))
    except ValueError:
        parser.error("--requests takes two counts: N1,N2")
    if not 1 <= n1 < n2:
        parser.error("--requests: need 1 <= N1 < N2")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    args.routes = args.routes.split(",")
    for name in args.routes:
        if name not in ROUTES:
            parser.error(f"unknown route {name!r}; choose from {', '.join(ROUTES)}")
    args.requests = (n1, n2)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        app, port, requests = args.serve
        asyncio.run(serve(app, int(port), int(requests)))
        return 0
    return proc.run_command("instructions", lambda workdir: measure(args, workdir),
                            publish_as("instructions.md"))


if __name__ == "__main__":
    sys.exit(main())
