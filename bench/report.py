"""The benchmark's results as one markdown table, with ratios against the floor and the direct upstream.

Every row is one process measured in this run. "added" latencies subtract the
direct upstream's figure for the same upstream endpoint; "×floor" is the median,
over the rounds, of a row's throughput divided by the floor's in the same round
(taken seconds apart), which a machine whose speed drifts skews least. The
other surfaces' and transforms' rows are restated the same way against chatd's Chat
Completions → `openai` passthrough row of their server: "×openai".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

from .loadgen import Latency, Throughput
from .proc import LOAD_CORE, SERVER_CORE
from .targets import BASE_ROUTE, CHATD, DIRECT, FLOOR, SURFACE_ROUTES, upstream_of


@dataclass
class Row:
    """What one server process did in one run."""

    server: str
    app: str
    route: str
    startup_s: float
    latency: Latency
    ttft: Latency
    nonstream: Throughput
    stream: Throughput
    cpu_us_nonstream: float
    cpu_us_stream: float
    peak_rss_mib: float
    busy: dict[str, dict[int, float]] = field(default_factory=dict)
    foreign: float = 0.0  # share of the server's core used by other processes, worst window
    rounds: dict[str, list[float]] = field(default_factory=dict)  # req/s of each round, by "plain" / "stream"

    def load_bound(self) -> bool:
        """True when the load core, not the server's, was the limit of a throughput window."""
        return self.app != DIRECT and any(
            b.get(LOAD_CORE, 0) > 0.95 and b.get(SERVER_CORE, 0) < 0.9 for b in self.busy.values())

    def as_dict(self) -> dict:
        return {
            "server": self.server, "app": self.app, "route": self.route, "startup_s": self.startup_s,
            "latency_ms": {"p50": ms(p(self.latency.total, 0.5)), "p99": ms(p(self.latency.total, 0.99)),
                           "n": len(self.latency.total)},
            "ttft_ms": {"p50": ms(p(self.ttft.first_byte, 0.5)), "p99": ms(p(self.ttft.first_byte, 0.99)),
                        "n": len(self.ttft.first_byte)},
            "nonstream": vars(self.nonstream) | {"rps": self.nonstream.rps},
            "stream": vars(self.stream) | {"rps": self.stream.rps},
            "cpu_us_per_request": {"nonstream": self.cpu_us_nonstream, "stream": self.cpu_us_stream},
            "peak_rss_mib": self.peak_rss_mib,
            "core_busy": self.busy,
            "rounds_rps": self.rounds,
            "foreign_load_on_server_core": round(self.foreign, 3),
        }


def p(samples: list[float], q: float) -> float:
    return Latency.percentile(samples, q)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def ratio(row: Row, floor: Row, kind: str) -> str:
    """The median over rounds of row ÷ floor, each round's pair measured back to back."""
    pairs = [r / f for r, f in zip(row.rounds.get(kind, ()), floor.rounds.get(kind, ())) if f]
    return f"{median(pairs):.2f}" if pairs else "—"


def added(value: float, base: float) -> str:
    return f"{(value - base) * 1000:+.2f}"


def table(rows: list[Row], ns_conns: int, stream_conns: int, chunks: int) -> str:
    """The markdown table: one line per measured process."""
    direct = {r.route: r for r in rows if r.app == DIRECT}
    floors = {r.server: r for r in rows if r.app == FLOOR}
    head = [
        "server", "app", "route", f"req/s c={ns_conns}", "×floor", "p50 / p99 c=1 ms",
        "added p50 / p99 ms", f"stream req/s c={stream_conns} ({chunks} chunks)", "×floor",
        "TTFT p50 ms", "added TTFT p50 ms", "CPU µs/req (plain / stream)", "peak RSS MiB", "start-up s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        base, floor = direct.get(upstream_of(row.route)), floors.get(row.server)
        p50, p99 = p(row.latency.total, 0.5), p(row.latency.total, 0.99)
        ttft = p(row.ttft.first_byte, 0.5)
        is_direct = row.app == DIRECT
        mark = " †" if row.load_bound() else ""
        cells = [
            row.server, row.app, row.route,
            f"{row.nonstream.rps:,.0f}{mark}",
            "—" if is_direct or floor is None else ratio(row, floor, "plain"),
            f"{p50 * 1000:.2f} / {p99 * 1000:.2f}",
            "—" if is_direct or base is None else
            f"{added(p50, p(base.latency.total, 0.5))} / {added(p99, p(base.latency.total, 0.99))}",
            f"{row.stream.rps:,.0f}{mark}",
            "—" if is_direct or floor is None else ratio(row, floor, "stream"),
            f"{ttft * 1000:.2f}",
            "—" if is_direct or base is None else added(ttft, p(base.ttft.first_byte, 0.5)),
            f"{row.cpu_us_nonstream:,.0f} / {row.cpu_us_stream:,.0f}",
            f"{row.peak_rss_mib:.1f}",
            f"{row.startup_s:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def errors(rows: list[Row]) -> list[str]:
    """One line per row whose load generator counted failed requests."""
    notes = []
    for row in rows:
        for name, result in (("plain", row.nonstream), ("stream", row.stream)):
            if result.errors:
                notes.append(f"- {row.server} {row.app} {row.route}: {result.errors} failed {name} requests "
                             f"({result.tool})")
    return notes


def against(row: Row, other: Row) -> list[str]:
    """Throughput ratios (plain / stream), and CPU per request, p50 and TTFT p50 on top of `other`'s."""
    lat, ttft = p(row.latency.total, 0.5), p(row.ttft.first_byte, 0.5)
    return [
        f"{ratio(row, other, 'plain')} / {ratio(row, other, 'stream')}",
        f"{row.cpu_us_nonstream - other.cpu_us_nonstream:+,.0f} / {row.cpu_us_stream - other.cpu_us_stream:+,.0f}",
        added(lat, p(other.latency.total, 0.5)), added(ttft, p(other.ttft.first_byte, 0.5)),
    ]


def summary(rows: list[Row]) -> str:
    """chatd against the floor of the same server (what chatd adds) and against the direct upstream."""
    direct = {r.route: r for r in rows if r.app == DIRECT}
    floors = {r.server: r for r in rows if r.app == FLOOR}
    head = ["server", "route", "req/s ×floor (plain / stream)", "CPU µs/req over floor (plain / stream)",
            "p50 over floor ms", "TTFT p50 over floor ms", "p50 over direct ms", "TTFT p50 over direct ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        floor, base = floors.get(row.server), direct.get(upstream_of(row.route))
        if row.app != CHATD or floor is None:
            continue
        lat, ttft = p(row.latency.total, 0.5), p(row.ttft.first_byte, 0.5)
        lines.append("| " + " | ".join([
            row.server, row.route, *against(row, floor),
            added(lat, p(base.latency.total, 0.5)) if base else "—",
            added(ttft, p(base.ttft.first_byte, 0.5)) if base else "—",
        ]) + " |")
    return "\n".join(lines)


def surfaces(rows: list[Row]) -> list[str]:
    """The other surfaces' and transforms' rows against Chat Completions → `openai` passthrough on the same server,
    measured in the same rounds: what each surface and translation costs. No such rows, no lines."""
    bases = {r.server: r for r in rows if r.app == CHATD and r.route == BASE_ROUTE}
    head = ["server", "route", f"req/s ×{BASE_ROUTE} (plain / stream)",
            f"CPU µs/req over {BASE_ROUTE} (plain / stream)", f"p50 over {BASE_ROUTE} ms", f"TTFT p50 over {BASE_ROUTE} ms"]
    found = [("| " + " | ".join([row.server, row.route, *against(row, bases[row.server])]) + " |")
             for row in rows if row.app == CHATD and row.route in SURFACE_ROUTES and row.server in bases]
    if not found:
        return []
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *found, ""]


def noise(rows: list[Row], threshold: float = 0.05) -> list[str]:
    """Rows whose server core was shared with other processes: their figures are low and noisy."""
    return [f"- other processes used {row.foreign:.0%} of the server's core during {row.server} {row.app} "
            f"{row.route}: its figures are noisy" for row in rows if row.foreign > threshold]
