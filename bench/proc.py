"""Processes under test: spawned pinned to a core, read through /proc, always stopped.

CPU time and peak memory are read for the whole process tree, because
hypercorn's and granian's CLIs serve from a worker process they spawn: the
tree's CPU is what a request costs, and the largest VmHWM in it is the serving
process's peak resident memory.
"""

from __future__ import annotations

import functools
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Coroutine

from . import aio
from .loadgen import LoadError

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CORE, LOAD_CORE = 0, 1
_running: set[Process] = set()


def free_port() -> int:
    """A port free right now on 127.0.0.1 (the servers bind it by number)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@functools.lru_cache(maxsize=None)
def can_pin() -> bool:
    """Pinning needs two cores this process may use (asked before pin_self) and taskset."""
    return {SERVER_CORE, LOAD_CORE} <= os.sched_getaffinity(0) and shutil.which("taskset") is not None


def pinned(argv: list[str], core: int | None) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if core is not None and can_pin() else argv


def pin_self(core: int) -> None:
    """Keep the load generator (this process) off the server's core."""
    if can_pin():
        os.sched_setaffinity(0, {core})


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # the command name may hold spaces


def children(pid: int) -> list[int]:
    """Every descendant of pid, read from the ppid field of /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(_stat_fields(int(entry))[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the given processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    """A `kB` line of /proc/<pid>/status (VmHWM: peak resident, VmRSS: resident now)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class CoreLoad:
    """How busy each core was since construction, from /proc/stat.

    `busy` counts every non-idle tick (interrupts and steal included); `tasks`
    only user, nice and system time: what processes ran there.
    """

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> dict[int, tuple[int, int, int]]:
        cores = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(v) for v in values]
                cores[int(name[3:])] = (sum(ticks[:8]), ticks[3] + ticks[4], sum(ticks[:3]))
        return cores

    def _share(self, pick: int) -> dict[int, float]:
        now, shares = self._read(), {}
        for core, values in now.items():
            before = self._start.get(core, values)
            span = values[0] - before[0]
            part = values[pick] - before[pick]
            shares[core] = (part if pick == 2 else span - part) / span if span > 0 else 0.0
        return shares

    def busy(self) -> dict[int, float]:
        return self._share(1)

    def tasks(self) -> dict[int, float]:
        return self._share(2)


class Process:
    """One process we spawn, in a session (process group) of its own, stopped for sure.

        with Process(argv, env=..., log=path) as proc:
            proc.cpu(); proc.peak_rss_kib()
    """

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
                 log: Path | None = None, capture: bool = False) -> None:
        self.argv = argv
        self.log = log
        out = subprocess.PIPE if capture else (open(log, "wb") if log else subprocess.DEVNULL)
        self.started_at = time.perf_counter()
        self.popen = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        if log and not capture:
            out.close()  # type: ignore[union-attr]
        self.pid = self.popen.pid
        _running.add(self)

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def read_line(self, timeout: float) -> str:
        """The next line of a captured stdout, or an error naming the command."""
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout)
        line = self.popen.stdout.readline().decode().strip() if ready else ""
        if not line:
            raise RuntimeError(f"{' '.join(self.argv)}: printed nothing within {timeout:g}s")
        return line

    def pids(self) -> list[int]:
        return [self.pid, *children(self.pid)]

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def peak_rss_kib(self) -> int:
        """The largest VmHWM in the tree: the serving process's peak."""
        return max((status_kib(pid, "VmHWM") for pid in self.pids()), default=0)

    def rss_kib(self) -> int:
        return max((status_kib(pid, "VmRSS") for pid in self.pids()), default=0)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL to the whole group after `timeout`; idempotent."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # stragglers: workers the server spawned
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        _running.discard(self)


def stop_all() -> None:
    """Stop every process still running: the last word of a benchmark, however it ends."""
    for process in list(_running):
        process.stop()


def run_command(name: str, work: Callable[[Path], Coroutine[object, object, str]],
                publish: Callable[[str], None]) -> int:
    """The body of a benchmark command's main(): its exit status.

    This process goes to the load core (off the server's), `work` runs in a
    scratch folder and its report goes to `publish`. A signal ends the run
    with 143 and a LoadError with 1 and its message; whichever way it ends,
    every process started is stopped.
    """
    pin_self(LOAD_CORE)
    try:
        with tempfile.TemporaryDirectory(prefix=f"chatd-{name}.") as workdir:
            report = aio.run(work(Path(workdir)))
    except aio.Stopped:
        return 143
    except LoadError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_all()
    publish(report)
    return 0
