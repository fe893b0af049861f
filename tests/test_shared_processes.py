"""Real chatd processes sharing one redis-server: `chatd --workers 2`, and a process killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path

import httpx

from chat_middleware import load_config

from tests.conftest import KEYS, gateway_toml
from tests.fakes import Reply
from tests.harness import ChatdServer, ServerProcess, free_port
from tests.limits import HI, Held, chat, limit_error
from tests.redis_server import redis_server  # noqa: F401  (fixture)

CHATD = str(Path(sys.executable).parent / "chatd")
HIDDEN = {*KEYS, "LAKEHOUSE_CONFIG", "PROMETHEUS_MULTIPROC_DIR"}


def shared_config(tmp_path: Path, upstreams: dict, redis_url: str, blocks: dict[str, str], state: str = "") -> Path:
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    path = tmp_path / "lakehouse.toml"
    path.write_text(gateway_toml(**upstreams, blocks=blocks,
                                 extra=f'[chatd.state]\nredis_url = "{redis_url}"\nkey_prefix = "{prefix}"\n{state}'))
    return path


def chatd(path: Path, *args: str, **env: str) -> ServerProcess:
    port = free_port()
    environ = {**{k: v for k, v in os.environ.items() if k not in HIDDEN}, **KEYS, **env}
    return ServerProcess([CHATD, "--config", str(path), "--bind", f"127.0.0.1:{port}", *args], port,
                         path.parent / f"chatd-{port}.log", env=environ)


def answered_by_worker(directory: Path, provider: str) -> dict[str, dict[str, float]]:
    """pid → status → requests of `provider` that worker answered, read from its own metrics file."""
    from prometheus_client.mmap_dict import MmapedDict

    found: dict[str, dict[str, float]] = {}
    for path in directory.glob("counter_*.db"):
        pid = re.fullmatch(r"counter_(\d+)\.db", path.name)[1]
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, *_ = json.loads(key)
            if sample == "chatd_requests_total" and labels.get("provider") == provider:
                found.setdefault(pid, {})[labels["status"]] = value
    return found


async def test_two_workers_hold_one_max_in_flight_and_one_rpm(tmp_path, upstreams, redis_server, openrouter):
    path = shared_config(tmp_path, upstreams, redis_server.url,
                         {"openrouter": "max_in_flight = 3", "ollama_cloud": "rpm = 4"})
    metrics = tmp_path / "metrics"
    openrouter.replies["moonshotai/kimi-k2"] = Reply(hang=True)
    with chatd(path, "--workers", "2", PROMETHEUS_MULTIPROC_DIR=str(metrics)) as server:
        server.wait_healthy()
        statuses: list[int] = []
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            while len(answered_by_worker(metrics, "none")) < 2:  # health checks, until both workers answer
                await asyncio.gather(*(http.get(server.url + "/v1/chat/health") for _ in range(4)))
            while len(answered_by_worker(metrics, "ollama_cloud")) < 2:  # a new connection each, to either worker
                assert len(statuses) < 300, "one worker took every connection"
                batch = await asyncio.gather(*(http.post(server.url + "/v1/chat/completions", json={
                    "model": "kimi-k2.6:cloud", "messages": HI}) for _ in range(6)))
                statuses += [response.status_code for response in batch]
        assert statuses.count(200) == 4 and statuses.count(429) == len(statuses) - 4  # 4 a minute, both workers
        for _ in range(30):  # rounds, until both workers took part (the kernel picks which accepts)
            async with Held() as held:
                tasks = [held.post(server.url, "router") for _ in range(8)]
                assert await held.reach(openrouter, 3)
                done, _ = await asyncio.wait(tasks, timeout=2)  # the five refused; three stay held
                refused = [task.result() for task in done]
                assert len(refused) == 5 and openrouter.open_requests == 3, server.output()
                assert all(limit_error(r) == (429, "rate_limited", "provider_max_in_flight") for r in refused)
            assert await Held.reach(openrouter, 0)
            if len(answered_by_worker(metrics, "openrouter")) == 2:
                break
        assert len(answered_by_worker(metrics, "openrouter")) == 2, "one worker took every request"
        assert server.stop() == 0, server.output()


async def test_the_slots_of_a_chatd_killed_with_sigkill_free_within_lease_s(
        tmp_path, upstreams, redis_server, openrouter):
    lease_s = 1.0
    path = shared_config(tmp_path, upstreams, redis_server.url, {"openrouter": "max_in_flight = 1"},
                         state=f"lease_s = {lease_s}\n")
    openrouter.replies["moonshotai/kimi-k2"] = Reply(hang=True)

    def probe() -> int:
        return chat(other.url, "openrouter/openai/gpt-4o-mini").status_code

    with chatd(path) as killed, ChatdServer(load_config(path, environ=KEYS)) as other:
        killed.wait_healthy()
        async with Held() as held:
            held.post(killed.url, "router")
            assert await held.reach(openrouter, 1)
            until = time.monotonic() + 2 * lease_s  # renewed while its process lives: held past lease_s
            while time.monotonic() < until:
                assert await asyncio.to_thread(probe) == 429
                await asyncio.sleep(0.05)
            killed.kill()  # SIGKILL: nothing is released
            died = time.monotonic()
            assert await asyncio.to_thread(probe) == 429
            while (status := await asyncio.to_thread(probe)) == 429:
                assert time.monotonic() - died < lease_s + 0.5, "the dead process's slot was never freed"
            assert status == 200
