"""What shared state costs: chatd with and without [chatd.state] redis_url, and with a client key, in one run.

    python -m bench.state            # four rows measured in turns (~2 min)
    python -m bench.state --quick    # seconds: the smoke

One mock upstream and one redis-server (both on the load core), then four
chatd processes under hypercorn on the server core. Their configs are the
same — the mock provider with limits set high enough never to refuse, so each
attempt runs every check — but for:

    local          no [chatd.state]: limits counted in process
    local+client   and a named client with limits of its own, whose key every request sends
    redis          [chatd.state] redis_url: every count in Redis
    redis+client   both

Rows are measured in turns as `bench.run` measures them, and each ratio is
taken round by round against `local`. Redis counts what it was asked itself:
the EVALSHA calls (INFO commandstats) during each row's latency batches, per
request of those batches, and the CPU those calls cost Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from . import proc
from .loadgen import LoadError, wrk_available
from .proc import LOAD_CORE, SERVER_CORE, Process
from .report import Row, added, p, ratio
from .run import Bench, Member
from .targets import APPS, CHATD, FULL, QUICK, RESULTS, ROOT, Settings, chatd_config, publish_as, server_argv, target

KEY = "bench-client-key-0001"
ROWS = ("local", "local+client", "redis", "redis+client")
LIMITS = "max_in_flight = 100000\nrpm = 100000000\ntpm = 100000000000\n"
"""Every check runs and none refuses: [chatd] defaults, so the mock provider has them."""
CLIENT = ('[chatd.clients.bench]\nkey_env = "BENCH_CLIENT_KEYS"\n'
          'max_in_flight = 100000\nrpm = 100000000\ntpm = 100000000000\n')


def row_config(mock_url: str, row: str, redis_url: str) -> str:
    text = chatd_config(mock_url).replace("[chatd]\n", "[chatd]\n" + LIMITS, 1)
    if row.startswith("redis"):
        text += f'\n[chatd.state]\nredis_url = "{redis_url}"\nkey_prefix = "bench:{row}:"\n'
    if row.endswith("+client"):
        text += "\n" + CLIENT
    return text


class Redis:
    """redis-server on the load core, and the counts of what it was asked."""

    def __init__(self, stack: contextlib.ExitStack, workdir: Path) -> None:
        try:
            import redis
        except ImportError:
            raise LoadError("bench.state needs the redis package: pip install -e '.[redis]'") from None
        self.port = proc.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = proc.pinned(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                            "--appendonly", "no", "--dir", str(workdir)], LOAD_CORE)
        try:
            self.process = stack.enter_context(Process(argv, log=workdir / "redis.log"))
        except FileNotFoundError:
            raise LoadError("bench.state needs redis-server (apt-get install redis-server)") from None
        self.client = redis.Redis(port=self.port, socket_timeout=5)
        stack.callback(self.client.close)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                if not self.process.alive() or time.monotonic() > deadline:
                    raise LoadError(f"redis-server did not start:\n{self.process.log_tail()}") from None
                time.sleep(0.02)

    def script_calls(self) -> tuple[int, int]:
        """(EVALSHA calls, their µs of Redis CPU) so far."""
        entry = self.client.info("commandstats").get("cmdstat_evalsha", {})
        return entry.get("calls", 0), entry.get("usec", 0)


class StateBench(Bench):
    """bench.run's measuring, with Redis's own counts taken around every latency batch."""

    def __init__(self, settings: Settings, workdir: Path, use_wrk: bool) -> None:
        super().__init__(settings, workdir, use_wrk)
        self.redis: Redis | None = None
        self.calls: dict[str, list[int]] = {row: [0, 0, 0] for row in ROWS}
        """row → [requests, EVALSHA calls, their µs]"""

    async def start_row(self, stack: contextlib.ExitStack, row: str) -> Member:
        assert self.redis is not None
        config = self.workdir / f"{row}.toml"
        config.write_text(row_config(self.mock_url, row, self.redis.url))
        env = {**self.env(), "LAKEHOUSE_CONFIG": str(config), "BENCH_CLIENT_KEYS": KEY}
        port = proc.free_port()
        log = self.workdir / f"{row}.log"
        argv = proc.pinned(server_argv("hypercorn", APPS[CHATD], port), SERVER_CORE)
        process = stack.enter_context(Process(argv, cwd=str(ROOT), env=env, log=log))
        where = target(CHATD, "openai")
        if row.endswith("+client"):
            where = replace(where, headers={"Authorization": f"Bearer {KEY}"})
        return await self.ready("hypercorn", row, "openai", process, f"http://127.0.0.1:{port}", where, log)

    async def latency_batch(self, m: Member, plain: int, streams: int) -> None:
        assert self.redis is not None
        calls, usec = await asyncio.to_thread(self.redis.script_calls)
        await super().latency_batch(m, plain, streams)
        after_calls, after_usec = await asyncio.to_thread(self.redis.script_calls)
        counted = self.calls[m.app]
        counted[0] += plain + streams
        counted[1] += after_calls - calls
        counted[2] += after_usec - usec


def table(rows: list[Row], calls: dict[str, list[int]], settings: Settings) -> str:
    base = next(r for r in rows if r.app == "local")
    head = ["row", f"req/s c={settings.ns_conns}", "×local", "p50 / p99 c=1 ms", "added p50 / p99 ms",
            f"stream req/s c={settings.stream_conns}", "×local", "TTFT p50 ms", "added TTFT p50 ms",
            "CPU µs/req (plain / stream)", "CPU µs/req over local", "Redis round trips / request",
            "Redis µs / request"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        requests, evalsha, usec = calls[row.app]
        lat, base_lat = row.latency.total, base.latency.total
        cells = [
            row.app, f"{row.nonstream.rps:,.0f}", ratio(row, base, "plain"),
            f"{p(lat, 0.5) * 1000:.2f} / {p(lat, 0.99) * 1000:.2f}",
            f"{added(p(lat, 0.5), p(base_lat, 0.5))} / {added(p(lat, 0.99), p(base_lat, 0.99))}",
            f"{row.stream.rps:,.0f}", ratio(row, base, "stream"),
            f"{p(row.ttft.first_byte, 0.5) * 1000:.2f}",
            added(p(row.ttft.first_byte, 0.5), p(base.ttft.first_byte, 0.5)),
            f"{row.cpu_us_nonstream:,.0f} / {row.cpu_us_stream:,.0f}",
            f"{row.cpu_us_nonstream - base.cpu_us_nonstream:+,.0f} / {row.cpu_us_stream - base.cpu_us_stream:+,.0f}",
            f"{evalsha / requests:.2f}" if requests else "—",
            f"{usec / requests:.1f}" if requests else "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def run(args: argparse.Namespace, settings: Settings, workdir: Path) -> str:
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and not args.quick and wrk_available())
    if use_wrk and not wrk_available():
        raise LoadError("--loadgen wrk, but wrk is not installed (apt-get install wrk)")
    bench = StateBench(settings, workdir, use_wrk)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        await bench.start_mock(stack, ["openai"])
        bench.redis = Redis(stack, workdir)
        members = [await bench.start_row(stack, row) for row in ROWS]
        await bench.measure(members)
        rows = [m.row() for m in members]
    tool = "wrk (1 thread)" if use_wrk else "asyncio loop (aiohttp client), not wrk: figures are lower"
    report = "\n".join([
        f"# chatd with and without shared state{' (quick)' if args.quick else ''}",
        "",
        table(rows, bench.calls, settings),
        "",
        "- rows: chatd under hypercorn, `openai` route to the mock; `local` has no `[chatd.state]`, `redis` "
        "names a redis-server on the load core; `+client` rows send a named client's key (its limits counted "
        "too); every limit is set and none refuses, so each attempt runs every check",
        "- ×local: the median over rounds of the row's throughput ÷ local's, measured in turns",
        "- Redis round trips and µs: EVALSHA calls Redis counted (INFO commandstats) during the latency "
        "batches, ÷ their requests; µs is Redis's own CPU for them (chatd's CPU column does not include it)",
        f"- throughput: **{tool}**, {settings.rounds} × {settings.seconds:g} s windows per row; latency and TTFT: "
        f"aiohttp client at c=1, {settings.latency_n} / {settings.ttft_n} requests per row",
        f"- pinning: {'chatd on core 0; mock, redis-server and load generator on core 1' if proc.can_pin() else 'none'}"
        f" ({os.cpu_count()} cores)",
        f"- {time.strftime('%Y-%m-%d %H:%M:%S')}, {time.monotonic() - started:.0f} s",
    ]) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "state.json").write_text(json.dumps(
        {"settings": vars(settings), "tool": tool, "rows": [r.as_dict() for r in rows], "redis": bench.calls},
        indent=1))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, small concurrency")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "asyncio"), default="auto",
                        help="throughput load generator (default: wrk when installed; asyncio with --quick)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    return proc.run_command("bench-state", lambda workdir: run(args, settings, workdir), publish_as("state.md"))


if __name__ == "__main__":
    sys.exit(main())
